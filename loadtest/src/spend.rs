//! What the machine spends on a window of end-to-end exchanges, so a rate is read against its
//! cost: CPU seconds by process group, commits and rows written by database, WAL, and the
//! broker deliveries chukan's consumers took — in total and per completed exchange.
//!
//! The national system's work is not ours: the "nws-sim share" is the nws-sim process and its
//! database's backends; "ours" is chukan, its database's backends, RabbitMQ and PostgreSQL's
//! own processes (checkpointer, walwriter, autovacuum, postmaster). RabbitMQ and PostgreSQL's
//! own processes also serve whatever else runs on the machine, so "ours" leans high.
//!
//! A window runs from the first request offered to the moment chukan's counters say the last
//! exchange completed and its follow-up events were handled. An idle phase before it gives the
//! background rates (chukan's timers commit even with no traffic). PostgreSQL 15 backends
//! flush their statistics up to 10 s after going idle, so the database counters are read again
//! `settle` seconds after the window and the idle rate over the settle time is taken off.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::{
    cpu::{CpuMeter, CpuReport, DbRule, Groups, group, round3},
    ops,
};

pub const CHUKAN: &str = "chukan (--target=all)";
pub const NWS_SIM: &str = "nws-sim";
pub const CHUKAN_DB: &str = "postgres: chukan's database";
pub const NWS_DB: &str = "postgres: nws-sim's database";
pub const GENERATOR: &str = "load generator";

/// Ours: chukan, its database, the broker and PostgreSQL's own processes.
pub const OURS: [&str; 6] = [
    CHUKAN,
    CHUKAN_DB,
    group::RABBITMQ,
    group::PG_BACKGROUND,
    group::PG_AUTOVACUUM,
    group::PG_POSTMASTER,
];
/// The national system's work (nws-sim stands in for it).
pub const NWS_SHARE: [&str; 2] = [NWS_SIM, NWS_DB];

#[derive(Debug, Clone, clap::Args)]
pub struct SpendArgs {
    /// Pid of `chukan --target=all` (its CPU group, its RSS).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Pid of `chukan nws-sim`.
    #[arg(long)]
    pub nws_pid: Option<u32>,
    /// PostgreSQL as a superuser, to a database other than the two measured (its own reads
    /// must not count as their commits), e.g. postgres://postgres@127.0.0.1:5432/postgres.
    /// Empty: no database counters, backends grouped by their process titles.
    #[arg(long, default_value = "")]
    pub pg: String,
    /// chukan's database name.
    #[arg(long, default_value = "")]
    pub db: String,
    /// nws-sim's database name.
    #[arg(long, default_value = "")]
    pub nws_db: String,
    /// Idle phase before the window, seconds (background rates); 0 skips it.
    #[arg(long, default_value_t = 5)]
    pub idle_seconds: u64,
    /// Wait after the window before the last read of the database counters, seconds.
    #[arg(long, default_value_t = 11)]
    pub settle_seconds: u64,
}

/// The measured databases, by the key used in reports.
const DATABASES: [&str; 2] = ["chukan", "nws_sim"];

#[derive(Debug, Clone, Copy, Default)]
struct DbCounters {
    commits: f64,
    rollbacks: f64,
    rows_written: f64,
}

impl std::ops::Sub for DbCounters {
    type Output = DbCounters;
    fn sub(self, o: DbCounters) -> DbCounters {
        DbCounters {
            commits: self.commits - o.commits,
            rollbacks: self.rollbacks - o.rollbacks,
            rows_written: self.rows_written - o.rows_written,
        }
    }
}

/// Counters at one moment.
#[derive(Debug, Clone, Default)]
struct Counters {
    dbs: BTreeMap<&'static str, DbCounters>,
    wal_bytes: f64,
    deliveries: f64,
}

pub struct Spend {
    args: SpendArgs,
    groups: Arc<Groups>,
    pg: Option<Arc<tokio_postgres::Client>>,
    http: reqwest::Client,
    ops: String,
}

/// Background rates with no traffic.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    seconds: f64,
    cpu: CpuReport,
    commits_per_s: BTreeMap<&'static str, f64>,
    deliveries_per_s: f64,
}

pub struct Window<'a> {
    spend: &'a Spend,
    before: Counters,
    meter: CpuMeter,
    started: Instant,
}

/// A closed window.
pub struct Measured {
    seconds: f64,
    settle_s: f64,
    cpu: CpuReport,
    delta: Counters,
}

impl Spend {
    /// `ops` is chukan's operations listener (its counters of broker deliveries).
    pub async fn connect(args: &SpendArgs, ops: &str) -> anyhow::Result<Spend> {
        let mut pids = vec![(std::process::id(), GENERATOR.to_string())];
        pids.extend(args.pid.map(|p| (p, CHUKAN.to_string())));
        pids.extend(args.nws_pid.map(|p| (p, NWS_SIM.to_string())));
        let pg = if args.pg.is_empty() {
            None
        } else {
            let (client, connection) = tokio_postgres::connect(&args.pg, NoTls)
                .await
                .context("connecting to PostgreSQL for pg_stat_activity and pg_stat_database")?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("postgres (statistics) connection: {e}");
                }
            });
            let own: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await?
                .get(0);
            pids.push((own as u32, GENERATOR.to_string()));
            Some(Arc::new(client))
        };
        let databases = [(&args.db, CHUKAN_DB), (&args.nws_db, NWS_DB)]
            .into_iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, group)| DbRule {
                database: name.clone(),
                user: None,
                group: group.into(),
            })
            .collect();
        Ok(Spend {
            args: args.clone(),
            groups: Arc::new(Groups {
                pids,
                databases,
                recognise: None,
                activity: pg.clone(),
            }),
            pg,
            http: reqwest::Client::new(),
            ops: ops.to_owned(),
        })
    }

    async fn counters(&self) -> anyhow::Result<Counters> {
        let deliveries = ops::deliveries(&ops::scrape(&self.http, &self.ops).await?);
        let Some(pg) = &self.pg else {
            return Ok(Counters {
                deliveries,
                ..Default::default()
            });
        };
        let mut dbs = BTreeMap::new();
        for (key, name) in DATABASES
            .into_iter()
            .zip([&self.args.db, &self.args.nws_db])
        {
            // Each statement is its own transaction, so the statistics snapshot is fresh.
            let row = pg
                .query_opt(
                    "SELECT xact_commit::float8, xact_rollback::float8,
                            (tup_inserted + tup_updated + tup_deleted)::float8
                     FROM pg_stat_database WHERE datname = $1",
                    &[name],
                )
                .await?;
            if let Some(r) = row {
                dbs.insert(
                    key,
                    DbCounters {
                        commits: r.get(0),
                        rollbacks: r.get(1),
                        rows_written: r.get(2),
                    },
                );
            }
        }
        let wal_bytes: f64 = pg
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8",
                &[],
            )
            .await?
            .get(0);
        Ok(Counters {
            dbs,
            wal_bytes,
            deliveries,
        })
    }

    /// The idle phase: nothing offered for `idle_seconds`.
    pub async fn baseline(&self) -> anyhow::Result<Option<Baseline>> {
        if self.args.idle_seconds == 0 {
            return Ok(None);
        }
        if self.pg.is_some() && self.args.settle_seconds > 0 {
            // The setup's commits would otherwise reach pg_stat_database during the idle phase
            // and pass for background.
            eprintln!(
                "waiting {} s for the setup's statistics to settle",
                self.args.settle_seconds
            );
            tokio::time::sleep(Duration::from_secs(self.args.settle_seconds)).await;
        }
        eprintln!("idle baseline for {} s", self.args.idle_seconds);
        let before = self.counters().await?;
        let meter = CpuMeter::start(self.groups.clone());
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(self.args.idle_seconds)).await;
        let cpu = meter.finish().await?;
        let after = self.counters().await?;
        let seconds = started.elapsed().as_secs_f64();
        let commits_per_s = after
            .dbs
            .iter()
            .map(|(k, a)| {
                let b = before.dbs.get(k).copied().unwrap_or_default();
                (*k, (a.commits - b.commits) / seconds)
            })
            .collect();
        Ok(Some(Baseline {
            seconds,
            cpu,
            commits_per_s,
            deliveries_per_s: (after.deliveries - before.deliveries) / seconds,
        }))
    }

    pub async fn open(&self) -> anyhow::Result<Window<'_>> {
        let before = self.counters().await?;
        Ok(Window {
            spend: self,
            before,
            meter: CpuMeter::start(self.groups.clone()),
            started: Instant::now(),
        })
    }
}

impl Window<'_> {
    /// Ends the window now; the database counters are read again after the settle time.
    pub async fn close(self) -> anyhow::Result<Measured> {
        let cpu = self.meter.finish().await?;
        let seconds = self.started.elapsed().as_secs_f64();
        let at_end = self.spend.counters().await?;
        let settle = Duration::from_secs(self.spend.args.settle_seconds);
        let settled = Instant::now();
        if self.spend.pg.is_some() && !settle.is_zero() {
            eprintln!(
                "waiting {} s for PostgreSQL's statistics to settle",
                settle.as_secs()
            );
            tokio::time::sleep(settle).await;
        }
        let after = if self.spend.pg.is_some() {
            self.spend.counters().await?
        } else {
            at_end.clone()
        };
        let dbs = after
            .dbs
            .iter()
            .map(|(k, a)| {
                let b = self.before.dbs.get(k).copied().unwrap_or_default();
                (*k, *a - b)
            })
            .collect();
        Ok(Measured {
            seconds,
            settle_s: if self.spend.pg.is_some() {
                settled.elapsed().as_secs_f64()
            } else {
                0.0
            },
            cpu,
            delta: Counters {
                dbs,
                // Both read at the window's end: neither lags.
                wal_bytes: at_end.wal_bytes - self.before.wal_bytes,
                deliveries: at_end.deliveries - self.before.deliveries,
            },
        })
    }
}

/// x / n, or null when nothing completed.
fn per(x: f64, n: u64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(x / n as f64)
    }
}

impl Spend {
    /// The report of a window in which `exchanges` exchanges completed.
    pub fn report(&self, baseline: Option<&Baseline>, m: &Measured, exchanges: u64) -> Value {
        let ours = m.cpu.sum(&OURS);
        let nws = m.cpu.sum(&NWS_SHARE);
        let generator = m.cpu.sum(&[GENERATOR]);
        let other = m.cpu.sum(&[group::OTHER, group::PG_OTHER_DATABASES]);
        let idle_commits = |k: &str| {
            baseline
                .and_then(|b| b.commits_per_s.get(k))
                .copied()
                .unwrap_or(0.0)
        };
        let names = [&self.args.db, &self.args.nws_db];
        let databases: serde_json::Map<String, Value> = DATABASES
            .into_iter()
            .zip(names)
            .filter_map(|(k, name)| {
                let d = m.delta.dbs.get(k)?;
                // The settle time's background commits are not the window's.
                let in_window = d.commits - idle_commits(k) * m.settle_s;
                let marginal = in_window - idle_commits(k) * m.seconds;
                Some((
                    k.to_string(),
                    json!({
                        "name": name,
                        "commits": in_window.round(),
                        "rollbacks": d.rollbacks,
                        "rows_written": d.rows_written,
                        "commits_per_s": in_window / m.seconds,
                        "commits_per_exchange": per(marginal, exchanges),
                        "rows_written_per_exchange": per(d.rows_written, exchanges),
                    }),
                ))
            })
            .collect();
        json!({
            "exchanges": exchanges,
            "window_s": round3(m.seconds),
            "settle_s": round3(m.settle_s),
            "cpu_s": {
                "ours": round3(ours),
                "nws_sim_share": round3(nws),
                "load_generator": round3(generator),
                "other_not_benchmark": round3(other),
                "machine_busy": round3(m.cpu.busy),
            },
            "cpu_ms_per_exchange": {
                "ours": per(ours * 1000.0, exchanges),
                "nws_sim_share": per(nws * 1000.0, exchanges),
            },
            "cpu_by_group": m.cpu.to_json(),
            "databases": databases,
            "wal_bytes_per_exchange_whole_cluster": per(m.delta.wal_bytes, exchanges),
            "broker_deliveries": m.delta.deliveries,
            "broker_deliveries_per_s": m.delta.deliveries / m.seconds,
            "broker_deliveries_per_exchange": per(m.delta.deliveries, exchanges),
            "idle_baseline": baseline.map(|b| json!({
                "seconds": round3(b.seconds),
                "cpu_cores": {
                    "ours": b.cpu.sum(&OURS) / b.seconds,
                    "nws_sim_share": b.cpu.sum(&NWS_SHARE) / b.seconds,
                },
                "commits_per_s": b.commits_per_s,
                "broker_deliveries_per_s": b.deliveries_per_s,
            })),
            "notes": "ours = chukan + its database's backends + rabbitmq + postgres background; \
                      nws_sim_share = nws-sim + its database's backends. CPU is gross over the \
                      window (idle included, see idle_baseline); commits_per_exchange is net of \
                      the idle commit rate. rabbitmq, postgres background and WAL are shared \
                      with anything else running on the machine.",
        })
    }
}
