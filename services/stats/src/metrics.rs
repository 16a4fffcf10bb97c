//! The statistics service's metrics: events applied by kind and whether they changed
//! anything, and how far behind the events it applies are (`chukan_stats_lag_seconds`). No
//! organisation code in any label.

use std::sync::{
    LazyLock,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Utc};
use prometheus::{
    Gauge, Histogram, IntCounterVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
    register_histogram, register_int_counter_vec,
};

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

/// Event time (ms since the epoch) of the newest event applied, and the lag of the last one
/// applied when it was; read at each scrape by [`LagCollector`].
static NEWEST_EVENT_MS: AtomicI64 = AtomicI64::new(0);
static LAST_LAG_MS: AtomicI64 = AtomicI64::new(0);

/// `chukan_stats_lag_seconds`, worked out at each scrape: while events wait in the
/// statistics queues, now − the time of the newest event applied, which keeps growing when
/// the consumer stalls or dies; when none wait, the lag the last event had when it was
/// applied (near 0 when the service keeps up, whatever the hour or the traffic).
struct LagCollector {
    gauge: Gauge,
}

impl Collector for LagCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let waiting: i64 = crate::queues()
            .iter()
            .map(|q| chukan_mq::metrics::queue_ready(&q.name))
            .sum();
        let lag_ms = lag_ms(
            waiting,
            NEWEST_EVENT_MS.load(Ordering::Relaxed),
            LAST_LAG_MS.load(Ordering::Relaxed),
            Utc::now().timestamp_millis(),
        );
        self.gauge.set(lag_ms as f64 / 1000.0);
        self.gauge.collect()
    }
}

/// The lag in ms from the events waiting, the newest event applied (0: none yet), the last
/// applied event's own lag and the time now.
fn lag_ms(waiting: i64, newest_ms: i64, last_lag_ms: i64, now_ms: i64) -> i64 {
    let lag = if waiting > 0 && newest_ms > 0 {
        now_ms - newest_ms
    } else {
        last_lag_ms
    };
    lag.max(0)
}

static LAG: LazyLock<()> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    let gauge = Gauge::new(
        "chukan_stats_lag_seconds",
        "How far statistics trail the services: while events wait, now minus the time of the \
         newest event applied; otherwise that event's age when it was applied.",
    )
    .expect("chukan_stats_lag_seconds is a valid gauge");
    if let Err(error) = prometheus::register(Box::new(LagCollector { gauge })) {
        tracing::error!(error = %error, "chukan_stats_lag_seconds could not be registered");
    }
});

static BATCH_EVENTS: LazyLock<Histogram> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_histogram!(
        "chukan_stats_exchange_batch_events",
        "Exchange events per counting transaction (one organisation's share of a batch).",
        vec![1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0]
    )
    .expect("register chukan_stats_exchange_batch_events")
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

/// Registers the lag gauge, so it is scraped from the start and not from the first event.
pub fn register() {
    LazyLock::force(&LAG);
}

/// One event of `kind` that happened `at` applied at `now`.
pub fn applied(kind: &str, changed: bool, at: DateTime<Utc>, now: DateTime<Utc>) {
    let effect = if changed { "changed" } else { "unchanged" };
    APPLIED.with_label_values(&[kind, effect]).inc();
    NEWEST_EVENT_MS.fetch_max(at.timestamp_millis(), Ordering::Relaxed);
    LAST_LAG_MS.store((now - at).num_milliseconds().max(0), Ordering::Relaxed);
}

/// One counting transaction of `events` exchange events committed.
pub fn exchange_batch(events: usize) {
    BATCH_EVENTS.observe(events as f64);
}

/// For tests: counting transactions committed, and the events they held.
pub fn exchange_batches() -> (u64, f64) {
    (
        BATCH_EVENTS.get_sample_count(),
        BATCH_EVENTS.get_sample_sum(),
    )
}

pub fn snapshot(reason: &str) {
    SNAPSHOTS.with_label_values(&[reason]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_grows_while_events_wait_and_is_the_last_events_own_when_none_do() {
        let newest = 1_000_000;
        // Nothing waits: the last event's lag, however long ago it was applied.
        assert_eq!(lag_ms(0, newest, 40, newest + 3_600_000), 40);
        // Events wait and none has been applied for an hour: the lag is that hour.
        assert_eq!(lag_ms(5, newest, 40, newest + 3_600_000), 3_600_000);
        // Events wait, none applied since the start: nothing to measure against.
        assert_eq!(lag_ms(5, 0, 0, newest), 0);
        // A clock behind the event's never makes a negative lag.
        assert_eq!(lag_ms(5, newest, 40, newest - 10), 0);
    }
}
