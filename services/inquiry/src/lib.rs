//! The inquiry service (情報照会, F2): sends inquiries for a resident's specific personal
//! information to other organisations through the NWS and keeps their results, sealed.
//!
//! Flow: `POST /v1/inquiries` (or a bulk file, `POST /v1/inquiry-batches`) writes the inquiry
//! and an outbox message `inquiry.request` in one transaction → relay → NWS (別表第二 check,
//! code conversion, permit) → provider → NWS → `inquiry.result` on `nws.in.inquiry` →
//! [`actors::nws_in`] stores the result exactly once. The codes (符号), non-disclosure flags and
//! departments the checks need arrive as events ([`actors::events`]). See docs/inquiry.md.

pub mod actors;
pub mod api;
pub mod bulk_file;
pub mod domain;
pub mod metrics;
pub mod outgoing;
pub mod procedures;
pub mod store;

use std::sync::Arc;

use chukan_config::InquirySettings;
use chukan_core::Clock;
use chukan_crypto::Vault;
use chukan_mq::{QueueSpec, outbox::OutboxHandle};
use chukan_runtime::{Context, Parts};
use tokio::sync::Notify;
use utoipa::OpenApi as _;

use crate::bulk_file::FileEncoding;

pub const SCHEMA: &str = "inquiry";

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
pub struct InquiryState {
    pub db: chukan_db::Pool,
    pub vault: Vault,
    pub outbox: OutboxHandle,
    pub clock: Arc<dyn Clock>,
    /// Tells a round trip held by the stop window or the night from a slow one.
    pub calendar: Arc<chukan_core::ServiceCalendar>,
    pub settings: InquirySettings,
    pub encoding: FileEncoding,
    /// Wakes the batch sender when a bulk file was accepted.
    pub batches: Arc<Notify>,
}

/// The NWS's results (`nws.in.inquiry`).
pub fn results_queue() -> QueueSpec {
    QueueSpec::new(
        "inquiry.nws-in",
        &[&chukan_proto::inbound_routing_key("inquiry.result")],
    )
}

/// Residents' codes from the code service.
pub fn code_links_queue() -> QueueSpec {
    QueueSpec::new("inquiry.code-links", &[chukan_proto::CODE_LINKED])
}

/// Residents' flags from the provision service.
pub fn flags_queue() -> QueueSpec {
    QueueSpec::new("inquiry.flags", &[chukan_proto::FLAGS_CHANGED])
}

/// Departments from admin.
pub fn departments_queue() -> QueueSpec {
    QueueSpec::new("inquiry.departments", &[chukan_proto::DEPARTMENT_CHANGED])
}

/// Every queue the inquiry service consumes, for the binary to declare before anything runs.
pub fn queues() -> Vec<QueueSpec> {
    vec![
        results_queue(),
        code_links_queue(),
        flags_queue(),
        departments_queue(),
    ]
}

/// The inquiry service's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::ApiDoc::openapi()
}

pub async fn start(ctx: &Context) -> anyhow::Result<Parts> {
    let settings = ctx.settings.inquiry.clone();
    let encoding = settings.bulk_encoding;
    let outbox = chukan_mq::outbox::start(
        ctx.db.clone(),
        SCHEMA,
        ctx.bus.clone(),
        ctx.settings.amqp.outbox_poll,
    );
    let state = InquiryState {
        db: ctx.db.clone(),
        vault: Vault::new(ctx.kek.clone(), SCHEMA),
        outbox: outbox.clone(),
        clock: ctx.clock.clone(),
        calendar: ctx.calendar.clone(),
        settings,
        encoding,
        batches: Arc::new(Notify::new()),
    };
    let prefetch = ctx.settings.amqp.prefetch;
    let (linking, links_batcher) = chukan_runtime::batched(
        "inquiry.code-links-batcher",
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
            results_queue(),
            Arc::new(actors::nws_in::Results::new(state.clone())),
        ),
        (code_links_queue(), Arc::new(linking)),
        (
            flags_queue(),
            Arc::new(actors::events::Flags::new(state.clone())),
        ),
        (
            departments_queue(),
            Arc::new(actors::events::Departments::new(state.clone())),
        ),
    ];
    for (queue, handler) in handlers {
        ctx.bus.declare_queue(&queue).await?;
        let consumer = chukan_mq::consumer::start(&ctx.bus, &queue, "inquiry", prefetch, handler);
        workers.push(consumer.into_worker(&queue.name));
    }
    workers.push(actors::batch_sender::start(state.clone()));
    // Once per cell (ADR 0005): one replica sweeps; the batch sender above runs in every
    // replica (each takes other lines, SKIP LOCKED).
    let sweeper = state.clone();
    workers.push(chukan_runtime::lease::once_per_cell(
        ctx,
        "inquiry.expiry",
        chukan_runtime::StopStage::Intake,
        move || actors::expiry::start(sweeper.clone(), sweeper.settings.expiry_sweep),
    ));
    workers.push(outbox.into_worker("inquiry.outbox"));
    let procedures = actix_web::web::Data::new(procedures::Procedures::new(
        &ctx.settings.relay,
        ctx.clock.clone(),
    )?);
    let data = actix_web::web::Data::new(state);
    Ok(Parts {
        name: "inquiry",
        routes: Some(Arc::new(move |cfg| {
            api::routes(cfg, data.clone());
            api::procedure_routes(cfg, procedures.clone());
        })),
        workers,
        openapi: Some(openapi()),
    })
}
