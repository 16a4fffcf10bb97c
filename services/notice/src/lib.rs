//! The notice service (お知らせ, F12): sends notices (text, attachments, reply choices) to
//! residents' portals (マイナポータル) through the NWS, asks the NWS how far they got
//! (状況確認要求) and keeps the answers, sealed.
//!
//! Flow: `POST /v1/notices` writes the notice and (at once, or at its deliver_at through
//! [`actors::dispatcher`]) an outbox message `notice.send` and the `notice.sent` audit event
//! in one transaction → relay → NWS → portal. `POST /v1/notice-status-checks` sends
//! `notice.status-check`; the NWS answers `notice.status` on `nws.in.notice`, which
//! [`actors::nws_in`] applies exactly once. Codes (符号) arrive as `code.linked`
//! (`chukan_runtime::code_linked::SealedCopy`). See docs/notice.md.

pub mod actors;
pub mod api;
pub mod dispatch;
pub mod domain;
pub mod metrics;
pub mod outgoing;
pub mod store;

use std::sync::Arc;

use chukan_core::Clock;
use chukan_crypto::Vault;
use chukan_mq::{QueueSpec, outbox::OutboxHandle};
use chukan_runtime::{Context, Parts};
use tokio::sync::Notify;
use utoipa::OpenApi as _;

pub const SCHEMA: &str = "notice";

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// What handlers, consumers and workers share. Cheap to clone.
#[derive(Clone)]
pub struct NoticeService {
    pub db: chukan_db::Pool,
    pub vault: Vault,
    pub outbox: OutboxHandle,
    pub clock: Arc<dyn Clock>,
    /// Wakes the dispatcher when a scheduled notice was accepted.
    pub scheduled: Arc<Notify>,
}

/// The NWS's answers (`nws.in.notice`: `notice.status`).
pub fn nws_in_queue() -> QueueSpec {
    QueueSpec::new(
        "notice.nws-in",
        &[&chukan_proto::inbound_routing_key("notice.status")],
    )
}

/// Residents' codes from the code service.
pub fn code_links_queue() -> QueueSpec {
    QueueSpec::new("notice.code-links", &[chukan_proto::CODE_LINKED])
}

/// Every queue the notice service consumes, for the binary to declare before anything runs.
pub fn queues() -> Vec<QueueSpec> {
    vec![nws_in_queue(), code_links_queue()]
}

/// The notice service's part of the OpenAPI document.
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
    let state = NoticeService {
        db: ctx.db.clone(),
        vault: Vault::new(ctx.kek.clone(), SCHEMA),
        outbox: outbox.clone(),
        clock: ctx.clock.clone(),
        scheduled: Arc::new(Notify::new()),
    };
    let prefetch = ctx.settings.amqp.prefetch;
    let (linking, links_batcher) = chukan_runtime::batched(
        "notice.code-links-batcher",
        chukan_runtime::code_linked::SealedCopy {
            schema: SCHEMA,
            db: state.db.clone(),
            vault: state.vault.clone(),
            clock: state.clock.clone(),
            aad: domain::aad,
        },
        prefetch,
        chukan_runtime::code_linked::BATCH_MAX,
    );
    let mut workers = vec![links_batcher];
    let handlers: Vec<(QueueSpec, Arc<dyn chukan_mq::Handler>)> = vec![
        (
            nws_in_queue(),
            Arc::new(actors::nws_in::StatusReports::new(state.clone())),
        ),
        (code_links_queue(), Arc::new(linking)),
    ];
    for (queue, handler) in handlers {
        ctx.bus.declare_queue(&queue).await?;
        let consumer = chukan_mq::consumer::start(&ctx.bus, &queue, "notice", prefetch, handler);
        workers.push(consumer.into_worker(&queue.name));
    }
    workers.push(actors::dispatcher::start(state.clone()));
    workers.push(outbox.into_worker("notice.outbox"));
    let data = actix_web::web::Data::new(state);
    Ok(Parts {
        name: "notice",
        routes: Some(Arc::new(move |cfg| api::routes(cfg, data.clone()))),
        workers,
        openapi: Some(openapi()),
    })
}
