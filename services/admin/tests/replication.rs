#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The sync guard (`region.sync-guard`, ADR 0006) against a primary and a physical standby of
//! the test's own: lag metrics while the standby streams; synchronous commit set, suspended
//! when the standby goes (the waiting commit released, a window recorded) and restored when it
//! is back.
//!
//! A test binary of its own: it needs its own clusters, not the shared server, and no broker.
//! nextest runs each test in a process of its own, so the metrics read here are the guard's.

use std::time::Duration;

use chukan_config::{LeaseSettings, Settings};
use chukan_testkit::{replication::PrimaryStandby, wait_until};

/// The standby's application_name: a hyphen, as region names give them, so the guard has to
/// quote it inside `synchronous_standby_names`.
const STANDBY: &str = "west-standby-of-east";

/// Generous: the whole test takes a few seconds here.
const DEADLINE: Duration = Duration::from_secs(20);

struct Cell {
    pair: PrimaryStandby,
    settings: Settings,
    guard: chukan_runtime::Worker,
}

/// A migrated database on the pair's primary and the guard running under its lease, as the
/// app role; `sync` = whether `cells.synchronous_standby_names` names the standby.
async fn cell(sync: bool) -> Cell {
    let pair = PrimaryStandby::start(STANDBY)
        .await
        .expect("primary and standby");
    let mut settings = chukan_testkit::test_settings();
    settings.database.url = pair.primary_url("chukan");
    settings.cells.synchronous_standby_names = if sync { STANDBY.into() } else { String::new() };
    settings.cells.replication_sample = Duration::from_millis(200);
    settings.cells.sync_degrade_after = Duration::from_secs(2);
    chukan_db::migrate(&settings.database, &[chukan_admin::migrations()])
        .await
        .expect("migrate");
    let db = chukan_db::app_pool(&settings.database).expect("app pool");
    let cells = settings.cells.clone();
    let guard = chukan_runtime::lease::once_per_cell_on(
        db.clone(),
        LeaseSettings {
            retry: Duration::from_millis(100),
            check: Duration::from_millis(500),
            abandon: Duration::from_secs(30),
        },
        chukan_runtime::replication::WORK,
        chukan_runtime::StopStage::Outbox,
        move || chukan_runtime::replication::sync_guard(db.clone(), cells.clone()),
    );
    Cell {
        pair,
        settings,
        guard,
    }
}

/// A new superuser session on the primary (a new session sees the reloaded configuration).
async fn owner(cell: &Cell) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&cell.settings.database.url, tokio_postgres::NoTls)
            .await
            .expect("connect as the owner");
    tokio::spawn(conn);
    client
}

async fn standby_names(cell: &Cell) -> String {
    owner(cell)
        .await
        .query_one("SHOW synchronous_standby_names", &[])
        .await
        .expect("show")
        .get(0)
}

/// (ended_at is null, reason) of every async window, oldest first.
async fn windows(cell: &Cell) -> Vec<(bool, String)> {
    owner(cell)
        .await
        .query(
            "SELECT ended_at IS NULL, reason FROM admin.async_windows ORDER BY id",
            &[],
        )
        .await
        .expect("windows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The value of gauge `name` (with `standby` = the given label, if any) as exported now.
fn gauge(name: &str, standby: Option<&str>) -> Option<f64> {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .find(|m| {
            standby.is_none_or(|s| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "standby" && l.value() == s)
            })
        })
        .map(|m| m.get_gauge().value())
}

#[tokio::test]
async fn lag_metrics_appear_while_the_standby_streams() {
    let cell = cell(false).await;
    wait_until(DEADLINE, "the standby's series", || async {
        gauge("chukan_replication_standby_streaming", Some(STANDBY)) == Some(1.0)
            && gauge("chukan_replication_lag_bytes", Some(STANDBY)).is_some()
            && gauge("chukan_replication_lag_seconds", Some(STANDBY)).is_some()
            && gauge("chukan_replication_sync_degraded", None).is_some()
    })
    .await
    .expect("the app role sees the standby streaming (pg_monitor granted by migrate)");
    assert_eq!(gauge("chukan_replication_sync_degraded", None), Some(0.0));
    assert_eq!(
        gauge(
            "chukan_replication_async_window_started_timestamp_seconds",
            None
        ),
        Some(0.0)
    );
    // Asynchronous commit configured: the guard leaves the setting alone.
    assert_eq!(standby_names(&cell).await, "");
    (cell.guard.stop)().await;
    assert_eq!(
        gauge("chukan_replication_sync_degraded", None),
        None,
        "a guard that stopped exports nothing"
    );
}

#[tokio::test]
async fn commits_go_asynchronous_while_the_standby_is_away_and_synchronous_again_after() {
    let mut cell = cell(true).await;
    let wanted = format!("\"{STANDBY}\"");
    wait_until(DEADLINE, "synchronous commit to be set", || async {
        standby_names(&cell).await == wanted
    })
    .await
    .expect("the guard sets synchronous_standby_names while the standby streams");
    let client = owner(&cell).await;
    client
        .batch_execute("CREATE TABLE acknowledged (n int)")
        .await
        .expect("a synchronous commit with the standby streaming");

    cell.pair.stop_standby().await.expect("stop the standby");
    let url = cell.settings.database.url.clone();
    let commit = tokio::spawn(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .execute("INSERT INTO acknowledged VALUES (1)", &[])
            .await
    });
    let inserted = tokio::time::timeout(DEADLINE, commit)
        .await
        .expect("the commit waiting on the missing standby is released")
        .expect("task")
        .expect("the commit succeeds, not cancelled");
    assert_eq!(inserted, 1);
    // The reload that released the commit comes before the window's row.
    wait_until(DEADLINE, "an open async window", || async {
        windows(&cell).await.iter().any(|(open, _)| *open)
    })
    .await
    .expect("the window is recorded");
    let open = windows(&cell).await;
    assert!(
        matches!(open.as_slice(), [(true, reason)] if reason == "commits-waiting" || reason == "standby-absent"),
        "one open window: {open:?}"
    );
    wait_until(DEADLINE, "sync_degraded = 1", || async {
        gauge("chukan_replication_sync_degraded", None) == Some(1.0)
            && gauge("chukan_replication_standby_streaming", Some(STANDBY)) == Some(0.0)
    })
    .await
    .expect("the degradation is exported, and the absent standby as not streaming");
    assert!(
        gauge(
            "chukan_replication_async_window_started_timestamp_seconds",
            None
        )
        .is_some_and(|t| t > 0.0)
    );
    assert_eq!(standby_names(&cell).await, "");

    cell.pair
        .start_standby()
        .await
        .expect("restart the standby");
    wait_until(DEADLINE, "the window to end", || async {
        windows(&cell).await.iter().all(|(open, _)| !open)
    })
    .await
    .expect("the window ends once the standby is back and caught up");
    assert_eq!(standby_names(&cell).await, wanted);
    assert_eq!(gauge("chukan_replication_sync_degraded", None), Some(0.0));
    // Synchronous again: a commit reaches the standby before it is acknowledged.
    owner(&cell)
        .await
        .execute("INSERT INTO acknowledged VALUES (2)", &[])
        .await
        .expect("a synchronous commit");
    let on_standby = {
        let (client, conn) =
            tokio_postgres::connect(&cell.pair.standby_url("chukan"), tokio_postgres::NoTls)
                .await
                .expect("connect to the standby");
        tokio::spawn(conn);
        wait_until(DEADLINE, "the standby to replay", || async {
            client
                .query_one("SELECT count(*) FROM acknowledged", &[])
                .await
                .is_ok_and(|r| r.get::<_, i64>(0) == 2)
        })
        .await
    };
    assert!(on_standby.is_ok(), "both rows are on the standby");
    (cell.guard.stop)().await;
}
