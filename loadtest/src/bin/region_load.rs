//! The region drill's load and its ledger (scripts/region-drill, docs/regions.md).
//!
//! `setup` gives every organisation of the drill codes and replicas for a set of residents;
//! `run` offers a steady mix of code acquisitions, inquiries between the cells and replica
//! uploads through the organisations' doors (its own region's first, the other region's when
//! that one does not answer) and writes every acknowledged request to a ledger, one JSON line
//! each, until its time is up or it is told to stop (SIGTERM); `check` then asks each cell's
//! database whether every acknowledged request is there once and finished, and whether any
//! exchange happened twice.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures_util::StreamExt as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

const MEDICAL: &str = "TM00000000000031";
/// How long one request keeps trying the doors before it counts as not acknowledged.
const REQUEST_PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, Parser)]
#[command(about = "Region drill load: setup, run (ledger), check")]
struct Args {
    /// The drill's organisations (JSON: {"orgs": [{org, cell, doors, client_id, client_secret}]}).
    #[arg(long, global = true, default_value = "region-orgs.json")]
    orgs: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Codes at every organisation and one replica each for `residents` residents.
    Setup {
        #[arg(long, default_value_t = 40)]
        residents: u32,
    },
    /// Offer `rate` requests per second until `seconds` pass or SIGTERM; append each
    /// acknowledged one to the ledger.
    Run {
        #[arg(long, default_value_t = 40)]
        residents: u32,
        #[arg(long, default_value_t = 20)]
        rate: u32,
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        #[arg(long)]
        ledger: PathBuf,
    },
    /// Every acknowledged request once and finished; nothing twice. Prints a JSON report and
    /// exits non-zero when anything is lost, unfinished or duplicated.
    Check {
        #[arg(long)]
        ledger: PathBuf,
        /// Owner URL of each cell's current primary: `east=postgres://…` (repeat).
        #[arg(long = "db", required = true)]
        dbs: Vec<String>,
        /// Owner URL of the NWS simulator's database.
        #[arg(long)]
        nws_db: String,
        /// How long to wait for acknowledged work to finish.
        #[arg(long, default_value_t = 120)]
        deadline_secs: u64,
    },
}

#[derive(Debug, Clone, Deserialize)]
struct Org {
    org: String,
    cell: String,
    doors: Vec<String>,
    client_id: String,
    client_secret: String,
}

#[derive(Debug, Deserialize)]
struct Orgs {
    orgs: Vec<Org>,
}

/// One acknowledged request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    kind: String,
    org: String,
    id: String,
    /// Unix milliseconds when the acknowledgement arrived.
    at_ms: u128,
    /// Which door answered (0 = the organisation's own region's).
    door: usize,
    /// From the first try to the acknowledgement, retries through the doors included.
    #[serde(default)]
    took_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let orgs: Orgs = serde_json::from_slice(
        &std::fs::read(&args.orgs).with_context(|| format!("reading {:?}", args.orgs))?,
    )?;
    if orgs.orgs.len() < 2 {
        bail!("the drill needs at least two organisations");
    }
    match args.command {
        Command::Setup { residents } => setup(&orgs.orgs, residents).await,
        Command::Run {
            residents,
            rate,
            seconds,
            ledger,
        } => run(&orgs.orgs, residents, rate, seconds, &ledger).await,
        Command::Check {
            ledger,
            dbs,
            nws_db,
            deadline_secs,
        } => check(&orgs.orgs, &ledger, &dbs, &nws_db, deadline_secs).await,
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A resident's numbers at organisation number `o`: (integrated addressee number, 住民票コード).
fn resident(o: usize, i: u32) -> (String, String) {
    (format!("{}{:03}{i:011}", o + 1, 500), format!("500{i:08}"))
}

/// An organisation's client: its doors (sticking to the last that answered) and its token.
struct Client {
    org: Org,
    http: reqwest::Client,
    door: AtomicU64,
    token: RwLock<String>,
}

enum Answer {
    Done(u16, Value, usize),
}

impl Client {
    async fn new(http: reqwest::Client, org: Org) -> anyhow::Result<Arc<Client>> {
        let client = Arc::new(Client {
            org,
            http,
            door: AtomicU64::new(0),
            token: RwLock::new(String::new()),
        });
        client.refresh_token().await?;
        Ok(client)
    }

    async fn refresh_token(&self) -> anyhow::Result<()> {
        let body = json!({
            "grant_type": "client_credentials",
            "client_id": self.org.client_id,
            "client_secret": self.org.client_secret,
        });
        let Answer::Done(status, v, _) = self
            .send("POST", "/v1/auth/token", Some(&body), false)
            .await?;
        if status != 200 {
            bail!("token for {} answered {status}: {v}", self.org.org);
        }
        let token = v["access_token"].as_str().context("no access_token")?;
        *self.token.write().await = token.to_owned();
        Ok(())
    }

    /// Sends through the doors: a door that does not answer, or answers 502/503/504, is left
    /// for the next; the request is tried until [`REQUEST_PATIENCE`] runs out.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        auth: bool,
    ) -> anyhow::Result<Answer> {
        let until = Instant::now() + REQUEST_PATIENCE;
        let doors = self.org.doors.len();
        let mut refreshed = false;
        loop {
            let door = (self.door.load(Ordering::Relaxed) as usize) % doors;
            let url = format!("{}{path}", self.org.doors[door]);
            let mut req = match method {
                "POST" => self.http.post(&url),
                _ => self.http.get(&url),
            };
            if auth {
                req = req.bearer_auth(self.token.read().await.as_str());
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            match req.send().await {
                Ok(res) if matches!(res.status().as_u16(), 502..=504) => {}
                Ok(res) if res.status().as_u16() == 401 && auth && !refreshed => {
                    refreshed = true;
                    Box::pin(self.refresh_token()).await.ok();
                    continue;
                }
                Ok(res) => {
                    let status = res.status().as_u16();
                    let v = res.json::<Value>().await.unwrap_or(Value::Null);
                    return Ok(Answer::Done(status, v, door));
                }
                Err(_) => {}
            }
            // This door did not answer: the next one, after a short pause.
            let _ = self.door.compare_exchange(
                door as u64,
                ((door + 1) % doors) as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if Instant::now() >= until {
                bail!("no door of {} answered {method} {path}", self.org.org);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn clients(orgs: &[Org]) -> anyhow::Result<Vec<Arc<Client>>> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut out = Vec::new();
    for org in orgs {
        out.push(Client::new(http.clone(), org.clone()).await?);
    }
    Ok(out)
}

async fn setup(orgs: &[Org], residents: u32) -> anyhow::Result<()> {
    let clients = clients(orgs).await?;
    for (o, client) in clients.iter().enumerate() {
        let ids: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..residents)
            .map(|i| {
                let client = client.clone();
                async move {
                    let (addressee, rrc) = resident(o, i);
                    let body = json!({"integrated_addressee_number": addressee, "resident_record_code": rrc});
                    let Answer::Done(status, v, _) =
                        client.send("POST", "/v1/codes/acquisitions", Some(&body), true).await?;
                    if !(200..300).contains(&status) {
                        bail!("acquisition answered {status}: {v}");
                    }
                    Ok(v["id"].as_str().context("no id")?.to_owned())
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let deadline = Instant::now() + Duration::from_secs(120);
        for id in ids {
            let id = id?;
            loop {
                let Answer::Done(_, v, _) = client
                    .send("GET", &format!("/v1/codes/acquisitions/{id}"), None, true)
                    .await?;
                match v["status"].as_str() {
                    Some("done") => break,
                    Some("pending") if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    _ => bail!("code acquisition did not finish: {v}"),
                }
            }
        }
        let records: Vec<Value> = (0..residents)
            .map(|i| replica_record(&resident(o, i).0, &format!("S{o}-{i}"), i))
            .collect();
        // Provision learns the organisation's settings from admin's tenant.changed event,
        // published by the server's relay from the row `admin create-tenant` wrote: until it
        // has, replicas are refused as organisation-not-configured. Wait for it.
        let configured_by = Instant::now() + Duration::from_secs(60);
        for chunk in records.chunks(40) {
            let body = json!({ "records": chunk });
            loop {
                let Answer::Done(status, v, _) = client
                    .send("POST", "/v1/replicas", Some(&body), true)
                    .await?;
                if (200..300).contains(&status) {
                    break;
                }
                if status == 409
                    && v["code"] == "organisation-not-configured"
                    && Instant::now() < configured_by
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                bail!("replicas answered {status}: {v}");
            }
        }
        eprintln!(
            "setup: {} has codes and replicas for {residents} residents",
            client.org.org
        );
    }
    Ok(())
}

fn replica_record(addressee: &str, record_id: &str, i: u32) -> Value {
    json!({
        "operation": "register", "record_id": record_id,
        "integrated_addressee_number": addressee, "info_code": MEDICAL, "dataset": "0101",
        "record_key": format!("K{record_id}"), "major_version": "0002",
        "items": [
            {"code": "I0001", "value": format!("{i:08}"), "version": "0002", "updated": "2018-04-01"},
            {"code": "I0002", "value": "2018-04-01"},
            {"code": "I0003", "null_reason": "NotAcceptable"}
        ]
    })
}

async fn run(
    orgs: &[Org],
    residents: u32,
    rate: u32,
    seconds: u64,
    ledger: &PathBuf,
) -> anyhow::Result<()> {
    let clients = clients(orgs).await?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger)
        .with_context(|| format!("opening the ledger {ledger:?}"))?;
    let file = Arc::new(Mutex::new(file));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let run_tag: u32 = rand::thread_rng().gen_range(100..999);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n: u64 = 0;
    eprintln!(
        "run: {rate} requests/s across {} organisations",
        clients.len()
    );
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep_until((started + interval.mul_f64(n as f64)).into()).await;
        let o = (n as usize) % clients.len();
        let client = clients[o].clone();
        let peer = clients[(o + 1) % clients.len()].org.org.clone();
        let (file, counts) = (file.clone(), counts.clone());
        let i = (n % u64::from(residents.max(1))) as u32;
        let seq = n;
        tasks.spawn(async move {
            let began = Instant::now();
            let op = match seq % 5 {
                0 | 1 => acquisition(&client, o, run_tag, seq).await,
                2 | 3 => inquiry(&client, o, i, &peer).await,
                _ => replica(&client, o, i, run_tag, seq).await,
            };
            let key = match op.map(|e| {
                e.map(|e| Entry {
                    took_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
                    ..e
                })
            }) {
                Ok(Some(e)) => {
                    let line = serde_json::to_string(&e).unwrap_or_default();
                    let mut f = file.lock().await;
                    let _ = writeln!(f, "{line}");
                    let _ = f.flush();
                    format!("{}:acknowledged", e.kind)
                }
                Ok(None) => "refused".to_owned(),
                Err(_) => "unanswered".to_owned(),
            };
            *counts.lock().await.entry(key).or_default() += 1;
        });
        n += 1;
        while let Some(done) = tasks.try_join_next() {
            done?;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    let counts = counts.lock().await.clone();
    println!(
        "{}",
        json!({"offered": n, "seconds": started.elapsed().as_secs_f64(), "outcomes": counts})
    );
    Ok(())
}

fn entry(kind: &str, client: &Client, id: String, door: usize) -> Option<Entry> {
    Some(Entry {
        kind: kind.to_owned(),
        org: client.org.org.clone(),
        id,
        at_ms: now_ms(),
        door,
        took_ms: 0,
    })
}

async fn acquisition(
    client: &Client,
    o: usize,
    run_tag: u32,
    seq: u64,
) -> anyhow::Result<Option<Entry>> {
    // A new resident each time: (addressee, 住民票コード) unique to this run.
    let addressee = format!("{}{run_tag:03}{seq:011}", o + 6);
    let rrc = format!("{run_tag:03}{:08}", seq % 100_000_000);
    let body = json!({"integrated_addressee_number": addressee, "resident_record_code": rrc});
    let Answer::Done(status, v, door) = client
        .send("POST", "/v1/codes/acquisitions", Some(&body), true)
        .await?;
    Ok(match (status, v["id"].as_str()) {
        (200..=299, Some(id)) => entry("acquisition", client, id.to_owned(), door),
        _ => None,
    })
}

async fn inquiry(client: &Client, o: usize, i: u32, peer: &str) -> anyhow::Result<Option<Entry>> {
    let body = json!({
        "affair_code": "JM00000000000002", "procedure_code": "JT00000000000201",
        "info_code": MEDICAL, "integrated_addressee_number": resident(o, i).0,
        "provider_org": peer, "as_of": "2019-04-01"
    });
    let Answer::Done(status, v, door) = client
        .send("POST", "/v1/inquiries", Some(&body), true)
        .await?;
    Ok(match (status, v["id"].as_str()) {
        (200..=299, Some(id)) => entry("inquiry", client, id.to_owned(), door),
        _ => None,
    })
}

async fn replica(
    client: &Client,
    o: usize,
    i: u32,
    run_tag: u32,
    seq: u64,
) -> anyhow::Result<Option<Entry>> {
    let record_id = format!("R{run_tag}-{seq}");
    let body = json!({ "records": [replica_record(&resident(o, i).0, &record_id, i)] });
    let Answer::Done(status, _, door) = client
        .send("POST", "/v1/replicas", Some(&body), true)
        .await?;
    Ok((200..300)
        .contains(&status)
        .then(|| entry("replica", client, record_id, door))
        .flatten())
}

#[derive(Debug, Default, Serialize)]
struct Tally {
    acknowledged: u64,
    finished: u64,
    unfinished: u64,
    lost: u64,
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| "connecting to a drill database")?;
    tokio::spawn(connection);
    Ok(client)
}

async fn check(
    orgs: &[Org],
    ledger: &PathBuf,
    dbs: &[String],
    nws_db: &str,
    deadline_secs: u64,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(ledger).with_context(|| format!("reading {ledger:?}"))?;
    let entries: Vec<Entry> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a ledger line is not an entry")?;
    let mut cell_db = HashMap::new();
    for d in dbs {
        let (cell, url) = d.split_once('=').context("--db is cell=URL")?;
        cell_db.insert(cell.to_owned(), connect(url).await?);
    }
    let cell_of: HashMap<&str, &str> = orgs
        .iter()
        .map(|o| (o.org.as_str(), o.cell.as_str()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(deadline_secs);
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_cell_kind: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in &entries {
        let cell = cell_of
            .get(e.org.as_str())
            .with_context(|| format!("organisation {} not in the drill", e.org))?;
        by_cell_kind
            .entry(((*cell).to_owned(), e.kind.clone()))
            .or_default()
            .push(e.id.clone());
    }
    for ((cell, kind), ids) in &by_cell_kind {
        let db = cell_db
            .get(cell)
            .with_context(|| format!("no --db for cell {cell}"))?;
        let tally = tallies.entry(kind.clone()).or_default();
        tally.acknowledged += ids.len() as u64;
        // Finished: acquisitions done (or failed by the network), inquiries answered,
        // replicas stored. Wait for the work in flight, up to the deadline.
        let (present, finished) = loop {
            let (present, finished) = count(db, kind, ids).await?;
            if finished == ids.len() as i64 || Instant::now() >= deadline {
                break (present, finished);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        tally.lost += ids.len() as u64 - present as u64;
        tally.finished += finished as u64;
        tally.unfinished += (present - finished) as u64;
    }
    // Anything twice: a permit for the same inquiry issued twice by the network, or an
    // organisation's audit record of the same event of one exchange (the inquirer's
    // 処理通番 and branch) kept twice.
    let nws = connect(nws_db).await?;
    let permits_twice: i64 = nws
        .query_one(
            "SELECT count(*) FROM (SELECT inquiry_id FROM permits
               GROUP BY inquirer_org, inquiry_id HAVING count(*) > 1) t",
            &[],
        )
        .await?
        .get(0);
    let mut audit_twice = 0i64;
    let mut audit_records = 0i64;
    for db in cell_db.values() {
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM audit.records
                           GROUP BY tenant_id, inquirer_org, serial_no, branch_no, event
                           HAVING count(*) > 1) t),
                        (SELECT count(*) FROM audit.records)",
                &[],
            )
            .await?;
        audit_twice += row.get::<_, i64>(0);
        audit_records += row.get::<_, i64>(1);
    }
    let lost: u64 = tallies.values().map(|t| t.lost).sum();
    let unfinished: u64 = tallies.values().map(|t| t.unfinished).sum();
    let duplicated = permits_twice + audit_twice;
    let report = json!({
        "acknowledged": entries.len(),
        "kinds": tallies,
        "lost": lost,
        "unfinished": unfinished,
        "duplicated": duplicated,
        "permits_twice": permits_twice,
        "audit_records_twice": audit_twice,
        "audit_records": audit_records,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if lost > 0 || unfinished > 0 || duplicated > 0 {
        bail!("{lost} lost, {unfinished} unfinished, {duplicated} duplicated");
    }
    Ok(())
}

/// (rows present, rows finished) of `ids` for one kind of request, read as the owner.
async fn count(
    db: &tokio_postgres::Client,
    kind: &str,
    ids: &[String],
) -> anyhow::Result<(i64, i64)> {
    let row = match kind {
        "acquisition" | "inquiry" => {
            let uuids: Vec<uuid::Uuid> = ids
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()
                .context("an id in the ledger is not a UUID")?;
            let sql = if kind == "acquisition" {
                "SELECT count(*), count(*) FILTER (WHERE status <> 'pending')
                   FROM code.acquisitions WHERE id = ANY($1)"
            } else {
                "SELECT count(*), count(*) FILTER (WHERE status <> 'sent')
                   FROM inquiry.inquiries WHERE id = ANY($1)"
            };
            db.query_one(sql, &[&uuids]).await?
        }
        "replica" => {
            db.query_one(
                "SELECT count(DISTINCT record_id), count(DISTINCT record_id)
                   FROM provision.replicas WHERE record_id = ANY($1)",
                &[&ids],
            )
            .await?
        }
        other => bail!("unknown kind {other:?} in the ledger"),
    };
    Ok((row.get(0), row.get(1)))
}
