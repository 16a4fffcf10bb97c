//! Load generator: end-to-end code acquisitions (POST accepted → status done) against a
//! running chukan, through relay and nws-sim. Open loop: requests are offered at a fixed
//! rate whatever the latency, so a system that falls behind shows it as growing latency
//! and a backlog, not as a politely lower rate.
//!
//! Latency is the server's own `completed_at − created_at` (accepted by the API → code
//! stored), read after the window: status polling during the run would make the reads,
//! not the exchange, the load being measured. The window ends when chukan's own result
//! counter (on its operations listener) has counted every accepted request; what the machine
//! spent on it (CPU by process group, commits per database, broker deliveries) is reported in
//! total and per completed acquisition (see `chukan_loadtest::spend`).
//!
//! Bounded in time and count; talks only to the URLs it is given (loopback in our runs).

use chukan_loadtest::{
    client_token, fetch_all, ops, read_rss,
    spend::{Spend, SpendArgs},
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use rand::Rng;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "End-to-end code acquisition load against chukan")]
struct Args {
    /// chukan API base URL.
    #[arg(long, env = "CHUKAN_URL", default_value = "http://127.0.0.1:8080")]
    api: String,
    #[arg(long, env = "TENANT1_CLIENT_ID")]
    client_id: String,
    #[arg(long, env = "TENANT1_CLIENT_SECRET")]
    client_secret: String,
    /// Acquisitions offered per second (open loop: sent on schedule, whatever the latency).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Measured run length, seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Most requests in flight at once; beyond it the generator falls behind (and says so).
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// How long to wait after the window for the last requests to complete, seconds.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// chukan's operations listener (its result counter tells when the window is over).
    #[arg(long, env = "CHUKAN_OPS_URL", default_value = "http://127.0.0.1:9090")]
    ops: String,
    /// What the machine spends; `--pid` (chukan --target=all) also gives the RSS reported.
    #[command(flatten)]
    spend: SpendArgs,
}

/// chukan's count of the NWS's answers to acquisitions; duplicates and answers to nothing
/// pending are not completions.
const RESULTS: &str = "chukan_code_acquisition_results_total";
const NOT_COMPLETIONS: [&str; 2] = ["\"duplicate\"", "\"no_pending_request\""];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .build()?;
    let token = client_token(&http, &args.api, &args.client_id, &args.client_secret).await?;
    let run_tag: u64 = rand::thread_rng().gen_range(100..999);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let errors = Arc::new(AtomicU64::new(0));
    let behind = Arc::new(AtomicU64::new(0));
    let spend = Spend::connect(&args.spend, &args.ops).await?;
    let baseline = spend.baseline().await?;
    let results_before = ops::metric_sum(
        &ops::scrape(&http, &args.ops).await?,
        RESULTS,
        &NOT_COMPLETIONS,
    );
    let window = spend.open().await?;

    // Offer `rate` requests per second for `seconds`; collect the ids accepted.
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                behind.fetch_add(1, Ordering::Relaxed);
                slots.clone().acquire_owned().await?
            }
        };
        let (http, token, api, errors) = (
            http.clone(),
            token.clone(),
            args.api.clone(),
            errors.clone(),
        );
        // Unique addressee per request: every request is a new resident that goes all the
        // way to the NWS and back.
        let addressee = format!("{run_tag:03}{n:012}");
        sends.spawn(async move {
            let _permit = permit;
            match submit(&http, &api, &token, &addressee).await {
                Ok(id) => Some(id),
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("{e:#}");
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

    // The window closes when chukan has counted a result for every accepted request and the
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
        eprintln!("not every accepted acquisition completed within the drain time");
    }
    let measured = window.close().await?;

    // Read the server's own timestamps (after the window: these reads are not measured).
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    let mut latencies = Vec::new();
    let mut last_completion = None;
    let mut pending = ids.clone();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        let results = fetch_all(
            &http,
            &args.api,
            &token,
            &pending,
            |id| format!("/v1/codes/acquisitions/{id}"),
            32,
        )
        .await;
        for (id, v) in pending.iter().zip(results) {
            match v.as_ref().map(|v| v["status"].as_str().unwrap_or("")) {
                Some("done") => {
                    let (lat, done_at) = server_times(v.as_ref().context("status")?)?;
                    latencies.push(lat);
                    last_completion = last_completion.max(Some(done_at));
                }
                Some("failed") => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                _ => still.push(id.clone()),
            }
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
    let rss = args.spend.pid.map(read_rss).transpose()?;
    let report = json!({
        "scenario": "code-acquisition-e2e",
        "offered_rate_per_s": args.rate,
        "offered_seconds": offered_for,
        "accepted": ids.len(),
        "completed": latencies.len(),
        "not_completed": pending.len(),
        "errors": errors.load(Ordering::Relaxed),
        "sends_delayed_by_in_flight_cap": behind.load(Ordering::Relaxed),
        "completed_per_s": latencies.len() as f64 / offered_for,
        "latency_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
        "last_completion": last_completion.map(|t: chrono::DateTime<chrono::Utc>| t.to_rfc3339()),
        "rss_kib": rss.map(|(peak, now)| json!({ "peak": peak, "current": now })),
        "spend": spend.report(baseline.as_ref(), &measured, latencies.len() as u64),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn submit(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    addressee: &str,
) -> anyhow::Result<String> {
    let resident: u64 = rand::thread_rng().gen_range(10_000_000_000..99_999_999_999);
    let res = http
        .post(format!("{api}/v1/codes/acquisitions"))
        .bearer_auth(token)
        .json(&json!({
            "integrated_addressee_number": addressee,
            "resident_record_code": resident.to_string(),
        }))
        .send()
        .await?;
    if res.status().as_u16() != 202 {
        bail!("POST answered {}", res.status());
    }
    Ok(res.json::<Value>().await?["id"]
        .as_str()
        .context("no id")?
        .to_owned())
}

/// (`completed_at − created_at`, `completed_at`) as recorded by chukan.
fn server_times(v: &Value) -> anyhow::Result<(Duration, chrono::DateTime<chrono::Utc>)> {
    let at = |k: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        let s = v[k].as_str().with_context(|| format!("no {k}"))?;
        Ok(chrono::DateTime::parse_from_rfc3339(s)?.with_timezone(&chrono::Utc))
    };
    let done = at("completed_at")?;
    Ok(((done - at("created_at")?).to_std()?, done))
}
