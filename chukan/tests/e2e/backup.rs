//! Backups (ADR 0006, issue 16) through the real binary: a cluster of the test's own archives
//! its WAL with pgBackRest to two encrypted repositories; with repo1 lost, `chukan backup
//! verify --repo 2` restores and checks every organisation's log, and `chukan backup
//! restore-org` rewinds one organisation's damaged rows while the other's stay as they were.
//! Also: the maintenance hold makes one organisation's transactions wait, not the others'.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use chukan_testkit::server_files::ServiceUser;
use reqwest::Method;

use crate::helpers::{Stack, chukan, free_port};
use crate::inquiry::{
    NHI_AFFAIR, NHI_BENEFIT, answered, inquiry, poll, send, two_municipalities_with,
};
use crate::{ORG_A, ORG_B};

const STANZA: &str = "e2e";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// `postgres` when the test runs as root (PostgreSQL and pgBackRest refuse root otherwise).
fn server_user() -> Option<ServiceUser> {
    ServiceUser::when_root("postgres").unwrap()
}

fn as_server(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    if let Some(user) = server_user() {
        c.uid(user.uid).gid(user.gid);
    }
    c
}

fn chown_all(path: &Path) {
    if let Some(user) = server_user() {
        user.own(path).unwrap();
    }
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throw-away cluster archiving to two pgBackRest repositories in its directory.
struct ArchivingCluster {
    dir: PathBuf,
    port: u16,
}

impl ArchivingCluster {
    fn start() -> ArchivingCluster {
        if Command::new("pgbackrest").arg("version").output().is_err() {
            let installed = Command::new("apt-get")
                .args(["install", "-y", "pgbackrest"])
                .output()
                .unwrap();
            ok(installed, "apt-get install -y pgbackrest");
        }
        let dir = std::env::temp_dir().join(format!(
            "chukan-backup-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        for sub in ["repo1", "repo2", "log", "lock"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = free_port();
        let cluster = ArchivingCluster { dir, port };
        cluster.write_config(true);
        chown_all(&cluster.dir);
        ok(
            as_server(format!("{PG_BIN}/initdb"))
                .arg("-D")
                .arg(cluster.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .output()
                .unwrap(),
            "initdb",
        );
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             fsync = off\nfull_page_writes = on\nmax_connections = 200\nshared_buffers = 32MB\n\
             wal_level = replica\narchive_mode = on\n\
             archive_command = 'pgbackrest --config={dir}/pgbackrest.conf --stanza={STANZA} archive-push %p'\n",
            dir = cluster.dir.display()
        );
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data().join("postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        ok(
            as_server(format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(cluster.data())
                .arg("-l")
                .arg(cluster.dir.join("postgres.log"))
                .args(["-w", "-t", "30", "start"])
                .stdout(Stdio::null())
                .output()
                .unwrap(),
            "pg_ctl start",
        );
        ok(cluster.pgbackrest(&["stanza-create"]), "stanza-create");
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn config(&self) -> PathBuf {
        self.dir.join("pgbackrest.conf")
    }

    /// Both repositories encrypted, each with its own passphrase (in production repo2's is
    /// held by the other region); `with_repo1 = false` is the operator taking a lost
    /// repository out, so archiving continues to the one left.
    fn write_config(&self, with_repo1: bool) {
        let d = self.dir.display();
        let repo1 = if with_repo1 {
            format!(
                "repo1-path={d}/repo1\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=e2e-east-pass\nrepo1-retention-full=2\n"
            )
        } else {
            String::new()
        };
        std::fs::write(
            self.config(),
            format!(
                "[global]\n{repo1}repo2-path={d}/repo2\nrepo2-cipher-type=aes-256-cbc\n\
                 repo2-cipher-pass=e2e-west-pass\nrepo2-retention-full=2\nlog-path={d}/log\n\
                 lock-path={d}/lock\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\n\n\
                 [{STANZA}]\npg1-path={d}/data\npg1-port={port}\npg1-socket-path={d}\n",
                port = self.port
            ),
        )
        .unwrap();
        chown_all(&self.config());
    }

    fn pgbackrest(&self, args: &[&str]) -> Output {
        as_server("pgbackrest")
            .arg(format!("--config={}", self.config().display()))
            .arg(format!("--stanza={STANZA}"))
            .args(args)
            .output()
            .unwrap()
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for ArchivingCluster {
    fn drop(&mut self) {
        let _ = as_server(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn owner(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// One checksum per business table of `org`'s rows (every column), as the owner.
async fn checksums(client: &tokio_postgres::Client, org: &str) -> Vec<(String, String)> {
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.columns
              WHERE column_name = 'tenant_id'
                AND table_schema IN ('provision', 'code', 'inquiry', 'notice', 'selfinfo')
                AND table_name NOT IN ('outbox', 'outbox_sent', 'inbox', 'tenant_keys')
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sums = Vec::new();
    for t in tables {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*)::text || ':' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '')
                       FROM {t} r WHERE tenant_id = $1"
                ),
                &[&org],
            )
            .await
            .unwrap();
        sums.push((t, row.get(0)));
    }
    sums
}

/// Waits until every WAL segment up to now is in the repositories.
async fn archive_now(client: &tokio_postgres::Client) {
    let segment: String = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .unwrap()
        .get(0);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let archived: Option<String> = client
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await
            .unwrap()
            .get(0);
        if archived.as_deref().is_some_and(|a| a >= segment.as_str()) {
            return;
        }
        assert!(
            Instant::now() < until,
            "segment {segment} not archived; last {archived:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn backup_cli(stack: &Stack, args: &[&str]) -> Output {
    let mut all = vec!["backup"];
    all.extend_from_slice(args);
    chukan(&stack.env, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// The events of the staff's organisation's log, once one of them is `event`.
async fn wait_for_event(stack: &Stack, staff: &str, event: &str) -> Vec<String> {
    poll(30, event, || async {
        let (_, page) = stack
            .call(
                Method::POST,
                staff,
                "/v1/records/search",
                Some(serde_json::json!({"limit": 100})),
            )
            .await;
        let events: Vec<String> = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|r| r["event"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        if events.iter().any(|e| e == event) {
            Ok(events)
        } else {
            Err(page)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_repo1_lost_repo2_verifies_and_rewinds_one_organisation_only() {
    let started = Instant::now();
    let cluster = ArchivingCluster::start();
    let url = cluster.url("chukan");
    let (mut stack, token_a, _token_b) = two_municipalities_with(&[
        ("CHUKAN__DATABASE__URL", url.as_str()),
        ("CHUKAN__AUDIT__TREE_HEAD_INTERVAL_SECS", "1"),
    ])
    .await;
    stack.settings.database.url = url.clone();
    let sent = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28"),
    )
    .await;
    let result = answered(&stack, &token_a, sent["id"].as_str().unwrap()).await;
    assert_eq!(result["status"], "provided", "{result}");
    let staff_b = stack.staff_token(ORG_B).await;
    let events_before = wait_for_event(&stack, &staff_b, "provision.made").await;

    let backups = Instant::now();
    ok(
        cluster.pgbackrest(&["--repo=1", "--type=full", "backup"]),
        "backup repo1",
    );
    ok(
        cluster.pgbackrest(&["--repo=2", "--type=full", "backup"]),
        "backup repo2",
    );
    let backup_secs = backups.elapsed().as_secs_f64();

    // repo1 (this region's) is lost; the operator takes it out of the configuration.
    std::fs::remove_dir_all(cluster.dir.join("repo1")).unwrap();
    cluster.write_config(false);
    let config = cluster.config().display().to_string();
    let scratch = cluster.dir.join("scratch").display().to_string();
    let port = free_port().to_string();
    let scratch_args = |repo: &str| {
        vec![
            "--stanza".to_string(),
            STANZA.into(),
            "--repo".into(),
            repo.into(),
            "--pgbackrest-config".into(),
            config.clone(),
            "--scratch-dir".into(),
            scratch.clone(),
            "--pg-bin".into(),
            PG_BIN.into(),
            "--port".into(),
            port.clone(),
            "--recovery-deadline-secs".into(),
            "60".into(),
        ]
    };

    let mut verify_args = vec!["verify".to_string(), "--source-url".into(), url.clone()];
    verify_args.extend(scratch_args("2"));
    let verify_args: Vec<&str> = verify_args.iter().map(String::as_str).collect();
    let verifying = Instant::now();
    let report = ok(backup_cli(&stack, &verify_args), "backup verify --repo 2");
    let verify_secs = verifying.elapsed().as_secs_f64();
    eprintln!("{report}");
    assert!(report.contains(ORG_A) && report.contains(ORG_B), "{report}");
    assert!(report.contains("provision.replicas"), "{report}");
    assert!(
        !Path::new(&scratch).exists(),
        "a passing verify removes its scratch"
    );

    // A repository that is gone fails, and says so.
    let mut lost = vec!["verify".to_string()];
    lost.extend(scratch_args("1"));
    let lost: Vec<&str> = lost.iter().map(String::as_str).collect();
    assert!(!backup_cli(&stack, &lost).status.success(), "repo1 is gone");

    // T: the state to come back to. Then B's replica rows are damaged.
    let db = owner(&url).await;
    let before_a = checksums(&db, ORG_A).await;
    let before_b = checksums(&db, ORG_B).await;
    let t: chrono::DateTime<chrono::Utc> = db.query_one("SELECT now()", &[]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let damaged = db
        .execute(
            "UPDATE provision.replicas SET registered_at = registered_at + interval '1 day'
              WHERE tenant_id = $1",
            &[&ORG_B],
        )
        .await
        .unwrap();
    assert!(damaged > 0, "B has replica rows to damage");
    db.execute(
        "DELETE FROM provision.replicas WHERE tenant_id = $1
            AND key_bidx = (SELECT key_bidx FROM provision.replicas WHERE tenant_id = $1 ORDER BY key_bidx LIMIT 1)",
        &[&ORG_B],
    )
    .await
    .unwrap();
    assert_ne!(checksums(&db, ORG_B).await, before_b, "the damage shows");
    archive_now(&db).await;

    let mut restore = vec![
        "restore-org".to_string(),
        "--org".into(),
        ORG_B.into(),
        "--to-time".into(),
        t.to_rfc3339(),
    ];
    restore.extend(scratch_args("2"));
    let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
    let restoring = Instant::now();
    let out = ok(backup_cli(&stack, &restore), "backup restore-org");
    let restore_secs = restoring.elapsed().as_secs_f64();
    eprintln!("{out}");
    assert!(out.contains("provision.replicas"), "{out}");

    assert_eq!(
        checksums(&db, ORG_B).await,
        before_b,
        "B is back as it was at T"
    );
    assert_eq!(checksums(&db, ORG_A).await, before_a, "A is untouched");

    let events_after = wait_for_event(&stack, &staff_b, "backup.restored").await;
    assert_eq!(
        events_after.len(),
        events_before.len() + 1,
        "{events_after:?}"
    );
    let verified = chukan(&stack.env, &["audit", "verify", "--tenant", ORG_B])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    ok(verified, "audit verify of B after the restore");
    eprintln!(
        "backup e2e: backups {backup_secs:.1} s, verify {verify_secs:.1} s, restore-org {restore_secs:.1} s, total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The maintenance hold: while it is held for B, B's tenant transactions wait and A's do not;
/// released, B's go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_hold_stops_one_organisation_only() {
    let url = chukan_testkit::fresh_database_url().await.unwrap();
    let pool = chukan_db::pool_from_url(&url, 4).unwrap();
    let mut holder = pool.get().await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        &format!(
            "SELECT pg_advisory_xact_lock({})",
            chukan_db::TENANT_HOLD_KEY_SQL
        ),
        &[&ORG_B],
    )
    .await
    .unwrap();

    let mut a = pool.get().await.unwrap();
    let tx_a = chukan_db::tenant_tx(&mut a, ORG_A).await.unwrap();
    let seen: String = tokio::time::timeout(
        Duration::from_secs(5),
        tx_a.query_one("SELECT current_setting('chukan.tenant')", &[]),
    )
    .await
    .expect("A is not held")
    .unwrap()
    .get(0);
    assert_eq!(seen, ORG_A);
    tx_a.commit().await.unwrap();

    let pool_b = pool.clone();
    let waiting = tokio::spawn(async move {
        let mut b = pool_b.get().await.unwrap();
        let tx_b = chukan_db::tenant_tx(&mut b, ORG_B).await.unwrap();
        let v: String = tx_b
            .query_one("SELECT current_setting('chukan.tenant')", &[])
            .await
            .unwrap()
            .get(0);
        tx_b.commit().await.unwrap();
        v
    });
    // B's statement is queued behind the hold: its lock request shows, not granted.
    let watcher = pool.get().await.unwrap();
    chukan_testkit::wait_until(Duration::from_secs(5), "B waiting on the hold", || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == 1)
    })
    .await
    .unwrap();
    assert!(!waiting.is_finished(), "B's transaction waits for the hold");
    hold.commit().await.unwrap();
    let seen_b = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("B goes on once the hold is released")
        .unwrap();
    assert_eq!(seen_b, ORG_B);
}
