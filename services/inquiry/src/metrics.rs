//! The inquiry service's metrics. Labels are outcomes and statuses, never personal values.

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounterVec, register_histogram, register_int_counter_vec};

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_inquiry_requests_total",
        "Inquiries entered (single or bulk lines) by outcome: accepted or the refusal's code",
        &["outcome"]
    )
    .expect("metric registers once")
});

static RESULTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_inquiry_results_total",
        "Results of inquiries received from the NWS, by status (duplicate, late, unknown too)",
        &["status"]
    )
    .expect("metric registers once")
});

static ROUNDTRIP: LazyLock<Histogram> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_histogram!(
        "chukan_inquiry_roundtrip_seconds",
        "From the inquiry's request time to its result being stored",
        vec![
            0.1,
            0.5,
            1.0,
            5.0,
            30.0,
            60.0,
            300.0,
            3600.0,
            86_400.0,
            604_800.0,
            2_592_000.0
        ]
    )
    .expect("metric registers once")
});

pub fn request(outcome: &str) {
    REQUESTS.with_label_values(&[outcome]).inc();
}

pub fn requests_n(outcome: &str, n: u64) {
    REQUESTS.with_label_values(&[outcome]).inc_by(n);
}

pub fn result(status: &str) {
    RESULTS.with_label_values(&[status]).inc();
}

pub fn roundtrip(seconds: f64) {
    ROUNDTRIP.observe(seconds.max(0.0));
}

/// For tests: the count of a request outcome.
pub fn requests_counted(outcome: &str) -> u64 {
    REQUESTS.with_label_values(&[outcome]).get()
}
