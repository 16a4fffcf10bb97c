//! `chukan region status|failover|failback`: move a cell to its standby in the other region
//! (ADR 0006, docs/regions.md). These talk to PostgreSQL only, as the clusters' owner (the URLs
//! given), so they work while the cell's processes and broker are gone.
//!
//! What the platform does around them — stopping the old cell's processes, starting the cell
//! in its standby slot, demoting a returning old primary — is the platform's (CloudNativePG and
//! a Deployment's replicas in Kubernetes; `scripts/region-drill` locally).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use chukan_config::Settings;
use clap::{Args as ClapArgs, Subcommand};
use serde::Serialize;
use tokio_postgres::Client;

/// Schemas that publish through an outbox (their `outbox_sent` is replayed after a promotion).
const OUTBOX_SCHEMAS_SQL: &str = "SELECT table_schema FROM information_schema.tables
     WHERE table_name = 'outbox_sent' ORDER BY table_schema";

#[derive(Debug, Subcommand)]
pub enum RegionCommand {
    /// Role, timeline, positions and replication of each cluster given (primary or standby),
    /// with the cell's open asynchronous-commit window and its failovers.
    Status {
        /// Owner URL of a cluster (repeat for each).
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Promote the cell's standby in the other region. Planned (the old primary answers): the
    /// old primary is fenced first and the standby catches up, so nothing is lost. Forced (it
    /// does not): the standby is promoted with what it has, and the report says what could be
    /// missing.
    Failover(FailoverArgs),
    /// Move the cell back to its home region: a planned switchover from the cluster now
    /// serving it to the re-seeded standby there. Refused when the serving cluster does not
    /// answer (use failover).
    Failback(FailoverArgs),
}

#[derive(Debug, Clone, ClapArgs)]
pub struct FailoverArgs {
    /// The cell being moved (east or west).
    #[arg(long)]
    pub cell: String,
    /// The region whose standby of the cell becomes its primary.
    #[arg(long)]
    pub to: String,
    /// Owner URL of the standby to promote.
    #[arg(long)]
    pub standby_url: String,
    /// Owner URL of the cluster serving the cell now (the old primary); tried with a short
    /// timeout. Absent or unreachable: forced failover.
    #[arg(long)]
    pub primary_url: Option<String>,
    /// How long to try reaching the old primary, in seconds.
    #[arg(long, default_value_t = 3)]
    pub connect_timeout_secs: u64,
    /// Longest wait for the standby to replay what it must before promotion, in seconds.
    #[arg(long, default_value_t = 60)]
    pub catch_up_timeout_secs: u64,
    /// The platform has promoted the standby already (CloudNativePG, `replica.primary`): only
    /// record the failover and replay the outbox window, on the cluster at --standby-url.
    #[arg(long)]
    pub promoted_by_platform: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a failover did and what it could have lost.
#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub cell: String,
    pub to: String,
    pub kind: &'static str,
    /// The old primary's last position (planned only): the standby replayed up to it.
    pub old_primary_lsn: Option<String>,
    pub receive_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// The last commit the standby replayed.
    pub last_replay_at: Option<DateTime<Utc>>,
    /// An asynchronous-commit window open when the primary was lost: acknowledged writes
    /// after its start may be missing (forced failover only).
    pub async_window_since: Option<DateTime<Utc>>,
    /// Whether every acknowledged write is known to be here.
    pub nothing_lost: bool,
    pub replayed_outbox: u64,
    pub promote_seconds: f64,
    pub total_seconds: f64,
}

pub async fn run(settings: Settings, command: &RegionCommand) -> anyhow::Result<()> {
    match command {
        RegionCommand::Status { urls, json } => status(&settings, urls, *json).await,
        RegionCommand::Failover(args) => {
            let report = failover(&settings, args, false).await?;
            print_report(&report, args.json)
        }
        RegionCommand::Failback(args) => {
            let report = failover(&settings, args, true).await?;
            print_report(&report, args.json)
        }
    }
}

fn check_region(key: &str, value: &str) -> anyhow::Result<()> {
    if !matches!(value, "east" | "west") {
        bail!("--{key} must be east or west, not {value:?}");
    }
    Ok(())
}

async fn connect(
    settings: &Settings,
    url: &str,
    purpose: &'static str,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = url.parse().context("not a PostgreSQL URL")?;
    config.connect_timeout(timeout);
    let tls = chukan_db::PgTls::from_settings(&settings.database)?;
    tokio::time::timeout(timeout, tls.connect(&config, purpose))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to PostgreSQL ({purpose}) timed out"))?
}

/// Promotes `args.standby_url` to be the cell's primary; see [`RegionCommand::Failover`].
pub async fn failover(
    settings: &Settings,
    args: &FailoverArgs,
    planned_only: bool,
) -> anyhow::Result<FailoverReport> {
    check_region("cell", &args.cell)?;
    check_region("to", &args.to)?;
    let started = Instant::now();
    let connect_timeout = Duration::from_secs(args.connect_timeout_secs);
    let catch_up = Duration::from_secs(args.catch_up_timeout_secs);
    let standby = connect(settings, &args.standby_url, "standby", connect_timeout).await?;
    let in_recovery: bool = standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    if args.promoted_by_platform {
        if in_recovery {
            bail!("--promoted-by-platform: the cluster at --standby-url is still a standby");
        }
        return after_promotion(settings, args, &standby, started, Promotion::by_platform()).await;
    }
    if !in_recovery {
        bail!(
            "the cluster at --standby-url is not a standby (already promoted?): nothing done; \
             `chukan region status` shows the roles"
        );
    }

    // Planned when the old primary answers: fence it, then let the standby catch up to it.
    let old = match &args.primary_url {
        Some(url) => match connect(settings, url, "old primary", connect_timeout).await {
            Ok(client) => Some(client),
            Err(error) => {
                eprintln!("old primary not reachable ({error:#}): forced failover");
                None
            }
        },
        None => None,
    };
    if old.is_none() && planned_only {
        bail!("the cluster serving the cell does not answer: failback needs it (use failover)");
    }
    let old_primary_lsn = match &old {
        Some(client) => Some(fence(client, &settings.database.app_user).await?),
        None => None,
    };
    if let Some(lsn) = &old_primary_lsn {
        wait_replayed(&standby, lsn, catch_up).await?;
    } else {
        // Forced: apply everything received before promoting, so nothing that reached this
        // region is left behind.
        wait_received_replayed(&standby, catch_up).await?;
    }
    let row = standby
        .query_one(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
                    pg_last_xact_replay_timestamp()",
            &[],
        )
        .await?;
    let (receive_lsn, replay_lsn): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    let last_replay_at: Option<DateTime<Utc>> = row.get(2);
    let async_window_since: Option<DateTime<Utc>> = standby
        .query_one(
            "SELECT min(started_at) FROM admin.async_windows WHERE ended_at IS NULL",
            &[],
        )
        .await
        .context("reading admin.async_windows on the standby (is the cell migrated?)")?
        .get(0);

    let promote_started = Instant::now();
    let promoted: bool = standby
        .query_one("SELECT pg_promote(true, 60)", &[])
        .await
        .context("pg_promote")?
        .get(0);
    if !promoted {
        bail!("the standby did not finish promotion within 60 s; see its log");
    }
    let promote_seconds = promote_started.elapsed().as_secs_f64();
    // The base backup the standby came from may carry its source's fence or synchronous
    // standby names: the new primary starts writable and asynchronous, and the cell's sync
    // guard sets synchronous commit again once its own standby streams.
    each_alone(
        &standby,
        &[
            "ALTER SYSTEM RESET default_transaction_read_only",
            "ALTER SYSTEM RESET synchronous_standby_names",
            "SELECT pg_reload_conf()",
        ],
    )
    .await
    .context("resetting the promoted cluster's fence and synchronous standby names")?;

    let promotion = Promotion {
        old_primary_lsn,
        receive_lsn,
        replay_lsn,
        last_replay_at,
        async_window_since,
        promote_seconds,
    };
    after_promotion(settings, args, &standby, started, promotion).await
}

/// What is known about a promotion when the cell's records are written.
struct Promotion {
    old_primary_lsn: Option<String>,
    receive_lsn: Option<String>,
    replay_lsn: Option<String>,
    last_replay_at: Option<DateTime<Utc>>,
    async_window_since: Option<DateTime<Utc>>,
    promote_seconds: f64,
}

impl Promotion {
    /// Promoted by the platform: positions unknown here, the window read afterwards.
    fn by_platform() -> Promotion {
        Promotion {
            old_primary_lsn: None,
            receive_lsn: None,
            replay_lsn: None,
            last_replay_at: None,
            async_window_since: None,
            promote_seconds: 0.0,
        }
    }
}

/// On the new primary: the outbox window put back for replay and the failover recorded.
async fn after_promotion(
    settings: &Settings,
    args: &FailoverArgs,
    standby: &Client,
    started: Instant,
    mut p: Promotion,
) -> anyhow::Result<FailoverReport> {
    if args.promoted_by_platform {
        p.async_window_since = standby
            .query_one(
                "SELECT min(started_at) FROM admin.async_windows WHERE ended_at IS NULL",
                &[],
            )
            .await?
            .get(0);
    }
    let Promotion {
        old_primary_lsn,
        receive_lsn,
        replay_lsn,
        last_replay_at,
        async_window_since,
        promote_seconds,
    } = p;
    let kind = if old_primary_lsn.is_some() {
        "planned"
    } else {
        "forced"
    };
    // Synchronous commit with no window open means the standby confirmed every commit the
    // primary acknowledged; a planned switchover replayed the old primary's last position.
    let nothing_lost = old_primary_lsn.is_some()
        || (!settings.cells.synchronous_standby_names.is_empty() && async_window_since.is_none());
    let replayed_outbox = replay_outboxes(standby, settings).await?;
    standby
        .execute(
            "INSERT INTO admin.failovers (cell, to_region, kind, receive_lsn, replay_lsn,
                 last_replay_at, async_window_since, replayed_outbox)
             VALUES ($1, $2, $3, $4::text::pg_lsn, $5::text::pg_lsn, $6, $7, $8)",
            &[
                &args.cell,
                &args.to,
                &kind,
                &receive_lsn,
                &replay_lsn,
                &last_replay_at,
                &async_window_since,
                &i64::try_from(replayed_outbox).unwrap_or(i64::MAX),
            ],
        )
        .await
        .context("recording the failover")?;
    Ok(FailoverReport {
        cell: args.cell.clone(),
        to: args.to.clone(),
        kind,
        old_primary_lsn,
        receive_lsn,
        replay_lsn,
        last_replay_at,
        async_window_since,
        nothing_lost,
        replayed_outbox,
        promote_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Makes the old primary refuse writes and returns its last WAL position: new transactions
/// default to read-only (persisted, so it holds after a restart too) and the app role's
/// sessions are ended, so no transaction that began before the fence can still commit.
async fn fence(client: &Client, app_user: &str) -> anyhow::Result<String> {
    each_alone(
        client,
        &[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
        ],
    )
    .await
    .context("fencing the old primary")?;
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE usename = $1 AND pid <> pg_backend_pid()",
            &[&app_user],
        )
        .await
        .context("ending the app role's sessions on the old primary")?;
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    Ok(lsn)
}

/// Runs each statement on its own: ALTER SYSTEM refuses to run in a transaction block, which
/// several statements in one simple query are.
async fn each_alone(client: &Client, statements: &[&str]) -> anyhow::Result<()> {
    for statement in statements {
        client.batch_execute(statement).await?;
    }
    Ok(())
}

async fn wait_replayed(standby: &Client, lsn: &str, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let caught_up: Option<bool> = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .await?
            .get(0);
        if caught_up == Some(true) {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!(
                "the standby did not replay the fenced primary's last position {lsn} within \
                 {} s: nothing promoted (the old primary stays fenced: `ALTER SYSTEM RESET \
                 default_transaction_read_only` undoes it)",
                deadline.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_received_replayed(standby: &Client, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let done: Option<bool> = standby
            .query_one(
                "SELECT pg_last_wal_receive_lsn() IS NULL
                     OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()",
                &[],
            )
            .await?
            .get(0);
        if done != Some(false) || Instant::now() >= until {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves each schema's kept, already-published messages back into its outbox, so the cell's
/// relays publish again what the lost broker may have held (inboxes drop the repeats). Their
/// bodies are sealed under the cell's KEK, which this region holds in escrow.
async fn replay_outboxes(client: &Client, settings: &Settings) -> anyhow::Result<u64> {
    let seal = chukan_crypto::OutboxSeal::from_settings(&settings.crypto)
        .context("setting crypto.kek (the cell's KEK opens its kept outbox messages)")?;
    let mut moved = 0;
    for row in client.query(OUTBOX_SCHEMAS_SQL, &[]).await? {
        let schema: String = row.get(0);
        moved += chukan_mq::outbox::replay_sent(client, &schema, &seal)
            .await
            .with_context(|| format!("replaying {schema}.outbox_sent"))?;
    }
    Ok(moved)
}

fn print_report(report: &FailoverReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "{} failover of cell {} to {}: promoted in {:.2} s ({:.2} s in all)",
        report.kind, report.cell, report.to, report.promote_seconds, report.total_seconds
    );
    if let Some(lsn) = &report.old_primary_lsn {
        println!("  old primary fenced at {lsn}; the standby replayed it: nothing lost");
    } else {
        println!(
            "  standby received {} and replayed {}; last replayed commit {}",
            report.receive_lsn.as_deref().unwrap_or("-"),
            report.replay_lsn.as_deref().unwrap_or("-"),
            report
                .last_replay_at
                .map_or("-".to_owned(), |t| t.to_rfc3339())
        );
        match (report.nothing_lost, report.async_window_since) {
            (true, _) => println!(
                "  synchronous commit, no asynchronous window open: every acknowledged write is here"
            ),
            (false, Some(since)) => println!(
                "  asynchronous window open since {}: writes acknowledged after it may be missing",
                since.to_rfc3339()
            ),
            (false, None) => println!(
                "  asynchronous commit: writes acknowledged after the last replayed commit may be missing"
            ),
        }
    }
    println!(
        "  {} published messages put back into the outboxes for replay",
        report.replayed_outbox
    );
    Ok(())
}

#[derive(Debug, Serialize)]
struct ClusterStatus {
    url_host: String,
    reachable: bool,
    role: Option<&'static str>,
    timeline: Option<i32>,
    lsn: Option<String>,
    read_only: Option<bool>,
    standbys: Vec<serde_json::Value>,
    organisations: Option<i64>,
    async_window_since: Option<DateTime<Utc>>,
    failovers: Option<i64>,
    error: Option<String>,
}

async fn status(settings: &Settings, urls: &[String], json: bool) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for url in urls {
        all.push(cluster_status(settings, url).await);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for s in &all {
        match (&s.error, s.role) {
            (Some(error), _) => println!("{}: unreachable ({error})", s.url_host),
            (None, role) => {
                println!(
                    "{}: {} timeline {} at {}{}; {} organisations, {} failovers{}",
                    s.url_host,
                    role.unwrap_or("?"),
                    s.timeline.unwrap_or(0),
                    s.lsn.as_deref().unwrap_or("-"),
                    if s.read_only == Some(true) {
                        " (fenced: read-only)"
                    } else {
                        ""
                    },
                    s.organisations.unwrap_or(0),
                    s.failovers.unwrap_or(0),
                    s.async_window_since
                        .map(|t| format!("; ASYNCHRONOUS since {}", t.to_rfc3339()))
                        .unwrap_or_default()
                );
                for standby in &s.standbys {
                    println!("  standby {standby}");
                }
            }
        }
    }
    Ok(())
}

async fn cluster_status(settings: &Settings, url: &str) -> ClusterStatus {
    let url_host = url
        .parse::<tokio_postgres::Config>()
        .ok()
        .map(|c| {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default();
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .unwrap_or_else(|| "?".into());
    let mut out = ClusterStatus {
        url_host,
        reachable: false,
        role: None,
        timeline: None,
        lsn: None,
        read_only: None,
        standbys: Vec::new(),
        organisations: None,
        async_window_since: None,
        failovers: None,
        error: None,
    };
    let result: anyhow::Result<()> = async {
        let client = connect(settings, url, "status", Duration::from_secs(3)).await?;
        out.reachable = true;
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(),
                        (SELECT timeline_id FROM pg_control_checkpoint()),
                        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text
                             ELSE pg_current_wal_lsn()::text END,
                        current_setting('default_transaction_read_only') = 'on'",
                &[],
            )
            .await?;
        let standby: bool = row.get(0);
        out.role = Some(if standby { "standby" } else { "primary" });
        out.timeline = Some(row.get(1));
        out.lsn = row.get(2);
        out.read_only = Some(row.get(3));
        for r in client
            .query(
                "SELECT application_name, state, sync_state,
                        pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8,
                        EXTRACT(EPOCH FROM replay_lag)::float8
                   FROM pg_stat_replication ORDER BY application_name",
                &[],
            )
            .await
            .unwrap_or_default()
        {
            let (name, state, sync): (String, Option<String>, Option<String>) =
                (r.get(0), r.get(1), r.get(2));
            let (bytes, lag): (Option<f64>, Option<f64>) = (r.get(3), r.get(4));
            out.standbys.push(serde_json::json!({
                "name": name, "state": state, "sync_state": sync,
                "lag_bytes": bytes, "lag_seconds": lag,
            }));
        }
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM admin.tenants),
                        (SELECT min(started_at) FROM admin.async_windows WHERE ended_at IS NULL),
                        (SELECT count(*) FROM admin.failovers)",
                &[],
            )
            .await?;
        out.organisations = Some(row.get(0));
        out.async_window_since = row.get(1);
        out.failovers = Some(row.get(2));
        Ok(())
    }
    .await;
    if let Err(error) = result {
        out.error = Some(format!("{error:#}"));
    }
    out
}
