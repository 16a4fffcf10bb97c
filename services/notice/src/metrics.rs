//! The notice service's metrics. Labels are outcomes and states, never personal values.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, register_int_counter_vec};

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_notice_requests_total",
        "Notices entered, by outcome: accepted, scheduled or the refusal's code",
        &["outcome"]
    )
    .expect("metric registers once")
});

static DISPATCHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_notice_dispatched_total",
        "Notices put into the outbox towards the NWS, by how: immediate or scheduled",
        &["how"]
    )
    .expect("metric registers once")
});

static STATUS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_notice_status_total",
        "Notice states reported by the NWS, by outcome: the new state, unchanged, unknown, duplicate",
        &["outcome"]
    )
    .expect("metric registers once")
});

static CHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_notice_status_checks_total",
        "Status checks (状況確認要求), by outcome: sent, answered or the refusal's code",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub fn request(outcome: &str) {
    REQUESTS.with_label_values(&[outcome]).inc();
}

pub fn dispatched(how: &str) {
    DISPATCHED.with_label_values(&[how]).inc();
}

pub fn status(outcome: &str) {
    STATUS.with_label_values(&[outcome]).inc();
}

pub fn check(outcome: &str) {
    CHECKS.with_label_values(&[outcome]).inc();
}

/// For tests: how many reports ended with `outcome`.
pub fn status_counted(outcome: &str) -> u64 {
    STATUS.with_label_values(&[outcome]).get()
}
