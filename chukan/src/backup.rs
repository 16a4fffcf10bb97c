//! `chukan backup verify|restore-org`: proving that a pgBackRest repository restores (ADR
//! 0006, issue 16), and rewinding one organisation's business rows to a point in time
//! without touching the others.
//!
//! Both restore the repository's latest backup into a scratch cluster of their own
//! ([`scratch`]); `restore-org` then copies the organisation's rows from it into the live
//! cluster in one transaction, under the organisation's maintenance hold (the exclusive
//! side of the shared advisory lock every tenant transaction takes, see
//! `chukan_db::tenant_tx`).

mod business_tables;
mod scratch;

use std::{
    path::PathBuf,
    str::FromStr as _,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chukan_config::Settings;
use chukan_core::{SystemClock, ids::OrgCode};
use chukan_proto::Message as _;
use clap::{Args, Subcommand};
use comfy_table::Cell;
use futures_util::SinkExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret as _;

use crate::tables::{number, table};
use business_tables::BusinessTable;
use scratch::{ScratchCluster, ScratchPlan};

/// The outbox the restore's audit record leaves through (its relay runs with provision).
const RESTORE_AUDIT_OUTBOX: &str = "provision";
/// The audit event a per-organisation restore is recorded as.
const RESTORE_EVENT: &str = "backup.restored";

/// How long before the recovery point a row must have been created to be compared with the
/// source (see the row counts in [`verify`]): longer than any chukan transaction runs.
const COMMIT_SETTLED: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Restore the latest backup of one repository into a scratch cluster, recover it, and
    /// check every organisation's audit log and signed tree heads there; report row counts.
    /// Exits non-zero when anything fails (the scratch directory is then kept).
    Verify {
        #[command(flatten)]
        scratch: ScratchArgs,
        /// Recover to this instant (RFC 3339); without it, to the end of the archived WAL.
        #[arg(long)]
        target_time: Option<DateTime<Utc>>,
        /// Compare row counts with this cluster (rows created at or before the recovery
        /// point, for tables with `created_at`).
        #[arg(long)]
        source_url: Option<String>,
    },
    /// Rewind one organisation's business rows (provision, code, inquiry, notice,
    /// selfinfo) to an instant, from a repository, in one transaction on the live cluster;
    /// the organisation's work waits meanwhile, the others' does not. Recorded in its
    /// audit log; the audit log itself is never restored.
    RestoreOrg {
        /// The organisation (団体コード).
        #[arg(long)]
        org: String,
        /// The instant to rewind to (RFC 3339).
        #[arg(long)]
        to_time: DateTime<Utc>,
        #[command(flatten)]
        scratch: ScratchArgs,
        /// How long to wait for the organisation's in-flight transactions to finish.
        #[arg(long, default_value_t = 60)]
        hold_timeout_secs: u64,
    },
}

/// Where the scratch cluster is restored and how it runs.
#[derive(Debug, Args)]
pub struct ScratchArgs {
    /// pgBackRest stanza (one per cell's cluster).
    #[arg(long)]
    stanza: String,
    /// Repository to restore from (1 = this region's, 2 = the other region's).
    #[arg(long)]
    repo: u8,
    /// pgBackRest configuration file (else pgBackRest's default).
    #[arg(long)]
    pgbackrest_config: Option<PathBuf>,
    /// Directory for the scratch cluster: created, or emptied if an earlier scratch.
    #[arg(long)]
    scratch_dir: PathBuf,
    /// PostgreSQL server programs.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// Port of the scratch server's socket (it listens on no TCP address).
    #[arg(long, default_value_t = 54329)]
    port: u16,
    /// How long recovery may take before the run fails.
    #[arg(long, default_value_t = 900)]
    recovery_deadline_secs: u64,
}

impl ScratchArgs {
    fn plan(&self, target_time: Option<DateTime<Utc>>) -> ScratchPlan {
        ScratchPlan {
            stanza: self.stanza.clone(),
            repo: self.repo,
            pgbackrest_config: self.pgbackrest_config.clone(),
            target_time,
            dir: self.scratch_dir.clone(),
            pg_bin: self.pg_bin.clone(),
            port: self.port,
            recovery_deadline: Duration::from_secs(self.recovery_deadline_secs),
        }
    }
}

pub async fn run(settings: Settings, command: &BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Verify {
            scratch,
            target_time,
            source_url,
        } => verify(&settings, scratch, *target_time, source_url.as_deref()).await,
        BackupCommand::RestoreOrg {
            org,
            to_time,
            scratch,
            hold_timeout_secs,
        } => {
            let org = OrgCode::parse(org)
                .map_err(|e| anyhow::anyhow!(e.detail_ja()))?
                .as_str()
                .to_owned();
            restore_org(
                &settings,
                &org,
                *to_time,
                scratch,
                Duration::from_secs(*hold_timeout_secs),
            )
            .await
        }
    }
}

/// The owner's role and database from `database.url`: the scratch cluster has the same.
fn owner_config(settings: &Settings) -> anyhow::Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(&settings.database.url)
        .context("setting database.url is not a valid PostgreSQL connection string")
}

fn owner_names(config: &tokio_postgres::Config) -> (String, String) {
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let dbname = config.get_dbname().unwrap_or(&user).to_owned();
    (user, dbname)
}

/// Restores with a spinner on the terminal (none when output is not a terminal).
async fn restore_scratch(
    plan: ScratchPlan,
    user: &str,
    dbname: &str,
) -> anyhow::Result<ScratchCluster> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").context("progress template")?,
    );
    spinner.set_message(format!(
        "repo{} から復元中 (restoring and recovering)…",
        plan.repo
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let restored = ScratchCluster::restore(plan, user, dbname).await;
    spinner.finish_and_clear();
    restored
}

/// Trust in signed tree heads as the console has it: `console.tree_head_keys`, else the
/// public half of `audit.signing_key`.
fn tree_head_verifiers(settings: &Settings) -> anyhow::Result<chukan_crypto::Verifiers> {
    if settings.console.tree_head_keys.is_empty() {
        chukan_audit::verifiers(&settings.audit)
    } else {
        chukan_crypto::Verifiers::parse_entries(&settings.console.tree_head_keys)
            .context("setting console.tree_head_keys")
    }
}

/// One organisation's audit check in the scratch cluster.
struct OrgCheck {
    org: String,
    records: u64,
    tree_heads: usize,
    problem: Option<String>,
}

async fn verify(
    settings: &Settings,
    args: &ScratchArgs,
    target_time: Option<DateTime<Utc>>,
    source_url: Option<&str>,
) -> anyhow::Result<()> {
    let (user, dbname) = owner_names(&owner_config(settings)?);
    let scratch = restore_scratch(args.plan(target_time), &user, &dbname).await?;
    let outcome = verify_restored(settings, &scratch, &dbname, target_time, source_url).await;
    let failed = !matches!(&outcome, Ok(0));
    let stopped = scratch.stop(failed);
    if failed {
        eprintln!(
            "スクラッチは調査用に残しました (scratch kept for inspection): {}",
            args.scratch_dir.display()
        );
    }
    match outcome? {
        0 => stopped,
        n => anyhow::bail!(
            "バックアップの検証に失敗しました (backup verification failed: {n} failures); \
             次の手順: 上の表の失敗行とスクラッチの postgres.log を確認してください"
        ),
    }
}

/// The checks; the number of failures.
async fn verify_restored(
    settings: &Settings,
    scratch: &ScratchCluster,
    dbname: &str,
    target_time: Option<DateTime<Utc>>,
    source_url: Option<&str>,
) -> anyhow::Result<usize> {
    let started = Instant::now();
    // As the application role, as `chukan audit verify` does: the audit store's queries rely
    // on row-level security to see one organisation, which the owner may bypass.
    let pool = chukan_db::pool_from_url(
        &scratch.connection_string(&settings.database.app_user, dbname),
        2,
    )?;
    let kek = chukan_crypto::Kek::from_base64(settings.crypto.kek.expose_secret())
        .context("setting crypto.kek")?;
    let audit = chukan_audit::state_from(
        pool.clone(),
        kek,
        Arc::new(SystemClock),
        settings.audit.clone(),
    )?;
    let verifiers = tree_head_verifiers(settings)?;
    let mut client = pool.get().await.context("scratch database")?;
    let orgs: Vec<String> = client
        .query("SELECT org_code FROM admin.tenants ORDER BY org_code", &[])
        .await
        .context("reading admin.tenants in the scratch cluster")?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut checks = Vec::new();
    for org in &orgs {
        let check =
            match chukan_audit::verify_tenant(&mut client, &audit.vault, &verifiers, org).await {
                Ok(report) => OrgCheck {
                    org: org.clone(),
                    records: report.records,
                    tree_heads: report.tree_heads,
                    problem: (!report.is_ok()).then(|| describe_problem(&report)),
                },
                Err(error) => OrgCheck {
                    org: org.clone(),
                    records: 0,
                    tree_heads: 0,
                    problem: Some(format!("{error:#}")),
                },
            };
        checks.push(check);
    }

    // Row counts: the point the scratch reached, for comparing with the source. A row's
    // created_at is its transaction's start, which may precede the point while the commit
    // follows it: only rows older than the point by COMMIT_SETTLED are compared, every
    // chukan transaction having committed or failed well within that.
    let point = scratch
        .recovered_to
        .or(target_time)
        .map(|p| p - COMMIT_SETTLED);
    let tables = business_tables::list(&**client).await?;
    let scratch_counts = count_rows(&mut client, &tables, &orgs, point).await?;
    let source_counts = match (source_url, point) {
        (Some(_), None) => {
            eprintln!(
                "復旧時点が不明のため行数を比較しません (recovery point unknown: counts reported only)"
            );
            None
        }
        (None, _) => None,
        (Some(url), Some(point)) => {
            let source = chukan_db::PgTls::from_settings(&settings.database)?
                .connect(
                    &tokio_postgres::Config::from_str(url).context("--source-url")?,
                    "backup verify source",
                )
                .await?;
            let source_tables = business_tables::list(&source).await?;
            business_tables::ensure_same(&source_tables, &tables)?;
            Some(count_rows_client(&source, &tables, &orgs, Some(point)).await?)
        }
    };
    let verify_secs = started.elapsed().as_secs_f64();

    let mut failures = 0usize;
    let mut t = table(&[
        "団体 (organisation)",
        "記録 (records)",
        "ツリーヘッド (tree heads)",
        "結果 (result)",
    ]);
    for c in &checks {
        failures += usize::from(c.problem.is_some());
        t.add_row(vec![
            Cell::new(&c.org),
            number(i64::try_from(c.records).unwrap_or(i64::MAX)),
            number(i64::try_from(c.tree_heads).unwrap_or(i64::MAX)),
            Cell::new(c.problem.as_deref().unwrap_or("ok")),
        ]);
    }
    println!("{t}");

    let mut t = table(&[
        "テーブル (table)",
        "行数 (rows, restored)",
        "比較 (source, created ≤ point − 60 s)",
        "結果 (result)",
    ]);
    for (i, table_) in tables.iter().enumerate() {
        let restored = scratch_counts.get(i).copied().unwrap_or_default();
        let (compared, result) = match (&source_counts, table_.has_created_at()) {
            (Some(source), true) => {
                let expected = source.get(i).copied().unwrap_or_default();
                // Rows made before the point and still present in the source must all be
                // in the restore; the restore may hold more (deleted since).
                let ok = restored.created_until >= expected.created_until;
                failures += usize::from(!ok);
                (
                    number(expected.created_until),
                    if ok { "ok" } else { "missing rows" },
                )
            }
            (Some(_), false) => (Cell::new("-"), "reported only (no created_at)"),
            (None, _) => (Cell::new("-"), "reported"),
        };
        t.add_row(vec![
            Cell::new(table_.label()),
            number(restored.all),
            compared,
            Cell::new(result),
        ]);
    }
    println!("{t}");

    let mut t = table(&["項目 (item)", "値 (value)"]);
    t.add_row(vec![
        Cell::new("復旧時点 (recovery point)"),
        Cell::new(
            scratch
                .recovered_to
                .or(target_time)
                .map_or_else(|| "-".to_owned(), |p| p.to_rfc3339()),
        ),
    ]);
    t.add_row(vec![
        Cell::new("復元 (restore seconds)"),
        Cell::new(format!("{:.2}", scratch.restore_secs)),
    ]);
    t.add_row(vec![
        Cell::new("検証 (verify seconds)"),
        Cell::new(format!("{verify_secs:.2}")),
    ]);
    t.add_row(vec![
        Cell::new("検証した団体 (organisations verified)"),
        number(
            i64::try_from(checks.iter().filter(|c| c.problem.is_none()).count())
                .unwrap_or(i64::MAX),
        ),
    ]);
    t.add_row(vec![
        Cell::new("失敗 (failures)"),
        number(i64::try_from(failures).unwrap_or(i64::MAX)),
    ]);
    println!("{t}");
    Ok(failures)
}

fn describe_problem(report: &chukan_audit::VerifyReport) -> String {
    if let Some(m) = &report.first_mismatch {
        return format!("tamper at seq {} ({})", m.seq, m.reason);
    }
    if let Some(h) = report.bad_tree_heads.first() {
        return format!("tree head size {} {}", h.size, h.reason);
    }
    if let Some(p) = report.checkpoint.as_ref().and_then(|c| c.problem) {
        return format!("checkpoint {p}");
    }
    format!(
        "records {} do not fill log {}",
        report.records, report.log_size
    )
}

#[derive(Debug, Clone, Copy, Default)]
struct RowCount {
    all: i64,
    /// Rows with `created_at` at or before the point (= all for tables without it).
    created_until: i64,
}

async fn count_rows(
    client: &mut chukan_db::PooledClient,
    tables: &[BusinessTable],
    orgs: &[String],
    point: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<RowCount>> {
    count_rows_client(client, tables, orgs, point).await
}

/// Per table, summed over the organisations, each counted under its own tenant setting so
/// a non-superuser owner (subject to FORCE ROW LEVEL SECURITY) counts the same.
async fn count_rows_client(
    client: &tokio_postgres::Client,
    tables: &[BusinessTable],
    orgs: &[String],
    point: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<RowCount>> {
    let mut counts = vec![RowCount::default(); tables.len()];
    for org in orgs {
        client
            .execute("SELECT set_config('chukan.tenant', $1, false)", &[org])
            .await?;
        for (i, t) in tables.iter().enumerate() {
            let row = match point.filter(|_| t.has_created_at()) {
                Some(point) => {
                    client
                        .query_one(
                            &format!(
                                "SELECT count(*), count(*) FILTER (WHERE created_at <= $2)
                                   FROM {} WHERE tenant_id = $1",
                                t.qualified()
                            ),
                            &[org, &point],
                        )
                        .await
                }
                None => {
                    client
                        .query_one(
                            &format!(
                                "SELECT count(*), count(*) FROM {} WHERE tenant_id = $1",
                                t.qualified()
                            ),
                            &[org],
                        )
                        .await
                }
            }
            .with_context(|| format!("counting {}", t.label()))?;
            counts[i].all += row.get::<_, i64>(0);
            counts[i].created_until += row.get::<_, i64>(1);
        }
    }
    client
        .execute("SELECT set_config('chukan.tenant', '', false)", &[])
        .await?;
    Ok(counts)
}

/// What one table's restore did.
struct TableRestore {
    label: String,
    deleted: u64,
    copied: u64,
}

async fn restore_org(
    settings: &Settings,
    org: &str,
    to_time: DateTime<Utc>,
    args: &ScratchArgs,
    hold_timeout: Duration,
) -> anyhow::Result<()> {
    let config = owner_config(settings)?;
    let (user, dbname) = owner_names(&config);
    let scratch = restore_scratch(args.plan(Some(to_time)), &user, &dbname).await?;
    let outcome = copy_org(
        settings,
        &config,
        &scratch,
        org,
        to_time,
        hold_timeout,
        args.repo,
    )
    .await;
    let restore_secs = scratch.restore_secs;
    let stopped = scratch.stop(outcome.is_err());
    if outcome.is_err() {
        eprintln!(
            "スクラッチは調査用に残しました (scratch kept for inspection): {}",
            args.scratch_dir.display()
        );
    }
    let (restored, copy_secs) = outcome?;
    stopped?;
    let mut t = table(&["テーブル (table)", "削除 (deleted)", "復元 (restored)"]);
    for r in &restored {
        t.add_row(vec![
            Cell::new(&r.label),
            number(i64::try_from(r.deleted).unwrap_or(i64::MAX)),
            number(i64::try_from(r.copied).unwrap_or(i64::MAX)),
        ]);
    }
    println!("{t}");
    println!(
        "restored {org} to {} from repo{} (restore {:.2} s, copy {copy_secs:.2} s); \
         the audit record follows through the outbox",
        to_time.to_rfc3339(),
        args.repo,
        restore_secs,
    );
    Ok(())
}

/// The live transaction: hold, delete, copy, audit record, commit. The rows copied and how
/// long the transaction took.
async fn copy_org(
    settings: &Settings,
    config: &tokio_postgres::Config,
    scratch: &ScratchCluster,
    org: &str,
    to_time: DateTime<Utc>,
    hold_timeout: Duration,
    repo: u8,
) -> anyhow::Result<(Vec<TableRestore>, f64)> {
    let (user, dbname) = owner_names(config);
    let (mut source, connection) = tokio_postgres::connect(
        &scratch.connection_string(&user, &dbname),
        tokio_postgres::NoTls,
    )
    .await
    .context("connecting to the scratch cluster")?;
    tokio::spawn(connection);
    // A pool of one: the outbox's enqueue takes a pooled transaction.
    let live_pool = chukan_db::pool_with_tls(
        &settings.database.url,
        &chukan_db::PgTls::from_settings(&settings.database)?,
        1,
    )?;
    let mut live = live_pool
        .get()
        .await
        .context("connecting to the live cluster")?;
    let tables = business_tables::list(&**live).await?;
    business_tables::ensure_same(&tables, &business_tables::list(&source).await?)?;

    let started = Instant::now();
    let read = source
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    read.execute("SELECT set_config('chukan.tenant', $1, true)", &[&org])
        .await?;
    let tx = live.transaction().await?;
    tx.execute(
        "SELECT set_config('lock_timeout', $1, true)",
        &[&format!("{}ms", hold_timeout.as_millis())],
    )
    .await?;
    // The organisation's maintenance hold: waits for its running transactions, and makes
    // its new ones wait until this commits (they take the shared side in tenant_tx).
    tx.execute(
        &format!(
            "SELECT pg_advisory_xact_lock({})",
            chukan_db::TENANT_HOLD_KEY_SQL
        ),
        &[&org],
    )
    .await
    .context(
        "taking the organisation's maintenance hold (another restore, or a long transaction?)",
    )?;
    tx.execute("SELECT set_config('chukan.tenant', $1, true)", &[&org])
        .await?;

    let mut restored: Vec<TableRestore> = tables
        .iter()
        .map(|t| TableRestore {
            label: t.label(),
            deleted: 0,
            copied: 0,
        })
        .collect();
    // Children first on the way out, parents first on the way in: foreign keys hold at
    // every statement (none of them is deferrable).
    for (i, t) in tables.iter().enumerate().rev() {
        restored[i].deleted = tx
            .execute(
                &format!("DELETE FROM {} WHERE tenant_id = $1", t.qualified()),
                &[&org],
            )
            .await
            .with_context(|| format!("deleting from {}", t.label()))?;
    }
    // The organisation code is digits only (OrgCode), so it is safe as a COPY literal
    // (COPY takes no parameters).
    // PostgreSQL refuses COPY FROM into a table whose row-level security applies to the
    // caller: an owner that neither is a superuser nor bypasses RLS copies through a
    // temporary table instead.
    let bypasses_rls: bool = tx
        .query_one(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    for (i, t) in tables.iter().enumerate() {
        restored[i].copied = copy_table(&read, &tx, t, org, bypasses_rls)
            .await
            .with_context(|| format!("copying {}", t.label()))?;
    }

    let record = restore_record(org, to_time, repo, &restored);
    chukan_mq::outbox::enqueue(&tx, RESTORE_AUDIT_OUTBOX, &record)
        .await
        .context("recording the restore in the audit outbox")?;
    tx.commit().await.context("committing the restore")?;
    read.commit().await?;
    Ok((restored, started.elapsed().as_secs_f64()))
}

/// One table by binary COPY, streamed from the scratch cluster into the live one (directly,
/// or through a temporary table when the live table's row-level security applies to us).
async fn copy_table(
    read: &tokio_postgres::Transaction<'_>,
    write: &tokio_postgres::Transaction<'_>,
    table: &BusinessTable,
    org: &str,
    bypasses_rls: bool,
) -> anyhow::Result<u64> {
    let columns = table.column_list();
    let target = if bypasses_rls {
        table.qualified()
    } else {
        // Plain columns (no identity, no RLS), dropped at commit.
        write
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS pg_temp.chukan_restore;
                 CREATE TEMP TABLE chukan_restore (LIKE {}) ON COMMIT DROP",
                table.qualified()
            ))
            .await?;
        "pg_temp.chukan_restore".to_owned()
    };
    let out = read
        .copy_out(&format!(
            "COPY (SELECT {columns} FROM {} WHERE tenant_id = '{org}') TO STDOUT (FORMAT binary)",
            table.qualified()
        ))
        .await?;
    let sink = write
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY {target} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let mut out = std::pin::pin!(out);
    let mut sink = std::pin::pin!(sink);
    sink.send_all(&mut out).await?;
    let copied = sink.as_mut().finish().await?;
    if !bypasses_rls {
        // The policy's WITH CHECK sees the tenant set for this transaction.
        write
            .execute(
                &format!(
                    "INSERT INTO {} ({columns}) OVERRIDING SYSTEM VALUE
                     SELECT {columns} FROM pg_temp.chukan_restore",
                    table.qualified()
                ),
                &[],
            )
            .await?;
    }
    Ok(copied)
}

/// The audit record of a restore: when to, from where, which tables and how many rows —
/// counts and names only, no personal data.
fn restore_record(
    org: &str,
    to_time: DateTime<Utc>,
    repo: u8,
    restored: &[TableRestore],
) -> chukan_mq::OutgoingMessage {
    let tables = restored
        .iter()
        .filter(|r| r.deleted > 0 || r.copied > 0)
        .map(|r| format!("{} {}→{}", r.label, r.deleted, r.copied))
        .collect::<Vec<_>>()
        .join(", ");
    let record_id = uuid::Uuid::now_v7();
    let now = Utc::now();
    let record = chukan_proto::AuditRecord {
        record_id: record_id.to_string(),
        tenant: org.to_owned(),
        event: RESTORE_EVENT.to_owned(),
        inquirer_org: org.to_owned(),
        outcome: "restored".to_owned(),
        at_ms: now.timestamp_millis(),
        requested_at_ms: to_time.timestamp_millis(),
        reason: format!(
            "時点復元 (point-in-time restore) to {} from repo{repo}: {tables}",
            to_time.to_rfc3339()
        ),
        actor: "chukan backup restore-org".to_owned(),
        ..Default::default()
    };
    let mut message =
        chukan_mq::OutgoingMessage::new(org, chukan_proto::AUDIT_RECORD, record.encode_to_vec());
    // The record id is the bus id: audit's idempotency key.
    message.id = record_id;
    message
}
