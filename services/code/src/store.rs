//! SQL of the code service: one function per question, always inside a tenant transaction
//! so row-level security decides what is visible. Statements are prepared once per
//! connection (`prepare_cached`): the acquisition path runs thousands of times a second.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

use crate::domain::{Acquisition, AcquisitionStatus};

/// What is known about a resident before a new request: the acquisition that produced the
/// held code (if a code is held) and the pending request (if one is in flight). One round
/// trip: this runs for every request.
pub async fn standing(
    tx: &impl GenericClient,
    addressee_bidx: &[u8],
) -> Result<(Option<Uuid>, Option<Uuid>), Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "SELECT (SELECT acquisition_id FROM code.links WHERE addressee_bidx = $1),
                        (SELECT id FROM code.acquisitions
                         WHERE addressee_bidx = $1 AND status = 'pending')",
            )
            .await?,
            &[&addressee_bidx],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Whether a code is held for the resident, and since when.
pub async fn held_code(
    tx: &impl GenericClient,
    addressee_bidx: &[u8],
) -> Result<Option<(Uuid, DateTime<Utc>)>, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT acquisition_id, obtained_at FROM code.links WHERE addressee_bidx = $1",
            )
            .await?,
            &[&addressee_bidx],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub async fn pending_acquisition(
    tx: &impl GenericClient,
    addressee_bidx: &[u8],
) -> Result<Option<Uuid>, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT id FROM code.acquisitions WHERE addressee_bidx = $1 AND status = 'pending'",
            )
            .await?,
            &[&addressee_bidx],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Inserts a pending acquisition; `false` when another request for the resident got there
/// first (the partial unique index), so the caller joins that one.
pub async fn insert_pending(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
    addressee_bidx: &[u8],
    addressee_enc: &[u8],
) -> Result<bool, Error> {
    let n = tx.execute(
            &tx.prepare_cached("INSERT INTO code.acquisitions (tenant_id, id, addressee_bidx, addressee_enc, status)
             VALUES ($1, $2, $3, $4, 'pending')
             ON CONFLICT (tenant_id, addressee_bidx) WHERE status = 'pending' DO NOTHING").await?,
            &[&tenant, &id, &addressee_bidx, &addressee_enc],
        )
        .await?;
    Ok(n == 1)
}

pub async fn acquisition(tx: &impl GenericClient, id: Uuid) -> Result<Option<Acquisition>, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT id, status, reason_code, reason, created_at, completed_at
             FROM code.acquisitions WHERE id = $1",
            )
            .await?,
            &[&id],
        )
        .await?;
    row.map(|r| {
        Ok(Acquisition {
            id: r.get(0),
            status: r.try_get::<_, AcquisitionStatus>(1)?,
            reason_code: r.get(2),
            reason: r.get(3),
            created_at: r.get(4),
            completed_at: r.get(5),
        })
    })
    .transpose()
}

/// A pending acquisition locked for its result: (addressee index, sealed addressee).
/// A request still waiting for the NWS, locked for its answer.
#[derive(Debug)]
pub struct Pending {
    pub addressee_bidx: Vec<u8>,
    pub addressee_enc: Vec<u8>,
    pub requested_at: DateTime<Utc>,
}

pub async fn lock_pending(tx: &impl GenericClient, id: Uuid) -> Result<Option<Pending>, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT addressee_bidx, addressee_enc, created_at FROM code.acquisitions
             WHERE id = $1 AND status = 'pending' FOR UPDATE",
            )
            .await?,
            &[&id],
        )
        .await?;
    Ok(row.map(|r| Pending {
        addressee_bidx: r.get(0),
        addressee_enc: r.get(1),
        requested_at: r.get(2),
    }))
}

pub async fn store_link(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
    addressee_enc: &[u8],
    code_enc: &[u8],
    acquisition_id: Uuid,
    obtained_at: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO code.links
             (tenant_id, addressee_bidx, addressee_enc, code_enc, acquisition_id, obtained_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, addressee_bidx) DO UPDATE
         SET code_enc = EXCLUDED.code_enc, addressee_enc = EXCLUDED.addressee_enc,
             acquisition_id = EXCLUDED.acquisition_id, obtained_at = EXCLUDED.obtained_at",
        )
        .await?,
        &[
            &tenant,
            &addressee_bidx,
            &addressee_enc,
            &code_enc,
            &acquisition_id,
            &obtained_at,
        ],
    )
    .await?;
    Ok(())
}

pub async fn complete(
    tx: &impl GenericClient,
    id: Uuid,
    status: AcquisitionStatus,
    reason_code: Option<&str>,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE code.acquisitions
         SET status = $2, reason_code = $3, reason = $4, completed_at = $5
         WHERE id = $1",
        )
        .await?,
        &[&id, &status, &reason_code, &reason, &at],
    )
    .await?;
    Ok(())
}
