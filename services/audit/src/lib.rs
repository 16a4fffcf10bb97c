//! The audit service (情報提供等記録, provision records): keeps every audit event of a tenant
//! in an append-only Merkle log (RFC 9162, `chukan-merkle`), signs its tree heads and answers
//! searches, inclusion proofs and consistency proofs.
//!
//! Flow: services publish `audit.record` (an `AuditRecord`) through their outboxes →
//! [`consumer`] appends it exactly once (inbox claim, log lock, leaf, nodes in one
//! transaction) → [`heads`] signs (tenant, size, root, time) periodically → [`api`] serves
//! `/v1/records…`. [`verify::verify_tenant`] re-checks a whole log. See docs/audit.md.

pub mod api;
pub mod append;
pub mod consumer;
pub mod copy_binary;
pub mod disclosable;
pub mod disclosure;
pub mod heads;
pub mod leaf;
pub mod metrics;
pub mod retention;
pub mod searchable;
pub mod store;
pub mod verify;

use std::sync::Arc;

use anyhow::Context as _;
use chukan_config::AuditSettings;
use chukan_core::Clock;
use chukan_crypto::{Signer, Vault};
use chukan_mq::QueueSpec;
use chukan_runtime::{Context, Parts, StopStage};
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use utoipa::OpenApi as _;

pub use verify::{VerifyReport, verify_tenant};

pub const SCHEMA: &str = "audit";

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// What handlers, the consumer and the signer share. Cheap to clone.
#[derive(Clone)]
pub struct AuditState {
    pub db: chukan_db::Pool,
    pub vault: Vault,
    pub clock: Arc<dyn Clock>,
    pub settings: AuditSettings,
    pub signer: Arc<Signer>,
    /// Wakes the signer when a log grew by `tree_head_every_records`.
    pub heads: Arc<Notify>,
}

/// The audit events every service publishes (`audit.record`). The binary already declares
/// this exact queue.
pub fn records_queue() -> QueueSpec {
    QueueSpec::new("audit.records", &[chukan_proto::AUDIT_RECORD])
}

/// Every queue the audit service consumes.
pub fn queues() -> Vec<QueueSpec> {
    vec![records_queue(), disclosable::queue()]
}

/// The audit service's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::ApiDoc::openapi()
}

/// The tree-head signer from settings (`audit.signing_key`, `audit.signing_kid`).
pub fn signer(settings: &AuditSettings) -> anyhow::Result<Signer> {
    Signer::from_seed_base64(&settings.signing_kid, settings.signing_key.expose_secret())
        .context("setting audit.signing_key")
}

/// Verifiers holding this service's own tree-head key, for [`verify_tenant`].
pub fn verifiers(settings: &AuditSettings) -> anyhow::Result<chukan_crypto::Verifiers> {
    let signer = signer(settings)?;
    let mut v = chukan_crypto::Verifiers::default();
    v.add_bytes(signer.kid(), &signer.verifying_key_bytes())?;
    Ok(v)
}

pub fn state(ctx: &Context) -> anyhow::Result<AuditState> {
    state_from(
        ctx.db.clone(),
        ctx.kek.clone(),
        ctx.clock.clone(),
        ctx.settings.audit.clone(),
    )
}

/// The state without a bus: what the CLI's verify and purge need.
pub fn state_from(
    db: chukan_db::Pool,
    kek: chukan_crypto::Kek,
    clock: Arc<dyn Clock>,
    settings: AuditSettings,
) -> anyhow::Result<AuditState> {
    Ok(AuditState {
        db,
        vault: Vault::new(kek, SCHEMA),
        clock,
        signer: Arc::new(signer(&settings)?),
        settings,
        heads: Arc::new(Notify::new()),
    })
}

pub async fn start(ctx: &Context) -> anyhow::Result<Parts> {
    let state = state(ctx)?;
    let queue = records_queue();
    ctx.bus.declare_queue(&queue).await?;
    // Its own prefetch: deliveries in flight are what a batch is made of.
    let (records, batcher) = consumer::Records::start(state.clone());
    let consumer = chukan_mq::consumer::start(
        &ctx.bus,
        &queue,
        "audit",
        state.settings.prefetch,
        Arc::new(records),
    );
    // 自己情報提供: the self-information service asks for a resident's disclosable records.
    let selfinfo_queue = disclosable::queue();
    ctx.bus.declare_queue(&selfinfo_queue).await?;
    let selfinfo = chukan_mq::rpc::serve(
        &ctx.bus,
        &selfinfo_queue,
        "audit",
        ctx.settings.amqp.prefetch,
        disclosable::handler(state.clone()),
    );
    let mut workers = vec![
        consumer.into_worker(&queue.name),
        batcher,
        selfinfo.into_worker(&selfinfo_queue.name),
        // Once per cell (ADR 0005): one replica signs the tree heads.
        {
            let state = state.clone();
            chukan_runtime::lease::once_per_cell(
                ctx,
                "audit.tree-heads",
                StopStage::Intake,
                move || heads::start(state.clone()),
            )
        },
        // Audit publishes nothing (no relay), but its inbox grows with every record.
        chukan_mq::outbox::sample_worker(
            "audit.backlog",
            ctx.db.clone(),
            SCHEMA,
            ctx.settings.amqp.backlog_sample,
        ),
    ];
    // Once per cell too, in the process (ADR 0005: no CronJob): one replica purges.
    if let Some(every) = state.settings.purge_interval {
        let state = state.clone();
        workers.push(chukan_runtime::lease::once_per_cell(
            ctx,
            "audit.retention",
            StopStage::Intake,
            move || retention::start(state.clone(), every),
        ));
    }
    let data = actix_web::web::Data::new(state);
    Ok(Parts {
        name: "audit",
        routes: Some(Arc::new(move |cfg| api::routes(cfg, data.clone()))),
        workers,
        openapi: Some(openapi()),
    })
}
