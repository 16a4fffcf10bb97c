//! `chukan audit verify|purge`: operator checks of the provision-record logs (情報提供等記録),
//! run in this process against the database only (no bus needed), beside running servers.

use std::{sync::Arc, time::Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chukan_config::Settings;
use chukan_core::{SystemClock, ids::OrgCode};
use clap::Subcommand;
use comfy_table::Cell;
use secrecy::ExposeSecret as _;

use crate::tables::{number, table};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute a tenant's log from its sealed records, check every stored node, the
    /// retention checkpoint and every signed tree head; name the first record that does not
    /// match. Exits non-zero when anything does not match.
    Verify {
        /// The organisation (tenant) whose log to verify.
        #[arg(long)]
        tenant: String,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Purge records past the retention period (audit.retention_years) and checkpoint the
    /// tree at the cut, so the log stays verifiable.
    Purge {
        /// One organisation; without it, every tenant with a log.
        #[arg(long)]
        tenant: Option<String>,
        /// Purge records before this instant (RFC 3339) instead of now − retention_years.
        #[arg(long)]
        before: Option<DateTime<Utc>>,
    },
}

fn state(settings: &Settings) -> anyhow::Result<chukan_audit::AuditState> {
    let db = chukan_db::app_pool(&settings.database).context("database pool")?;
    let kek = chukan_crypto::Kek::from_base64(settings.crypto.kek.expose_secret())
        .context("setting crypto.kek")?;
    chukan_audit::state_from(db, kek, Arc::new(SystemClock), settings.audit.clone())
}

fn org(tenant: &str) -> anyhow::Result<String> {
    Ok(OrgCode::parse(tenant)
        .map_err(|e| anyhow::anyhow!(e.detail_ja()))?
        .as_str()
        .to_owned())
}

pub async fn run(settings: Settings, command: &AuditCommand) -> anyhow::Result<()> {
    let state = state(&settings)?;
    match command {
        AuditCommand::Verify { tenant, json } => {
            verify(&state, &settings, &org(tenant)?, *json).await
        }
        AuditCommand::Purge { tenant, before } => {
            let cutoff = match before {
                Some(t) => *t,
                None => chukan_audit::retention::cutoff(&state)?,
            };
            let reports = match tenant {
                Some(t) => {
                    vec![chukan_audit::retention::purge_tenant(&state, &org(t)?, cutoff).await?]
                }
                None => chukan_audit::retention::purge_all(&state, cutoff).await?,
            };
            let mut t = table(&[
                "団体 (tenant)",
                "削除件数 (purged)",
                "チェックポイント (checkpoint size)",
            ]);
            for r in &reports {
                t.add_row(vec![
                    Cell::new(&r.tenant),
                    number(i64::try_from(r.purged).unwrap_or(i64::MAX)),
                    r.checkpoint_size.map_or(Cell::new("-"), number),
                ]);
            }
            println!("{t}");
            println!("cutoff: {}", cutoff.to_rfc3339());
            Ok(())
        }
    }
}

async fn verify(
    state: &chukan_audit::AuditState,
    settings: &Settings,
    tenant: &str,
    json: bool,
) -> anyhow::Result<()> {
    let verifiers = chukan_audit::verifiers(&settings.audit)?;
    let mut client = state.db.get().await.context("database")?;
    let started = Instant::now();
    let report = chukan_audit::verify_tenant(&mut client, &state.vault, &verifiers, tenant).await?;
    let elapsed = started.elapsed();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut t = table(&["項目 (item)", "値 (value)"]);
        let records = i64::try_from(report.records).unwrap_or(i64::MAX);
        t.add_row(vec![Cell::new("団体 (tenant)"), Cell::new(&report.tenant)]);
        t.add_row(vec![Cell::new("記録 (records checked)"), number(records)]);
        t.add_row(vec![
            Cell::new("ログ件数 (log size)"),
            number(report.log_size),
        ]);
        t.add_row(vec![
            Cell::new("署名済みツリーヘッド (tree heads)"),
            number(i64::try_from(report.tree_heads).unwrap_or(i64::MAX)),
        ]);
        if let Some(c) = &report.checkpoint {
            t.add_row(vec![
                Cell::new("チェックポイント (checkpoint)"),
                Cell::new(format!(
                    "size {} (cutoff {}) {}",
                    c.size,
                    c.cutoff.to_rfc3339(),
                    c.problem.unwrap_or("ok")
                )),
            ]);
        }
        t.add_row(vec![
            Cell::new("所要時間 (elapsed)"),
            Cell::new(format!(
                "{:.3} s ({:.0} records/s)",
                elapsed.as_secs_f64(),
                report.records as f64 / elapsed.as_secs_f64().max(1e-9)
            )),
        ]);
        println!("{t}");
    }
    if let Some(m) = &report.first_mismatch {
        let what = match m.column {
            Some(column) => format!("{}: 列 (column) {column}", m.reason),
            None => m.reason.to_owned(),
        };
        anyhow::bail!(
            "改ざんを検出しました (tamper detected): 最初に一致しない記録 seq {} record_id {} ({what})",
            m.seq,
            m.record_id,
        );
    }
    if let Some(head) = report.bad_tree_heads.first() {
        anyhow::bail!(
            "署名済みツリーヘッドが一致しません (tree head does not verify): size {} ({}) ほか {} 件",
            head.size,
            head.reason,
            report.bad_tree_heads.len() - 1
        );
    }
    if let Some(problem) = report.checkpoint.as_ref().and_then(|c| c.problem) {
        anyhow::bail!("チェックポイントが検証できません (checkpoint does not verify): {problem}");
    }
    if !report.is_ok() {
        anyhow::bail!(
            "記録件数がログ件数と一致しません (records {} do not fill the log of {})",
            report.records,
            report.log_size
        );
    }
    if !json {
        println!("OK: ログは検証されました (the log verifies)");
    }
    Ok(())
}
