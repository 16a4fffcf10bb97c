//! Relay metrics in the default Prometheus registry. Labels are outcome and reason words
//! only, never anything from a message.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

pub(crate) static SEND_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        Opts::new(
            "chukan_relay_send_total",
            "Outbound sends to the NWS by outcome (sent, duplicate, rejected, retry, malformed).",
        ),
        &["outcome"],
    ))
});

pub(crate) static SEND_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register(Histogram::with_opts(HistogramOpts::new(
        "chukan_relay_send_duration_seconds",
        "Duration of one HTTP send to the NWS, whatever its outcome.",
    )))
});

pub(crate) static INBOUND_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        Opts::new(
            "chukan_relay_inbound_refused_total",
            "Inbound NWS messages refused, by the problem code of the refusal.",
        ),
        &["reason"],
    ))
});

pub(crate) static INBOUND_ACCEPTED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(prometheus::IntCounter::new(
        "chukan_relay_inbound_accepted_total",
        "Inbound NWS messages accepted and handed to the bus.",
    ))
});

pub(crate) static HELD: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(prometheus::IntGauge::new(
        "chukan_relay_held",
        "Outbound messages held (send/receive stopped or backlog releasing), not yet released.",
    ))
});

pub(crate) static HELD_OLDEST_AGE: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    register(prometheus::Gauge::new(
        "chukan_relay_held_oldest_age_seconds",
        "Age of the oldest held outbound message not yet released (or dead); 0 when none.",
    ))
});

pub(crate) static HELD_TOTAL: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(prometheus::IntCounter::new(
        "chukan_relay_held_total",
        "Outbound messages held instead of sent at once.",
    ))
});

pub(crate) static RELEASED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(prometheus::IntCounter::new(
        "chukan_relay_released_total",
        "Held outbound messages sent to the NWS (accepted or already there).",
    ))
});

pub(crate) static HELD_DEAD: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(prometheus::IntCounter::new(
        "chukan_relay_held_dead_total",
        "Held outbound messages the NWS refused (4xx) on release: kept, marked dead.",
    ))
});

pub(crate) static READINESS_CHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        Opts::new(
            "chukan_relay_nws_readiness_checks_total",
            "NWS readiness checks before releasing held messages, by result (ready, not-ready).",
        ),
        &["result"],
    ))
});

fn register<M: prometheus::core::Collector + Clone + 'static>(metric: prometheus::Result<M>) -> M {
    // Names, help texts and labels are constants exercised by the unit test below.
    #[allow(clippy::expect_used)]
    let metric = metric.expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(metric.clone()));
    metric
}

/// The current value of `chukan_relay_send_total{outcome}` (tests, diagnostics).
pub fn sends(outcome: &str) -> u64 {
    SEND_TOTAL.with_label_values(&[outcome]).get()
}

/// The current value of `chukan_relay_inbound_refused_total{reason}`.
pub fn inbound_refused(reason: &str) -> u64 {
    INBOUND_REFUSED.with_label_values(&[reason]).get()
}

/// The current value of `chukan_relay_held` (this process's view of the backlog).
pub fn held() -> i64 {
    HELD.get()
}

/// The current value of `chukan_relay_held_oldest_age_seconds`.
pub fn held_oldest_age_seconds() -> f64 {
    HELD_OLDEST_AGE.get()
}

/// The current value of `chukan_relay_released_total`.
pub fn released() -> u64 {
    RELEASED.get()
}

/// The current value of `chukan_relay_nws_readiness_checks_total{result}`.
pub fn readiness_checks(result: &str) -> u64 {
    READINESS_CHECKS.with_label_values(&[result]).get()
}

/// The current value of `chukan_relay_held_dead_total`.
pub fn held_dead() -> u64 {
    HELD_DEAD.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_registered_in_the_default_registry() {
        SEND_TOTAL.with_label_values(&["sent"]).inc();
        SEND_DURATION.observe(0.01);
        INBOUND_REFUSED.with_label_values(&["bad-signature"]).inc();
        INBOUND_ACCEPTED.inc();
        HELD.set(0);
        HELD_OLDEST_AGE.set(0.0);
        HELD_TOTAL.inc();
        RELEASED.inc();
        HELD_DEAD.inc();
        READINESS_CHECKS.with_label_values(&["ready"]).inc();
        let names: Vec<String> = prometheus::gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        for name in [
            "chukan_relay_send_total",
            "chukan_relay_send_duration_seconds",
            "chukan_relay_inbound_refused_total",
            "chukan_relay_inbound_accepted_total",
            "chukan_relay_held",
            "chukan_relay_held_oldest_age_seconds",
            "chukan_relay_held_total",
            "chukan_relay_released_total",
            "chukan_relay_held_dead_total",
            "chukan_relay_nws_readiness_checks_total",
        ] {
            assert!(names.contains(&name.to_owned()), "{name}");
        }
        assert!(sends("sent") >= 1);
        assert!(inbound_refused("bad-signature") >= 1);
    }
}
