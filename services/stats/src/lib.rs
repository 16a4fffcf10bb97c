//! The statistics service (統計, F10 業務統計情報の集計; seed §2.5): what the platform and each
//! organisation learn from counts, never from residents' data.
//!
//! It consumes the bus only, and only events without resident fields. Business statistics
//! (業務統計): every exchange event of every service (`stats.exchange`, the counting twin of
//! its audit record, or the code service's acquisition) is counted once into its
//! organisation's Japan day ([`exchanges`], durations in [`durations`]). Replica
//! statistics (副本統計) — provision's `stats.replica-count` events keep the newest count per
//! organisation × item × major version × dataset ([`replicas`]); [`snapshots`] copies them
//! under a snapshot date by the calendar rule ([`calendar`]: monthly on the first Saturday,
//! weekly on Saturdays in a migration window) or on demand (`chukan stats snapshot`); [`api`]
//! serves them by date, compared between two dates, as JSON or CSV for Excel ([`export`]).

pub mod api;
pub mod calendar;
pub mod durations;
pub mod exchanges;
pub mod export;
pub mod metrics;
pub mod platform;
pub mod replicas;
pub mod schedule;
pub mod snapshots;
pub mod status_history;
pub mod store;

use std::sync::Arc;

use chukan_core::Clock;
use chukan_mq::QueueSpec;
use chukan_runtime::{Context, Parts};
use utoipa::OpenApi as _;

pub const SCHEMA: &str = "stats";

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// What handlers, consumers and the scheduler share. Cheap to clone.
#[derive(Clone)]
pub struct StatsState {
    pub db: chukan_db::Pool,
    pub clock: Arc<dyn Clock>,
    /// The `[stats]` settings.
    pub settings: chukan_config::StatsSettings,
}

impl StatsState {
    pub fn new(ctx: &Context) -> Self {
        Self {
            db: ctx.db.clone(),
            clock: ctx.clock.clone(),
            settings: ctx.settings.stats.clone(),
        }
    }
}

/// Replica counts provision announces (`stats.replica-count`).
pub fn replica_counts_queue() -> QueueSpec {
    QueueSpec::new("stats.replica-counts", &[chukan_proto::STATS_REPLICA_COUNT])
}

/// Exchange events every service announces (`stats.exchange`).
pub fn exchanges_queue() -> QueueSpec {
    QueueSpec::new("stats.exchanges", &[chukan_proto::STATS_EXCHANGE])
}

/// Operating status changes admin publishes (`status.changed`).
pub fn status_queue() -> QueueSpec {
    QueueSpec::new("stats.status-changes", &[chukan_proto::STATUS_CHANGED])
}

/// Every queue the service consumes, for the binary to declare before anything runs.
pub fn queues() -> Vec<QueueSpec> {
    vec![replica_counts_queue(), exchanges_queue(), status_queue()]
}

/// The service's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::ApiDoc::openapi()
}

pub async fn start(ctx: &Context) -> anyhow::Result<Parts> {
    let state = StatsState::new(ctx);
    metrics::register();
    // The exchanges arrive as fast as audit records: counted in batches of what is in flight.
    let (counting, batcher) = chukan_runtime::batched(
        "stats.exchange-batcher",
        exchanges::Exchanges::new(state.clone()),
        ctx.settings.stats.prefetch,
        exchanges::BATCH_MAX,
    );
    // Each queue with its prefetch: the exchanges' is what a counting batch is made of.
    let amqp_prefetch = ctx.settings.amqp.prefetch;
    let consumers: [(QueueSpec, Arc<dyn chukan_mq::Handler>, u16); 3] = [
        (
            replica_counts_queue(),
            Arc::new(replicas::ReplicaCounts::new(state.clone())),
            amqp_prefetch,
        ),
        (
            exchanges_queue(),
            Arc::new(counting),
            ctx.settings.stats.prefetch,
        ),
        (
            status_queue(),
            Arc::new(status_history::StatusHistory::new(state.db.clone())),
            amqp_prefetch,
        ),
    ];
    let mut workers = vec![
        batcher,
        // Once per cell (ADR 0005): one replica takes the scheduled snapshots.
        {
            let state = state.clone();
            chukan_runtime::lease::once_per_cell(
                ctx,
                "stats.snapshots",
                chukan_runtime::StopStage::Intake,
                move || snapshots::start(state.clone()),
            )
        },
        // No outbox relay here to report the inbox's size: a sampler of its own.
        chukan_mq::outbox::sample_worker(
            "stats.backlog",
            ctx.db.clone(),
            SCHEMA,
            ctx.settings.amqp.backlog_sample,
        ),
    ];
    for (queue, handler, prefetch) in consumers {
        ctx.bus.declare_queue(&queue).await?;
        let consumer = chukan_mq::consumer::start(&ctx.bus, &queue, "stats", prefetch, handler);
        workers.push(consumer.into_worker(&queue.name));
    }
    let data = actix_web::web::Data::new(state);
    Ok(Parts {
        name: "stats",
        routes: Some(Arc::new(move |cfg| api::routes(cfg, data.clone()))),
        workers,
        openapi: Some(openapi()),
    })
}
