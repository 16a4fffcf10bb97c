//! "Is this organisation (情報保有機関) mine?" (ADR 0006, Homes): a cell's `admin.tenants`
//! holds exactly the organisations homed in it, so the answer is whether the org code is a
//! row there.
//!
//! The codes are kept in memory and re-read every `cells.homed_refresh_ms`. A code missing
//! from the cache is looked up in the database at once before it counts as foreign, so a
//! tenant created a moment ago is never sent to the peer cell. The set is read on demand (by
//! the first caller after it went stale), so a process that never asks never queries.

use std::{
    collections::HashSet,
    sync::RwLock,
    time::{Duration, Instant},
};

use anyhow::Context as _;

/// The organisations homed in this cell, cached (see the module comment).
pub struct HomedTenants {
    pool: chukan_db::Pool,
    refresh: Duration,
    cache: RwLock<Cached>,
    /// One re-read at a time; the others go on with the set as it was.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cached {
    codes: HashSet<String>,
    /// When the set was last read (or last tried); None before the first read.
    read_at: Option<Instant>,
}

impl HomedTenants {
    /// Reads `admin.tenants` through `pool` (the app role may SELECT it; it has no
    /// row-level security), re-reading the whole set every `refresh`.
    pub fn new(pool: chukan_db::Pool, refresh: Duration) -> HomedTenants {
        HomedTenants {
            pool,
            refresh,
            cache: RwLock::new(Cached::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether `org` is homed in this cell. When the database cannot say, the answer is yes:
    /// a request is then served (or refused) here rather than sent away on a guess; the
    /// failure is logged.
    pub async fn is_homed(&self, org: &str) -> bool {
        match self.homed(org).await {
            Ok(homed) => homed,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "homed organisations not readable: served here");
                true
            }
        }
    }

    /// As [`HomedTenants::is_homed`], with the database's failure given to the caller.
    pub async fn homed(&self, org: &str) -> anyhow::Result<bool> {
        self.refresh_if_stale().await;
        if self.cached(org) {
            return Ok(true);
        }
        let client = self.pool.get().await.context("pool")?;
        let found = client
            .query_opt(
                &client
                    .prepare_cached("SELECT 1 FROM admin.tenants WHERE org_code = $1")
                    .await
                    .context("looking up an organisation")?,
                &[&org],
            )
            .await
            .context("looking up an organisation")?
            .is_some();
        if found {
            self.write().codes.insert(org.to_owned());
        }
        Ok(found)
    }

    fn cached(&self, org: &str) -> bool {
        self.cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .codes
            .contains(org)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cached> {
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_stale(&self) -> bool {
        let cache = self
            .cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.read_at.is_none_or(|at| at.elapsed() >= self.refresh)
    }

    /// Re-reads the whole set when it is older than `refresh`. A failed read keeps the old
    /// set and is not tried again before the next interval (misses are still looked up).
    async fn refresh_if_stale(&self) {
        if !self.is_stale() {
            return;
        }
        let Ok(_one) = self.refreshing.try_lock() else {
            return;
        };
        if !self.is_stale() {
            return;
        }
        match self.read_all().await {
            Ok(codes) => {
                let mut cache = self.write();
                cache.codes = codes;
                cache.read_at = Some(Instant::now());
            }
            Err(e) => {
                self.write().read_at = Some(Instant::now());
                tracing::warn!(error = %format!("{e:#}"), "homed organisations not re-read");
            }
        }
    }

    async fn read_all(&self) -> anyhow::Result<HashSet<String>> {
        let client = self.pool.get().await.context("pool")?;
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT org_code FROM admin.tenants")
                    .await
                    .context("reading the homed organisations")?,
                &[],
            )
            .await
            .context("reading the homed organisations")?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_that_does_not_answer_keeps_requests_here() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = chukan_db::pool_from_url(&format!("postgres://nobody@127.0.0.1:{port}/none"), 1)
            .unwrap();
        let homed = HomedTenants::new(pool, Duration::from_secs(5));
        assert!(homed.homed("1310010000000001").await.is_err());
        assert!(homed.is_homed("1310010000000001").await);
    }
}
