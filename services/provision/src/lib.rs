//! The provision service (情報提供, F3/F6): the replica DB (情報提供データベース) automatic
//! answers are served from, and replica registration (副本登録) that fills it.
//!
//! Flow: business systems send registration lists (files, `POST /v1/replica-uploads`) or daily
//! changes (`POST /v1/replicas`) → the list is stored sealed and queued → the nightly batch (or
//! immediate processing) applies it within the organisation's daily quota, carrying the rest to
//! the next night → replicas are kept sealed with blind indexes → point-in-time reads answer
//! from them. See docs/provision.md.
//!
//! Provision requests (情報提供要求) arrive from the NWS through relay (`nws.in.provision`):
//! the permit is verified, the provider-side code (符号) is turned into the resident through
//! the copy of code links, the resident's flags decide between an automatic answer (自動応答)
//! and the manual-answer queue, and the answer leaves through the outbox.

pub mod exchange;
pub mod history;
pub mod metrics;
pub mod replica;
pub mod seal;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use chrono::{NaiveDate, NaiveTime};
use chukan_config::Settings;
use chukan_core::Clock;
use chukan_crypto::{Vault, Verifiers};
use chukan_layout::Catalogue;
use chukan_mq::{QueueSpec, outbox::OutboxHandle};
use chukan_replica_list::Limits;
use chukan_runtime::{Context, Parts, StopStage};
use tokio::sync::mpsc;
use utoipa::OpenApi as _;

use crate::{
    replica::apply::Applier,
    replica::slots::{Slot, UploadSchedule},
};

pub const SCHEMA: &str = "provision";

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// What handlers, consumers and jobs share. Cheap to clone.
#[derive(Clone)]
pub struct ProvisionState {
    pub db: chukan_db::Pool,
    pub vault: Vault,
    pub catalogue: Arc<Catalogue>,
    pub schedule: Arc<UploadSchedule>,
    pub clock: Arc<dyn Clock>,
    pub outbox: OutboxHandle,
    pub applier: Applier,
    pub settings: Arc<Settings>,
    pub nightly_at: NaiveTime,
    /// The NWS's public keys: provision permits (情報提供許可証) are verified against them.
    pub verifiers: Arc<Verifiers>,
    /// Tenants whose uploads are to be applied now (immediate processing).
    pub immediate: mpsc::UnboundedSender<String>,
}

/// The queue admin's organisation settings arrive on.
pub fn tenant_queue() -> QueueSpec {
    QueueSpec {
        name: "provision.tenants".into(),
        bindings: vec!["tenant.changed".into()],
    }
}

/// Provision requests relay hands over from the NWS (`nws.in.provision`).
pub fn nws_in_queue() -> QueueSpec {
    QueueSpec {
        name: "provision.nws-in".into(),
        bindings: vec![chukan_proto::inbound_routing_key(
            exchange::nws_in::REQUEST_KIND,
        )],
    }
}

/// The code service's code.linked events (符号 → 団体内統合宛名番号).
pub fn code_links_queue() -> QueueSpec {
    QueueSpec {
        name: "provision.code-links".into(),
        bindings: vec![chukan_proto::CODE_LINKED.into()],
    }
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    replica::api::ApiDoc::openapi()
}

/// The catalogue the settings name: a directory, or the built-in one.
pub fn load_catalogue(settings: &Settings) -> anyhow::Result<Catalogue> {
    let dir = settings.provision.layout_dir.trim();
    if dir.is_empty() {
        Catalogue::builtin().map_err(|e| anyhow::anyhow!("layout catalogue: {e}"))
    } else {
        Catalogue::load_dir(std::path::Path::new(dir))
            .map_err(|e| anyhow::anyhow!("layout catalogue in {dir}: {e}"))
    }
}

fn parse_dates(key: &str, dates: &[String]) -> anyhow::Result<Vec<NaiveDate>> {
    dates
        .iter()
        .map(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .with_context(|| format!("setting {key}: {d:?} is not YYYY-MM-DD"))
        })
        .collect()
}

/// The upload slot schedule from the settings: planned outages and blocked days close uploads.
pub fn upload_schedule(settings: &Settings) -> anyhow::Result<UploadSchedule> {
    let slots = settings
        .provision
        .upload_slots
        .iter()
        .map(|s| Slot::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut blocked = parse_dates(
        "calendar.planned_outages",
        &settings.calendar.planned_outages,
    )?;
    blocked.extend(parse_dates(
        "provision.blocked_days",
        &settings.provision.blocked_days,
    )?);
    Ok(UploadSchedule::new(
        slots,
        settings.provision.slot_items.iter().cloned(),
        blocked,
    ))
}

/// Builds the state without starting anything (also used by `chukan batch run`).
pub fn build_state(
    ctx: &Context,
    outbox: OutboxHandle,
) -> anyhow::Result<(ProvisionState, mpsc::UnboundedReceiver<String>)> {
    let settings = ctx.settings.clone();
    let catalogue = Arc::new(load_catalogue(&settings)?);
    let schedule = Arc::new(upload_schedule(&settings)?.with_calendar(ctx.calendar.clone()));
    let nightly_at = NaiveTime::parse_from_str(&settings.provision.nightly_batch_at, "%H:%M")
        .with_context(|| {
            format!(
                "setting provision.nightly_batch_at: {:?} is not HH:MM",
                settings.provision.nightly_batch_at
            )
        })?;
    let verifiers = Arc::new(
        Verifiers::parse_entries(&settings.relay.nws_public_keys)
            .map_err(|e| anyhow::anyhow!("setting relay.nws_public_keys: {e}"))?,
    );
    let vault = Vault::new(ctx.kek.clone(), SCHEMA);
    let applier = Applier {
        db: ctx.db.clone(),
        vault: vault.clone(),
        catalogue: catalogue.clone(),
        clock: ctx.clock.clone(),
        outbox: outbox.clone(),
        chunk_entries: settings.provision.batch_chunk_entries,
        limits: Limits {
            max_entry_bytes: settings.provision.max_entry_bytes,
            ..Limits::default()
        },
    };
    let (immediate, rx) = mpsc::unbounded_channel();
    Ok((
        ProvisionState {
            db: ctx.db.clone(),
            vault,
            catalogue,
            schedule,
            clock: ctx.clock.clone(),
            outbox,
            applier,
            settings,
            nightly_at,
            verifiers,
            immediate,
        },
        rx,
    ))
}

pub async fn start(ctx: &Context) -> anyhow::Result<Parts> {
    let outbox = chukan_mq::outbox::start(
        ctx.db.clone(),
        SCHEMA,
        ctx.bus.clone(),
        ctx.settings.amqp.outbox_poll,
    );
    let (state, immediate_rx) = build_state(ctx, outbox.clone())?;
    let queue = tenant_queue();
    ctx.bus.declare_queue(&queue).await?;
    let consumer = chukan_mq::consumer::start(
        &ctx.bus,
        &queue,
        "provision",
        ctx.settings.amqp.prefetch,
        Arc::new(replica::tenants::TenantSettings::new(state.db.clone())),
    );
    let requests_queue = nws_in_queue();
    ctx.bus.declare_queue(&requests_queue).await?;
    let requests = chukan_mq::consumer::start(
        &ctx.bus,
        &requests_queue,
        "provision",
        ctx.settings.amqp.prefetch,
        Arc::new(exchange::nws_in::ProvisionRequests::new(state.clone())),
    );
    let links_queue = code_links_queue();
    ctx.bus.declare_queue(&links_queue).await?;
    let (linking, links_batcher) = chukan_runtime::batched(
        "provision.code-links-batcher",
        exchange::code_links::CodeLinks::new(state.clone()),
        ctx.settings.amqp.prefetch,
        exchange::code_links::BATCH_MAX,
    );
    let links = chukan_mq::consumer::start(
        &ctx.bus,
        &links_queue,
        "provision",
        ctx.settings.amqp.prefetch,
        Arc::new(linking),
    );
    // 自己情報提供: the self-information service's read-only questions (request/reply).
    let selfinfo_queue = exchange::selfinfo_rpc::queue();
    ctx.bus.declare_queue(&selfinfo_queue).await?;
    let selfinfo = chukan_mq::rpc::serve(
        &ctx.bus,
        &selfinfo_queue,
        "provision",
        ctx.settings.amqp.prefetch,
        exchange::selfinfo_rpc::handler(state.clone()),
    );
    // Once per cell (ADR 0005): with several provision replicas, the one holding each
    // lease runs the nightly batch and the expiry sweep.
    let poll = ctx.settings.provision.scheduler_poll;
    let expiry = {
        let state = state.clone();
        chukan_runtime::lease::once_per_cell(
            ctx,
            "provision.expiry",
            StopStage::Intake,
            move || exchange::expiry::start(state.clone(), poll),
        )
    };
    let scheduler = {
        let state = state.clone();
        chukan_runtime::lease::once_per_cell(ctx, "provision.batch", StopStage::Intake, move || {
            replica::scheduler::start(state.clone(), poll)
        })
    };
    // Every replica applies the immediate uploads its own API accepted.
    let uploads = replica::scheduler::uploads(state.clone(), immediate_rx);
    let data = actix_web::web::Data::new(state);
    Ok(Parts {
        name: "provision",
        routes: Some(Arc::new(move |cfg| replica::api::routes(cfg, data.clone()))),
        workers: vec![
            consumer.into_worker("provision.tenants"),
            requests.into_worker("provision.nws-in"),
            links.into_worker("provision.code-links"),
            links_batcher,
            selfinfo.into_worker("provision.selfinfo-rpc"),
            scheduler,
            uploads,
            expiry,
            outbox.into_worker("provision.outbox"),
        ],
        openapi: Some(openapi()),
    })
}
