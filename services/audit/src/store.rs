//! SQL of the audit service. Every function runs inside a tenant transaction
//! (`chukan_db::tenant_tx`), so row-level security confines it to that tenant.

use chrono::{DateTime, Utc};
use chukan_merkle::{Hash, NodeId};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

/// The searchable copy of one record (the addressee only as a blind index).
pub struct NewRecord<'a> {
    pub tenant: &'a str,
    pub seq: i64,
    pub record_id: Uuid,
    pub event: &'a str,
    pub inquirer_org: &'a str,
    pub provider_org: &'a str,
    pub affair_code: &'a str,
    pub procedure_code: &'a str,
    pub info_code: &'a str,
    pub serial_no: &'a str,
    pub branch_no: i32,
    pub permit_id: &'a str,
    pub addressee_bidx: Option<&'a [u8]>,
    pub leaf_enc: &'a [u8],
    pub requested_at: Option<DateTime<Utc>>,
    pub provided_at: Option<DateTime<Utc>>,
    pub non_disclosure: bool,
    pub outcome: &'a str,
    pub at: DateTime<Utc>,
    pub leaf_hash: &'a [u8],
}

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

pub async fn record_exists(tx: &impl GenericClient, record_id: Uuid) -> Result<bool, Error> {
    let st = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM audit.records WHERE record_id = $1)")
        .await?;
    tx.query_one(&st, &[&record_id]).await?.try_get(0)
}

pub async fn insert_record(tx: &impl GenericClient, r: &NewRecord<'_>) -> Result<(), Error> {
    let st = tx
        .prepare_cached(
            "INSERT INTO audit.records (tenant_id, seq, record_id, event, inquirer_org, \
             provider_org, affair_code, procedure_code, info_code, serial_no, branch_no, \
             permit_id, addressee_bidx, leaf_enc, requested_at, provided_at, non_disclosure, \
             outcome, at, leaf_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20)",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &r.tenant,
            &r.seq,
            &r.record_id,
            &r.event,
            &r.inquirer_org,
            &r.provider_org,
            &r.affair_code,
            &r.procedure_code,
            &r.info_code,
            &r.serial_no,
            &r.branch_no,
            &r.permit_id,
            &r.addressee_bidx,
            &r.leaf_enc,
            &r.requested_at,
            &r.provided_at,
            &r.non_disclosure,
            &r.outcome,
            &r.at,
            &r.leaf_hash,
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

/// One row of a search answer.
pub struct Found {
    pub seq: i64,
    pub record_id: Uuid,
    pub event: String,
    pub inquirer_org: String,
    pub provider_org: String,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub serial_no: String,
    pub branch_no: i32,
    pub permit_id: String,
    pub requested_at: Option<DateTime<Utc>>,
    pub provided_at: Option<DateTime<Utc>>,
    pub non_disclosure: bool,
    pub outcome: String,
    pub at: DateTime<Utc>,
    pub leaf_hash: Vec<u8>,
}

/// Records matching `q`, newest (highest seq) first, below the `after` cursor.
pub async fn search(tx: &impl GenericClient, q: &Search<'_>) -> Result<Vec<Found>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT seq, record_id, event, inquirer_org, provider_org, affair_code, \
             procedure_code, info_code, serial_no, branch_no, permit_id, requested_at, \
             provided_at, non_disclosure, outcome, at, leaf_hash \
             FROM audit.records \
             WHERE ($1::bytea IS NULL OR addressee_bidx = $1) \
               AND ($2::timestamptz IS NULL OR at >= $2) \
               AND ($3::timestamptz IS NULL OR at < $3) \
               AND ($4::text IS NULL OR inquirer_org = $4 OR provider_org = $4) \
               AND ($5::text IS NULL OR procedure_code = $5) \
               AND ($6::text IS NULL OR info_code = $6) \
               AND ($7::bigint IS NULL OR seq < $7) \
             ORDER BY seq DESC LIMIT $8",
        )
        .await?;
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
    rows.iter()
        .map(|r| {
            Ok(Found {
                seq: r.try_get(0)?,
                record_id: r.try_get(1)?,
                event: r.try_get(2)?,
                inquirer_org: r.try_get(3)?,
                provider_org: r.try_get(4)?,
                affair_code: r.try_get(5)?,
                procedure_code: r.try_get(6)?,
                info_code: r.try_get(7)?,
                serial_no: r.try_get(8)?,
                branch_no: r.try_get(9)?,
                permit_id: r.try_get(10)?,
                requested_at: r.try_get(11)?,
                provided_at: r.try_get(12)?,
                non_disclosure: r.try_get(13)?,
                outcome: r.try_get(14)?,
                at: r.try_get(15)?,
                leaf_hash: r.try_get(16)?,
            })
        })
        .collect()
}

/// Everything `verify_tenant` reads: records in leaf order.
pub struct StoredLeaf {
    pub seq: i64,
    pub record_id: Uuid,
    pub leaf_enc: Vec<u8>,
    pub leaf_hash: Vec<u8>,
}

pub async fn all_leaves(tx: &impl GenericClient) -> Result<Vec<StoredLeaf>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT seq, record_id, leaf_enc, leaf_hash FROM audit.records ORDER BY seq",
        )
        .await?;
    tx.query(&st, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(StoredLeaf {
                seq: r.try_get(0)?,
                record_id: r.try_get(1)?,
                leaf_enc: r.try_get(2)?,
                leaf_hash: r.try_get(3)?,
            })
        })
        .collect()
}

pub async fn all_nodes(
    tx: &impl GenericClient,
) -> Result<std::collections::HashMap<NodeId, Vec<u8>>, Error> {
    let st = tx
        .prepare_cached("SELECT level, idx, hash FROM audit.nodes")
        .await?;
    let mut out = std::collections::HashMap::new();
    for r in tx.query(&st, &[]).await? {
        let level: i32 = r.try_get(0)?;
        let idx: i64 = r.try_get(1)?;
        if let (Ok(level), Ok(index)) = (u32::try_from(level), u64::try_from(idx)) {
            out.insert(NodeId { level, index }, r.try_get(2)?);
        }
    }
    Ok(out)
}
