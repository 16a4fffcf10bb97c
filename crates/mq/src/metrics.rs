//! Consumer metrics and backlog gauges in the default Prometheus registry. Labels are queue
//! names, schema names and outcome words only, never anything from a message.
//!
//! The backlog gauges are refreshed every `amqp.backlog_sample_ms`, not per scrape: queue
//! depths by each consumer (its queue and `.dead` queue), outbox and inbox sizes by each
//! outbox relay (see [`crate::outbox::sample`]).

use std::sync::LazyLock;

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};

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

pub(crate) static OUTBOX_BACKLOG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(IntGaugeVec::new(
        Opts::new(
            "chukan_outbox_backlog",
            "Rows waiting in the schema's outbox (committed, not yet confirmed by the broker).",
        ),
        &["schema"],
    ))
});

pub(crate) static OUTBOX_OLDEST_AGE: LazyLock<GaugeVec> = LazyLock::new(|| {
    register(GaugeVec::new(
        Opts::new(
            "chukan_outbox_oldest_age_seconds",
            "Age of the oldest row waiting in the schema's outbox; 0 when it is empty.",
        ),
        &["schema"],
    ))
});

pub(crate) static INBOX_ROWS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(IntGaugeVec::new(
        Opts::new(
            "chukan_inbox_rows",
            "Rows in the schema's inbox (message ids its consumers applied); the planner's \
             estimate once the table has statistics, a count before.",
        ),
        &["schema"],
    ))
});

pub(crate) static OUTBOX_SENT_ROWS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(IntGaugeVec::new(
        Opts::new(
            "chukan_outbox_sent_rows",
            "Published rows the schema keeps in outbox_sent for a replay after a failover \
             (amqp.outbox_replay_window_secs); 0 without a window.",
        ),
        &["schema"],
    ))
});

pub(crate) static QUEUE_MESSAGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(IntGaugeVec::new(
        Opts::new(
            "chukan_mq_queue_messages",
            "Messages ready in a work queue this process consumes (not yet delivered).",
        ),
        &["queue"],
    ))
});

pub(crate) static DEAD_LETTER_MESSAGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(IntGaugeVec::new(
        Opts::new(
            "chukan_mq_dead_letter_messages",
            "Messages in the dead-letter queue of a work queue this process consumes; any \
             needs an operator.",
        ),
        &["queue"],
    ))
});

/// The last sampled number of messages ready in the work queue `queue` (unqualified name,
/// as labelled); 0 before its first sample or when this process does not consume it.
pub fn queue_ready(queue: &str) -> i64 {
    QUEUE_MESSAGES
        .get_metric_with_label_values(&[queue])
        .map(|g| g.get())
        .unwrap_or(0)
}

fn register<M: prometheus::core::Collector + Clone + 'static>(metric: prometheus::Result<M>) -> M {
    // The names and labels are constants checked by the unit test below, so this cannot fail.
    #[allow(clippy::expect_used)]
    let metric = metric.expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(metric.clone()));
    metric
}

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

/// The current value of `chukan_outbox_backlog{schema}`.
pub fn outbox_backlog(schema: &str) -> i64 {
    OUTBOX_BACKLOG.with_label_values(&[schema]).get()
}

/// The current value of `chukan_outbox_oldest_age_seconds{schema}`.
pub fn outbox_oldest_age_seconds(schema: &str) -> f64 {
    OUTBOX_OLDEST_AGE.with_label_values(&[schema]).get()
}

/// The current value of `chukan_inbox_rows{schema}`.
pub fn inbox_rows(schema: &str) -> i64 {
    INBOX_ROWS.with_label_values(&[schema]).get()
}

/// The current value of `chukan_outbox_sent_rows{schema}`.
pub fn outbox_sent_rows(schema: &str) -> i64 {
    OUTBOX_SENT_ROWS.with_label_values(&[schema]).get()
}

/// The current value of `chukan_mq_queue_messages{queue}` (`queue` unqualified: `code.nws-in`).
pub fn queue_messages(queue: &str) -> i64 {
    QUEUE_MESSAGES.with_label_values(&[queue]).get()
}

/// The current value of `chukan_mq_dead_letter_messages{queue}` (the work queue's name).
pub fn dead_letter_messages(queue: &str) -> i64 {
    DEAD_LETTER_MESSAGES.with_label_values(&[queue]).get()
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

    #[test]
    fn backlog_gauges_are_registered_with_help_and_no_total_suffix() {
        OUTBOX_BACKLOG.with_label_values(&["s"]).set(2);
        OUTBOX_OLDEST_AGE.with_label_values(&["s"]).set(1.5);
        INBOX_ROWS.with_label_values(&["s"]).set(3);
        OUTBOX_SENT_ROWS.with_label_values(&["s"]).set(6);
        QUEUE_MESSAGES.with_label_values(&["q"]).set(4);
        DEAD_LETTER_MESSAGES.with_label_values(&["q"]).set(5);
        let families = prometheus::gather();
        for name in [
            "chukan_outbox_backlog",
            "chukan_outbox_oldest_age_seconds",
            "chukan_inbox_rows",
            "chukan_outbox_sent_rows",
            "chukan_mq_queue_messages",
            "chukan_mq_dead_letter_messages",
        ] {
            let family = families.iter().find(|f| f.name() == name);
            let family = family.unwrap_or_else(|| panic!("{name} not registered"));
            assert_eq!(
                family.get_field_type(),
                prometheus::proto::MetricType::GAUGE
            );
            assert!(!family.help().is_empty(), "{name} has no HELP");
        }
        assert_eq!(outbox_backlog("s"), 2);
        assert_eq!(outbox_oldest_age_seconds("s"), 1.5);
        assert_eq!(inbox_rows("s"), 3);
        assert_eq!(outbox_sent_rows("s"), 6);
        assert_eq!(queue_messages("q"), 4);
        assert_eq!(dead_letter_messages("q"), 5);
    }
}
