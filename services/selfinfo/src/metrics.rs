//! The self-information service's metrics. Labels are outcomes, never personal values.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, register_int_counter_vec};

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_selfinfo_requests_total",
        "Self-information requests from the NWS, by outcome (received, duplicate)",
        &["outcome"]
    )
    .expect("metric registers once")
});

static ANSWERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_selfinfo_answers_total",
        "Self-information answers sent, by status and reason code (answered, or the refusal's)",
        &["status", "reason_code"]
    )
    .expect("metric registers once")
});

static DEFERRED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_selfinfo_deferred_total",
        "Answer rounds put off because provision or audit could not be asked, by whom and why",
        &["target", "reason"]
    )
    .expect("metric registers once")
});

pub fn request(outcome: &str) {
    REQUESTS.with_label_values(&[outcome]).inc();
}

pub fn answer(status: &str, reason_code: &str) {
    ANSWERS.with_label_values(&[status, reason_code]).inc();
}

pub fn deferred(target: &str, reason: &str) {
    DEFERRED.with_label_values(&[target, reason]).inc();
}

/// For tests: rounds put off for `target` and `reason`.
pub fn deferred_count(target: &str, reason: &str) -> u64 {
    DEFERRED.with_label_values(&[target, reason]).get()
}

/// For tests: requests counted with `outcome`.
pub fn requests_counted(outcome: &str) -> u64 {
    REQUESTS.with_label_values(&[outcome]).get()
}
