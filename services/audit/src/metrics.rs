//! The audit service's metrics. Labels are outcomes, never tenants' or residents' values.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounter, IntCounterVec, register_histogram, register_int_counter,
    register_int_counter_vec,
};

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

static BATCH: LazyLock<Histogram> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_histogram!(
        "chukan_audit_append_batch_records",
        "Records per append transaction (one tenant's share of a consumer batch)",
        vec![
            1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0
        ]
    )
    .expect("metric registers once")
});

static PURGED: LazyLock<IntCounter> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!(
        "chukan_audit_purged_records_total",
        "Records removed by the retention purge (a checkpoint keeps the log verifiable)"
    )
    .expect("metric registers once")
});

static UNTRUSTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_audit_untrusted_rows_total",
        "Rows whose searchable copy or leaf failed its check when read (tampering behind the \
         service), by reader: search, disclosable",
        &["reader"]
    )
    .expect("metric registers once")
});

/// A row that failed its check when read; alert on any increase.
pub fn untrusted_row(reader: &str) {
    UNTRUSTED.with_label_values(&[reader]).inc();
}

pub fn batch_size(records: usize) {
    BATCH.observe(records as f64);
}

pub fn purged(records: u64) {
    PURGED.inc_by(records);
}

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

/// For tests: (append transactions, records in them).
pub fn batches_observed() -> (u64, f64) {
    (BATCH.get_sample_count(), BATCH.get_sample_sum())
}
