//! SQL of the statistics service, one function per question. Tenant-owned tables are only
//! touched inside `chukan_db::tenant_tx`; every statement also names the tenant so the indexes
//! lead with it.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;

use crate::calendar::SnapshotReason;

/// One reported count.
#[derive(Debug, Clone)]
pub struct ReplicaCount<'a> {
    pub info_code: &'a str,
    pub major_version: &'a str,
    pub dataset: &'a str,
    pub count: i64,
    pub counted_at: DateTime<Utc>,
}

/// Keeps the newest report of a count (a late or repeated one changes nothing) and notes the
/// organisation for the snapshot job. Returns whether the count changed.
pub async fn record_count(
    tx: &impl GenericClient,
    tenant: &str,
    c: &ReplicaCount<'_>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let seen = tx
        .prepare_cached(
            "INSERT INTO stats.tenants (tenant_id, first_seen) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO stats.replica_counts
                 (tenant_id, info_code, major_version, dataset, count, counted_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, info_code, major_version, dataset) DO UPDATE
                 SET count = EXCLUDED.count, counted_at = EXCLUDED.counted_at
                 WHERE stats.replica_counts.counted_at <= EXCLUDED.counted_at",
        )
        .await?;
    // One round trip for both statements.
    let seen_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&tenant, &now];
    let upsert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &tenant,
        &c.info_code,
        &c.major_version,
        &c.dataset,
        &c.count,
        &c.counted_at,
    ];
    let (seen, changed) = futures_util::join!(
        tx.execute(&seen, &seen_params),
        tx.execute(&upsert, &upsert_params),
    );
    seen?;
    Ok(changed? == 1)
}

/// Organisations that have reported counts (no RLS: codes only).
pub async fn tenants(client: &impl GenericClient) -> Result<Vec<String>, Error> {
    let rows = client
        .query(
            "SELECT tenant_id FROM stats.tenants ORDER BY tenant_id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A snapshot run as recorded.
#[derive(Debug, Clone)]
pub struct SnapshotRun {
    pub date: NaiveDate,
    pub reason: SnapshotReason,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub tenants: i32,
}

fn run_from(r: &tokio_postgres::Row) -> Result<SnapshotRun, Error> {
    Ok(SnapshotRun {
        date: r.get(0),
        reason: r.try_get(1)?,
        started_at: r.get(2),
        finished_at: r.get(3),
        tenants: r.get(4),
    })
}

const RUN_COLUMNS: &str = "snapshot_date, reason, started_at, finished_at, tenants";

pub async fn snapshot_run(
    client: &impl GenericClient,
    date: NaiveDate,
) -> Result<Option<SnapshotRun>, Error> {
    client
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM stats.snapshot_runs WHERE snapshot_date = $1"),
            &[&date],
        )
        .await?
        .map(|r| run_from(&r))
        .transpose()
}

/// Finished snapshots, newest first.
pub async fn finished_runs(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<SnapshotRun>, Error> {
    client
        .query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM stats.snapshot_runs WHERE finished_at IS NOT NULL
                 ORDER BY snapshot_date DESC LIMIT $1"
            ),
            &[&limit],
        )
        .await?
        .iter()
        .map(run_from)
        .collect()
}

/// Starts (or starts again) the run of `date`; an on-demand run replaces what is there.
pub async fn begin_run(
    client: &impl GenericClient,
    date: NaiveDate,
    reason: SnapshotReason,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO stats.snapshot_runs (snapshot_date, reason, started_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (snapshot_date) DO UPDATE
                 SET reason = EXCLUDED.reason, started_at = EXCLUDED.started_at,
                     finished_at = NULL, tenants = 0",
            &[&date, &reason, &now],
        )
        .await?;
    Ok(())
}

pub async fn finish_run(
    client: &impl GenericClient,
    date: NaiveDate,
    tenants: i32,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE stats.snapshot_runs SET finished_at = $2, tenants = $3
             WHERE snapshot_date = $1",
            &[&date, &now, &tenants],
        )
        .await?;
    Ok(())
}

/// Copies the tenant's current counts into the snapshot of `date`, replacing an earlier copy
/// (a run cut short, or an on-demand run repeated the same day).
pub async fn copy_counts(
    tx: &impl GenericClient,
    tenant: &str,
    date: NaiveDate,
) -> Result<u64, Error> {
    tx.execute(
        "DELETE FROM stats.replica_snapshots WHERE tenant_id = $1 AND snapshot_date = $2",
        &[&tenant, &date],
    )
    .await?;
    tx.execute(
        "INSERT INTO stats.replica_snapshots
             (tenant_id, snapshot_date, info_code, major_version, dataset, count)
         SELECT tenant_id, $2, info_code, major_version, dataset, count
         FROM stats.replica_counts WHERE tenant_id = $1",
        &[&tenant, &date],
    )
    .await
}

/// One row of a snapshot, with the count of a second date to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub info_code: String,
    pub major_version: String,
    pub dataset: String,
    /// Absent when the kind was not held on that date.
    pub count: Option<i64>,
    pub compare_count: Option<i64>,
}

/// The tenant's snapshot of `date`, in item / version / dataset order; with `compare`, every
/// kind held on either date.
pub async fn snapshot_rows(
    tx: &impl GenericClient,
    tenant: &str,
    date: NaiveDate,
    compare: Option<NaiveDate>,
) -> Result<Vec<SnapshotRow>, Error> {
    let rows = tx
        .query(
            "SELECT coalesce(a.info_code, b.info_code), coalesce(a.major_version, b.major_version),
                    coalesce(a.dataset, b.dataset), a.count, b.count
             FROM (SELECT * FROM stats.replica_snapshots
                   WHERE tenant_id = $1 AND snapshot_date = $2) a
             FULL JOIN (SELECT * FROM stats.replica_snapshots
                        WHERE tenant_id = $1 AND snapshot_date = $3) b
               USING (info_code, major_version, dataset)
             ORDER BY 1, 2, 3",
            &[&tenant, &date, &compare],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SnapshotRow {
            info_code: r.get(0),
            major_version: r.get(1),
            dataset: r.get(2),
            count: r.get(3),
            compare_count: r.get(4),
        })
        .collect())
}

/// Where an exchange event is counted: its organisation's Japan day × event × affair ×
/// procedure × item × outcome (the row's key besides the tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeKey {
    pub day: NaiveDate,
    pub event: String,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub outcome: String,
}

/// Events of one key to add to its row: how many, how many had a duration, their sum and
/// maximum, and the histogram of [`crate::durations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeCounts {
    pub count: i64,
    pub timed: i64,
    pub duration_sum_ms: i64,
    pub duration_max_ms: i64,
    pub buckets: Vec<i64>,
}

impl Default for ExchangeCounts {
    fn default() -> Self {
        Self {
            count: 0,
            timed: 0,
            duration_sum_ms: 0,
            duration_max_ms: 0,
            buckets: vec![0; crate::durations::BUCKETS],
        }
    }
}

impl ExchangeCounts {
    /// Adds one event with its duration, if it has one.
    pub fn add(&mut self, duration_ms: Option<i64>) {
        self.count += 1;
        if let Some(d) = duration_ms {
            self.timed += 1;
            self.duration_sum_ms += d;
            self.duration_max_ms = self.duration_max_ms.max(d);
            self.buckets[crate::durations::bucket_of(d)] += 1;
        }
    }
}

/// Adds `counts` to the row of `key` (the buckets add up position by position).
pub async fn count_exchanges(
    tx: &impl GenericClient,
    tenant: &str,
    key: &ExchangeKey,
    counts: &ExchangeCounts,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO stats.exchange_days (tenant_id, day, event, affair_code, procedure_code,
                 info_code, outcome, count, timed, duration_sum_ms, duration_max_ms, buckets)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (tenant_id, day, event, affair_code, procedure_code, info_code, outcome)
             DO UPDATE SET
                 count = exchange_days.count + EXCLUDED.count,
                 timed = exchange_days.timed + EXCLUDED.timed,
                 duration_sum_ms = exchange_days.duration_sum_ms + EXCLUDED.duration_sum_ms,
                 duration_max_ms = greatest(exchange_days.duration_max_ms, EXCLUDED.duration_max_ms),
                 buckets = ARRAY(SELECT a + b FROM unnest(exchange_days.buckets, EXCLUDED.buckets)
                                 WITH ORDINALITY AS t(a, b, i) ORDER BY i)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant,
            &key.day,
            &key.event,
            &key.affair_code,
            &key.procedure_code,
            &key.info_code,
            &key.outcome,
            &counts.count,
            &counts.timed,
            &counts.duration_sum_ms,
            &counts.duration_max_ms,
            &counts.buckets,
        ],
    )
    .await?;
    Ok(())
}

/// One day's row of the business statistics.
#[derive(Debug, Clone)]
pub struct ExchangeDay {
    pub day: NaiveDate,
    pub event: String,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub outcome: String,
    pub count: i64,
    pub timed: i64,
    pub duration_max_ms: i64,
    pub buckets: Vec<i64>,
}

impl ExchangeDay {
    /// The `q` quantile of the row's durations in milliseconds (see
    /// [`crate::durations::quantile`]); `None` when none is known.
    pub fn quantile_ms(&self, q: f64) -> Option<i64> {
        crate::durations::quantile(&self.buckets, q, self.duration_max_ms)
    }

    /// The longest duration in milliseconds, if any is known.
    pub fn max_ms(&self) -> Option<i64> {
        (self.timed > 0).then_some(self.duration_max_ms)
    }
}

/// The tenant's rows from `from` to `to` (Japan dates, both included), optionally of one
/// event, in day / event / code / outcome order.
pub async fn exchange_days(
    tx: &impl GenericClient,
    tenant: &str,
    from: NaiveDate,
    to: NaiveDate,
    event: Option<&str>,
) -> Result<Vec<ExchangeDay>, Error> {
    let rows = tx
        .query(
            "SELECT day, event, affair_code, procedure_code, info_code, outcome, count, timed,
                    duration_max_ms, buckets
             FROM stats.exchange_days
             WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 AND ($4::text IS NULL OR event = $4)
             ORDER BY day, event, affair_code, procedure_code, info_code, outcome",
            &[&tenant, &from, &to, &event],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ExchangeDay {
            day: r.get(0),
            event: r.get(1),
            affair_code: r.get(2),
            procedure_code: r.get(3),
            info_code: r.get(4),
            outcome: r.get(5),
            count: r.get(6),
            timed: r.get(7),
            duration_max_ms: r.get(8),
            buckets: r.get(9),
        })
        .collect())
}

/// One planned count (登録計画).
#[derive(Debug, Clone)]
pub struct Plan {
    pub info_code: String,
    pub plan_date: NaiveDate,
    pub planned_count: i64,
}

/// Records (or replaces) the tenant's plans, all in the caller's transaction.
pub async fn upsert_plans(
    tx: &impl GenericClient,
    tenant: &str,
    plans: &[Plan],
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO stats.replica_plans
                 (tenant_id, info_code, plan_date, planned_count, recorded_at, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, info_code, plan_date) DO UPDATE
                 SET planned_count = EXCLUDED.planned_count,
                     recorded_at = EXCLUDED.recorded_at, recorded_by = EXCLUDED.recorded_by",
        )
        .await?;
    // Pipelined: one round trip for every plan.
    let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 6]> = plans
        .iter()
        .map(|p| -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
            [
                &tenant,
                &p.info_code,
                &p.plan_date,
                &p.planned_count,
                &now,
                &by,
            ]
        })
        .collect();
    futures_util::future::try_join_all(params.iter().map(|p| tx.execute(&stmt, p))).await?;
    Ok(())
}

/// A plan next to what is held now.
#[derive(Debug, Clone)]
pub struct PlanVsActual {
    pub tenant: String,
    pub info_code: String,
    pub plan_date: NaiveDate,
    pub planned_count: i64,
    pub actual_count: i64,
}

impl PlanVsActual {
    /// `(planned − held) / planned`; 0 when nothing is planned or the plan is met.
    pub fn shortfall(&self) -> f64 {
        if self.planned_count > 0 {
            ((self.planned_count - self.actual_count) as f64 / self.planned_count as f64).max(0.0)
        } else {
            0.0
        }
    }
}

fn plan_vs_actual_from(r: &tokio_postgres::Row) -> PlanVsActual {
    PlanVsActual {
        tenant: r.get(0),
        info_code: r.get(1),
        plan_date: r.get(2),
        planned_count: r.get(3),
        actual_count: r.get(4),
    }
}

/// Every plan of the tenant with the replicas it holds of the item now, by date.
pub async fn plans_of(tx: &impl GenericClient, tenant: &str) -> Result<Vec<PlanVsActual>, Error> {
    let rows = tx
        .query(
            "SELECT p.tenant_id, p.info_code, p.plan_date, p.planned_count,
                    coalesce((SELECT sum(c.count) FROM stats.replica_counts c
                              WHERE c.tenant_id = p.tenant_id AND c.info_code = p.info_code),
                             0)::int8
             FROM stats.replica_plans p WHERE p.tenant_id = $1
             ORDER BY p.plan_date, p.info_code",
            &[&tenant],
        )
        .await?;
    Ok(rows.iter().map(plan_vs_actual_from).collect())
}

/// Across organisations (a platform transaction): for each organisation × item, the newest
/// plan due by `today` whose replicas fall short of it by more than `share`, newest first.
pub async fn behind_plan(
    tx: &impl GenericClient,
    today: NaiveDate,
    share: f64,
    limit: i64,
) -> Result<Vec<PlanVsActual>, Error> {
    let rows = tx
        .query(
            "WITH due AS (
                 SELECT DISTINCT ON (tenant_id, info_code)
                        tenant_id, info_code, plan_date, planned_count
                 FROM stats.replica_plans WHERE plan_date <= $1
                 ORDER BY tenant_id, info_code, plan_date DESC),
             held AS (
                 SELECT tenant_id, info_code, sum(count)::int8 AS count
                 FROM stats.replica_counts GROUP BY tenant_id, info_code)
             SELECT d.tenant_id, d.info_code, d.plan_date, d.planned_count,
                    coalesce(h.count, 0)::int8
             FROM due d LEFT JOIN held h USING (tenant_id, info_code)
             WHERE d.planned_count > 0
               AND (d.planned_count - coalesce(h.count, 0))::float8 / d.planned_count > $2
             ORDER BY d.plan_date DESC, d.tenant_id, d.info_code
             LIMIT $3",
            &[&today, &share, &limit],
        )
        .await?;
    Ok(rows.iter().map(plan_vs_actual_from).collect())
}

/// One organisation's row of a snapshot, across organisations (a platform transaction).
#[derive(Debug, Clone)]
pub struct PlatformSnapshotRow {
    pub tenant: String,
    pub info_code: String,
    pub major_version: String,
    pub dataset: String,
    pub count: i64,
}

pub async fn snapshot_all(
    tx: &impl GenericClient,
    date: NaiveDate,
) -> Result<Vec<PlatformSnapshotRow>, Error> {
    let rows = tx
        .query(
            "SELECT tenant_id, info_code, major_version, dataset, count
             FROM stats.replica_snapshots WHERE snapshot_date = $1
             ORDER BY tenant_id, info_code, major_version, dataset",
            &[&date],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PlatformSnapshotRow {
            tenant: r.get(0),
            info_code: r.get(1),
            major_version: r.get(2),
            dataset: r.get(3),
            count: r.get(4),
        })
        .collect())
}
