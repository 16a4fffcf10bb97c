//! Consumer of `code.linked` (符号): the notice service's own sealed copy of each resident's
//! code, so a notice can name the resident to the NWS without reading the code service's
//! tables. The upsert is guarded by time, so a repeat or an older link changes nothing: no
//! inbox is needed.
//!
//! Applied in batches ([`chukan_mq::batch`]), one transaction per tenant for whatever has
//! arrived meanwhile: every acquisition fans out to three such copies.

use chukan_mq::{Delivery, HandleError, batch::Batch};
use chukan_runtime::code_linked::Link;
use futures_util::future::BoxFuture;

use crate::{NoticeService, domain::aad, store};

/// Links one transaction holds at most.
pub const BATCH_MAX: usize = 500;

pub struct CodeLinks {
    state: NoticeService,
}

impl CodeLinks {
    pub fn new(state: NoticeService) -> Self {
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
async fn apply(state: &NoticeService, tenant: &str, links: Vec<Link>) -> anyhow::Result<Vec<()>> {
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    let rows: Vec<_> = links
        .iter()
        .map(|l| {
            let bidx = keys.blind_index(&l.addressee);
            let code_enc = keys.encrypt(l.code.as_bytes(), &aad(tenant, "code", &bidx));
            (bidx, code_enc, l.linked_at(&*state.clock))
        })
        .collect();
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    // Pipelined in arrival order; each upsert keeps the later link.
    futures_util::future::try_join_all(
        rows.iter()
            .map(|(bidx, code_enc, at)| store::upsert_code_link(&tx, tenant, bidx, code_enc, *at)),
    )
    .await?;
    tx.commit().await?;
    Ok(vec![(); links.len()])
}
