//! Replica statistics snapshots (副本統計): the current counts of every organisation copied
//! under a snapshot date, by the calendar rule ([`crate::calendar`]) at `stats.snapshot_at`
//! Japan time, or on demand. A run records its start and end; a run cut short (a restart,
//! a database failure) is taken again, each organisation's copy replacing the earlier one.

use chrono::NaiveDate;
use chukan_runtime::{StopStage, Worker};
use tokio::sync::watch;

use crate::{StatsState, calendar, calendar::SnapshotReason, metrics, store};

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub date: NaiveDate,
    pub reason: SnapshotReason,
    pub tenants: i32,
    pub rows: u64,
}

/// Takes the snapshot of `date` for every organisation that has reported counts. Each
/// organisation's copy is one transaction behind its own tenant wall.
pub async fn take(
    state: &StatsState,
    date: NaiveDate,
    reason: SnapshotReason,
) -> anyhow::Result<Taken> {
    let mut client = state.db.get().await?;
    store::begin_run(&client, date, reason, state.clock.now()).await?;
    let tenants = store::tenants(&client).await?;
    let mut rows = 0;
    for tenant in &tenants {
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        rows += store::copy_counts(&tx, tenant, date).await?;
        tx.commit().await?;
    }
    let count = i32::try_from(tenants.len()).unwrap_or(i32::MAX);
    store::finish_run(&client, date, count, state.clock.now()).await?;
    metrics::snapshot(reason.as_str());
    tracing::info!(%date, reason = reason.as_str(), tenants = count, rows, "replica statistics snapshot taken");
    Ok(Taken {
        date,
        reason,
        tenants: count,
        rows,
    })
}

/// Takes today's scheduled snapshot when it is due and not yet finished; returns it if taken.
pub async fn take_if_due(state: &StatsState) -> anyhow::Result<Option<Taken>> {
    let now = state.clock.now().with_timezone(&chrono_tz::Asia::Tokyo);
    let today = now.date_naive();
    let Some(reason) = calendar::scheduled(today, &state.settings.migration_windows) else {
        return Ok(None);
    };
    if now.time() < state.settings.snapshot_at {
        return Ok(None);
    }
    let run = {
        let client = state.db.get().await?;
        store::snapshot_run(&client, today).await?
    };
    if run.is_some_and(|r| r.finished_at.is_some()) {
        return Ok(None);
    }
    take(state, today, reason).await.map(Some)
}

/// The scheduler: looks every `stats.scheduler_poll_secs` whether a snapshot is due.
pub fn start(state: StatsState) -> Worker {
    let (stop_tx, mut stop) = watch::channel(false);
    let poll = state.settings.scheduler_poll;
    let task = tokio::spawn(async move {
        // The first look one poll after start: a process that starts is not itself a reason
        // to take a snapshot that minute.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    if let Err(e) = take_if_due(&state).await {
                        // Taken again at the next tick: the run is not finished.
                        tracing::warn!(error = %format!("{e:#}"), "replica statistics snapshot failed");
                    }
                }
            }
        }
    });
    chukan_runtime::periodic_worker("stats.snapshots", StopStage::Intake, task, stop_tx)
}
