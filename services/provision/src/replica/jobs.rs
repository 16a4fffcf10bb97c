//! The batch jobs (夜間バッチ): applying queued uploads, deleting abolished datasets' replicas
//! from day 31, and making large reconciliation files. The nightly run does all three; each can
//! also be run alone (`chukan batch run <job>`).

use chrono::{Duration, NaiveDate};
use chukan_layout::RecordKind;

use crate::{
    ProvisionState,
    replica::apply::{RunInfo, UploadOutcome, quota_day},
    store,
};

/// A job `chukan batch run` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    ReplicaUploads,
    AbolishedDatasets,
    Reconciliations,
    /// All of the above, in that order.
    Nightly,
}

impl Job {
    pub fn parse(s: &str) -> Option<Job> {
        match s {
            "replica-uploads" => Some(Job::ReplicaUploads),
            "abolished-datasets" => Some(Job::AbolishedDatasets),
            "reconciliations" => Some(Job::Reconciliations),
            "nightly" => Some(Job::Nightly),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Job::ReplicaUploads => "replica-uploads",
            Job::AbolishedDatasets => "abolished-datasets",
            Job::Reconciliations => "reconciliations",
            Job::Nightly => "nightly",
        }
    }
}

/// What a job run did, for the operator.
#[derive(Debug, Default, serde::Serialize)]
pub struct JobReport {
    pub uploads: Vec<(String, UploadOutcome)>,
    pub abolished_deleted: i64,
    pub reconciliations_made: i64,
    pub failures: Vec<String>,
}

impl JobReport {
    fn fail(&mut self, tenant: &str, job: &str, e: &anyhow::Error) {
        tracing::error!(tenant, job, error = %format!("{e:#}"), "batch job failed for an organisation");
        self.failures.push(format!("{tenant} ({job})"));
    }
}

pub async fn run(state: &ProvisionState, job: Job) -> anyhow::Result<JobReport> {
    let now = state.clock.now();
    let mut report = JobReport::default();
    let orgs = {
        let client = state.db.get().await?;
        store::all_orgs(&client).await?
    };
    if matches!(job, Job::ReplicaUploads | Job::Nightly) {
        let run = RunInfo::new("replica-uploads", now);
        for org in &orgs {
            match state.applier.run_tenant(&run, &org.org_code, None).await {
                Ok(outcomes) => report
                    .uploads
                    .extend(outcomes.into_iter().map(|o| (org.org_code.clone(), o))),
                // One organisation's failure must not stop the others' night.
                Err(e) => report.fail(&org.org_code, "replica-uploads", &e),
            }
        }
    }
    if matches!(job, Job::AbolishedDatasets | Job::Nightly) {
        let day = quota_day(now);
        for org in &orgs {
            match delete_abolished(state, &org.org_code, day).await {
                Ok(n) => report.abolished_deleted += n,
                Err(e) => report.fail(&org.org_code, "abolished-datasets", &e),
            }
        }
    }
    if matches!(job, Job::Reconciliations | Job::Nightly) {
        for org in &orgs {
            match crate::replica::reconcile::make_queued(state, &org.org_code).await {
                Ok(n) => report.reconciliations_made += n,
                Err(e) => report.fail(&org.org_code, "reconciliations", &e),
            }
        }
    }
    state.outbox.wake();
    Ok(report)
}

/// Datasets whose replicas are due for deletion on `day`: abolished at least
/// `grace + 1` days before (DOMAIN §4: from the 31st day after abolition).
pub fn due_abolitions(state: &ProvisionState, day: NaiveDate) -> Vec<RecordKind> {
    let grace = i64::from(state.settings.provision.abolished_grace_days);
    state
        .catalogue
        .abolitions()
        .into_iter()
        .filter(|a| day >= a.abolished_on + Duration::days(grace + 1))
        .map(|a| a.kind)
        .collect()
}

async fn delete_abolished(
    state: &ProvisionState,
    tenant: &str,
    day: NaiveDate,
) -> anyhow::Result<i64> {
    let mut total = 0;
    for kind in due_abolitions(state, day) {
        total += bulk_delete(state, tenant, &kind).await?;
    }
    Ok(total)
}

/// 一括削除: every replica of an item's version and dataset, with its count event.
pub async fn bulk_delete(
    state: &ProvisionState,
    tenant: &str,
    kind: &RecordKind,
) -> anyhow::Result<i64> {
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let deleted = store::bulk_delete(&tx, tenant, kind).await?;
    if deleted > 0 {
        store::insert_count_deltas(&tx, tenant, &[(kind.clone(), -deleted)]).await?;
        crate::replica::apply::publish_counts(&tx, tenant, state.clock.now()).await?;
    }
    tx.commit().await?;
    state.outbox.wake();
    Ok(deleted)
}
