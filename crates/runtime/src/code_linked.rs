//! `code.linked` (符号) as the services that keep their own copy of each link receive it:
//! provision, inquiry and notice each apply it to their own table, in batches
//! ([`crate::batched`]), after the same check. Inquiry's and notice's copies are one
//! [`SealedCopy`] each.

use chrono::{DateTime, Utc};
use chukan_core::Clock;
use chukan_mq::{Delivery, HandleError, batch::Batch, reject};
use chukan_proto::CodeLinked;
use futures_util::future::BoxFuture;
use uuid::Uuid;

/// One `code.linked`, checked: a valid addressee and a code, for the delivery's tenant.
pub struct Link {
    pub id: Uuid,
    pub addressee: String,
    pub code: String,
    linked_at_ms: i64,
}

impl Link {
    /// Decodes and checks `delivery`; a message that can never apply is rejected.
    pub fn check(delivery: &Delivery) -> Result<Link, HandleError> {
        let event = delivery.decode::<CodeLinked>()?;
        // The header and the body's tenant come from one producer: a mismatch is a defect.
        delivery.check_tenant(&event.tenant)?;
        if chukan_core::ids::AddresseeNo::parse(&event.addressee).is_err() || event.code.is_empty()
        {
            return Err(reject("CodeLinked without a valid addressee or code"));
        }
        Ok(Link {
            id: delivery.id,
            addressee: event.addressee,
            code: event.code,
            linked_at_ms: event.linked_at_ms,
        })
    }

    /// When the code service linked it (now, for a time out of range).
    pub fn linked_at(&self, clock: &dyn Clock) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(self.linked_at_ms).unwrap_or_else(|| clock.now())
    }
}

/// Links one transaction holds at most.
pub const BATCH_MAX: usize = 500;

/// A service's sealed copy of every code link, `{schema}.code_links` (one row per resident,
/// the code encrypted under the tenant's key), kept by a [`chukan_mq::batch`] consumer: one
/// transaction per tenant for whatever has arrived meanwhile. The upsert is guarded by time,
/// so a repeat or an older link changes nothing and no inbox is needed. (Provision's copy
/// also claims an inbox and is its own.)
pub struct SealedCopy {
    /// The service's schema, which also names its table.
    pub schema: &'static str,
    pub db: chukan_db::Pool,
    pub vault: chukan_crypto::Vault,
    pub clock: std::sync::Arc<dyn Clock>,
    /// The service's associated data for a sealed column: `(tenant, column, row)`; its own
    /// reads open the code with the same.
    pub aad: fn(&str, &str, &[u8]) -> Vec<u8>,
}

impl Batch for SealedCopy {
    type Item = Link;
    type Done = ();

    fn prepare(&self, delivery: &Delivery) -> Result<Link, HandleError> {
        Link::check(delivery)
    }

    fn apply<'a>(
        &'a self,
        tenant: &'a str,
        links: Vec<Link>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<()>>> {
        Box::pin(self.apply_links(tenant, links))
    }
}

impl SealedCopy {
    #[tracing::instrument(skip_all, fields(schema = self.schema, tenant = %tenant, links = links.len()))]
    async fn apply_links(&self, tenant: &str, links: Vec<Link>) -> anyhow::Result<Vec<()>> {
        let (mut client, keys) = crate::client_with_keys(&self.db, &self.vault, tenant).await?;
        let rows: Vec<_> = links
            .iter()
            .map(|l| {
                let bidx = keys.blind_index(&l.addressee);
                let code_enc = keys.encrypt(l.code.as_bytes(), &(self.aad)(tenant, "code", &bidx));
                (bidx, code_enc, l.linked_at(&*self.clock))
            })
            .collect();
        let table = format!("{}.code_links", chukan_db::quote_ident(self.schema));
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let upsert = tx
            .prepare_cached(&format!(
                "INSERT INTO {table} (tenant_id, addressee_bidx, code_enc, linked_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, addressee_bidx) DO UPDATE
                 SET code_enc = EXCLUDED.code_enc, linked_at = EXCLUDED.linked_at
                 WHERE {table}.linked_at <= EXCLUDED.linked_at"
            ))
            .await?;
        // Pipelined in arrival order; each upsert keeps the later link.
        futures_util::future::try_join_all(rows.iter().map(|(bidx, code_enc, at)| {
            let tx = &tx;
            let upsert = &upsert;
            async move { tx.execute(upsert, &[&tenant, bidx, code_enc, at]).await }
        }))
        .await?;
        tx.commit().await?;
        Ok(vec![(); links.len()])
    }
}
