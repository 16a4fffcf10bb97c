//! Load generator: end-to-end code acquisitions (POST accepted → status done) against a
//! running chukan, through relay and nws-sim. Closed loop: each worker sends one request,
//! follows it to completion, records the latency, and sends the next.
//!
//! Bounded in time and count; talks only to the URLs it is given (loopback in our runs).

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
    /// Concurrent closed-loop workers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured run length, seconds (after the warm-up).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Warm-up, seconds (not measured).
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Stop after this many measured acquisitions even if time remains.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Pause between status polls of one request, milliseconds.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// Process to report peak and current RSS of (e.g. chukan --target=all).
    #[arg(long)]
    pid: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    let token = token(&http, &args).await?;
    let started = Instant::now();
    let warm_until = started + Duration::from_secs(args.warmup);
    let stop_at = warm_until + Duration::from_secs(args.seconds);
    let measured = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Addressee numbers are unique per run and worker, so every request is a new resident
    // that goes all the way to the NWS and back.
    let run_tag: u64 = rand::thread_rng().gen_range(100..999);

    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (http, token, api) = (http.clone(), token.clone(), args.api.clone());
        let (measured, errors) = (measured.clone(), errors.clone());
        let (poll, max) = (Duration::from_millis(args.poll_ms), args.max_requests);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n: u64 = 0;
            while Instant::now() < stop_at && measured.load(Ordering::Relaxed) < max {
                n += 1;
                let addressee = format!("{run_tag:03}{worker:04}{n:08}");
                let t0 = Instant::now();
                match acquire(&http, &api, &token, &addressee, poll).await {
                    Ok(()) if t0 >= warm_until => {
                        latencies.push(t0.elapsed());
                        measured.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("worker {worker}: {e:#}");
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = (Instant::now().min(stop_at) - warm_until).as_secs_f64();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1000.0
    };
    let rss = args.pid.map(read_rss).transpose()?;
    let report = json!({
        "scenario": "code-acquisition-e2e",
        "concurrency": args.concurrency,
        "measured_seconds": elapsed,
        "completed": all.len(),
        "errors": errors.load(Ordering::Relaxed),
        "throughput_per_s": all.len() as f64 / elapsed,
        "latency_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
        "rss_kib": rss.map(|(peak, now)| json!({ "peak": peak, "current": now })),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn token(http: &reqwest::Client, args: &Args) -> anyhow::Result<String> {
    let res: Value = http
        .post(format!("{}/v1/auth/token", args.api))
        .json(&json!({
            "grant_type": "client_credentials",
            "client_id": args.client_id,
            "client_secret": args.client_secret,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    res["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the token response")
}

async fn acquire(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    addressee: &str,
    poll: Duration,
) -> anyhow::Result<()> {
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
    let id = res.json::<Value>().await?["id"]
        .as_str()
        .context("no id")?
        .to_owned();
    let url = format!("{api}/v1/codes/acquisitions/{id}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        match v["status"].as_str() {
            Some("done") => return Ok(()),
            Some("pending") if Instant::now() < deadline => tokio::time::sleep(poll).await,
            other => bail!("acquisition ended as {other:?}"),
        }
    }
}

/// (VmHWM, VmRSS) in KiB from /proc.
fn read_rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} not in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}
