//! The statistics service's metrics: events applied by kind and whether they changed
//! anything, and how far behind the events it applies are (`chukan_stats_lag_seconds`). No
//! organisation code in any label.

use std::sync::LazyLock;

use prometheus::{Gauge, IntCounterVec, Opts, register_gauge, register_int_counter_vec};

static APPLIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // fixed name and labels: only a defect can fail here
    register_int_counter_vec!(
        Opts::new(
            "chukan_stats_events_total",
            "Statistics events applied, by kind and effect (changed, unchanged: a redelivered or overtaken event)."
        ),
        &["kind", "effect"]
    )
    .expect("register chukan_stats_events_total")
});

static LAG: LazyLock<Gauge> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_gauge!(
        "chukan_stats_lag_seconds",
        "Age of the newest statistics event when it was applied: how far statistics trail the services."
    )
    .expect("register chukan_stats_lag_seconds")
});

static SNAPSHOTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        Opts::new(
            "chukan_stats_snapshots_total",
            "Replica statistics snapshots taken, by reason (monthly, weekly, on-demand)."
        ),
        &["reason"]
    )
    .expect("register chukan_stats_snapshots_total")
});

/// One event of `kind` applied, `lag` after it happened.
pub fn applied(kind: &str, changed: bool, lag: chrono::TimeDelta) {
    let effect = if changed { "changed" } else { "unchanged" };
    APPLIED.with_label_values(&[kind, effect]).inc();
    LAG.set(lag.num_milliseconds().max(0) as f64 / 1000.0);
}

pub fn snapshot(reason: &str) {
    SNAPSHOTS.with_label_values(&[reason]).inc();
}
