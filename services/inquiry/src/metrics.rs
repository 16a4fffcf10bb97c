//! The inquiry service's metrics. Labels are outcomes and statuses, never personal values.

use std::sync::LazyLock;

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};

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

/// Buckets of `chukan_inquiry_roundtrip_seconds`; 60 is the latency SLO's target (an automatic
/// answer within a minute), the long ones cover answers made by hand over days.
const ROUNDTRIP_BUCKETS: [f64; 11] = [
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
    2_592_000.0,
];

/// By `manual`: whether the provider's staff answered from the manual-answer queue (自動応答不可)
/// rather than automatically; and by `held`: whether the NWS link stopped (the weekday stop
/// window, the night, a planned outage) between request and result, so relay held the
/// exchange until the link reopened. The latency SLO leaves both out: neither is slowness.
static ROUNDTRIP: LazyLock<HistogramVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    let histogram = register_histogram_vec!(
        "chukan_inquiry_roundtrip_seconds",
        "From the inquiry's request time to its result being stored, by manual (true when \
         the provider answered by hand) and held (true when the NWS link stopped in between)",
        &["manual", "held"],
        ROUNDTRIP_BUCKETS.to_vec()
    )
    .expect("metric registers once");
    // Both series from the start, so rates over them exist before the first answer.
    for manual in ["false", "true"] {
        for held in ["false", "true"] {
            histogram.with_label_values(&[manual, held]);
        }
    }
    histogram
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

pub fn roundtrip(seconds: f64, manual: bool, held: bool) {
    let word = |b: bool| if b { "true" } else { "false" };
    ROUNDTRIP
        .with_label_values(&[word(manual), word(held)])
        .observe(seconds.max(0.0));
}

/// For tests: the count of a request outcome.
pub fn requests_counted(outcome: &str) -> u64 {
    REQUESTS.with_label_values(&[outcome]).get()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cumulative count of the `le` bucket of the series `manual`, `held`.
    fn bucket(manual: &str, held: &str, le: f64) -> u64 {
        let family = prometheus::gather()
            .into_iter()
            .find(|f| f.name() == "chukan_inquiry_roundtrip_seconds")
            .unwrap();
        let series = family
            .get_metric()
            .iter()
            .find(|m| {
                let has = |name: &str, value: &str| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == name && l.value() == value)
                };
                has("manual", manual) && has("held", held)
            })
            .unwrap()
            .get_histogram()
            .clone();
        series
            .get_bucket()
            .iter()
            .find(|b| b.upper_bound() == le)
            .unwrap()
            .cumulative_count()
    }

    #[test]
    fn roundtrips_are_split_by_manual_and_held_with_the_slo_bucket_at_60_seconds() {
        assert!(ROUNDTRIP_BUCKETS.contains(&60.0));
        roundtrip(12.0, false, false);
        roundtrip(7_200.0, true, false);
        roundtrip(39_600.0, false, true);
        assert_eq!(bucket("false", "false", 60.0), 1);
        assert_eq!(bucket("true", "false", 60.0), 0);
        assert_eq!(bucket("true", "false", 86_400.0), 1);
        assert_eq!(bucket("false", "false", 2_592_000.0), 1);
        assert_eq!(bucket("false", "true", 60.0), 0);
        assert_eq!(bucket("false", "true", 86_400.0), 1);
    }
}
