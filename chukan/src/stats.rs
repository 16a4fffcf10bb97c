//! `chukan stats snapshot|replicas|exchanges|schedule|behind`: operator tasks on the
//! statistics (統計), run in this process against the database only (no bus needed), beside
//! running servers. The tables show what the statistics API answers.

use std::sync::Arc;

use anyhow::Context as _;
use chrono::NaiveDate;
use chukan_config::Settings;
use chukan_core::{SystemClock, ids::OrgCode};
use chukan_stats::{StatsState, calendar::SnapshotReason, snapshots, store};
use clap::Subcommand;
use comfy_table::Cell;

use crate::tables::{number, table};

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Take a replica statistics snapshot now (on demand), for every organisation that has
    /// reported counts. Replaces a snapshot of the same date.
    Snapshot {
        /// The snapshot date (YYYY-MM-DD); default today in Japan.
        #[arg(long)]
        date: Option<NaiveDate>,
    },
    /// Print an organisation's replica statistics of a snapshot date.
    Replicas {
        /// The organisation (tenant).
        #[arg(long)]
        tenant: String,
        /// The snapshot date; default the newest.
        #[arg(long)]
        date: Option<NaiveDate>,
        /// A second date to compare with.
        #[arg(long)]
        compare: Option<NaiveDate>,
    },
    /// Print an organisation's business statistics (業務統計) per day.
    Exchanges {
        /// The organisation (tenant).
        #[arg(long)]
        tenant: String,
        /// First and last Japan dates (default: the last 7 days).
        #[arg(long)]
        from: Option<NaiveDate>,
        #[arg(long)]
        to: Option<NaiveDate>,
    },
    /// Print an organisation's registration plans next to the replicas it holds.
    Schedule {
        /// The organisation (tenant).
        #[arg(long)]
        tenant: String,
    },
    /// Print the organisations more than a share behind their registration plan (the
    /// platform's view).
    Behind {
        /// Default: stats.behind_plan_share.
        #[arg(long)]
        share: Option<f64>,
    },
}

pub async fn run(settings: Settings, command: &StatsCommand) -> anyhow::Result<()> {
    let state = StatsState {
        db: chukan_db::app_pool(&settings.database).context("database pool")?,
        clock: Arc::new(SystemClock),
        settings: settings.stats.clone(),
    };
    match command {
        StatsCommand::Snapshot { date } => {
            let date = date.unwrap_or_else(|| chukan_core::calendar::japan_date(state.clock.now()));
            let taken = snapshots::take(&state, date, SnapshotReason::OnDemand).await?;
            println!(
                "snapshot {}: {} organisations, {} rows",
                taken.date, taken.tenants, taken.rows
            );
            Ok(())
        }
        StatsCommand::Replicas {
            tenant,
            date,
            compare,
        } => {
            let tenant = OrgCode::parse(tenant).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            replicas(&state, tenant.as_str(), *date, *compare).await
        }
        StatsCommand::Exchanges { tenant, from, to } => {
            let tenant = OrgCode::parse(tenant).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            let to = to.unwrap_or_else(|| chukan_core::calendar::japan_date(state.clock.now()));
            let from = from.unwrap_or(to - chrono::Days::new(6));
            exchanges(&state, tenant.as_str(), from, to).await
        }
        StatsCommand::Schedule { tenant } => {
            let tenant = OrgCode::parse(tenant).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            let mut client = state.db.get().await?;
            let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
            let plans = store::plans_of(&tx, tenant.as_str()).await?;
            tx.commit().await?;
            print_plans(&plans);
            Ok(())
        }
        StatsCommand::Behind { share } => {
            let share = share.unwrap_or(state.settings.behind_plan_share);
            anyhow::ensure!(
                share > 0.0 && share < 1.0,
                "--share must be between 0 and 1"
            );
            let today = chukan_core::calendar::japan_date(state.clock.now());
            let mut client = state.db.get().await?;
            let tx = chukan_db::platform_tx(&mut client).await?;
            let plans = store::behind_plan(&tx, today, share, 1000).await?;
            tx.commit().await?;
            print_plans(&plans);
            Ok(())
        }
    }
}

async fn exchanges(
    state: &StatsState,
    tenant: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<()> {
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let days = store::exchange_days(&tx, tenant, from, to, None).await?;
    tx.commit().await?;
    let mut out = table(&[
        "日付 (day)",
        "イベント (event)",
        "事務手続 (procedure)",
        "特定個人情報 (item)",
        "結果 (outcome)",
        "件数 (count)",
        "中央値 ms (p50)",
        "95% ms (p95)",
        "最大 ms (max)",
    ]);
    let ms = |v: Option<i64>| v.map_or_else(|| Cell::new("-"), number);
    for d in &days {
        out.add_row(vec![
            Cell::new(d.day),
            Cell::new(&d.event),
            Cell::new(&d.procedure_code),
            Cell::new(&d.info_code),
            Cell::new(&d.outcome),
            number(d.count),
            ms(d.quantile_ms(0.5)),
            ms(d.quantile_ms(0.95)),
            ms(d.max_ms()),
        ]);
    }
    println!("業務統計 {from} 〜 {to}");
    println!("{out}");
    Ok(())
}

fn print_plans(plans: &[store::PlanVsActual]) {
    let mut out = table(&[
        "機関コード (organisation)",
        "特定個人情報 (item)",
        "計画日 (date)",
        "計画件数 (planned)",
        "保有件数 (held)",
        "不足率 (shortfall)",
    ]);
    for p in plans {
        let shortfall = p.shortfall();
        out.add_row(vec![
            Cell::new(&p.tenant),
            Cell::new(&p.info_code),
            Cell::new(p.plan_date),
            number(p.planned_count),
            number(p.actual_count),
            Cell::new(format!("{:.0}%", shortfall * 100.0)),
        ]);
    }
    println!("{out}");
}

async fn replicas(
    state: &StatsState,
    tenant: &str,
    date: Option<NaiveDate>,
    compare: Option<NaiveDate>,
) -> anyhow::Result<()> {
    let mut client = state.db.get().await?;
    let date = match date {
        Some(d) => d,
        None => store::finished_runs(&client, 1)
            .await?
            .first()
            .map(|r| r.date)
            .context("no replica statistics snapshot has been taken yet")?,
    };
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let rows = store::snapshot_rows(&tx, tenant, date, compare).await?;
    tx.commit().await?;
    let mut headings = vec![
        "特定個人情報名コード (item)",
        "版 (major version)",
        "データセット (dataset)",
        "件数 (count)",
    ];
    if compare.is_some() {
        headings.extend(["比較日の件数 (compared)", "差分 (difference)"]);
    }
    let mut out = table(&headings);
    for r in &rows {
        let count = r.count.unwrap_or(0);
        let mut line = vec![
            Cell::new(&r.info_code),
            Cell::new(&r.major_version),
            Cell::new(&r.dataset),
            number(count),
        ];
        if compare.is_some() {
            let before = r.compare_count.unwrap_or(0);
            line.extend([number(before), number(count - before)]);
        }
        out.add_row(line);
    }
    println!(
        "副本統計 {date}{}",
        compare.map(|c| format!(" (比較: {c})")).unwrap_or_default()
    );
    println!("{out}");
    Ok(())
}
