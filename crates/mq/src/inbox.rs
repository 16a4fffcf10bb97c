//! Inbox: a consumer's record of message ids it has applied, written in the same
//! transaction as the effect so a redelivery is recognised and skipped.

use uuid::Uuid;

/// Claims `message_id` for `consumer`; `true` when it is new (apply the effect), `false`
/// when it was already applied (ack and skip). Call inside the effect's transaction.
pub async fn claim(
    tx: &impl deadpool_postgres::GenericClient,
    schema: &str,
    consumer: &str,
    message_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {}.inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        chukan_db::quote_ident(schema)
    );
    let statement = tx.prepare_cached(&sql).await?;
    let inserted = tx.execute(&statement, &[&consumer, &message_id]).await?;
    Ok(inserted == 1)
}

/// Claims many message ids for `consumer` at once (a batched consumer's transaction);
/// answers the ids that are new, each once however often it is listed. Call inside the
/// effects' transaction.
pub async fn claim_many(
    tx: &impl deadpool_postgres::GenericClient,
    schema: &str,
    consumer: &str,
    message_ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {}.inbox (consumer, message_id) SELECT $1, unnest($2::uuid[])
         ON CONFLICT DO NOTHING RETURNING message_id",
        chukan_db::quote_ident(schema)
    );
    let statement = tx.prepare_cached(&sql).await?;
    let rows = tx.query(&statement, &[&consumer, &message_ids]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
