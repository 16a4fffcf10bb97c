//! The batch scheduler and the immediate uploads.
//!
//! - [`start`]: the nightly batch, once per Japan date at `provision.nightly_batch_at` (and
//!   again after a restart if that night's run did not finish), and the batch's health for
//!   the operating status. Once per cell: the binary runs it under a lease (ADR 0005), so
//!   with several provision replicas one of them does it.
//! - [`uploads`]: uploads of organisations set for immediate processing, applied as the API
//!   of *this* process accepts them (the trigger is an in-process channel). Every replica
//!   runs it: the upload is already stored when the trigger is sent, and one tenant's
//!   uploads are applied under that tenant's advisory lock whichever process applies them.

use std::{collections::BTreeSet, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Asia::Tokyo;
use chukan_runtime::{StopStage, Worker, lease::SessionLock};
use tokio::sync::{mpsc, watch};

use crate::{
    ProvisionState, metrics,
    replica::apply::RunInfo,
    replica::batch_health,
    replica::jobs::{self, Job},
    store,
};

/// The nightly scheduler as a worker (see the module documentation).
pub fn start(state: ProvisionState, poll: Duration) -> Worker {
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(state, poll, stop_rx));
    // The batch is intake of a kind: stop it early. Work in flight is cut at a chunk
    // boundary or rolled back, and resumed after the restart (or by the next lease holder).
    chukan_runtime::periodic_worker("provision.batch", StopStage::Intake, task, stop_tx)
}

async fn run(
    state: ProvisionState,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The last successful night as recorded, so a restart does not reset the gauge.
    if let Err(e) = restore_last_success(&state).await {
        tracing::warn!(error = %format!("{e:#}"), "reading the last nightly batch run failed");
    }
    let mut tick = tokio::time::interval(poll);
    // The batch's health as last announced for the operating status (None: not yet).
    let mut announced: Option<bool> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tick.tick() => {
                if let Err(e) = nightly_if_due(&state).await {
                    tracing::error!(error = %format!("{e:#}"), "nightly batch failed");
                }
                match batch_health::healthy(&state, state.clock.now()).await {
                    Ok(Some(ok)) if announced != Some(ok) => {
                        match batch_health::announce(&state, ok).await {
                            Ok(()) => announced = Some(ok),
                            Err(e) => tracing::warn!(error = %format!("{e:#}"), "batch health not announced"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "batch health not checked"),
                }
            }
        }
    }
}

/// The immediate uploads as a worker (see the module documentation).
pub fn uploads(state: ProvisionState, immediate: mpsc::UnboundedReceiver<String>) -> Worker {
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(apply_immediate(state, immediate, stop_rx));
    // Each chunk of an upload is its own transaction: stopping loses nothing, and what was
    // cut is resumed at the next start (below) or by the night's batch.
    chukan_runtime::periodic_worker("provision.uploads", StopStage::Intake, task, stop_tx)
}

async fn apply_immediate(
    state: ProvisionState,
    mut immediate: mpsc::UnboundedReceiver<String>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // After a restart: finish what immediate organisations had in flight. Every replica
    // does this as it starts; the tenant lock makes the later ones find nothing left.
    if let Err(e) = resume_immediate(&state).await {
        tracing::warn!(error = %format!("{e:#}"), "resuming immediate uploads failed");
    }
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            Some(tenant) = immediate.recv() => {
                // Coalesce a burst of triggers into one run per tenant.
                let mut tenants = BTreeSet::from([tenant]);
                while let Ok(t) = immediate.try_recv() {
                    tenants.insert(t);
                }
                let run = RunInfo::new("replica-uploads", state.clock.now());
                for t in tenants {
                    if let Err(e) = state.applier.run_tenant(&run, &t, None).await {
                        tracing::error!(tenant = %t, error = %format!("{e:#}"), "immediate upload processing failed");
                    }
                }
            }
        }
    }
}

async fn resume_immediate(state: &ProvisionState) -> anyhow::Result<()> {
    let orgs = {
        let client = state.db.get().await?;
        store::all_orgs(&client).await?
    };
    let run = RunInfo::new("replica-uploads", state.clock.now());
    for org in orgs.iter().filter(|o| o.immediate) {
        state.applier.run_tenant(&run, &org.org_code, None).await?;
    }
    Ok(())
}

/// Sets `chukan_batch_last_success_timestamp_seconds{batch="replica-night"}` from the newest
/// finished run in `provision.job_runs` (whichever process ran it).
pub async fn restore_last_success(state: &ProvisionState) -> anyhow::Result<()> {
    metrics::batch_known(metrics::REPLICA_NIGHT);
    let client = state.db.get().await?;
    let last: Option<DateTime<Utc>> = client
        .query_one(
            "SELECT max(finished_at) FROM provision.job_runs WHERE job = 'nightly'",
            &[],
        )
        .await?
        .try_get(0)?;
    if let Some(at) = last {
        metrics::batch_succeeded(metrics::REPLICA_NIGHT, at);
    }
    Ok(())
}

/// Whether the nightly batch of the Japan date of `now` is due.
pub fn nightly_due(state: &ProvisionState, now: DateTime<Utc>) -> bool {
    now.with_timezone(&Tokyo).time() >= state.nightly_at
}

/// Runs tonight's batch if it is time and it has not finished yet. Only one process runs it:
/// the run is claimed under an advisory lock held for its whole length.
pub async fn nightly_if_due(state: &ProvisionState) -> anyhow::Result<bool> {
    let now = state.clock.now();
    if !nightly_due(state, now) {
        return Ok(false);
    }
    let day = now.with_timezone(&Tokyo).date_naive();
    let finished: Option<Option<DateTime<Utc>>> = {
        let client = state.db.get().await?;
        client
            .query_opt(
                "SELECT finished_at FROM provision.job_runs WHERE job = 'nightly' AND day = $1",
                &[&day],
            )
            .await?
            .map(|r| r.get(0))
    };
    if let Some(Some(at)) = finished {
        // Perhaps finished by another process: this one's gauge follows the record.
        metrics::batch_succeeded(metrics::REPLICA_NIGHT, at);
        return Ok(false);
    }
    let Some(lock) = SessionLock::try_acquire(&state.db, "provision.nightly").await? else {
        return Ok(false);
    };
    let outcome = async {
        let client = state.db.get().await?;
        client
            .execute(
                "INSERT INTO provision.job_runs (job, day, started_at) VALUES ('nightly', $1, $2)
                 ON CONFLICT (job, day) DO NOTHING",
                &[&day, &now],
            )
            .await?;
        let report = jobs::run(state, Job::Nightly).await?;
        tracing::info!(
            uploads = report.uploads.len(),
            abolished_deleted = report.abolished_deleted,
            reconciliations = report.reconciliations_made,
            failures = report.failures.len(),
            "nightly batch finished"
        );
        if report.failures.is_empty() {
            let finished_at = state.clock.now();
            client
                .execute(
                    "UPDATE provision.job_runs SET finished_at = $2 WHERE job = 'nightly' AND day = $1",
                    &[&day, &finished_at],
                )
                .await?;
            metrics::batch_succeeded(metrics::REPLICA_NIGHT, finished_at);
        }
        anyhow::Ok(())
    }
    .await;
    lock.release().await;
    outcome.map(|()| true)
}
