//! Replica registration (副本登録) through the real binary: `chukan replica upload` as a
//! business system's operator runs it, and `chukan batch run` surviving `kill -9`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use chrono::NaiveDate;
use chukan_layout::ItemValue;
use chukan_replica_list::{EntrySpec, ListWriter, Operation};
use serde_json::{Value, json};

use crate::helpers::{Stack, chukan, run_json};

const ORG: &str = "1310010000000001";
/// No. 31 医療保険給付関係情報, 資格情報 (a history dataset): I0001 被保険者番号 (text, group
/// G01), I0002 資格取得年月日 (date, required), I0003 資格喪失年月日 (date, optional).
const INFO_CODE: &str = "TM00000000000031";
const MAJOR: &str = "0002";
const DATASET: &str = "0101";

/// The stack for these tests: the server's batch scheduler looks at the clock once at start
/// and then not for a day, so only the `chukan batch run` processes of the test apply uploads.
async fn stack() -> Stack {
    Stack::start_with(&[("CHUKAN__PROVISION__SCHEDULER_POLL_SECS", "86400")]).await
}

pub(crate) fn scratch_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "chukan-e2e-{}-{name}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Removes the file when the test ends, whatever happens.
pub(crate) struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A registration list of `n` new, valid No. 31 records.
pub(crate) fn write_list(path: &Path, n: usize) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut list = ListWriter::new(file).unwrap();
    let acquired = NaiveDate::from_ymd_opt(2019, 8, 1).unwrap();
    for i in 0..n {
        let payload = vec![
            ItemValue {
                code: "I0001".into(),
                value: Some(format!("{:08}", 10_000_000 + i)),
                version: Some("0001".into()),
                updated: Some(acquired),
                null_reason: None,
            },
            ItemValue {
                code: "I0002".into(),
                value: Some("2019-08-01".into()),
                version: None,
                updated: None,
                null_reason: None,
            },
        ];
        list.write(&EntrySpec {
            operation: Operation::Register,
            record_id: &format!("R{i:09}"),
            addressee: &format!("{:015}", 100_000_000 + i),
            info_code: INFO_CODE,
            dataset: DATASET,
            record_key: &format!("K{i:09}"),
            major_version: MAJOR,
            parent_record_key: None,
            public_start: None,
            public_end: None,
            payload: &payload,
        })
        .unwrap();
    }
    list.finish().unwrap();
}

/// An owner session on the stack's database that sees `tenant`'s rows (the tables are FORCEd
/// under row-level security, so even the owner sees nothing without the setting).
async fn owner_session(stack: &Stack, tenant: &str) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&stack.settings.database.url, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    client
        .execute("SELECT set_config('chukan.tenant', $1, false)", &[&tenant])
        .await
        .unwrap();
    client
}

/// Creates the tenant with the CLI and waits until provision has its settings (admin's
/// `tenant.changed` went through the bus); returns a system client's id and secret.
async fn tenant(stack: &Stack, immediate: bool) -> (String, String) {
    run_json(
        &stack.env,
        &[
            "admin",
            "create-tenant",
            "--org",
            ORG,
            "--name",
            "デモ市",
            "--population",
            "100000",
            "--immediate",
            if immediate { "true" } else { "false" },
        ],
    );
    provision_processes(stack, ORG, immediate).await;
    let client = run_json(
        &stack.env,
        &["admin", "create-client", "--tenant", ORG, "--name", "e2e"],
    );
    (
        client["client_id"].as_str().unwrap().to_string(),
        client["client_secret"].as_str().unwrap().to_string(),
    )
}

/// Waits until provision processes `org`'s uploads as the tenant says (immediately or by
/// the nightly batch).
pub(crate) async fn provision_processes(stack: &Stack, org: &str, immediate: bool) {
    let db = owner_session(stack, org).await;
    chukan_testkit::wait_until(
        Duration::from_secs(60),
        "provision knows the tenant",
        || {
            let db = &db;
            async move {
                db.query_opt(
                    "SELECT immediate FROM provision.orgs WHERE org_code = $1",
                    &[&org],
                )
                .await
                .is_ok_and(|r| r.is_some_and(|r| r.get::<_, bool>(0) == immediate))
            }
        },
    )
    .await
    .unwrap();
}

async fn token(stack: &Stack, client_id: &str, secret: &str) -> String {
    let answer: Value = stack
        .http
        .post(format!("{}/v1/auth/token", stack.api))
        .json(&json!({
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_string()
}

/// A one-shot `chukan` run with its output captured, killed if the test ends first.
fn captured(stack: &Stack, extra_env: &[(&str, &str)], args: &[&str]) -> tokio::process::Command {
    let mut cmd = chukan(&stack.env, args);
    cmd.envs(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn finish(child: tokio::process::Child, within: Duration, what: &str) -> Ran {
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {within:?}"))
        .unwrap();
    let ran = Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if std::env::var("TEST_LOG").is_ok() {
        eprintln!(
            "--- {what} stdout\n{}\n--- {what} stderr\n{}",
            ran.stdout, ran.stderr
        );
    }
    ran
}

/// The cells of one table row (comfy-table, UTF-8 borders).
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('│')
        .split(['│', '┆'])
        .map(|c| c.trim().to_string())
        .collect()
}

/// The value under `heading` in the first data row of the table whose header has it.
fn table_value(text: &str, heading: &str) -> Option<String> {
    let mut lines = text.lines();
    let column = lines
        .by_ref()
        .find_map(|l| cells(l).iter().position(|c| c == heading))?;
    lines
        .filter(|l| l.trim_start().starts_with('│'))
        .find_map(|l| cells(l).get(column).cloned())
}

/// Entries settled by committed chunks, and the upload's state, as the batch left them.
async fn progress(db: &tokio_postgres::Client, id: &str) -> (i64, String) {
    let row = db
        .query_one(
            "SELECT (SELECT coalesce(sum(last_ordinal - first_ordinal + 1), 0)::int8
                     FROM provision.upload_progress WHERE upload_id = u.id), state
             FROM provision.uploads u WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The upload as the API reports it.
async fn report(stack: &Stack, token: &str, id: &str) -> Value {
    stack
        .http
        .get(format!("{}/v1/replica-uploads/{id}", stack.api))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_upload_streams_a_list_and_prints_its_result_report() {
    let stack = stack().await;
    let (client_id, secret) = tenant(&stack, true).await;
    let list = Scratch(scratch_file("list.xml"));
    write_list(&list.0, 2000);

    // Logs in with the client-credentials grant, streams the file, waits for the report.
    let upload = captured(
        &stack,
        &[("E2E_CLIENT_SECRET", secret.as_str())],
        &[
            "replica",
            "upload",
            list.0.to_str().unwrap(),
            "--url",
            &stack.api,
            "--client-id",
            &client_id,
            "--client-secret-env",
            "E2E_CLIENT_SECRET",
            "--wait",
            "--poll-ms",
            "200",
            "--timeout-secs",
            "300",
            "--no-progress",
        ],
    )
    .spawn()
    .unwrap();
    let up = finish(upload, Duration::from_secs(360), "replica upload").await;
    assert!(up.ok, "replica upload failed: {}\n{}", up.stderr, up.stdout);
    let out = &up.stdout;
    assert_eq!(
        table_value(out, "件数 (entries)").as_deref(),
        Some("2000"),
        "{out}"
    );
    assert_eq!(
        table_value(out, "事前確認エラー (precheck rejected)").as_deref(),
        Some("0"),
        "{out}"
    );
    assert_eq!(
        table_value(out, "処理方式 (processing)").as_deref(),
        Some("即時 (immediate)"),
        "{out}"
    );
    assert_eq!(
        table_value(out, "登録 (registered)").as_deref(),
        Some("2000"),
        "{out}"
    );
    assert_eq!(
        table_value(out, "上書き (overwritten)").as_deref(),
        Some("0"),
        "{out}"
    );
    assert_eq!(
        table_value(out, "エラー (rejected)").as_deref(),
        Some("0"),
        "{out}"
    );
    let db = owner_session(&stack, ORG).await;
    let replicas: i64 = db
        .query_one("SELECT count(*) FROM provision.replicas", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(replicas, 2000);

    // Statistics follow from provision's count events alone; an operator takes a snapshot
    // (`chukan stats snapshot`), and staff read it. The statistics schema holds counts by
    // code, never an addressee.
    let stats_db = owner_session(&stack, ORG).await;
    chukan_testkit::wait_until(Duration::from_secs(30), "statistics count", || async {
        let n: Option<i64> = stats_db
            .query_one(
                "SELECT sum(count)::int8 FROM stats.replica_counts WHERE info_code = $1",
                &[&INFO_CODE],
            )
            .await
            .unwrap()
            .get(0);
        n == Some(2000)
    })
    .await
    .unwrap();
    let snap = captured(&stack, &[], &["stats", "snapshot", "--date", "2026-12-05"])
        .spawn()
        .unwrap();
    let snap = finish(snap, Duration::from_secs(60), "stats snapshot").await;
    assert!(snap.ok, "stats snapshot failed: {}", snap.stderr);
    assert!(
        snap.stdout.contains("snapshot 2026-12-05"),
        "{}",
        snap.stdout
    );
    // The operator's table shows what the API answers.
    let table = captured(
        &stack,
        &[],
        &["stats", "replicas", "--tenant", ORG, "--date", "2026-12-05"],
    )
    .spawn()
    .unwrap();
    let table = finish(table, Duration::from_secs(60), "stats replicas").await;
    assert!(table.ok, "stats replicas failed: {}", table.stderr);
    assert_eq!(
        table_value(&table.stdout, "件数 (count)").as_deref(),
        Some("2000"),
        "{}",
        table.stdout
    );
    let staff = stack.staff_token(ORG).await;
    let stats: Value = stack
        .http
        .get(format!(
            "{}/v1/statistics/replicas?date=2026-12-05",
            stack.api
        ))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["reason"], "on-demand", "{stats}");
    assert_eq!(stats["total"], 2000, "{stats}");
    assert_eq!(stats["rows"][0]["info_code"], INFO_CODE);
    assert_eq!(stats["rows"][0]["major_version"], MAJOR);
    assert_eq!(stats["rows"][0]["dataset"], DATASET);
    let first_addressee = format!("{:015}", 100_000_000);
    let tables = crate::assert_nothing_in_the_clear(
        &stack,
        &["stats"],
        ORG,
        &[(first_addressee.as_str(), "addressee")],
    )
    .await;
    assert!(tables >= 4, "{tables}");

    // A broken file is refused whole: the problem's code, detail and action are shown. The
    // server answers at the break, long before the end of a large file.
    let broken = Scratch(scratch_file("broken.xml"));
    let mut text = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SPIRegistrationDeleteList>\n  \
         <SegmentOfRegistrationDelete>1</SegmentOfRegistrationDelete>\n  \
         <InformationOfSPIRegistrationDelete><RecordIdentificationNumber>X</Oops>\n",
    );
    text.push_str(&"<!-- the rest of a large file -->\n".repeat(500_000));
    text.push_str("</SPIRegistrationDeleteList>\n");
    std::fs::write(&broken.0, text).unwrap();
    let token = token(&stack, &client_id, &secret).await;
    let refused = captured(
        &stack,
        &[("CHUKAN_TOKEN", token.as_str())],
        &[
            "replica",
            "upload",
            broken.0.to_str().unwrap(),
            "--url",
            &stack.api,
            "--no-progress",
        ],
    )
    .spawn()
    .unwrap();
    let refused = finish(refused, Duration::from_secs(60), "broken upload").await;
    assert!(
        !refused.ok,
        "a malformed list must fail: {}",
        refused.stdout
    );
    let err = &refused.stderr;
    assert!(err.contains("code:   malformed-registration-list"), "{err}");
    assert!(err.contains("detail: "), "{err}");
    assert!(err.contains("action: "), "{err}");
    let uploads: i64 = db
        .query_one("SELECT count(*) FROM provision.uploads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(uploads, 1, "nothing of the refused file is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_mid_upload_resumes_and_applies_every_entry_once() {
    const ENTRIES: i64 = 60_000;
    let stack = stack().await;
    let (client_id, secret) = tenant(&stack, false).await;
    let token = token(&stack, &client_id, &secret).await;
    let list = Scratch(scratch_file("big.xml"));
    write_list(&list.0, ENTRIES as usize);

    let upload = captured(
        &stack,
        &[("CHUKAN_TOKEN", token.as_str())],
        &[
            "replica",
            "upload",
            list.0.to_str().unwrap(),
            "--url",
            &stack.api,
            "--no-progress",
        ],
    )
    .spawn()
    .unwrap();
    let up = finish(upload, Duration::from_secs(600), "replica upload").await;
    assert!(up.ok, "upload failed: {}", up.stderr);
    let id = table_value(&up.stdout, "受付番号 (upload id)").unwrap();
    assert_eq!(
        table_value(&up.stdout, "件数 (entries)").as_deref(),
        Some("60000"),
        "{}",
        up.stdout
    );

    // Many small commits, so the kill lands between some of them.
    let chunks = [("CHUKAN__PROVISION__BATCH_CHUNK_ENTRIES", "500")];
    let mut first = captured(&stack, &chunks, &["batch", "run", "replica-uploads"])
        .spawn()
        .unwrap();
    let db = owner_session(&stack, ORG).await;
    chukan_testkit::wait_until(Duration::from_secs(300), "the batch part way", || async {
        let (next, _) = progress(&db, &id).await;
        next > 2_000
    })
    .await
    .unwrap();
    first.start_kill().unwrap(); // SIGKILL: no shutdown, no flush, a transaction in flight
    let status = tokio::time::timeout(Duration::from_secs(30), first.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the first run was killed, not finished");
    let (next, state) = progress(&db, &id).await;
    assert!(
        next < ENTRIES && state != "done",
        "the kill must land mid-upload ({next} entries settled, state {state})"
    );

    let second = captured(&stack, &chunks, &["batch", "run", "replica-uploads"])
        .spawn()
        .unwrap();
    let second = finish(second, Duration::from_secs(600), "second batch run").await;
    assert!(second.ok, "second run failed: {}", second.stderr);

    let r = report(&stack, &token, &id).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["registered"], ENTRIES, "{r}");
    assert_eq!(r["overwritten"], 0, "{r}");
    assert_eq!(r["rejected"], 0, "{r}");
    let replicas: i64 = db
        .query_one("SELECT count(*) FROM provision.replicas", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(replicas, ENTRIES);
    let counted: i64 = db
        .query_one(
            "SELECT replicas FROM provision.replica_counts
             WHERE info_code = $1 AND major_version = $2 AND dataset = $3",
            &[&INFO_CODE, &MAJOR, &DATASET],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, ENTRIES, "the kept count matches the rows");
    // The runs' events (counts, batch progress) left the outbox: flushed at exit, or by the
    // server's relay for what the killed run committed.
    chukan_testkit::wait_until(Duration::from_secs(60), "provision's outbox empty", || {
        let db = &db;
        async move {
            db.query_one("SELECT count(*) FROM provision.outbox", &[])
                .await
                .is_ok_and(|r| r.get::<_, i64>(0) == 0)
        }
    })
    .await
    .unwrap();
}
