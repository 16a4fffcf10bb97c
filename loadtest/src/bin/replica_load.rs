//! Replica registration benchmark (issue #3): registration lists through the real server
//! (upload → nightly batch), against plain `COPY` of the same rows into the same table.
//!
//! `generate` writes a registration list of N valid entries to disk, streaming.
//! `run` measures, against a running `chukan --target=provision` started by
//! `loadtest/run-replica-load` on a fresh database and vhost:
//!  1. ours: the file is uploaded with a streaming body (`POST /v1/replica-uploads`), then
//!     applied by `chukan batch run replica-uploads` (a separate process, as a cron-style night
//!     would) — or by the server itself with `--apply immediate`;
//!  2. the baseline, in the same run: `COPY … FROM STDIN (FORMAT binary)` of the same number of
//!     rows, shaped as `provision.replicas` rows end up (same columns, same value sizes, sealed
//!     bytes as long as ours), into a fresh `LIKE provision.replicas INCLUDING ALL` table (same
//!     primary key and indexes, no RLS) with one stream and with two parallel streams.
//!
//! CPU time per process group is sampled from /proc during each phase, so the report says where
//! the time went. Talks only to the URLs and database it is given (loopback in our runs).

use chukan_loadtest::{
    cpu::{CpuMeter, DbRule, Groups, round3},
    read_rss,
};
use std::{
    cell::Cell,
    collections::HashMap,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::Stdio,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, Utc};
use chukan_auth::{Role, TokenIssuer};
use chukan_config::Settings;
use chukan_layout::{ItemValue, Payload};
use chukan_replica_list::{EntrySpec, ListWriter, Operation};
use clap::{Parser, Subcommand, ValueEnum};
use rand::RngCore as _;
use serde_json::{Value, json};
use tokio_postgres::{
    NoTls,
    binary_copy::BinaryCopyInWriter,
    types::{ToSql, Type},
};

const ORG: &str = "1310010000000001";
const INFO_CODE: &str = "TM00000000000031";
const MAJOR_VERSION: &str = "0002";
const DATASET: &str = "0101";

#[derive(Debug, Parser)]
#[command(about = "Replica registration benchmark: ours (upload + batch) against plain COPY")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a registration list of valid No. 31 entries (streaming, constant memory).
    Generate {
        /// Number of entries.
        #[arg(long, required_unless_present = "target_bytes")]
        entries: Option<u64>,
        /// Instead of a count: write entries until the file has at least this many bytes.
        #[arg(long)]
        target_bytes: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure ours and the COPY baseline (settings from the CHUKAN__ environment).
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Apply {
    /// `chukan batch run replica-uploads` in its own process (the nightly batch).
    Batch,
    /// The organisation is set to immediate processing: the server applies after the upload.
    Immediate,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The registration list to upload (from `generate`).
    #[arg(long)]
    file: PathBuf,
    /// chukan API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// The chukan binary (for `batch run`).
    #[arg(long)]
    chukan: PathBuf,
    /// Pid of the running `chukan --target=provision`.
    #[arg(long)]
    server_pid: u32,
    #[arg(long, value_enum, default_value = "batch")]
    apply: Apply,
    /// Skip the COPY baseline.
    #[arg(long)]
    no_copy: bool,
    /// Where to write the JSON report (it is printed too).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Generate {
            entries,
            target_bytes,
            out,
        } => {
            let (n, bytes, took) = generate(&out, entries, target_bytes)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "file": out,
                    "entries": n,
                    "file_bytes": bytes,
                    "mean_file_bytes_per_entry": bytes as f64 / n.max(1) as f64,
                    "seconds": took.as_secs_f64(),
                }))?
            );
            Ok(())
        }
        Command::Run(run_args) => run(run_args).await,
    }
}

// ---- generator ------------------------------------------------------------------------

/// Counts what passes through, so the generator can stop at a size.
struct Counting<W> {
    inner: W,
    written: Rc<Cell<u64>>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.set(self.written.get() + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn item(code: &str, value: String) -> ItemValue {
    ItemValue {
        code: code.into(),
        value: Some(value),
        version: None,
        updated: None,
        null_reason: None,
    }
}

/// No. 31 (医療保険給付関係情報) dataset 0101 entry `n`: I0001 被保険者番号 (repeating group),
/// I0002 資格取得年月日, I0004 保険者番号 (8 digits), I0005 被保険者記号. Fixed-width fields, so
/// every entry has the same size.
fn payload(n: u64) -> Payload {
    let updated = NaiveDate::from_ymd_opt(2017, 3, 1);
    vec![
        ItemValue {
            version: Some("0002".into()),
            updated,
            ..item("I0001", format!("M{n:09}"))
        },
        item("I0002", "2015-04-01".into()),
        item("I0004", format!("{:08}", n % 100_000_000)),
        item("I0005", format!("S{:09}", n % 1_000_000_000)),
    ]
}

fn generate(
    out: &Path,
    entries: Option<u64>,
    target_bytes: Option<u64>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let written = Rc::new(Cell::new(0u64));
    let sink = Counting {
        inner: BufWriter::with_capacity(1 << 20, file),
        written: written.clone(),
    };
    let mut list = ListWriter::new(sink)?;
    let mut n = 0u64;
    loop {
        let done = match (entries, target_bytes) {
            (Some(max), _) => n >= max,
            (None, Some(bytes)) => written.get() >= bytes,
            (None, None) => true,
        };
        if done {
            break;
        }
        n += 1;
        let record_id = format!("R{n:015}");
        let addressee = format!("{n:015}");
        let key = format!("K{n:09}");
        let payload = payload(n);
        list.write(&EntrySpec {
            operation: Operation::Register,
            record_id: &record_id,
            addressee: &addressee,
            info_code: INFO_CODE,
            dataset: DATASET,
            record_key: &key,
            major_version: MAJOR_VERSION,
            parent_record_key: None,
            public_start: None,
            public_end: None,
            payload: &payload,
        })?;
    }
    let sink = list.finish()?;
    sink.inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok((n, written.get(), started.elapsed()))
}

// ---- CPU accounting -------------------------------------------------------------------

/// How the phases' CPU time is grouped: the server, its batch process, the database's
/// sessions (this generator's COPY and checks connect as postgres, chukan as its own roles).
fn cpu_groups(server_pid: u32, db: &str) -> Arc<Groups> {
    let rule = |user: Option<&str>, group: &str| DbRule {
        database: db.to_string(),
        user: user.map(str::to_string),
        group: group.to_string(),
    };
    Arc::new(Groups {
        pids: vec![
            (server_pid, "chukan server (--target=provision)".into()),
            (std::process::id(), "load generator (replica-load)".into()),
        ],
        databases: vec![
            rule(
                Some("postgres"),
                "postgres: loadtest sessions (COPY, checks)",
            ),
            rule(None, "postgres: chukan's sessions"),
        ],
        recognise: Some(Box::new(move |pid, comm| match comm {
            "chukan" if is_our_batch(pid, server_pid) => Some("chukan batch run".into()),
            "time" => Some("other".into()),
            _ => None,
        })),
        activity: None,
    })
}

/// A `chukan batch run` of the same binary as the server's (other chukan processes on the
/// machine, e.g. tests, are not part of the benchmark).
fn is_our_batch(pid: u32, server_pid: u32) -> bool {
    let exe = |p: u32| std::fs::read_link(format!("/proc/{p}/exe")).ok();
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
    exe(pid).is_some() && exe(pid) == exe(server_pid) && args.contains(&&b"batch"[..])
}

// ---- ours -------------------------------------------------------------------------------

fn token(issuer: &TokenIssuer) -> anyhow::Result<String> {
    Ok(issuer
        .issue("replica-load", ORG, &[Role::SystemClient], None)
        .map_err(|e| anyhow::anyhow!("issuing a token: {e}"))?
        .access_token)
}

async fn superuser(settings: &Settings) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&settings.database.url, NoTls)
        .await
        .context("connecting to PostgreSQL as the owner")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

fn database_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .unwrap_or_default()
        .to_string()
}

/// Organisation settings as admin would have announced them, the nightly schedule kept out of
/// the way (tonight's run marked finished), and a queue for the events provision publishes
/// that no service in this process consumes.
async fn setup(
    settings: &Settings,
    db: &tokio_postgres::Client,
    immediate: bool,
) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO provision.orgs (org_code, kind, population, upload_group, immediate, revision)
         VALUES ($1, 'municipality', 3800000, 'A', $2, 1)
         ON CONFLICT (org_code) DO UPDATE SET immediate = EXCLUDED.immediate",
        &[&ORG, &immediate],
    )
    .await
    .context("inserting the organisation settings")?;
    db.batch_execute(
        "INSERT INTO provision.job_runs (job, day, started_at, finished_at)
         SELECT 'nightly', d, now(), now()
         FROM (VALUES ((now() AT TIME ZONE 'Asia/Tokyo')::date),
                      ((now() AT TIME ZONE 'Asia/Tokyo')::date + 1)) AS x(d)
         ON CONFLICT DO NOTHING",
    )
    .await
    .context("keeping the nightly batch out of the way")?;
    let bus = chukan_mq::Bus::connect(&settings.amqp).await?;
    bus.declare_topology().await?;
    bus.declare_queue(&chukan_mq::QueueSpec::new(
        "bench.replica-events",
        &["batch.progress", "stats.replica-count"],
    ))
    .await?;
    bus.close().await;
    Ok(())
}

async fn upload(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    file: &Path,
) -> anyhow::Result<Value> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
    let res = http
        .post(format!("{api}/v1/replica-uploads?file_name=bench.xml"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/xml")
        .body(body)
        .send()
        .await
        .context("upload")?;
    let status = res.status();
    let text = res.text().await?;
    if status.as_u16() != 202 {
        bail!("upload answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

async fn report_of(
    http: &reqwest::Client,
    api: &str,
    issuer: &TokenIssuer,
    id: &str,
) -> anyhow::Result<Value> {
    Ok(http
        .get(format!("{api}/v1/replica-uploads/{id}"))
        .bearer_auth(token(issuer)?)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn server_seconds(report: &Value) -> Option<f64> {
    let at = |k: &str| -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(report[k].as_str()?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    Some((at("finished_at")? - at("started_at")?).num_milliseconds() as f64 / 1000.0)
}

/// Runs `chukan batch run replica-uploads` under /usr/bin/time; returns (wall s, max RSS KiB,
/// user s, sys s).
async fn batch_run(chukan: &Path, log: &Path) -> anyhow::Result<(f64, u64, f64, f64)> {
    let times = log.with_extension("time");
    let out = std::fs::File::create(log)?;
    let started = Instant::now();
    let status = tokio::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M %U %S")
        .arg("-o")
        .arg(&times)
        .arg(chukan)
        .args(["batch", "run", "replica-uploads"])
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .status()
        .await
        .context("starting chukan batch run (needs /usr/bin/time)")?;
    let wall = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("chukan batch run failed ({status}); see {}", log.display());
    }
    let t = std::fs::read_to_string(&times)?;
    let v: Vec<&str> = t
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let num = |i: usize| -> f64 { v.get(i).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN) };
    Ok((wall, num(0) as u64, num(1), num(2)))
}

// ---- COPY baseline ----------------------------------------------------------------------

/// One row as `provision.replicas` holds it, prepared before timing.
struct Row {
    record_id: String,
    key_bidx: [u8; 32],
    addressee_bidx: [u8; 32],
    sealed_at: usize,
}

struct Rows {
    rows: Vec<Row>,
    /// Random bytes the sealed column is cut from (ciphertext does not compress).
    pool: Vec<u8>,
    sealed_len: usize,
    bytes: i32,
    upload_id: uuid::Uuid,
    registered_at: DateTime<Utc>,
}

fn make_rows(n: u64, sealed_len: usize, bytes: i32) -> Rows {
    let mut rng = rand::thread_rng();
    let mut pool = vec![0u8; (1 << 20) + sealed_len];
    rng.fill_bytes(&mut pool);
    let rows = (1..=n)
        .map(|i| {
            let mut key_bidx = [0u8; 32];
            let mut addressee_bidx = [0u8; 32];
            rng.fill_bytes(&mut key_bidx);
            rng.fill_bytes(&mut addressee_bidx);
            Row {
                record_id: format!("R{i:015}"),
                key_bidx,
                addressee_bidx,
                sealed_at: (i as usize).wrapping_mul(7919) % (1 << 20),
            }
        })
        .collect();
    Rows {
        rows,
        pool,
        sealed_len,
        bytes,
        upload_id: uuid::Uuid::now_v7(),
        registered_at: Utc::now(),
    }
}

const COPY_COLUMNS: &str = "tenant_id, info_code, major_version, dataset, key_bidx, record_id, \
     addressee_bidx, public_start, public_end, sealed, bytes, upload_id, registered_at";

async fn copy_stream(
    settings: &Settings,
    rows: &Rows,
    range: std::ops::Range<usize>,
) -> anyhow::Result<u64> {
    let client = superuser(settings).await?;
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY bench.replicas_copy ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::BYTEA,
        Type::TEXT,
        Type::BYTEA,
        Type::DATE,
        Type::DATE,
        Type::BYTEA,
        Type::INT4,
        Type::UUID,
        Type::TIMESTAMPTZ,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    tokio::pin!(writer);
    let none: Option<NaiveDate> = None;
    for row in &rows.rows[range] {
        let key: &[u8] = &row.key_bidx;
        let addressee: &[u8] = &row.addressee_bidx;
        let sealed: &[u8] = &rows.pool[row.sealed_at..row.sealed_at + rows.sealed_len];
        let values: [&(dyn ToSql + Sync); 13] = [
            &ORG,
            &INFO_CODE,
            &MAJOR_VERSION,
            &DATASET,
            &key,
            &row.record_id,
            &addressee,
            &none,
            &none,
            &sealed,
            &rows.bytes,
            &rows.upload_id,
            &rows.registered_at,
        ];
        writer.as_mut().write(&values).await?;
    }
    Ok(writer.finish().await?)
}

/// COPY of all rows with `streams` parallel connections into a fresh table; rows/s.
async fn copy_baseline(
    settings: &Arc<Settings>,
    db: &tokio_postgres::Client,
    rows: &Arc<Rows>,
    streams: usize,
    server_pid: u32,
) -> anyhow::Result<Value> {
    db.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS bench;
         DROP TABLE IF EXISTS bench.replicas_copy;
         CREATE TABLE bench.replicas_copy (LIKE provision.replicas INCLUDING ALL);",
    )
    .await?;
    db.batch_execute("CHECKPOINT").await?;
    let n = rows.rows.len();
    let meter = CpuMeter::start(cpu_groups(
        server_pid,
        &database_name(&settings.database.url),
    ));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..streams {
        let (settings, rows) = (settings.clone(), rows.clone());
        let range = n * s / streams..n * (s + 1) / streams;
        tasks.spawn(async move { copy_stream(&settings, &rows, range).await });
    }
    let mut copied = 0u64;
    while let Some(r) = tasks.join_next().await {
        copied += r??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = meter.finish().await?;
    let count: i64 = db
        .query_one("SELECT count(*) FROM bench.replicas_copy", &[])
        .await?
        .get(0);
    let size: i64 = db
        .query_one("SELECT pg_total_relation_size('bench.replicas_copy')", &[])
        .await?
        .get(0);
    db.batch_execute("DROP TABLE bench.replicas_copy").await?;
    if count as u64 != n as u64 || copied != n as u64 {
        bail!("COPY with {streams} stream(s): {copied} copied, {count} in the table, {n} meant");
    }
    eprintln!(
        "COPY {streams} stream(s): {n} rows in {secs:.2} s = {:.0} rows/s",
        n as f64 / secs
    );
    Ok(json!({
        "streams": streams,
        "rows": n,
        "seconds": round3(secs),
        "rows_per_s": (n as f64 / secs).round(),
        "table_bytes_with_indexes": size,
        "cpu": cpu.to_json(),
    }))
}

// ---- the run ----------------------------------------------------------------------------

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = Arc::new(Settings::load(None).context("settings from CHUKAN__ environment")?);
    let dbname = database_name(&settings.database.url);
    let issuer = TokenIssuer::from_settings(&settings.auth)
        .map_err(|e| anyhow::anyhow!("token issuer: {e}"))?;
    let db = superuser(&settings).await?;
    setup(&settings, &db, args.apply == Apply::Immediate).await?;
    let pg: Vec<(String, String)> = db
        .query(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN
             ('shared_buffers', 'max_wal_size', 'synchronous_commit', 'wal_level', 'fsync',
              'full_page_writes', 'checkpoint_timeout') ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let file_bytes = std::fs::metadata(&args.file)?.len();
    let http = reqwest::Client::builder().build()?;

    // 1. Upload (parse + check + seal + store, one transaction).
    db.batch_execute("CHECKPOINT").await?;
    eprintln!("uploading {} ({file_bytes} bytes)", args.file.display());
    let meter = CpuMeter::start(cpu_groups(args.server_pid, &dbname));
    let started = Instant::now();
    let accepted = upload(&http, &args.api, &token(&issuer)?, &args.file).await?;
    let upload_s = started.elapsed().as_secs_f64();
    let upload_cpu = meter.finish().await?;
    let after_upload_rss = read_rss(args.server_pid)?;
    let id = accepted["upload_id"]
        .as_str()
        .context("no upload_id")?
        .to_string();
    let entries = accepted["entries"].as_i64().context("no entries")?;
    eprintln!(
        "uploaded {entries} entries in {upload_s:.2} s; applying ({:?})",
        args.apply
    );

    // 2. Apply.
    if args.apply == Apply::Batch {
        db.batch_execute("CHECKPOINT").await?;
    }
    let meter = CpuMeter::start(cpu_groups(args.server_pid, &dbname));
    let started = Instant::now();
    let batch = match args.apply {
        Apply::Batch => {
            let log = args
                .report
                .clone()
                .unwrap_or_else(|| PathBuf::from("replica-load"))
                .with_extension("batch.log");
            let (wall, rss, user, sys) = batch_run(&args.chukan, &log).await?;
            Some(
                json!({ "wall_s": round3(wall), "peak_rss_kib": rss, "user_s": user, "sys_s": sys,
                         "log": log }),
            )
        }
        Apply::Immediate => {
            loop {
                let r = report_of(&http, &args.api, &issuer, &id).await?;
                if r["state"] == "done" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    };
    // In immediate mode the apply started with the 202, so it is counted from there.
    let apply_s = started.elapsed().as_secs_f64();
    let apply_cpu = meter.finish().await?;
    let report = report_of(&http, &args.api, &issuer, &id).await?;
    let server_rss = read_rss(args.server_pid)?;
    let registered = report["registered"].as_i64().unwrap_or(-1);
    if report["state"] != "done" || registered != entries || report["rejected"] != 0 {
        bail!("upload did not register every entry: {report}");
    }
    let facts = db
        .query_one(
            "SELECT count(*), avg(length(sealed))::float8, avg(bytes)::float8,
                    avg(pg_column_size(r.*))::float8, pg_total_relation_size('provision.replicas')
             FROM provision.replicas r WHERE tenant_id = $1",
            &[&ORG],
        )
        .await?;
    let (rows_in_table, sealed_len, entry_bytes, row_bytes, table_bytes): (
        i64,
        f64,
        f64,
        f64,
        i64,
    ) = (
        facts.get(0),
        facts.get(1),
        facts.get(2),
        facts.get(3),
        facts.get(4),
    );
    if rows_in_table != entries {
        bail!("{rows_in_table} rows in provision.replicas, {entries} uploaded");
    }
    let total_s = upload_s + apply_s;
    let ours_e2e = entries as f64 / total_s;
    let ours_apply = entries as f64 / apply_s;
    eprintln!(
        "ours: upload {upload_s:.2} s + apply {apply_s:.2} s = {total_s:.2} s → {ours_e2e:.0} records/s end to end, {ours_apply:.0} apply only"
    );

    // 3. COPY of the same rows, one stream and two.
    let mut copies = Vec::new();
    if !args.no_copy {
        let rows = Arc::new(make_rows(
            entries as u64,
            sealed_len.round() as usize,
            entry_bytes.round() as i32,
        ));
        for streams in [1, 2] {
            copies.push(copy_baseline(&settings, &db, &rows, streams, args.server_pid).await?);
        }
    }
    let best_copy = copies
        .iter()
        .filter_map(|c| c["rows_per_s"].as_f64())
        .fold(f64::NAN, f64::max);

    let summary = json!({
        "scenario": "replica-registration",
        "entries": entries,
        "file_bytes": file_bytes,
        "mean_file_bytes_per_entry": round3(file_bytes as f64 / entries as f64),
        "mean_entry_bytes": round3(entry_bytes),
        "mean_sealed_bytes": round3(sealed_len),
        "mean_row_bytes": round3(row_bytes),
        "replicas_table_bytes_with_indexes": table_bytes,
        "apply_mode": format!("{:?}", args.apply).to_lowercase(),
        "ours": {
            "upload_s": round3(upload_s),
            "apply_s": round3(apply_s),
            "apply_s_server_clock": server_seconds(&report),
            "total_s": round3(total_s),
            "records_per_s_end_to_end": ours_e2e.round(),
            "records_per_s_apply_only": ours_apply.round(),
            "upload_mib_per_s": round3(file_bytes as f64 / upload_s / 1048576.0),
            "server_peak_rss_kib": server_rss.0,
            "server_peak_rss_kib_after_upload": after_upload_rss.0,
            "server_rss_now_kib": server_rss.1,
            "batch_process": batch,
            "report": report,
            "upload_cpu": upload_cpu.to_json(),
            "apply_cpu": apply_cpu.to_json(),
        },
        "copy": copies,
        "copy_best_rows_per_s": best_copy,
        "ratio_end_to_end": round3(ours_e2e / best_copy),
        "ratio_apply_only": round3(ours_apply / best_copy),
        "postgres": pg.into_iter().collect::<HashMap<_, _>>(),
    });
    let text = serde_json::to_string_pretty(&summary)?;
    if let Some(path) = &args.report {
        std::fs::write(path, &text)?;
    }
    println!("{text}");
    Ok(())
}
