//! The self-information service (自己情報提供, F11): answers a resident's request, made on the
//! resident portal (マイナポータル) and carried by the NWS, for what this organisation holds about
//! them.
//!
//! Flow: `selfinfo.request` on `nws.in.selfinfo` → [`consumer`] stores it (inbox claim and row
//! in one transaction) → [`worker`] asks provision (`provision.selfinfo-rpc`: code → resident,
//! 自己情報提供不可フラグ, current replicas) and audit (`audit.selfinfo-rpc`: disclosable
//! provision records) over RabbitMQ request/reply, adds the organisation's attachments, and in
//! one transaction seals the answer, puts `selfinfo.answer` (towards the NWS) and the answer's
//! own `audit.record` in the outbox and marks the request answered. An unreachable provision or
//! audit leaves the request waiting for the next round; nothing is lost. See docs/selfinfo.md.

pub mod api;
pub mod consumer;
pub mod metrics;
pub mod outgoing;
pub mod store;
pub mod worker;

use std::sync::Arc;

use chukan_core::Clock;
use chukan_crypto::Vault;
use chukan_mq::{QueueSpec, outbox::OutboxHandle, rpc::RpcClient};
use chukan_runtime::{Context, Parts};
use tokio::sync::Notify;
use utoipa::OpenApi as _;

pub const SCHEMA: &str = "selfinfo";

/// Kind of the request the NWS hands over, and of the answer sent back.
pub const REQUEST_KIND: &str = "selfinfo.request";
pub const ANSWER_KIND: &str = "selfinfo.answer";

/// Request/reply queues of provision and audit (their crates declare and serve them; the
/// contract is the queue name and proto/chukan/v1/selfinfo.proto, not their Rust types).
pub const PROVISION_RPC: &str = "provision.selfinfo-rpc";
pub const AUDIT_RPC: &str = "audit.selfinfo-rpc";

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// What handlers, the consumer and the worker share. Cheap to clone.
#[derive(Clone)]
pub struct SelfInfoState {
    pub db: chukan_db::Pool,
    pub vault: Vault,
    pub outbox: OutboxHandle,
    pub clock: Arc<dyn Clock>,
    pub rpc: RpcClient,
    /// The `[selfinfo]` settings.
    pub config: chukan_config::SelfInfoSettings,
    /// The layout catalogue: attachments are only taken for the items it has.
    pub catalogue: Arc<chukan_layout::Catalogue>,
    /// Wakes the worker when a request was stored.
    pub wake: Arc<Notify>,
}

/// Self-information requests relay hands over from the NWS (`nws.in.selfinfo`).
pub fn requests_queue() -> QueueSpec {
    QueueSpec::new(
        "selfinfo.nws-in",
        &[&chukan_proto::inbound_routing_key(REQUEST_KIND)],
    )
}

/// Every queue the service consumes, for the binary to declare before anything runs.
pub fn queues() -> Vec<QueueSpec> {
    vec![requests_queue()]
}

/// The service's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::ApiDoc::openapi()
}

pub async fn start(ctx: &Context) -> anyhow::Result<Parts> {
    let outbox = chukan_mq::outbox::start(
        ctx.db.clone(),
        SCHEMA,
        ctx.bus.clone(),
        ctx.settings.amqp.outbox_poll,
    );
    let state = SelfInfoState {
        db: ctx.db.clone(),
        vault: Vault::new(ctx.kek.clone(), SCHEMA),
        outbox: outbox.clone(),
        clock: ctx.clock.clone(),
        rpc: RpcClient::new(&ctx.bus),
        config: ctx.settings.selfinfo.clone(),
        catalogue: Arc::new(
            chukan_layout::Catalogue::builtin()
                .map_err(|e| anyhow::anyhow!("layout catalogue: {e}"))?,
        ),
        wake: Arc::new(Notify::new()),
    };
    let queue = requests_queue();
    ctx.bus.declare_queue(&queue).await?;
    let consumer = chukan_mq::consumer::start(
        &ctx.bus,
        &queue,
        "selfinfo",
        ctx.settings.amqp.prefetch,
        Arc::new(consumer::Requests::new(state.clone())),
    );
    let workers = vec![
        consumer.into_worker(&queue.name),
        worker::start(state.clone()),
        outbox.into_worker("selfinfo.outbox"),
    ];
    let data = actix_web::web::Data::new(state);
    Ok(Parts {
        name: "selfinfo",
        routes: Some(Arc::new(move |cfg| api::routes(cfg, data.clone()))),
        workers,
        openapi: Some(openapi()),
    })
}
