//! Prometheus metrics of replica registration. Labels never carry tenants' data.

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounterVec, register_histogram, register_int_counter_vec};

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
