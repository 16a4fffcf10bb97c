//! Prometheus metrics of replica registration. Labels never carry tenants' data.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, register_int_counter_vec};

use crate::store::Applied;

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
