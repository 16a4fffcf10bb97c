//! SQL of the relay schema.

use chukan_core::ids::OrgCode;
use deadpool_postgres::Transaction;

/// Records an accepted NWS message id; false when it was already there (a replay).
pub async fn claim_message(
    tx: &Transaction<'_>,
    message_id: &str,
    sender: &str,
    kind: &str,
    recipient: &OrgCode,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO relay.received (message_id, sender, kind, recipient)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (message_id) DO NOTHING",
            )
            .await?,
            &[&message_id, &sender, &kind, &recipient.as_str()],
        )
        .await?;
    Ok(inserted == 1)
}
