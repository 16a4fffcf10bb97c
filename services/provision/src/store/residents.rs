//! What the exchange knows of a resident: the code link (符号) and the flags (不開示該当等).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;

use super::replicas::{StoredReplica, stored_from};

/// Keeps the newest link of a code (符号) to its addressee; an older event changes nothing.
pub async fn upsert_code_link(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
    addressee_bidx: &[u8],
    addressee_sealed: &[u8],
    linked_at: DateTime<Utc>,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.code_links (tenant_id, code_bidx, addressee_bidx, addressee_sealed, linked_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, code_bidx) DO UPDATE SET addressee_bidx = EXCLUDED.addressee_bidx,
                 addressee_sealed = EXCLUDED.addressee_sealed, linked_at = EXCLUDED.linked_at
             WHERE provision.code_links.linked_at <= EXCLUDED.linked_at",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant,
            &code_bidx,
            &addressee_bidx,
            &addressee_sealed,
            &linked_at,
        ],
    )
    .await?;
    Ok(())
}

/// The addressee a code belongs to: (blind index, sealed number).
pub async fn code_link(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
) -> Result<Option<(Vec<u8>, Vec<u8>)>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT addressee_bidx, addressee_sealed FROM provision.code_links
             WHERE tenant_id = $1 AND code_bidx = $2",
        )
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant, &code_bidx])
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// A resident's flags row.
#[derive(Debug, Clone)]
pub struct StoredFlags {
    pub flags: crate::exchange::flags::Flags,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

fn flags_from(r: &tokio_postgres::Row) -> StoredFlags {
    let prohibited: serde_json::Value = r.get("auto_response_prohibited");
    StoredFlags {
        flags: crate::exchange::flags::Flags {
            non_disclosure: r.get("non_disclosure"),
            self_info_prohibited: r.get("self_info_prohibited"),
            // Written only by put_flags from validated input, so it always parses.
            auto_response_prohibited: serde_json::from_value(prohibited).unwrap_or_default(),
        },
        revision: r.get("revision"),
        updated_at: r.get("updated_at"),
        updated_by: r.get("updated_by"),
    }
}

const FLAG_COLUMNS: &str = "f.non_disclosure, f.self_info_prohibited, f.auto_response_prohibited, f.revision, f.updated_at, f.updated_by";

pub async fn flags_of(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
) -> Result<Option<StoredFlags>, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {FLAG_COLUMNS} FROM provision.resident_flags f
             WHERE f.tenant_id = $1 AND f.addressee_bidx = $2"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant, &addressee_bidx])
        .await?
        .map(|r| flags_from(&r)))
}

/// The flags of the resident a code belongs to (one round trip with the other look-ups).
pub async fn flags_by_code(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
) -> Result<Option<StoredFlags>, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {FLAG_COLUMNS} FROM provision.code_links c
             JOIN provision.resident_flags f
               ON f.tenant_id = c.tenant_id AND f.addressee_bidx = c.addressee_bidx
             WHERE c.tenant_id = $1 AND c.code_bidx = $2"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant, &code_bidx])
        .await?
        .map(|r| flags_from(&r)))
}

/// The replicas of one item of the resident a code belongs to.
pub async fn replicas_by_code(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
    info_code: &str,
) -> Result<Vec<StoredReplica>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT r.info_code, r.major_version, r.dataset, r.key_bidx, r.record_id, r.public_start,
                    r.public_end, r.sealed, r.registered_at
             FROM provision.code_links c
             JOIN provision.replicas r
               ON r.tenant_id = c.tenant_id AND r.addressee_bidx = c.addressee_bidx
             WHERE c.tenant_id = $1 AND c.code_bidx = $2 AND r.info_code = $3::text
             ORDER BY r.registered_at, r.record_id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &code_bidx, &info_code]).await?;
    Ok(rows.iter().map(stored_from).collect())
}

/// Replaces a resident's flags; returns the new revision.
pub async fn put_flags(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
    addressee_sealed: &[u8],
    flags: &crate::exchange::flags::Flags,
    now: DateTime<Utc>,
    by: &str,
) -> Result<i64, Error> {
    let prohibited = serde_json::to_value(&flags.auto_response_prohibited)
        .unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.resident_flags AS f (tenant_id, addressee_bidx, addressee_sealed,
                 non_disclosure, self_info_prohibited, auto_response_prohibited, revision, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)
             ON CONFLICT (tenant_id, addressee_bidx) DO UPDATE SET
                 addressee_sealed = EXCLUDED.addressee_sealed,
                 non_disclosure = EXCLUDED.non_disclosure,
                 self_info_prohibited = EXCLUDED.self_info_prohibited,
                 auto_response_prohibited = EXCLUDED.auto_response_prohibited,
                 revision = f.revision + 1, updated_at = EXCLUDED.updated_at,
                 updated_by = EXCLUDED.updated_by
             RETURNING revision",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &tenant,
                &addressee_bidx,
                &addressee_sealed,
                &flags.non_disclosure,
                &flags.self_info_prohibited,
                &prohibited,
                &now,
                &by,
            ],
        )
        .await?;
    Ok(row.get(0))
}
