//! The self-information service's question to provision (自己情報提供, F11), over RabbitMQ
//! request/reply on `provision.selfinfo-rpc`: which resident does this code (符号) name, may
//! they see their own information (自己情報提供不可フラグ), and what replicas are held for them
//! now. Read-only: one tenant transaction, nothing written, so a repeated request is harmless.

use std::{collections::BTreeMap, sync::Arc};

use chukan_mq::{QueueSpec, rpc::RpcHandler};
use chukan_proto::{Message as _, ReplicasForCodeReply, ReplicasForCodeRequest, SelfInfoItem};
use deadpool_postgres::GenericClient;
use futures_util::{FutureExt as _, future::BoxFuture};

use crate::{
    ProvisionState,
    exchange::answer,
    exchange::flags::Flags,
    history::PointInTime,
    replica::apply::quota_day,
    seal,
    store::{self, StoredReplica},
};

/// The queue the self-information service sends its requests to.
pub fn queue() -> QueueSpec {
    QueueSpec::new("provision.selfinfo-rpc", &[])
}

/// Serves [`queue`] with the provision state's database and keys.
pub fn handler(state: ProvisionState) -> Arc<dyn RpcHandler> {
    Arc::new(
        move |tenant: String, body: Vec<u8>| -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
            let state = state.clone();
            async move {
                let request = ReplicasForCodeRequest::decode(body.as_slice())
                    .map_err(|e| anyhow::anyhow!("undecodable ReplicasForCodeRequest: {e}"))?;
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
    state: &ProvisionState,
    tenant: &str,
    request: &ReplicasForCodeRequest,
) -> anyhow::Result<ReplicasForCodeReply> {
    let unknown = ReplicasForCodeReply::default();
    if request.code.is_empty() {
        return Ok(unknown);
    }
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let code_bidx = seal::code_index(&keys, &request.code);
    // Flags are read in this transaction, so a change committed before it counts at once.
    let (link, flags) = futures_util::join!(
        store::code_link(&tx, tenant, &code_bidx),
        store::flags_by_code(&tx, tenant, &code_bidx),
    );
    let Some((addressee_bidx, addressee_sealed)) = link? else {
        return Ok(unknown);
    };
    let flags: Flags = flags?.map(|f| f.flags).unwrap_or_default();
    let addressee = seal::open_addressee(&keys, tenant, "code_links", &addressee_sealed)?;
    if flags.self_info_prohibited {
        // Known, but nothing is read: the answer will be a refusal.
        return Ok(ReplicasForCodeReply {
            known: true,
            self_info_prohibited: true,
            addressee,
            items: Vec::new(),
        });
    }
    let rows = replicas_of_resident(&tx, tenant, &addressee_bidx, &request.info_codes).await?;
    tx.commit().await?;
    let mut by_item: BTreeMap<String, Vec<StoredReplica>> = BTreeMap::new();
    for row in rows {
        by_item
            .entry(row.kind.info_code.clone())
            .or_default()
            .push(row);
    }
    let today = quota_day(state.clock.now());
    let mut items = Vec::with_capacity(by_item.len());
    for (info_code, rows) in by_item {
        // What an inquiry with no 時点指定 would be answered with today, item by item (the
        // history groups of select_at are within one item).
        let selected = answer::select_at(&keys, tenant, rows, PointInTime::Current, today)?;
        if selected.is_empty() {
            continue;
        }
        items.push(SelfInfoItem {
            info_code,
            records: answer::provided_records(&selected),
        });
    }
    Ok(ReplicasForCodeReply {
        known: true,
        self_info_prohibited: false,
        addressee,
        items,
    })
}

/// Every replica of a resident, or of the listed items only.
async fn replicas_of_resident(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
    info_codes: &[String],
) -> Result<Vec<StoredReplica>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT info_code, major_version, dataset, key_bidx, record_id, public_start,
                    public_end, sealed, registered_at
             FROM provision.replicas
             WHERE tenant_id = $1 AND addressee_bidx = $2
               AND (cardinality($3::text[]) = 0 OR info_code = ANY($3::text[]))
             ORDER BY info_code, registered_at, record_id",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&tenant, &addressee_bidx, &info_codes])
        .await?;
    Ok(rows
        .iter()
        .map(|r| StoredReplica {
            kind: chukan_layout::RecordKind {
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
        })
        .collect())
}
