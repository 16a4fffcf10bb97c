//! Consumer of the code service's `code.linked`: keeps provision's own sealed copy of each
//! code (符号) → 団体内統合宛名番号 link, so a permit's provider-side code finds its resident.
//!
//! Every acquisition fans out to three such copies (provision, inquiry, notice), so the links
//! are applied in batches ([`chukan_mq::batch`]): one transaction per tenant claims every
//! message id of the batch in the inbox and writes the new links, pipelined, in arrival
//! order. A quiet queue still applies each link at once (a batch of one).

use chukan_mq::{Delivery, HandleError, batch::Batch};
use chukan_runtime::code_linked::Link;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{ProvisionState, seal, store};

const CONSUMER: &str = "provision.code-links";

/// Links one transaction holds at most.
pub const BATCH_MAX: usize = 500;

pub struct CodeLinks {
    state: ProvisionState,
}

impl CodeLinks {
    pub fn new(state: ProvisionState) -> Self {
        Self { state }
    }
}

impl Batch for CodeLinks {
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
        Box::pin(apply(&self.state, tenant, links))
    }
}

#[tracing::instrument(skip_all, fields(tenant = %tenant, links = links.len()))]
async fn apply(state: &ProvisionState, tenant: &str, links: Vec<Link>) -> anyhow::Result<Vec<()>> {
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let ids: Vec<Uuid> = links.iter().map(|l| l.id).collect();
    let mut fresh = chukan_mq::inbox::claim_many(&tx, crate::SCHEMA, CONSUMER, &ids).await?;
    // An id listed twice in one batch (a redelivery overtaking its first delivery) is
    // applied once.
    let rows: Vec<_> = links
        .iter()
        .filter(|l| fresh.remove(&l.id))
        .map(|l| {
            (
                seal::code_index(&keys, &l.code),
                seal::addressee_index(&keys, &l.addressee),
                seal::seal_addressee(&keys, tenant, "code_links", &l.addressee),
                l.linked_at(&*state.clock),
            )
        })
        .collect();
    // Pipelined in arrival order; each upsert keeps the later link, so the order only
    // matters between links of one code, and it is the order they arrived in.
    futures_util::future::try_join_all(rows.iter().map(|(code, addressee, sealed, at)| {
        store::upsert_code_link(&tx, tenant, code, addressee, sealed, *at)
    }))
    .await?;
    tx.commit().await?;
    Ok(vec![(); links.len()])
}
