//! Consumer metrics in the default Prometheus registry. Labels are queue names and outcome
//! words only, never anything from a message.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};

pub(crate) static CONSUMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chukan_mq_consumed_total",
        "Deliveries handled, by queue and outcome (ok, retried, dead_lettered, rejected, requeued).",
        &["queue", "outcome"],
    )
});

pub(crate) static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chukan_mq_dead_lettered_total",
        "Deliveries sent to the dead-letter queue; any rise needs an operator.",
        &["queue"],
    )
});

pub(crate) static HANDLER_PANICS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chukan_mq_handler_panics_total",
        "Handlers that panicked (a defect); their deliveries were retried, then dead-lettered.",
        &["queue"],
    )
});

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    // The names and labels are constants checked by the unit test below, so this cannot fail.
    #[allow(clippy::expect_used)]
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(vec.clone()));
    vec
}

/// The current value of `chukan_mq_consumed_total{queue,outcome}` (tests, diagnostics).
pub fn consumed(queue: &str, outcome: &str) -> u64 {
    CONSUMED.with_label_values(&[queue, outcome]).get()
}

/// The current value of `chukan_mq_handler_panics_total{queue}`.
pub fn handler_panics(queue: &str) -> u64 {
    HANDLER_PANICS.with_label_values(&[queue]).get()
}

/// The current value of `chukan_mq_dead_lettered_total{queue}`.
pub fn dead_lettered(queue: &str) -> u64 {
    DEAD_LETTERED.with_label_values(&[queue]).get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_registered_in_the_default_registry() {
        CONSUMED.with_label_values(&["q", "ok"]).inc();
        DEAD_LETTERED.with_label_values(&["q"]).inc();
        let names: Vec<String> = prometheus::gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        assert!(names.contains(&"chukan_mq_consumed_total".to_owned()));
        assert!(names.contains(&"chukan_mq_dead_lettered_total".to_owned()));
        assert_eq!(consumed("q", "ok"), 1);
    }
}
