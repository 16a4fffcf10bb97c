//! Replication to the peer region's standby of this cell's cluster (ADR 0006): its lag as
//! metrics, and the **sync guard**, the once-per-cell worker `region.sync-guard` that owns
//! the primary's `synchronous_standby_names`.
//!
//! With `cells.synchronous_standby_names` = N, the guard sets the primary's
//! `synchronous_standby_names` to N while N streams, so an acknowledged commit is in both
//! regions. When commits have waited on N for `cells.sync_degrade_after` (or N has not
//! streamed for that long) it clears the setting — the reload releases the waiting commits;
//! backends are never cancelled — and records an **async window** in `admin.async_windows`:
//! writes acknowledged inside it may be missing from the standby. Once N streams again and
//! has replayed everything written up to the moment it was seen back, N is set again and the
//! window closed. A process on a standby (`pg_is_in_recovery()`) exports and does nothing.
//!
//! The app role needs `pg_monitor` (to see the standby's positions and others' waits),
//! `ALTER SYSTEM ON PARAMETER synchronous_standby_names` and `EXECUTE ON pg_reload_conf()`;
//! `chukan migrate` grants them when its owner is a superuser.

use std::{
    collections::BTreeSet,
    sync::LazyLock,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chukan_config::CellsSettings;
use deadpool_postgres::tokio_postgres::{self, GenericClient, types::PgLsn};
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use crate::{Context, StopStage, Worker, periodic_worker};

/// The lease (and worker) name of the guard.
pub const WORK: &str = "region.sync-guard";

/// Longest one sample (a few catalogue reads, perhaps an ALTER SYSTEM and a window row) may
/// take before it counts as failed; the next tick tries again.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

/// The shortest sampling period, whatever `cells.replication_sample_ms` says.
const MIN_SAMPLE: Duration = Duration::from_millis(100);

/// The guard, once per cell, stopped last: commits of the outbox's drain may still wait on
/// the standby and must be released like any other.
pub fn start(ctx: &Context) -> Worker {
    let (db, cells) = (ctx.db.clone(), ctx.settings.cells.clone());
    crate::lease::once_per_cell(ctx, WORK, StopStage::Outbox, move || {
        sync_guard(db.clone(), cells.clone())
    })
}

/// The guard itself (what runs while the lease is held): samples every
/// `cells.replication_sample` and acts on what it sees. Its series are withdrawn when it
/// stops, so only the lease holder exports them.
pub fn sync_guard(db: chukan_db::Pool, cells: CellsSettings) -> Worker {
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let _withdrawn_on_end = Exported;
        let mut guard = Guard::new(
            cells.synchronous_standby_names.trim(),
            cells.sync_degrade_after,
        );
        // A zero period would panic the interval (the setting is not range-checked).
        let mut tick = tokio::time::interval(cells.replication_sample.max(MIN_SAMPLE));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A connection of the guard's own, taken out of the pool: when the standby is gone,
        // every pooled connection may be a commit waiting on it, and the guard that must
        // release them cannot wait for one of those.
        let mut conn: Option<deadpool_postgres::ClientWrapper> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            if conn.as_ref().is_none_or(|c| c.is_closed()) {
                conn = match db.get().await {
                    Ok(pooled) => Some(deadpool_postgres::Object::take(pooled)),
                    Err(e) => {
                        tracing::warn!(error = %e, "replication not sampled: no connection");
                        continue;
                    }
                };
            }
            let Some(client) = conn.as_mut() else {
                continue;
            };
            match tokio::time::timeout(STEP_DEADLINE, guard.step(client)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "replication not sampled")
                }
                Err(_) => {
                    // Whatever it waits on, a fresh connection starts the next sample clean.
                    conn = None;
                    tracing::warn!("replication sample did not finish in time")
                }
            }
        }
    });
    periodic_worker(WORK, StopStage::Outbox, task, stop_tx)
}

/// The label values of the unlabelled series.
const NO_LABELS: [&str; 0] = [];

/// An open async window as recorded.
#[derive(Debug, Clone, Copy)]
struct Window {
    id: i64,
    started_at: DateTime<Utc>,
}

/// One standby as `pg_stat_replication` shows it.
#[derive(Debug)]
struct Standby {
    name: String,
    streaming: bool,
    lag_seconds: f64,
    /// `None` before the standby has reported a replay position (starting, base backup).
    lag_bytes: Option<f64>,
    replay_lsn: Option<PgLsn>,
}

/// What the guard remembers between samples.
struct Guard {
    /// N; empty = asynchronous commit, nothing guarded.
    standby: String,
    degrade_after: Duration,
    /// Read from the table at the first sample of each holding (a window a previous holder
    /// opened is resumed, not opened twice).
    window: Option<Option<Window>>,
    /// When N was first seen not streaming, by this holder.
    absent_since: Option<Instant>,
    /// While a window is open and N streams: the primary's position when N was seen back,
    /// which N must have replayed before synchronous commit returns.
    catch_up_to: Option<PgLsn>,
    /// Standbys with series, to withdraw those that disconnect.
    exported: BTreeSet<String>,
}

impl Guard {
    fn new(standby: &str, degrade_after: Duration) -> Guard {
        Guard {
            standby: standby.to_owned(),
            degrade_after,
            window: None,
            absent_since: None,
            catch_up_to: None,
            exported: BTreeSet::new(),
        }
    }

    async fn step(&mut self, client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(),
                        CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END,
                        current_setting('synchronous_standby_names')",
                &[],
            )
            .await
            .context("server state")?;
        if row.get::<_, bool>(0) {
            // A standby (or a demoted old primary): its own standbys are not ours to guard.
            Exported::withdraw();
            self.exported.clear();
            return Ok(());
        }
        let current_lsn: Option<PgLsn> = row.get(1);
        let server_setting: String = row.get(2);
        let standbys = sample(client).await?;
        let window = match self.window {
            Some(window) => window,
            None => {
                let open = open_window(client).await?;
                if let Some(w) = open {
                    tracing::warn!(since = %w.started_at, "resuming an open async window");
                }
                self.window = Some(open);
                open
            }
        };
        // Exported together, with no wait in between: a scrape sees one sample whole.
        self.export(&standbys);
        self.export_window(window, &standbys);
        if self.standby.is_empty() {
            return Ok(());
        }

        let ours = standbys
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&self.standby));
        let streaming = ours.is_some_and(|s| s.streaming);
        if streaming {
            self.absent_since = None;
        } else {
            self.absent_since.get_or_insert_with(Instant::now);
        }
        let wanted = standby_names_value(&self.standby);
        match window {
            None => {
                let waited = oldest_sync_wait(client).await?;
                let absent_too_long = self
                    .absent_since
                    .is_some_and(|since| since.elapsed() >= self.degrade_after);
                let reason = if waited.is_some_and(|w| w >= self.degrade_after) {
                    Some("commits-waiting")
                } else if absent_too_long {
                    Some("standby-absent")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    // Cleared first: the reload releases the waiting commits, and the
                    // window's own commit then cannot wait on the missing standby either.
                    set_standby_names(client, "").await?;
                    let opened = record_window(client, &self.standby, reason).await?;
                    tracing::warn!(
                        standby = %self.standby,
                        reason,
                        since = %opened.started_at,
                        "synchronous commit suspended: acknowledged writes from now on may be \
                         missing from the other region until the standby is back"
                    );
                    self.window = Some(Some(opened));
                    self.catch_up_to = None;
                    self.export_window(Some(opened), &standbys);
                } else if streaming && server_setting != wanted {
                    set_standby_names(client, &wanted).await?;
                    tracing::info!(standby = %self.standby, "synchronous commit set");
                }
            }
            Some(open) => {
                if !server_setting.is_empty() {
                    // Resumed from a holder that recorded the window but (or then someone)
                    // left the setting: commits would wait on a standby known to be away.
                    set_standby_names(client, "").await?;
                }
                let Some(ours) = ours.filter(|s| s.streaming) else {
                    self.catch_up_to = None;
                    return Ok(());
                };
                let target = *self
                    .catch_up_to
                    .get_or_insert(current_lsn.unwrap_or(PgLsn::from(0)));
                let caught_up = ours.lag_bytes == Some(0.0)
                    || ours.replay_lsn.is_some_and(|replayed| replayed >= target);
                if caught_up {
                    set_standby_names(client, &wanted).await?;
                    close_window(client, open.id).await?;
                    tracing::info!(
                        standby = %self.standby,
                        since = %open.started_at,
                        "synchronous commit restored: the standby is back and caught up"
                    );
                    self.window = Some(None);
                    self.catch_up_to = None;
                    self.export_window(None, &standbys);
                }
            }
        }
        Ok(())
    }

    fn export(&mut self, standbys: &[Standby]) {
        let mut now = BTreeSet::new();
        for s in standbys {
            let label = [s.name.as_str()];
            STREAMING
                .with_label_values(&label)
                .set(i64::from(s.streaming));
            match s.lag_bytes {
                Some(bytes) => {
                    LAG_SECONDS.with_label_values(&label).set(s.lag_seconds);
                    LAG_BYTES.with_label_values(&label).set(bytes);
                }
                None => {
                    let _ = LAG_SECONDS.remove_label_values(&label);
                    let _ = LAG_BYTES.remove_label_values(&label);
                }
            }
            now.insert(s.name.clone());
        }
        // The synchronous standby's absence is a series of its own (0), for the alert.
        let configured = !self.standby.is_empty();
        if configured
            && !standbys
                .iter()
                .any(|s| s.name.eq_ignore_ascii_case(&self.standby))
        {
            STREAMING.with_label_values(&[self.standby.as_str()]).set(0);
            now.insert(self.standby.clone());
        }
        for gone in self.exported.difference(&now) {
            let label = [gone.as_str()];
            let _ = STREAMING.remove_label_values(&label);
            let _ = LAG_SECONDS.remove_label_values(&label);
            let _ = LAG_BYTES.remove_label_values(&label);
        }
        self.exported = now;
    }

    fn export_window(&self, window: Option<Window>, standbys: &[Standby]) {
        SYNC_DEGRADED
            .with_label_values(&NO_LABELS)
            .set(i64::from(window.is_some()));
        // One region and nothing configured: the window's start would be noise.
        if self.standby.is_empty() && standbys.is_empty() && window.is_none() {
            let _ = WINDOW_STARTED.remove_label_values(&NO_LABELS);
            return;
        }
        WINDOW_STARTED
            .with_label_values(&NO_LABELS)
            .set(window.map_or(0.0, |w| w.started_at.timestamp_millis() as f64 / 1000.0));
    }
}

/// The value of `synchronous_standby_names` naming one standby: double-quoted, so any
/// application_name (hyphens, capitals) is one name, not list syntax.
fn standby_names_value(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (ALTER SYSTEM takes no bind parameters).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Sets the primary's `synchronous_standby_names` and reloads the configuration. Each is a
/// statement of its own: ALTER SYSTEM cannot run in a transaction block.
async fn set_standby_names(client: &tokio_postgres::Client, value: &str) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = {}",
            quote_literal(value)
        ))
        .await
        .context(
            "ALTER SYSTEM SET synchronous_standby_names (the app role needs \
             GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names; run `chukan migrate` \
             as a superuser or grant it)",
        )?;
    client
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .context(
            "pg_reload_conf() (the app role needs GRANT EXECUTE ON FUNCTION pg_reload_conf())",
        )?;
    Ok(())
}

/// Standbys connected to this primary, one row per application_name (the streaming one, if a
/// reconnecting standby briefly shows twice).
async fn sample(client: &impl GenericClient) -> anyhow::Result<Vec<Standby>> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (application_name)
                    application_name, state = 'streaming',
                    COALESCE(EXTRACT(epoch FROM replay_lag)::float8, 0),
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8,
                    replay_lsn
             FROM pg_stat_replication
             ORDER BY application_name, (state = 'streaming') DESC NULLS LAST,
                      replay_lsn DESC NULLS LAST",
            &[],
        )
        .await
        .context("pg_stat_replication")?;
    let standbys: Vec<Standby> = rows
        .iter()
        .map(|r| Standby {
            name: r.get(0),
            streaming: r.get::<_, Option<bool>>(1).unwrap_or(false),
            lag_seconds: r.get(2),
            lag_bytes: r.get::<_, Option<f64>>(3).map(|b| b.max(0.0)),
            replay_lsn: r.get(4),
        })
        .collect();
    if !standbys.is_empty() && rows.iter().all(|r| r.get::<_, Option<bool>>(1).is_none()) {
        // Unprivileged roles see the rows but not their state.
        tracing::warn!(
            "pg_stat_replication hides the standbys' state from the app role: GRANT pg_monitor \
             to it (`chukan migrate` as a superuser does)"
        );
    }
    Ok(standbys)
}

/// How long the oldest commit now waiting on the synchronous standby has been active.
async fn oldest_sync_wait(client: &impl GenericClient) -> anyhow::Result<Option<Duration>> {
    let row = client
        .query_one(
            "SELECT EXTRACT(epoch FROM max(now() - state_change))::float8
             FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
            &[],
        )
        .await
        .context("pg_stat_activity")?;
    Ok(row
        .get::<_, Option<f64>>(0)
        .map(|secs| Duration::from_secs_f64(secs.max(0.0))))
}

async fn open_window(client: &impl GenericClient) -> anyhow::Result<Option<Window>> {
    let row = client
        .query_opt(
            "SELECT id, started_at FROM admin.async_windows WHERE ended_at IS NULL",
            &[],
        )
        .await
        .context("reading the open async window")?;
    Ok(row.map(|r| Window {
        id: r.get(0),
        started_at: r.get(1),
    }))
}

/// Opens a window (or finds the one open). `synchronous_commit = local`: recording that the
/// standby is away must never wait on the standby.
async fn record_window(
    client: &mut tokio_postgres::Client,
    standby: &str,
    reason: &str,
) -> anyhow::Result<Window> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = local")
        .await?;
    tx.execute(
        "INSERT INTO admin.async_windows (standby, reason) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
        &[&standby, &reason],
    )
    .await
    .context("recording the async window")?;
    let window = open_window(&tx).await?;
    tx.commit().await?;
    window.context("the async window just recorded is not open")
}

async fn close_window(client: &mut tokio_postgres::Client, id: i64) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = local")
        .await?;
    tx.execute(
        "UPDATE admin.async_windows SET ended_at = now() WHERE id = $1 AND ended_at IS NULL",
        &[&id],
    )
    .await
    .context("closing the async window")?;
    tx.commit().await?;
    Ok(())
}

/// Withdraws every series of the guard when dropped (the guard's task ending or aborted), so
/// that a process no longer holding the lease exports nothing stale.
struct Exported;

impl Exported {
    fn withdraw() {
        STREAMING.reset();
        LAG_SECONDS.reset();
        LAG_BYTES.reset();
        SYNC_DEGRADED.reset();
        WINDOW_STARTED.reset();
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        Exported::withdraw();
    }
}

// The series are vectors, the unlabelled ones too, so that they can be withdrawn: a process
// on a standby, or one not holding the lease, exports none of them.

static LAG_SECONDS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "chukan_replication_lag_seconds",
        "How far the standby's replay is behind this primary, in seconds (replay_lag; 0 when caught up)",
        &["standby"],
    )
});

static LAG_BYTES: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "chukan_replication_lag_bytes",
        "WAL bytes this primary has written that the standby has not replayed",
        &["standby"],
    )
});

static STREAMING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "chukan_replication_standby_streaming",
        "1 while the standby streams from this primary, else 0 (the synchronous standby shows 0 when absent)",
        &["standby"],
    )
});

static SYNC_DEGRADED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "chukan_replication_sync_degraded",
        "1 while an async window is open (commits do not wait for the other region), else 0",
        &[],
    )
});

static WINDOW_STARTED: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "chukan_replication_async_window_started_timestamp_seconds",
        "When the open async window started (Unix time), 0 when none is open",
        &[],
    )
});

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    // Constant names and labels: this cannot fail.
    #[allow(clippy::expect_used)]
    let vec = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(vec.clone()));
    vec
}

fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    // Constant names and labels: this cannot fail.
    #[allow(clippy::expect_used)]
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    let _ = prometheus::default_registry().register(Box::new(vec.clone()));
    vec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_name_is_one_quoted_name_in_a_safe_literal() {
        assert_eq!(standby_names_value("west-standby"), "\"west-standby\"");
        assert_eq!(
            quote_literal(&standby_names_value("a'b\"c")),
            "'\"a''b\"\"c\"'"
        );
    }

    #[test]
    fn unlabelled_series_can_be_withdrawn() {
        SYNC_DEGRADED.with_label_values(&NO_LABELS).set(1);
        let exported = |name: &str| {
            prometheus::gather()
                .iter()
                .any(|f| f.name() == name && !f.get_metric().is_empty())
        };
        assert!(exported("chukan_replication_sync_degraded"));
        Exported::withdraw();
        assert!(!exported("chukan_replication_sync_degraded"));
    }
}
