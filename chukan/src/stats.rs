//! `chukan stats snapshot|replicas`: operator tasks on the statistics (統計), run in this
//! process against the database only (no bus needed), beside running servers.

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
    }
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
