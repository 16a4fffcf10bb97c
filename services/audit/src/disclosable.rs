//! The self-information service's question to audit (自己情報提供, F11), over RabbitMQ
//! request/reply on `audit.selfinfo-rpc`: which of this resident's provision records
//! (情報提供等記録) may be shown to them. The answer leaves out non-disclosed records (as the
//! latest disclosure change says) and never carries the addressee. Read-only.

use std::sync::Arc;

use chukan_mq::{QueueSpec, rpc::RpcHandler};
use chukan_proto::{
    DisclosableRecord, DisclosableRecordsReply, DisclosableRecordsRequest, Message as _,
};
use futures_util::{FutureExt as _, future::BoxFuture};

use crate::{AuditState, disclosure};

/// The queue the self-information service sends its requests to.
pub fn queue() -> QueueSpec {
    QueueSpec::new("audit.selfinfo-rpc", &[])
}

/// Serves [`queue`] with the audit state's database and keys.
pub fn handler(state: AuditState) -> Arc<dyn RpcHandler> {
    Arc::new(
        move |tenant: String, body: Vec<u8>| -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
            let state = state.clone();
            async move {
                let request = DisclosableRecordsRequest::decode(body.as_slice())
                    .map_err(|e| anyhow::anyhow!("undecodable DisclosableRecordsRequest: {e}"))?;
                Ok(answer_request(&state, &tenant, &request)
                    .await?
                    .encode_to_vec())
            }
            .boxed()
        },
    )
}

/// The reply for one request (public for tests).
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn answer_request(
    state: &AuditState,
    tenant: &str,
    request: &DisclosableRecordsRequest,
) -> anyhow::Result<DisclosableRecordsReply> {
    if request.addressee.is_empty() {
        return Ok(DisclosableRecordsReply::default());
    }
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let records =
        disclosure::disclosable_records(&tx, &state.vault, tenant, &request.addressee).await?;
    tx.commit().await?;
    Ok(DisclosableRecordsReply {
        records: records
            .into_iter()
            .map(|r| DisclosableRecord {
                event: r.event,
                inquirer_org: r.inquirer_org,
                provider_org: r.provider_org,
                affair_code: r.affair_code,
                procedure_code: r.procedure_code,
                info_code: r.info_code,
                requested_at_ms: r.requested_at_ms,
                provided_at_ms: r.provided_at_ms,
                outcome: r.outcome,
            })
            .collect(),
    })
}
