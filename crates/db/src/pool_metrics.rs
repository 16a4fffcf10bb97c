//! Saturation of the connection pools, read at scrape time: `chukan_db_pool_connections`
//! (`in_use`, `idle`), `chukan_db_pool_max` and `chukan_db_pool_waiting`, each labelled with
//! the process's service (its `--target`).
//!
//! One collector in the default registry knows every observed pool by a weak reference, so
//! observing a pool never keeps it (or its connections) alive; `Pool::status()` is a few
//! atomics under a short lock, cheap enough to read on every scrape.

use std::sync::{Arc, LazyLock, Mutex};

use deadpool_postgres::{Pool, WeakPool};
use prometheus::{
    GaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// Reports the state of `pool` on `/metrics` under `service` for as long as the pool lives.
/// Pools observed under the same service are summed.
pub fn observe_pool(service: &str, pool: &Pool) {
    let Some(collector) = COLLECTOR.as_ref() else {
        return;
    };
    let mut pools = collector.pools.lock().unwrap_or_else(|e| e.into_inner());
    pools.retain(|(_, weak)| weak.upgrade().is_some());
    pools.push((service.to_owned(), pool.weak()));
}

/// Registered once; `None` only if the default registry refused it (logged).
static COLLECTOR: LazyLock<Option<Arc<PoolCollector>>> = LazyLock::new(|| {
    let registered = PoolCollector::new()
        .map(Arc::new)
        .and_then(|c| prometheus::register(Box::new(Registered(c.clone()))).map(|()| c));
    match registered {
        Ok(collector) => Some(collector),
        Err(error) => {
            tracing::error!(%error, "pool metrics could not be registered");
            None
        }
    }
});

struct PoolCollector {
    pools: Mutex<Vec<(String, WeakPool)>>,
    connections: GaugeVec,
    max: GaugeVec,
    waiting: GaugeVec,
}

impl PoolCollector {
    fn new() -> prometheus::Result<PoolCollector> {
        Ok(PoolCollector {
            pools: Mutex::new(Vec::new()),
            connections: GaugeVec::new(
                Opts::new(
                    "chukan_db_pool_connections",
                    "Open connections of the database pool, by state (in_use, idle).",
                ),
                &["service", "state"],
            )?,
            max: GaugeVec::new(
                Opts::new(
                    "chukan_db_pool_max",
                    "Largest number of connections the database pool opens (database.pool_max_size).",
                ),
                &["service"],
            )?,
            waiting: GaugeVec::new(
                Opts::new(
                    "chukan_db_pool_waiting",
                    "Requests waiting for a pooled database connection now.",
                ),
                &["service"],
            )?,
        })
    }

    /// Sets the gauges from the live pools; services whose pools are gone disappear.
    fn sample(&self) {
        let mut totals: Vec<(String, deadpool_postgres::Status)> = Vec::new();
        {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.retain(|(service, weak)| {
                let Some(pool) = weak.upgrade() else {
                    return false;
                };
                let status = pool.status();
                match totals.iter_mut().find(|(s, _)| s == service) {
                    Some((_, total)) => {
                        total.max_size += status.max_size;
                        total.size += status.size;
                        total.available += status.available;
                        total.waiting += status.waiting;
                    }
                    None => totals.push((service.clone(), status)),
                }
                true
            });
        }
        self.connections.reset();
        self.max.reset();
        self.waiting.reset();
        for (service, status) in totals {
            // `available` counts idle connections; every other open one is lent out.
            let in_use = status.size.saturating_sub(status.available);
            self.connections
                .with_label_values(&[service.as_str(), "in_use"])
                .set(in_use as f64);
            self.connections
                .with_label_values(&[service.as_str(), "idle"])
                .set(status.available as f64);
            self.max
                .with_label_values(&[service.as_str()])
                .set(status.max_size as f64);
            self.waiting
                .with_label_values(&[service.as_str()])
                .set(status.waiting as f64);
        }
    }
}

/// The registry's handle on the one collector.
struct Registered(Arc<PoolCollector>);

impl Collector for Registered {
    fn desc(&self) -> Vec<&Desc> {
        let c = &self.0;
        [&c.connections, &c.max, &c.waiting]
            .into_iter()
            .flat_map(|g| g.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let c = &self.0;
        c.sample();
        [&c.connections, &c.max, &c.waiting]
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gauge `name{service=…, state=…}` as `/metrics` shows it now.
    fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        prometheus::gather()
            .into_iter()
            .find(|f| f.name() == name)?
            .get_metric()
            .iter()
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_gauge().value())
    }

    fn server_url() -> String {
        let server = std::env::var("CHUKAN_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        format!("{server}/postgres")
    }

    #[tokio::test]
    async fn a_held_connection_is_in_use_and_a_returned_one_idle() {
        let pool = crate::pool_from_url(&server_url(), 3).unwrap();
        observe_pool("pool-test", &pool);
        let service = [("service", "pool-test")];
        assert_eq!(gauge("chukan_db_pool_max", &service), Some(3.0));
        assert_eq!(gauge("chukan_db_pool_waiting", &service), Some(0.0));

        let held = pool.get().await.unwrap();
        held.simple_query("SELECT 1").await.unwrap();
        let in_use = [("service", "pool-test"), ("state", "in_use")];
        let idle = [("service", "pool-test"), ("state", "idle")];
        assert_eq!(gauge("chukan_db_pool_connections", &in_use), Some(1.0));
        assert_eq!(gauge("chukan_db_pool_connections", &idle), Some(0.0));

        drop(held);
        assert_eq!(gauge("chukan_db_pool_connections", &in_use), Some(0.0));
        assert_eq!(gauge("chukan_db_pool_connections", &idle), Some(1.0));

        // Every connection lent out: the next request waits.
        let mut lent = Vec::new();
        for _ in 0..3 {
            lent.push(pool.get().await.unwrap());
        }
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.get().await.map(drop) }
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while gauge("chukan_db_pool_waiting", &service) != Some(1.0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the waiting request was never reported"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(gauge("chukan_db_pool_connections", &in_use), Some(3.0));
        drop(lent);
        waiter.await.unwrap().unwrap();
        assert_eq!(gauge("chukan_db_pool_waiting", &service), Some(0.0));

        // A dropped pool is no longer reported.
        drop(pool);
        assert_eq!(gauge("chukan_db_pool_max", &service), None);
    }
}
