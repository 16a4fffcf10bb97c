//! Load generator: end-to-end inquiries (情報照会) from municipality A to municipality B through
//! relay and nws-sim, with B answering automatically from its replicas. Open loop: inquiries
//! are offered at a fixed rate whatever the latency.
//!
//! Latency is the server's own `result_at − requested_at` (accepted by A's API → result
//! stored at A), read after the window. In the same run a raw RabbitMQ publish → consume echo
//! through lapin (persistent messages, publisher confirms, manual acks) gives the ceiling the
//! end-to-end rate is compared with, and B's `chukan_provision_lookup_seconds` histogram gives
//! the provider's look-up latency. The window ends when chukan's own result counter has
//! counted every accepted inquiry; what the machine spent on it (CPU by process group, commits
//! per database, broker deliveries) is reported in total and per completed inquiry (see
//! `chukan_loadtest::spend`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chukan_loadtest::{
    client_token,
    echo::raw_echo,
    fetch_all, ops, read_rss,
    spend::{Spend, SpendArgs},
};
use clap::Parser;
use futures_util::StreamExt as _;
use rand::Rng;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "End-to-end inquiry load (A inquires of B) against chukan")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Operations listener of the same process (for B's look-up histogram).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    ops: String,
    #[arg(long)]
    a_org: String,
    #[arg(long)]
    a_client_id: String,
    #[arg(long)]
    a_client_secret: String,
    #[arg(long)]
    b_org: String,
    #[arg(long)]
    b_client_id: String,
    #[arg(long)]
    b_client_secret: String,
    /// Residents known to both (codes acquired at both, replicas at B).
    #[arg(long, default_value_t = 200)]
    residents: u64,
    /// Inquiries offered per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Measured run length, seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    #[arg(long, default_value_t = 60)]
    drain_seconds: u64,
    /// RabbitMQ URL (with vhost) for the raw echo ceiling; skipped when empty.
    #[arg(long, default_value = "")]
    amqp: String,
    /// Length of the raw echo measurement, seconds.
    #[arg(long, default_value_t = 10)]
    echo_seconds: u64,
    /// What the machine spends; `--pid` (chukan --target=all) also gives the RSS reported.
    #[command(flatten)]
    spend: SpendArgs,
}

/// chukan's count of results received from the NWS; duplicates and results for no inquiry of
/// ours are not completions.
const RESULTS: &str = "chukan_inquiry_results_total";
const NOT_COMPLETIONS: [&str; 2] = ["\"duplicate\"", "\"unknown-inquiry\""];

const MEDICAL: &str = "TM00000000000031";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .build()?;
    let token_a = client_token(&http, &args.api, &args.a_client_id, &args.a_client_secret).await?;
    let token_b = client_token(&http, &args.api, &args.b_client_id, &args.b_client_secret).await?;
    let tag: u64 = rand::thread_rng().gen_range(100..999);

    eprintln!(
        "setup: {} residents with codes at A and B, replicas at B",
        args.residents
    );
    let residents = setup(&http, &args, &token_a, &token_b, tag).await?;
    // Let the code.linked events reach inquiry and provision before the window opens.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let echo = if args.amqp.is_empty() {
        Value::Null
    } else {
        eprintln!("raw RabbitMQ echo for {} s", args.echo_seconds);
        raw_echo(&args.amqp, Duration::from_secs(args.echo_seconds)).await?
    };

    let spend = Spend::connect(&args.spend, &args.ops).await?;
    let baseline = spend.baseline().await?;
    let results_before = ops::metric_sum(
        &ops::scrape(&http, &args.ops).await?,
        RESULTS,
        &NOT_COMPLETIONS,
    );
    let lookups_before = histogram(&http, &args.ops, "chukan_provision_lookup_seconds").await?;
    let window = spend.open().await?;
    eprintln!("offering {} inquiries/s for {} s", args.rate, args.seconds);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let errors = Arc::new(AtomicU64::new(0));
    let behind = Arc::new(AtomicU64::new(0));
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..total {
        tokio::time::sleep_until((started + interval.mul_f64(n as f64)).into()).await;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                behind.fetch_add(1, Ordering::Relaxed);
                slots.clone().acquire_owned().await?
            }
        };
        let body = json!({
            "affair_code": "JM00000000000002", "procedure_code": "JT00000000000201",
            "info_code": MEDICAL,
            "integrated_addressee_number": residents[(n % residents.len() as u64) as usize].0,
            "provider_org": args.b_org, "as_of": "2019-04-01"
        });
        let (http, token, api, errors) = (
            http.clone(),
            token_a.clone(),
            args.api.clone(),
            errors.clone(),
        );
        sends.spawn(async move {
            let _permit = permit;
            let res = http
                .post(format!("{api}/v1/inquiries"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
            match res {
                Ok(r) if r.status().as_u16() == 202 => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned)),
                Ok(r) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("POST /v1/inquiries answered {}", r.status());
                    }
                    None
                }
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("{e}");
                    }
                    None
                }
            }
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = sends.join_next().await {
        ids.extend(r?);
    }
    let offered_for = started.elapsed().as_secs_f64();

    eprintln!("draining {} accepted inquiries", ids.len());
    // The window closes when chukan has counted a result for every accepted inquiry and the
    // events that follow have been handled.
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    let target = results_before + ids.len() as f64;
    if !ops::drained(
        &http,
        &args.ops,
        RESULTS,
        &NOT_COMPLETIONS,
        target,
        deadline,
    )
    .await?
    {
        eprintln!("not every accepted inquiry completed within the drain time");
    }
    let measured = window.close().await?;

    // Read the server's own timestamps (after the window: these reads are not measured).
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let (mut first_request, mut last_result) = (None, None);
    let mut pending = ids.clone();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        let results = fetch_all(
            &http,
            &args.api,
            &token_a,
            &pending,
            |id| format!("/v1/inquiries/{id}"),
            32,
        )
        .await;
        for (id, v) in pending.iter().zip(results) {
            let Some(v) = v else {
                still.push(id.clone());
                continue;
            };
            let status = v["status"].as_str().unwrap_or("").to_owned();
            if status == "sent" || status.is_empty() {
                still.push(id.clone());
                continue;
            }
            let (requested, result) = (at(&v, "requested_at")?, at(&v, "result_at")?);
            latencies.push((result - requested).to_std().unwrap_or_default());
            first_request = first_request.min(Some(requested)).or(Some(requested));
            last_result = last_result.max(Some(result));
            *statuses.entry(status).or_default() += 1;
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    // Completed per second over the server's own span: first accepted → last result stored.
    let span = match (first_request, last_result) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default().as_secs_f64(),
        _ => f64::NAN,
    };
    let lookups_after = histogram(&http, &args.ops, "chukan_provision_lookup_seconds").await?;
    let lookups = diff(&lookups_after, &lookups_before);
    let e2e_rate = latencies.len() as f64 / span;
    let echo_rate = echo["messages_per_s"].as_f64();
    let rss = args.spend.pid.map(read_rss).transpose()?;
    let report = json!({
        "scenario": "inquiry-e2e (A → relay → nws-sim → B auto-answer → nws-sim → A)",
        "offered_rate_per_s": args.rate,
        "offered_seconds": offered_for,
        "accepted": ids.len(),
        "completed": latencies.len(),
        "not_completed": pending.len(),
        "statuses": statuses,
        "errors": errors.load(Ordering::Relaxed),
        "sends_delayed_by_in_flight_cap": behind.load(Ordering::Relaxed),
        "completed_per_s": e2e_rate,
        "latency_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
        "provider_lookup_ms": {
            "count": lookups.iter().map(|(_, n)| *n).max().unwrap_or(0),
            "p50_le": quantile(&lookups, 0.50).map(|s| s * 1000.0),
            "p99_le": quantile(&lookups, 0.99).map(|s| s * 1000.0),
        },
        "raw_rabbitmq_echo": echo,
        "ratio_e2e_to_echo": echo_rate.map(|e| e2e_rate / e),
        "rss_kib": rss.map(|(peak, now)| json!({ "peak": peak, "current": now })),
        "spend": spend.report(baseline.as_ref(), &measured, latencies.len() as u64),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Acquires a code for each resident at both municipalities and registers one No. 31 replica
/// per resident at B. Returns (A's addressee, B's addressee) per resident.
async fn setup(
    http: &reqwest::Client,
    args: &Args,
    token_a: &str,
    token_b: &str,
    tag: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    let residents: Vec<(String, String, String)> = (0..args.residents)
        .map(|i| {
            (
                format!("1{tag:03}{i:011}"),
                format!("2{tag:03}{i:011}"),
                // 住民票コード: 11 digits (the tag is 100..999, three digits).
                format!("{tag:03}{i:08}"),
            )
        })
        .collect();
    let acquisitions = residents.iter().flat_map(|(a, b, rrc)| {
        [
            (token_a.to_owned(), a.clone(), rrc.clone()),
            (token_b.to_owned(), b.clone(), rrc.clone()),
        ]
    });
    let ids: Vec<anyhow::Result<(String, String)>> = futures_util::stream::iter(acquisitions)
        .map(|(token, addressee, rrc)| async move {
            let v: Value = http
                .post(format!("{}/v1/codes/acquisitions", args.api))
                .bearer_auth(&token)
                .json(
                    &json!({"integrated_addressee_number": addressee, "resident_record_code": rrc}),
                )
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok((token, v["id"].as_str().context("no id")?.to_owned()))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in ids {
        let (token, id) = id?;
        loop {
            let v: Value = http
                .get(format!("{}/v1/codes/acquisitions/{id}", args.api))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            match v["status"].as_str() {
                Some("done") => break,
                Some("pending") if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => bail!("code acquisition did not finish: {v}"),
            }
        }
    }
    // Small batches: the JSON body limit (server.json_limit_bytes, 64 KiB) bounds a request.
    for chunk in residents.chunks(50) {
        let records: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, (_, b, _))| {
                json!({
                    "operation": "register", "record_id": format!("L{tag}{b}{i}"),
                    "integrated_addressee_number": b, "info_code": MEDICAL, "dataset": "0101",
                    "record_key": format!("K{b}"), "major_version": "0002",
                    "items": [
                        {"code": "I0001", "value": format!("{:08}", i), "version": "0002", "updated": "2018-04-01"},
                        {"code": "I0002", "value": "2018-04-01"},
                        {"code": "I0003", "null_reason": "NotAcceptable"}
                    ]
                })
            })
            .collect();
        let res = http
            .post(format!("{}/v1/replicas", args.api))
            .bearer_auth(token_b)
            .json(&json!({ "records": records }))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!(
                "registering replicas answered {}: {}",
                res.status(),
                res.text().await?
            );
        }
    }
    Ok(residents.into_iter().map(|(a, b, _)| (a, b)).collect())
}

fn at(v: &Value, key: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let s = v[key]
        .as_str()
        .with_context(|| format!("no {key} in {v}"))?;
    Ok(chrono::DateTime::parse_from_rfc3339(s)?.with_timezone(&chrono::Utc))
}

/// Cumulative buckets (upper bound in seconds, count) of a Prometheus histogram, summed
/// over its label sets.
async fn histogram(
    http: &reqwest::Client,
    ops: &str,
    name: &str,
) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = http
        .get(format!("{ops}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut buckets: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let prefix = format!("{name}_bucket{{");
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        let count: u64 = line.rsplit(' ').next().unwrap_or("0").parse::<f64>()? as u64;
        let entry = buckets.entry(le.to_owned()).or_insert((bound, 0));
        entry.1 += count;
    }
    let mut out: Vec<(f64, u64)> = buckets.into_values().collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

fn diff(after: &[(f64, u64)], before: &[(f64, u64)]) -> Vec<(f64, u64)> {
    after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == le)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            (*le, n.saturating_sub(was))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` (a histogram gives no finer answer).
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let want = (total as f64 * q).ceil() as u64;
    buckets.iter().find(|(_, n)| *n >= want).map(|(le, _)| *le)
}
