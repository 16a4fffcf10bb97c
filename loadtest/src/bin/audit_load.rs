//! Benchmark helpers for the audit log (issue #5), driven by `loadtest/run-audit-load`:
//! - `publish`: puts N `audit.record` events on the bus (a backlog), as the services would;
//! - `drain`: waits until the logs hold N records and reports the append rate (records/s)
//!   from the first to the last record appended, with proofs maintained (every node stored);
//! - `stats-drain`: waits until the statistics service has counted N exchange events (the
//!   `stats.exchange` twins `publish --with-stats` put beside the records) and reports the
//!   counting rate (events/s), the statistics side of the same firehose;
//! - `proofs`: GETs inclusion proofs of random records over HTTP, checks each against the
//!   signed root with an RFC 9162 verifier written here, and reports latency percentiles.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chukan_proto::{AuditRecord, ExchangeStat, Message as _};
use clap::{Parser, Subcommand};
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Publish {
        #[arg(long)]
        records: u64,
        /// Organisation codes the records are spread over (round robin).
        #[arg(long, value_delimiter = ',')]
        tenants: Vec<String>,
        #[arg(long, default_value_t = 512)]
        in_flight: usize,
        /// Also publish each record's counting twin on `stats.exchange`, as the services do.
        #[arg(long)]
        with_stats: bool,
    },
    StatsDrain {
        /// Owner connection (reads every tenant's statistics).
        #[arg(long)]
        db: String,
        #[arg(long)]
        events: i64,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    Drain {
        /// Owner connection (reads every tenant's log size).
        #[arg(long)]
        db: String,
        #[arg(long)]
        records: i64,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    Proofs {
        #[arg(long)]
        api: String,
        #[arg(long)]
        db: String,
        #[arg(long)]
        tenant: String,
        /// A staff member's access token (the audit API serves people, not business systems).
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 5000)]
        count: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Publish {
            records,
            tenants,
            in_flight,
            with_stats,
        } => publish(records, &tenants, in_flight, with_stats).await,
        Command::Drain {
            db,
            records,
            timeout_secs,
        } => {
            let report = drain(
                &db,
                "SELECT coalesce(sum(size), 0)::bigint FROM audit.logs",
                records,
                Duration::from_secs(timeout_secs),
            )
            .await?;
            println!("{}", report.json("appended", "records_per_second"));
            Ok(())
        }
        Command::StatsDrain {
            db,
            events,
            timeout_secs,
        } => {
            let report = drain(
                &db,
                "SELECT coalesce(sum(count), 0)::bigint FROM stats.exchange_days",
                events,
                Duration::from_secs(timeout_secs),
            )
            .await?;
            println!("{}", report.json("counted", "events_per_second"));
            Ok(())
        }
        Command::Proofs {
            api,
            db,
            tenant,
            token,
            count,
        } => proofs(&api, &db, &tenant, &token, count).await,
    }
}

/// A realistic provision record: codes, serials and times of the sizes the services send.
fn record(i: u64, tenant: &str) -> AuditRecord {
    let now = chrono::Utc::now().timestamp_millis();
    AuditRecord {
        record_id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.to_owned(),
        event: "provision.made".into(),
        inquirer_org: "4010000000000004".into(),
        provider_org: tenant.to_owned(),
        affair_code: "JM00000000000002".into(),
        procedure_code: "JT00000000000201".into(),
        info_code: "TM00000000000031".into(),
        serial_no: format!("{:016}", i / 10),
        branch_no: i32::try_from(i % 10).unwrap_or(0),
        permit_id: uuid::Uuid::now_v7().to_string(),
        addressee: format!("{:015}", 100_000 + i % 1_000_000),
        requested_at_ms: now - 50,
        provided_at_ms: now,
        non_disclosure: i.is_multiple_of(50),
        outcome: "provided".into(),
        at_ms: now,
        ..Default::default()
    }
}

async fn publish(
    records: u64,
    tenants: &[String],
    in_flight: usize,
    with_stats: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(!tenants.is_empty(), "--tenants is empty");
    let settings = chukan_config::Settings::load(None)?;
    let bus = chukan_mq::Bus::connect(&settings.amqp).await?;
    let publisher = bus.publisher().await?;
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..records)
        .map(|i| {
            let tenant = &tenants[usize::try_from(i).unwrap_or(0) % tenants.len()];
            let record = record(i, tenant);
            let msg = chukan_mq::OutgoingMessage::new(
                tenant.as_str(),
                chukan_proto::AUDIT_RECORD,
                record.encode_to_vec(),
            );
            let twin = with_stats.then(|| {
                chukan_mq::OutgoingMessage::new(
                    tenant.as_str(),
                    chukan_proto::STATS_EXCHANGE,
                    ExchangeStat::of(&record).encode_to_vec(),
                )
            });
            let publisher = publisher.clone();
            async move {
                publisher.publish(&msg).await?;
                match twin {
                    Some(twin) => publisher.publish(&twin).await,
                    None => Ok(()),
                }
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "published": records - failed as u64,
            "failed": failed,
            "seconds": secs,
            "per_second": records as f64 / secs,
        })
    );
    bus.close().await;
    anyhow::ensure!(failed == 0, "{failed} publishes failed");
    Ok(())
}

/// How a backlog drained: what was counted, from the first to the last row seen.
struct Drained {
    total: i64,
    first_to_last: f64,
    per_second: f64,
    best_window: f64,
    from_start: f64,
}

impl Drained {
    fn json(&self, total: &str, rate: &str) -> serde_json::Value {
        serde_json::json!({
            total: self.total,
            "seconds_first_to_last": self.first_to_last,
            rate: self.per_second,
            "best_one_second_window_per_second": self.best_window,
            "seconds_from_start": self.from_start,
        })
    }
}

/// Polls `count_sql` (one bigint) every 20 ms until it reaches `target`.
async fn drain(
    db: &str,
    count_sql: &str,
    target: i64,
    timeout: Duration,
) -> anyhow::Result<Drained> {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let started = Instant::now();
    let mut first: Option<(Instant, i64)> = None;
    let mut samples = Vec::new();
    loop {
        // The table may not exist until chukan has migrated: keep asking until the deadline.
        let size: i64 = match client.query_one(count_sql, &[]).await {
            Ok(row) => row.get(0),
            Err(_) => 0,
        };
        let now = Instant::now();
        if size > 0 && first.is_none() {
            first = Some((now, size));
        }
        samples.push((now, size));
        if size >= target {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "only {size} of {target} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (t0, s0) = first.context("nothing counted")?;
    let (t1, s1) = *samples.last().context("no sample")?;
    let secs = (t1 - t0).as_secs_f64().max(1e-6);
    // The steadiest second-long window, to show the rate without start-up effects.
    let mut best = 0.0f64;
    for (i, (ta, sa)) in samples.iter().enumerate() {
        if let Some((tb, sb)) = samples[i..]
            .iter()
            .find(|(t, _)| (*t - *ta) >= Duration::from_secs(1))
        {
            best = best.max((sb - sa) as f64 / (*tb - *ta).as_secs_f64());
        }
    }
    Ok(Drained {
        total: s1,
        first_to_last: secs,
        per_second: (s1 - s0) as f64 / secs,
        best_window: best,
        from_start: (t1 - started).as_secs_f64(),
    })
}

fn node(l: &[u8], r: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// RFC 9162 §2.1.3.2, independent of the service's code.
fn inclusion_ok(index: u64, size: u64, leaf: &[u8], path: &[Vec<u8>], root: &[u8]) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r: [u8; 32] = match leaf.try_into() {
        Ok(r) => r,
        Err(_) => return false,
    };
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r.as_slice() == root
}

async fn proofs(
    api: &str,
    db: &str,
    tenant: &str,
    token: &str,
    count: usize,
) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let ids: Vec<uuid::Uuid> = client
        .query(
            "SELECT record_id FROM audit.records WHERE tenant_id = $1 ORDER BY random() LIMIT $2",
            &[&tenant, &i64::try_from(count)?],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(ids.len());
    let mut bad = 0usize;
    let mut tree_size = 0u64;
    // One request at a time: the latency of a proof, not of a queue.
    for id in &ids {
        let started = Instant::now();
        let res = http
            .get(format!("{api}/v1/records/{id}/proof"))
            .bearer_auth(token)
            .send()
            .await?;
        let body: serde_json::Value = res.error_for_status()?.json().await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let hex_of = |v: &serde_json::Value| hex::decode(v.as_str().unwrap_or_default());
        let path: Result<Vec<Vec<u8>>, _> = body["path"]
            .as_array()
            .map(|a| a.iter().map(hex_of).collect())
            .unwrap_or_else(|| Ok(Vec::new()));
        tree_size = body["tree_size"].as_u64().unwrap_or(0);
        let ok = inclusion_ok(
            body["leaf_index"].as_u64().unwrap_or(u64::MAX),
            tree_size,
            &hex_of(&body["leaf_hash"])?,
            &path?,
            &hex_of(&body["tree_head"]["root_hash"])?,
        );
        if !ok {
            bad += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    println!(
        "{}",
        serde_json::json!({
            "proofs": latencies.len(),
            "tree_size": tree_size,
            "failed_verification": bad,
            "latency_ms": { "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0) },
        })
    );
    anyhow::ensure!(bad == 0, "{bad} proofs did not verify");
    Ok(())
}
