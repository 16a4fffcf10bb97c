//! The code service (符号管理, F1): obtains a resident's per-organisation code (符号) from the
//! NWS and keeps the code ↔ integrated-addressee link, sealed with the tenant's key.
//!
//! Flow: `POST /v1/codes/acquisitions` writes the request and an outbox message in one
//! transaction → relay signs and sends it to the NWS → the NWS's answer comes back on
//! `nws.in.code` → [`actors::nws_in`] stores the link exactly once.

pub mod actors;
pub mod api;
pub mod domain;
pub mod store;

use std::sync::Arc;

use chukan_crypto::Vault;
use chukan_mq::{QueueSpec, outbox::OutboxHandle};
use chukan_runtime::{Context, Parts};
use utoipa::OpenApi as _;

pub const SCHEMA: &str = "code";

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// What handlers and consumers share.
#[derive(Clone)]
pub struct CodeState {
    pub db: chukan_db::Pool,
    pub vault: Vault,
    pub outbox: OutboxHandle,
}

/// The queue the NWS's answers arrive on.
pub fn inbound_queue() -> QueueSpec {
    QueueSpec {
        name: "code.nws-in".into(),
        bindings: vec![chukan_proto::inbound_routing_key("code.acquired")],
    }
}

/// The code service's part of the OpenAPI document (merged by the server at `/openapi.json`).
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
    let state = CodeState {
        db: ctx.db.clone(),
        vault: Vault::new(ctx.kek.clone(), SCHEMA),
        outbox: outbox.clone(),
    };
    let queue = inbound_queue();
    ctx.bus.declare_queue(&queue).await?;
    let consumer = chukan_mq::consumer::start(
        &ctx.bus,
        &queue,
        "code",
        ctx.settings.amqp.prefetch,
        Arc::new(actors::nws_in::CodeResults::new(state.clone())),
    );
    let data = actix_web::web::Data::new(state);
    Ok(Parts {
        name: "code",
        routes: Some(Arc::new(move |cfg| api::routes(cfg, data.clone()))),
        workers: vec![
            consumer.into_worker("code.nws-in"),
            outbox.into_worker("code.outbox"),
        ],
        openapi: Some(openapi()),
    })
}
