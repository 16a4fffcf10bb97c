//! Replicas (副本): the rows registration lists write, their rejections and counts.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

use chukan_layout::RecordKind;

/// Whether the tenant has any replica.
pub async fn has_replicas(tx: &impl GenericClient, tenant: &str) -> Result<bool, Error> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT FROM provision.replicas WHERE tenant_id = $1)",
            &[&tenant],
        )
        .await?;
    Ok(row.get(0))
}

/// Of the given keys and record ids, those already in the replica DB.
///
/// One index probe per key and per id, whatever the planner believes of the table: asked as
/// `key_bidx = ANY($2) OR record_id = ANY($3)`, it would read every row of the tenant when its
/// statistics are behind (as during a large first load), once per chunk. The `LIMIT` keeps
/// each probe a subquery of its own, so it cannot become a join that scans the table either.
pub async fn existing(
    tx: &impl GenericClient,
    tenant: &str,
    keys: &[&[u8]],
    record_ids: &[&str],
) -> Result<(HashSet<Vec<u8>>, HashSet<String>), Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT k.key, NULL::text FROM unnest($2::bytea[]) AS k(key)
             CROSS JOIN LATERAL (SELECT FROM provision.replicas r
                                 WHERE r.tenant_id = $1 AND r.key_bidx = k.key LIMIT 1) AS r
             UNION ALL
             SELECT NULL::bytea, i.id FROM unnest($3::text[]) AS i(id)
             CROSS JOIN LATERAL (SELECT FROM provision.replicas r
                                 WHERE r.tenant_id = $1 AND r.record_id = i.id LIMIT 1) AS r",
        )
        .await?;
    // In index order, successive probes walk the same upper pages and neighbouring leaves.
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    let mut record_ids = record_ids.to_vec();
    record_ids.sort_unstable();
    let rows = tx.query(&stmt, &[&tenant, &keys, &record_ids]).await?;
    let mut found_keys = HashSet::new();
    let mut found_ids = HashSet::new();
    for r in rows {
        if let Some(key) = r.get::<_, Option<Vec<u8>>>(0) {
            found_keys.insert(key);
        }
        if let Some(id) = r.get::<_, Option<String>>(1) {
            found_ids.insert(id);
        }
    }
    Ok((found_keys, found_ids))
}

/// Deletes the rows with these keys; returns the keys that existed, with their kind.
pub async fn delete_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    keys: &[&[u8]],
) -> Result<Vec<(Vec<u8>, RecordKind)>, Error> {
    let stmt = tx
        .prepare_cached(
            "DELETE FROM provision.replicas WHERE tenant_id = $1 AND key_bidx = ANY($2)
             RETURNING key_bidx, info_code, major_version, dataset",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &keys]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                RecordKind {
                    info_code: r.get(1),
                    major_version: r.get(2),
                    dataset: r.get(3),
                },
            )
        })
        .collect())
}

/// A refused entry of an upload (no values: only ids, a code and Japanese text).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Position of the entry in the file (1-based).
    pub ordinal: i64,
    /// レコード識別番号 of the refused entry.
    pub record_id: String,
    /// Stable reason code.
    pub code: String,
    /// 理由 (Japanese).
    pub detail: String,
    /// 次にすべきこと.
    pub action: String,
}

pub async fn insert_rejections(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    rejections: &[Rejection],
) -> Result<(), Error> {
    if rejections.is_empty() {
        return Ok(());
    }
    let ordinal: Vec<i64> = rejections.iter().map(|r| r.ordinal).collect();
    let record_id: Vec<&str> = rejections.iter().map(|r| r.record_id.as_str()).collect();
    let code: Vec<&str> = rejections.iter().map(|r| r.code.as_str()).collect();
    let detail: Vec<&str> = rejections.iter().map(|r| r.detail.as_str()).collect();
    let action: Vec<&str> = rejections.iter().map(|r| r.action.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.upload_rejections (tenant_id, upload_id, ordinal, record_id, code, detail, action)
             SELECT $1, $2, * FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[])
             ON CONFLICT (upload_id, ordinal) DO NOTHING",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant, &upload, &ordinal, &record_id, &code, &detail, &action,
        ],
    )
    .await?;
    Ok(())
}

/// Records count changes of a chunk (insert-only; folded by [`fold_counts`]).
pub async fn insert_count_deltas(
    tx: &impl GenericClient,
    tenant: &str,
    deltas: &[(RecordKind, i64)],
) -> Result<(), Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let info: Vec<&str> = deltas.iter().map(|(k, _)| k.info_code.as_str()).collect();
    let major: Vec<&str> = deltas
        .iter()
        .map(|(k, _)| k.major_version.as_str())
        .collect();
    let ds: Vec<&str> = deltas.iter().map(|(k, _)| k.dataset.as_str()).collect();
    let d: Vec<i64> = deltas.iter().map(|(_, d)| *d).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.replica_count_deltas (tenant_id, info_code, major_version, dataset, delta)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[])",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &info, &major, &ds, &d])
        .await?;
    Ok(())
}

/// Folds the tenant's pending count changes into the counts; returns (kind, count now, change)
/// for every kind that changed.
pub async fn fold_counts(
    tx: &impl GenericClient,
    tenant: &str,
) -> Result<Vec<(RecordKind, i64, i64)>, Error> {
    let rows = tx
        .query(
            "WITH gone AS (
                 DELETE FROM provision.replica_count_deltas WHERE tenant_id = $1
                 RETURNING info_code, major_version, dataset, delta),
             sums AS (
                 SELECT info_code, major_version, dataset, sum(delta)::int8 AS delta
                 FROM gone GROUP BY 1, 2, 3 HAVING sum(delta) <> 0),
             folded AS (
                 INSERT INTO provision.replica_counts AS c (tenant_id, info_code, major_version, dataset, replicas)
                 SELECT $1, info_code, major_version, dataset, delta FROM sums
                 ON CONFLICT (tenant_id, info_code, major_version, dataset)
                 DO UPDATE SET replicas = c.replicas + EXCLUDED.replicas
                 RETURNING info_code, major_version, dataset, replicas)
             SELECT f.info_code, f.major_version, f.dataset, f.replicas, s.delta
             FROM folded f JOIN sums s USING (info_code, major_version, dataset)",
            &[&tenant],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                RecordKind {
                    info_code: r.get(0),
                    major_version: r.get(1),
                    dataset: r.get(2),
                },
                r.get(3),
                r.get(4),
            )
        })
        .collect())
}

/// One stored replica, still sealed.
#[derive(Debug, Clone)]
pub struct StoredReplica {
    pub kind: RecordKind,
    pub key_bidx: Vec<u8>,
    pub record_id: String,
    pub public_start: Option<NaiveDate>,
    pub public_end: Option<NaiveDate>,
    pub sealed: Vec<u8>,
    pub registered_at: DateTime<Utc>,
}

pub(super) fn stored_from(r: &tokio_postgres::Row) -> StoredReplica {
    StoredReplica {
        kind: RecordKind {
            info_code: r.get("info_code"),
            major_version: r.get("major_version"),
            dataset: r.get("dataset"),
        },
        key_bidx: r.get("key_bidx"),
        record_id: r.get("record_id"),
        public_start: r.get("public_start"),
        public_end: r.get("public_end"),
        sealed: r.get("sealed"),
        registered_at: r.get("registered_at"),
    }
}

/// A resident's replicas of one item (optionally one dataset).
pub async fn replicas_of(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
    info_code: &str,
    dataset: Option<&str>,
) -> Result<Vec<StoredReplica>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT info_code, major_version, dataset, key_bidx, record_id, public_start, public_end,
                    sealed, registered_at
             FROM provision.replicas
             WHERE tenant_id = $1 AND addressee_bidx = $2 AND info_code = $3::text
               AND ($4::text IS NULL OR dataset = $4::text)
             ORDER BY registered_at, record_id",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&tenant, &addressee_bidx, &info_code, &dataset])
        .await?;
    Ok(rows.iter().map(stored_from).collect())
}

/// Number of replicas registered for an item, optionally one version and one dataset.
pub async fn count_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    info_code: &str,
    major_version: Option<&str>,
    dataset: Option<&str>,
) -> Result<i64, Error> {
    let row = tx
        .query_one(
            "SELECT coalesce(sum(n), 0)::int8 FROM (
                 SELECT replicas AS n, info_code, major_version, dataset
                 FROM provision.replica_counts WHERE tenant_id = $1
                 UNION ALL
                 SELECT delta, info_code, major_version, dataset
                 FROM provision.replica_count_deltas WHERE tenant_id = $1) c
             WHERE info_code = $2::text
               AND ($3::text IS NULL OR major_version = $3::text)
               AND ($4::text IS NULL OR dataset = $4::text)",
            &[&tenant, &info_code, &major_version, &dataset],
        )
        .await?;
    Ok(row.get(0))
}

/// Replicas of an item (version, dataset) ordered by record id, one page after `after`.
pub async fn replicas_page(
    tx: &impl GenericClient,
    tenant: &str,
    info_code: &str,
    major_version: Option<&str>,
    dataset: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredReplica>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT info_code, major_version, dataset, key_bidx, record_id, public_start, public_end,
                    sealed, registered_at
             FROM provision.replicas
             WHERE tenant_id = $1 AND info_code = $2::text
               AND ($3::text IS NULL OR major_version = $3::text)
               AND ($4::text IS NULL OR dataset = $4::text)
               AND record_id > $5::text
             ORDER BY record_id LIMIT $6",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &tenant,
                &info_code,
                &major_version,
                &dataset,
                &after,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(stored_from).collect())
}

/// 一括削除 (bulk delete) of an item's version and dataset; returns how many went.
pub async fn bulk_delete(
    tx: &impl GenericClient,
    tenant: &str,
    kind: &RecordKind,
) -> Result<i64, Error> {
    let n = tx
        .execute(
            "DELETE FROM provision.replicas
             WHERE tenant_id = $1 AND info_code = $2 AND major_version = $3 AND dataset = $4",
            &[&tenant, &kind.info_code, &kind.major_version, &kind.dataset],
        )
        .await?;
    Ok(n as i64)
}
