//! Prometheus metrics of replica registration. Labels never carry tenants' data.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use prometheus::{
    GaugeVec, Histogram, IntCounterVec, register_gauge_vec, register_histogram,
    register_int_counter_vec,
};

use crate::store::Applied;

/// Provider look-up of an automatic answer: code → addressee → flags → replica read →
/// records built (the target is p99 ≤ 2 ms).
pub static LOOKUP: LazyLock<Histogram> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_histogram!(
        "chukan_provision_lookup_seconds",
        "Provider look-up of an automatic answer (code, addressee, flags, replicas, records)",
        vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
        ]
    )
    .expect("metric registers once")
});

static ANSWERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_provision_answers_total",
        "Provision requests settled, by outcome (provided, waiting, refused, no-record)",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub fn record_answer(outcome: &str) {
    ANSWERS.with_label_values(&[outcome]).inc();
}

static ENTRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_provision_entries_total",
        "Registration list entries applied by the batch, by outcome",
        &["outcome"]
    )
    .expect("metric registers once")
});

static UPLOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_provision_uploads_total",
        "Registration lists received, by outcome (accepted or the refusal code)",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub fn record_applied(a: &Applied) {
    for (outcome, n) in [
        ("registered", a.registered),
        ("overwritten", a.overwritten),
        ("deleted", a.deleted),
        ("rejected", a.rejected),
    ] {
        if n > 0 {
            ENTRIES.with_label_values(&[outcome]).inc_by(n as u64);
        }
    }
}

pub fn record_upload(outcome: &str) {
    UPLOADS.with_label_values(&[outcome]).inc();
}

/// The `batch` label of the nightly replica batch (夜間バッチ) in
/// `chukan_batch_last_success_timestamp_seconds`.
pub const REPLICA_NIGHT: &str = "replica-night";

static BATCH_LAST_SUCCESS: LazyLock<GaugeVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_gauge_vec!(
        "chukan_batch_last_success_timestamp_seconds",
        "Unix time a batch job last finished successfully (batch replica-night: the nightly \
         replica batch), as recorded in the database; 0 when it never has",
        // Not `job`: Prometheus owns that label on every scraped series.
        &["batch"]
    )
    .expect("metric registers once")
});

/// Records that `job` finished successfully at `at`. Never moves the gauge back: the record
/// read at start may arrive after a finish this process saw itself.
pub fn batch_succeeded(job: &str, at: DateTime<Utc>) {
    let gauge = BATCH_LAST_SUCCESS.with_label_values(&[job]);
    let seconds = at.timestamp_millis() as f64 / 1000.0;
    if seconds > gauge.get() {
        gauge.set(seconds);
    }
}

/// Shows `job` as never finished (0) until a finish is recorded, so the series exists for
/// the alert from the start.
pub fn batch_known(job: &str) {
    BATCH_LAST_SUCCESS.with_label_values(&[job]);
}

/// The current value of `chukan_batch_last_success_timestamp_seconds{batch}` (tests).
pub fn batch_last_success(job: &str) -> f64 {
    BATCH_LAST_SUCCESS.with_label_values(&[job]).get()
}
