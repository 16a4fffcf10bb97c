//! SQL of the audit service. Every function runs inside a tenant transaction
//! (`chukan_db::tenant_tx`), so row-level security confines it to that tenant.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use chukan_merkle::{Hash, NodeId};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

/// One stored record: its sealed leaf and the searchable copy (see [`crate::searchable`]).
pub use crate::searchable::StoredRecord as RecordRow;

pub type RecordRows = Vec<RecordRow>;

/// Locks the tenant's log row (creating it empty first): `(size, frontier, signed_size)`.
pub async fn lock_log(tx: &impl GenericClient, tenant: &str) -> Result<(i64, Vec<u8>, i64), Error> {
    let create = tx
        .prepare_cached(
            "INSERT INTO audit.logs (tenant_id, size, frontier) VALUES ($1, 0, '') \
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let register = tx
        .prepare_cached("INSERT INTO audit.tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .await?;
    let lock = tx
        .prepare_cached(
            "SELECT size, frontier, signed_size FROM audit.logs WHERE tenant_id = $1 FOR UPDATE",
        )
        .await?;
    // Registered for the signer once, when the log is created.
    if tx.execute(&create, &[&tenant]).await? == 1 {
        tx.execute(&register, &[&tenant]).await?;
    }
    let row = tx.query_one(&lock, &[&tenant]).await?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// `(size, signed_size)` of the tenant's log without locking it (the signer's cheap check).
pub async fn log_growth(tx: &impl GenericClient) -> Result<Option<(i64, i64)>, Error> {
    let st = tx
        .prepare_cached("SELECT size, signed_size FROM audit.logs")
        .await?;
    tx.query_opt(&st, &[])
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

/// The tenant's log (in a tenant transaction): whether it has records its newest signed head
/// does not cover, and when that head was signed (`None` before the first). `None` without a
/// log.
pub async fn coverage(
    tx: &impl GenericClient,
) -> Result<Option<(bool, Option<DateTime<Utc>>)>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT l.size > l.signed_size,
                    (SELECT signed_at FROM audit.tree_heads ORDER BY size DESC LIMIT 1)
               FROM audit.logs l",
        )
        .await?;
    tx.query_opt(&st, &[])
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

/// Claims bus message ids in the inbox; the ones that are new (apply them).
pub async fn claim_messages(
    tx: &impl GenericClient,
    consumer: &str,
    ids: &[Uuid],
) -> Result<HashSet<Uuid>, Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO audit.inbox (consumer, message_id) SELECT $1, unnest($2::uuid[]) \
             ON CONFLICT DO NOTHING RETURNING message_id",
        )
        .await?;
    tx.query(&st, &[&consumer, &ids])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// Which of `ids` are already in the log.
pub async fn existing_records(tx: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Uuid>, Error> {
    let st = tx
        .prepare_cached("SELECT record_id FROM audit.records WHERE record_id = ANY($1)")
        .await?;
    tx.query(&st, &[&ids])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// Inserts a batch of records in one statement (`unnest` of one array per column: COPY is
/// not open to a role under row-level security).
pub async fn insert_records(
    tx: &impl GenericClient,
    tenant: &str,
    rows: &[RecordRow],
) -> Result<(), Error> {
    // Columns borrow from the rows: nothing is copied to build the arrays.
    fn col<'r, T>(rows: &'r [RecordRow], f: impl Fn(&'r RecordRow) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO audit.records (tenant_id, seq, record_id, event, inquirer_org, \
             provider_org, affair_code, procedure_code, info_code, serial_no, branch_no, \
             permit_id, addressee_bidx, leaf_enc, requested_at, provided_at, non_disclosure, \
             outcome, at, leaf_hash, target_record_id, reason, actor) \
             SELECT $1, * FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], \
             $12::text[], $13::bytea[], $14::bytea[], $15::timestamptz[], $16::timestamptz[], \
             $17::bool[], $18::text[], $19::timestamptz[], $20::bytea[], $21::uuid[], \
             $22::text[], $23::text[])",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &tenant,
            &col(rows, |r| r.seq),
            &col(rows, |r| r.record_id),
            &col(rows, |r| r.copy.event.as_str()),
            &col(rows, |r| r.copy.inquirer_org.as_str()),
            &col(rows, |r| r.copy.provider_org.as_str()),
            &col(rows, |r| r.copy.affair_code.as_str()),
            &col(rows, |r| r.copy.procedure_code.as_str()),
            &col(rows, |r| r.copy.info_code.as_str()),
            &col(rows, |r| r.copy.serial_no.as_str()),
            &col(rows, |r| r.copy.branch_no),
            &col(rows, |r| r.copy.permit_id.as_str()),
            &col(rows, |r| r.copy.addressee_bidx.as_deref()),
            &col(rows, |r| r.leaf_enc.as_slice()),
            &col(rows, |r| r.copy.requested_at),
            &col(rows, |r| r.copy.provided_at),
            &col(rows, |r| r.copy.non_disclosure),
            &col(rows, |r| r.copy.outcome.as_str()),
            &col(rows, |r| r.copy.at),
            &col(rows, |r| r.leaf_hash.as_slice()),
            &col(rows, |r| r.copy.target_record_id),
            &col(rows, |r| r.copy.reason.as_str()),
            &col(rows, |r| r.copy.actor.as_str()),
        ],
    )
    .await?;
    Ok(())
}

/// Stores newly complete nodes in one statement.
pub async fn insert_nodes(
    tx: &impl GenericClient,
    tenant: &str,
    nodes: &[(NodeId, Hash)],
) -> Result<(), Error> {
    let levels: Vec<i32> = nodes
        .iter()
        .map(|(id, _)| i32::try_from(id.level).unwrap_or(i32::MAX))
        .collect();
    let idxs: Vec<i64> = nodes.iter().map(|(id, _)| to_i64(id.index)).collect();
    let hashes: Vec<Vec<u8>> = nodes.iter().map(|(_, h)| h.to_vec()).collect();
    let st = tx
        .prepare_cached(
            "INSERT INTO audit.nodes (tenant_id, level, idx, hash) \
             SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::bytea[])",
        )
        .await?;
    tx.execute(&st, &[&tenant, &levels, &idxs, &hashes]).await?;
    Ok(())
}

pub async fn update_log(
    tx: &impl GenericClient,
    tenant: &str,
    size: i64,
    frontier: &[u8],
) -> Result<(), Error> {
    let st = tx
        .prepare_cached("UPDATE audit.logs SET size = $2, frontier = $3 WHERE tenant_id = $1")
        .await?;
    tx.execute(&st, &[&tenant, &size, &frontier]).await?;
    Ok(())
}

/// Fetches the given nodes in one query (the proof's nodes), as a map.
pub async fn nodes(
    tx: &impl GenericClient,
    ids: &[NodeId],
) -> Result<std::collections::HashMap<NodeId, Hash>, Error> {
    let levels: Vec<i32> = ids
        .iter()
        .map(|id| i32::try_from(id.level).unwrap_or(i32::MAX))
        .collect();
    let idxs: Vec<i64> = ids.iter().map(|id| to_i64(id.index)).collect();
    let st = tx
        .prepare_cached(
            "SELECT n.level, n.idx, n.hash FROM audit.nodes n \
             JOIN unnest($1::int[], $2::bigint[]) AS want(level, idx) \
               ON n.level = want.level AND n.idx = want.idx",
        )
        .await?;
    let rows = tx.query(&st, &[&levels, &idxs]).await?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let level: i32 = row.try_get(0)?;
        let idx: i64 = row.try_get(1)?;
        let hash: Vec<u8> = row.try_get(2)?;
        if let (Ok(level), Ok(index), Ok(hash)) = (
            u32::try_from(level),
            u64::try_from(idx),
            Hash::try_from(hash),
        ) {
            out.insert(NodeId { level, index }, hash);
        }
    }
    Ok(out)
}

pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A signed tree head as stored.
#[derive(Debug, Clone)]
pub struct TreeHeadRow {
    pub size: i64,
    pub root: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub kid: String,
    pub signature: Vec<u8>,
}

fn tree_head_row(row: &tokio_postgres::Row) -> Result<TreeHeadRow, Error> {
    Ok(TreeHeadRow {
        size: row.try_get(0)?,
        root: row.try_get(1)?,
        signed_at: row.try_get(2)?,
        kid: row.try_get(3)?,
        signature: row.try_get(4)?,
    })
}

/// The latest signed tree head, or the one of exactly `size`.
pub async fn tree_head(
    tx: &impl GenericClient,
    size: Option<i64>,
) -> Result<Option<TreeHeadRow>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT size, root, signed_at, kid, signature FROM audit.tree_heads \
             WHERE ($1::bigint IS NULL OR size = $1) ORDER BY size DESC LIMIT 1",
        )
        .await?;
    tx.query_opt(&st, &[&size])
        .await?
        .map(|r| tree_head_row(&r))
        .transpose()
}

pub async fn all_tree_heads(tx: &impl GenericClient) -> Result<Vec<TreeHeadRow>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT size, root, signed_at, kid, signature FROM audit.tree_heads ORDER BY size",
        )
        .await?;
    tx.query(&st, &[])
        .await?
        .iter()
        .map(tree_head_row)
        .collect()
}

pub async fn insert_tree_head(
    tx: &impl GenericClient,
    tenant: &str,
    head: &TreeHeadRow,
) -> Result<(), Error> {
    let st = tx
        .prepare_cached(
            "INSERT INTO audit.tree_heads (tenant_id, size, root, signed_at, kid, signature) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .await?;
    let mark = tx
        .prepare_cached("UPDATE audit.logs SET signed_size = $2 WHERE tenant_id = $1")
        .await?;
    tx.execute(
        &st,
        &[
            &tenant,
            &head.size,
            &head.root,
            &head.signed_at,
            &head.kid,
            &head.signature,
        ],
    )
    .await?;
    tx.execute(&mark, &[&tenant, &head.size]).await?;
    Ok(())
}

/// Tenants that have a log (the signer's work list).
pub async fn tenants(client: &impl GenericClient) -> Result<Vec<String>, Error> {
    let st = client
        .prepare_cached("SELECT tenant_id FROM audit.tenants ORDER BY tenant_id")
        .await?;
    client
        .query(&st, &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// The position of a record in its tenant's log.
pub async fn leaf_of(
    tx: &impl GenericClient,
    record_id: Uuid,
) -> Result<Option<(i64, Vec<u8>)>, Error> {
    let st = tx
        .prepare_cached("SELECT seq, leaf_hash FROM audit.records WHERE record_id = $1")
        .await?;
    tx.query_opt(&st, &[&record_id])
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

pub async fn log_size(tx: &impl GenericClient) -> Result<i64, Error> {
    let st = tx
        .prepare_cached("SELECT coalesce(max(size), 0) FROM audit.logs")
        .await?;
    tx.query_one(&st, &[]).await?.try_get(0)
}

/// Search filters; the addressee arrives as its blind index.
pub struct Search<'a> {
    pub addressee_bidx: Option<&'a [u8]>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub counterpart: Option<&'a str>,
    pub procedure_code: Option<&'a str>,
    pub info_code: Option<&'a str>,
    pub after: Option<i64>,
    pub limit: i64,
}

/// A record as readers get it, with the latest change record that names it (if any). Both
/// are stored rows: readers open their leaves ([`crate::searchable`]) before using them.
pub struct Found {
    pub row: RecordRow,
    pub latest_change: Option<RecordRow>,
}

/// Columns of one stored row in [`RecordRow::from_row`]'s order.
const ROW_WIDTH: usize = 4 + crate::searchable::COLUMNS.len();

/// `SELECT` of rows `r` each with its latest change `c` (the partial index `records_target`
/// answers the look-up), followed by `tail` (WHERE, ORDER BY…).
fn found_sql(tail: &str) -> String {
    format!(
        "SELECT {}, {} FROM audit.records r \
         LEFT JOIN LATERAL (SELECT * FROM audit.records c2 WHERE c2.target_record_id = r.record_id \
                            ORDER BY c2.seq DESC LIMIT 1) c ON true {tail}",
        crate::searchable::stored_list("r"),
        crate::searchable::stored_list("c"),
    )
}

fn found(r: &tokio_postgres::Row) -> Result<Found, Error> {
    let change_seq: Option<i64> = r.try_get(ROW_WIDTH)?;
    Ok(Found {
        row: RecordRow::from_row(r, 0)?,
        latest_change: change_seq
            .map(|_| RecordRow::from_row(r, ROW_WIDTH))
            .transpose()?,
    })
}

/// Records matching `q`, newest (highest seq) first, below the `after` cursor.
pub async fn search(tx: &impl GenericClient, q: &Search<'_>) -> Result<Vec<Found>, Error> {
    let sql = found_sql(
        "WHERE ($1::bytea IS NULL OR r.addressee_bidx = $1) \
               AND ($2::timestamptz IS NULL OR r.at >= $2) \
               AND ($3::timestamptz IS NULL OR r.at < $3) \
               AND ($4::text IS NULL OR r.inquirer_org = $4 OR r.provider_org = $4) \
               AND ($5::text IS NULL OR r.procedure_code = $5) \
               AND ($6::text IS NULL OR r.info_code = $6) \
               AND ($7::bigint IS NULL OR r.seq < $7) \
         ORDER BY r.seq DESC LIMIT $8",
    );
    let st = tx.prepare_cached(&sql).await?;
    let rows = tx
        .query(
            &st,
            &[
                &q.addressee_bidx,
                &q.from,
                &q.to,
                &q.counterpart,
                &q.procedure_code,
                &q.info_code,
                &q.after,
                &q.limit,
            ],
        )
        .await?;
    rows.iter().map(found).collect()
}

/// One record by id, with its latest change.
pub async fn record(tx: &impl GenericClient, record_id: Uuid) -> Result<Option<Found>, Error> {
    let st = tx
        .prepare_cached(&found_sql("WHERE r.record_id = $1"))
        .await?;
    tx.query_opt(&st, &[&record_id])
        .await?
        .map(|r| found(&r))
        .transpose()
}

/// Every row filed under a resident's blind index (exchanges, their change records, and
/// self-information and notice events), oldest first. What may be shown is decided from the
/// opened leaves, not from these columns (see `disclosure::disclosable_records`).
pub async fn rows_of_resident(
    tx: &impl GenericClient,
    addressee_bidx: &[u8],
) -> Result<Vec<RecordRow>, Error> {
    let sql = format!(
        "SELECT {} FROM audit.records r WHERE r.addressee_bidx = $1 ORDER BY r.seq",
        crate::searchable::stored_list("r")
    );
    let st = tx.prepare_cached(&sql).await?;
    tx.query(&st, &[&addressee_bidx])
        .await?
        .iter()
        .map(|r| RecordRow::from_row(r, 0))
        .collect()
}

/// A retention checkpoint as stored.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub size: i64,
    pub frontier: Vec<u8>,
    pub root: Vec<u8>,
    pub cutoff: DateTime<Utc>,
    pub purged_at: DateTime<Utc>,
    pub kid: String,
    pub signature: Vec<u8>,
}

/// The latest checkpoint (the log's current start), if any purge ran.
pub async fn checkpoint(tx: &impl GenericClient) -> Result<Option<CheckpointRow>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT size, frontier, root, cutoff, purged_at, kid, signature \
             FROM audit.checkpoints ORDER BY size DESC LIMIT 1",
        )
        .await?;
    tx.query_opt(&st, &[])
        .await?
        .map(|r| {
            Ok(CheckpointRow {
                size: r.try_get(0)?,
                frontier: r.try_get(1)?,
                root: r.try_get(2)?,
                cutoff: r.try_get(3)?,
                purged_at: r.try_get(4)?,
                kid: r.try_get(5)?,
                signature: r.try_get(6)?,
            })
        })
        .transpose()
}

/// The purge cut for `cutoff`: the number of leading records (from the log's current start)
/// that are all older than `cutoff`. Only a prefix is purged — the tree is cut, never holed.
pub async fn purge_cut(tx: &impl GenericClient, cutoff: DateTime<Utc>) -> Result<i64, Error> {
    let st = tx
        .prepare_cached(
            "SELECT coalesce( \
               (SELECT min(seq) FROM audit.records WHERE at >= $1), \
               (SELECT coalesce(max(seq) + 1, 0) FROM audit.records))",
        )
        .await?;
    tx.query_one(&st, &[&cutoff]).await?.try_get(0)
}

/// The hashes of the given nodes, in the order asked (None where one is missing).
pub async fn node_hashes(
    tx: &impl GenericClient,
    ids: &[NodeId],
) -> Result<Vec<Option<Hash>>, Error> {
    let found = nodes(tx, ids).await?;
    Ok(ids.iter().map(|id| found.get(id).copied()).collect())
}

/// Writes the checkpoint and deletes the records before it and every node wholly inside
/// `[0, cut)` except the checkpoint's own right edge. Returns the records deleted.
pub async fn purge_before(
    tx: &impl GenericClient,
    tenant: &str,
    checkpoint: &CheckpointRow,
    keep: &[NodeId],
) -> Result<u64, Error> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO audit.checkpoints (tenant_id, size, frontier, root, cutoff, purged_at, \
             kid, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    tx.execute(
        &insert,
        &[
            &tenant,
            &checkpoint.size,
            &checkpoint.frontier,
            &checkpoint.root,
            &checkpoint.cutoff,
            &checkpoint.purged_at,
            &checkpoint.kid,
            &checkpoint.signature,
        ],
    )
    .await?;
    let records = tx
        .prepare_cached("DELETE FROM audit.records WHERE seq < $1")
        .await?;
    let deleted = tx.execute(&records, &[&checkpoint.size]).await?;
    let levels: Vec<i32> = keep
        .iter()
        .map(|id| i32::try_from(id.level).unwrap_or(i32::MAX))
        .collect();
    let idxs: Vec<i64> = keep.iter().map(|id| to_i64(id.index)).collect();
    // A node (level, idx) covers leaves [idx·2^level, (idx+1)·2^level).
    let nodes = tx
        .prepare_cached(
            "DELETE FROM audit.nodes n WHERE (n.idx + 1) * (1::bigint << n.level) <= $1 \
             AND NOT EXISTS (SELECT 1 FROM unnest($2::int[], $3::bigint[]) AS k(level, idx) \
                             WHERE k.level = n.level AND k.idx = n.idx)",
        )
        .await?;
    tx.execute(&nodes, &[&checkpoint.size, &levels, &idxs])
        .await?;
    Ok(deleted)
}
