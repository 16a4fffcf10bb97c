//! The audit service's metrics. Labels are outcomes, never tenants' or residents' values.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, register_int_counter, register_int_counter_vec};

static APPENDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_audit_appended_total",
        "Audit events consumed, by outcome: appended, duplicate-message, duplicate-record",
        &["outcome"]
    )
    .expect("metric registers once")
});

static TREE_HEADS: LazyLock<IntCounter> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!("chukan_audit_tree_heads_total", "Signed tree heads written")
        .expect("metric registers once")
});

pub fn appended(outcome: &str) {
    APPENDED.with_label_values(&[outcome]).inc();
}

pub fn tree_head() {
    TREE_HEADS.inc();
}

/// For tests: how many events ended with `outcome`.
pub fn appended_counted(outcome: &str) -> u64 {
    APPENDED.with_label_values(&[outcome]).get()
}
