//! chukan's own counters, read from its operations listener (`/metrics`): when a window's
//! exchanges have all completed, and how many broker deliveries they took. Reading counters
//! costs chukan a metrics render and no database work, so waiting on them does not add to the
//! commits and CPU being measured (polling each request's status would).

use std::time::{Duration, Instant};

/// Deliveries chukan's consumers took from RabbitMQ: work queues and request/reply servers.
const DELIVERIES: [&str; 2] = ["chukan_mq_consumed_total", "chukan_mq_rpc_served_total"];

pub async fn scrape(http: &reqwest::Client, ops: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{ops}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The sum of metric `name` over its label sets, leaving out series whose labels contain any
/// of `except` (e.g. `outcome="duplicate"`).
pub fn metric_sum(text: &str, name: &str, except: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| !except.iter().any(|e| l.contains(e)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Deliveries chukan's consumers have taken so far (all outcomes).
pub fn deliveries(text: &str) -> f64 {
    DELIVERIES.iter().map(|m| metric_sum(text, m, &[])).sum()
}

/// Closes a run's drain: waits until counter `name` (less `except`) reaches `target`, then
/// until the events that follow have been handled ([`wait_until_quiet`]). False when the
/// counter had not reached `target` by the deadline.
pub async fn drained(
    http: &reqwest::Client,
    ops: &str,
    name: &str,
    except: &[&str],
    target: f64,
    deadline: Instant,
) -> anyhow::Result<bool> {
    let reached = wait_for_counter(http, ops, name, except, target, deadline).await?;
    wait_until_quiet(http, ops, deadline).await?;
    Ok(reached)
}

/// Waits until counter `name` (less `except`) is at least `target`; false at the deadline.
async fn wait_for_counter(
    http: &reqwest::Client,
    ops: &str,
    name: &str,
    except: &[&str],
    target: f64,
    deadline: Instant,
) -> anyhow::Result<bool> {
    loop {
        if metric_sum(&scrape(http, ops).await?, name, except) >= target {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until chukan's consumers have taken no delivery for three reads in a row, 250 ms
/// apart: the events that follow a result (code.linked to inquiry and provision, statistics)
/// have been handled. Gives up quietly at the deadline.
async fn wait_until_quiet(
    http: &reqwest::Client,
    ops: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut last = deliveries(&scrape(http, ops).await?);
    let mut unchanged = 0;
    while unchanged < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = deliveries(&scrape(http, ops).await?);
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP chukan_mq_consumed_total Deliveries handled
# TYPE chukan_mq_consumed_total counter
chukan_mq_consumed_total{outcome=\"ok\",queue=\"a\"} 10
chukan_mq_consumed_total{outcome=\"retried\",queue=\"a\"} 2
chukan_mq_consumed_total_other 100
chukan_mq_rpc_served_total{outcome=\"ok\",queue=\"r\"} 3
chukan_code_acquisition_results_total{outcome=\"done\"} 7
chukan_code_acquisition_results_total{outcome=\"duplicate\"} 1
plain 5
";

    #[test]
    fn sums_label_sets_of_exactly_that_name() {
        assert_eq!(metric_sum(TEXT, "chukan_mq_consumed_total", &[]), 12.0);
        assert_eq!(metric_sum(TEXT, "plain", &[]), 5.0);
        assert_eq!(deliveries(TEXT), 15.0);
    }

    #[test]
    fn leaves_out_the_excepted_series() {
        let name = "chukan_code_acquisition_results_total";
        assert_eq!(metric_sum(TEXT, name, &[]), 8.0);
        assert_eq!(metric_sum(TEXT, name, &["\"duplicate\""]), 7.0);
    }
}
