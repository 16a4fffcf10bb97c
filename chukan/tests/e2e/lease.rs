//! Once per cell (ADR 0005) with two real processes on one database: every once-per-cell
//! work's lease is held by exactly one of them, as each one's `/metrics` says; the holder
//! killed with SIGKILL, the other takes every lease over; and the work itself (signing tree
//! heads) is done by the holder alone, before and after the takeover.

use std::{collections::BTreeMap, time::Duration};

use chukan_mq::OutgoingMessage;
use chukan_proto::{AuditRecord, Message as _};

use crate::ORG_A;
use crate::helpers::{Proc, chukan, env_for, free_port, run_json, wait_ready};

/// Every work the binary runs under a lease (`--target=all` runs them all).
const WORKS: [&str; 8] = [
    "admin.status",
    "audit.retention",
    "audit.tree-heads",
    "inquiry.expiry",
    "provision.batch",
    "provision.expiry",
    "relay-releaser",
    "stats.snapshots",
];

struct Replica {
    proc: Proc,
    ops: String,
}

/// Starts `chukan --target=all` on ports of its own (again on fresh ones if a port was
/// taken before it could bind it).
async fn replica(
    http: &reqwest::Client,
    settings: &chukan_config::Settings,
    extra: &[(&str, &str)],
) -> Replica {
    for _attempt in 0..4 {
        let ports = (free_port(), free_port(), free_port(), free_port());
        let mut env = env_for(settings, ports);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut proc = Proc {
            name: "chukan",
            child: chukan(&env, &["--target=all"]).spawn().unwrap(),
        };
        let ops = format!("http://127.0.0.1:{}", ports.1);
        if wait_ready(http, &format!("{ops}/readyz"), &mut proc).await {
            return Replica { proc, ops };
        }
    }
    panic!("a replica did not start in four attempts (run with TEST_LOG=1 to see why)");
}

/// The process's samples of `name` by their `work` label (absent series are left out).
async fn by_work(http: &reqwest::Client, ops: &str, name: &str) -> BTreeMap<String, f64> {
    let Ok(res) = http.get(format!("{ops}/metrics")).send().await else {
        return BTreeMap::new();
    };
    let text = res.text().await.unwrap_or_default();
    let prefix = format!("{name}{{work=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (work, value) = l.split_once("\"} ")?;
            Some((work.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// One unlabelled sample (0 when absent: a counter never touched is not exported).
async fn sample(http: &reqwest::Client, ops: &str, series: &str) -> f64 {
    let Ok(res) = http.get(format!("{ops}/metrics")).send().await else {
        return 0.0;
    };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn held_by(held: &BTreeMap<String, f64>, work: &str) -> bool {
    held.get(work).is_some_and(|v| *v == 1.0)
}

async fn publish_records(bus: &chukan_mq::Bus, count: usize) {
    let publisher = bus.publisher().await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..count {
        let record = AuditRecord {
            record_id: uuid::Uuid::now_v7().to_string(),
            tenant: ORG_A.into(),
            event: "provision.made".into(),
            inquirer_org: "4010000000000004".into(),
            provider_org: ORG_A.into(),
            affair_code: "JM00000000000001".into(),
            procedure_code: "JT00000000000001".into(),
            info_code: "TM00000000000002".into(),
            serial_no: format!("{:020}", i + 1),
            branch_no: 1,
            permit_id: "permit-1".into(),
            addressee: "000000000000777".into(),
            requested_at_ms: now - 1000,
            provided_at_ms: now,
            non_disclosure: false,
            outcome: "provided".into(),
            at_ms: now,
            ..Default::default()
        };
        let msg = OutgoingMessage::new(ORG_A, chukan_proto::AUDIT_RECORD, record.encode_to_vec());
        publisher.publish(&msg).await.unwrap();
    }
}

const TREE_HEADS: &str = "chukan_audit_tree_heads_total ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lease_is_held_by_one_of_two_processes_and_taken_over_when_its_holder_is_killed() {
    let settings = chukan_testkit::test_settings();
    let http = reqwest::Client::new();
    // Quick retries and checks, so the takeover is seen in seconds; heads signed every second.
    let extra = [
        ("CHUKAN__LEASE__RETRY_SECS", "1"),
        ("CHUKAN__LEASE__CHECK_SECS", "1"),
        ("CHUKAN__LEASE__ABANDON_SECS", "5"),
        ("CHUKAN__AUDIT__TREE_HEAD_INTERVAL_SECS", "1"),
    ];
    let migrate_env = env_for(
        &settings,
        (free_port(), free_port(), free_port(), free_port()),
    );
    run_json(&migrate_env, &["migrate"]);
    let a = replica(&http, &settings, &extra).await;
    let b = replica(&http, &settings, &extra).await;

    // Exactly one holder per work, both processes reporting every work (held or not).
    let deadline = Duration::from_secs(20);
    chukan_testkit::wait_until(deadline, "one holder per lease", || async {
        let (ha, hb) = (
            by_work(&http, &a.ops, "chukan_lease_held").await,
            by_work(&http, &b.ops, "chukan_lease_held").await,
        );
        WORKS.iter().all(|w| {
            ha.contains_key(*w)
                && hb.contains_key(*w)
                && usize::from(held_by(&ha, w)) + usize::from(held_by(&hb, w)) == 1
        })
    })
    .await
    .unwrap();
    let a_signs = held_by(
        &by_work(&http, &a.ops, "chukan_lease_held").await,
        "audit.tree-heads",
    );
    let (mut holder, mut other) = if a_signs { (a, b) } else { (b, a) };

    // The signer's work is done by the holder alone: records appended by either process's
    // consumer are signed, and only the holder counts signed heads.
    let bus = chukan_mq::Bus::connect(&settings.amqp).await.unwrap();
    publish_records(&bus, 20).await;
    chukan_testkit::wait_until(deadline, "a head signed by the holder", || async {
        sample(&http, &holder.ops, TREE_HEADS).await >= 1.0
    })
    .await
    .unwrap();
    assert_eq!(
        sample(&http, &other.ops, TREE_HEADS).await,
        0.0,
        "the process without the lease signs nothing"
    );

    // The holder dies without a word: its session ends with it, and the other process
    // takes every lease the dead one held (here: at least the signer's) within seconds.
    holder.proc.child.kill().unwrap();
    holder.proc.child.wait().unwrap();
    chukan_testkit::wait_until(
        Duration::from_secs(15),
        "every lease taken over",
        || async {
            let held = by_work(&http, &other.ops, "chukan_lease_held").await;
            WORKS.iter().all(|w| held_by(&held, w))
        },
    )
    .await
    .unwrap();
    let takeovers = by_work(&http, &other.ops, "chukan_lease_takeovers_total").await;
    assert_eq!(
        takeovers.get("audit.tree-heads").copied(),
        Some(1.0),
        "{takeovers:?}"
    );
    // …and does the work from now on.
    publish_records(&bus, 5).await;
    chukan_testkit::wait_until(deadline, "a head signed after the takeover", || async {
        sample(&http, &other.ops, TREE_HEADS).await >= 1.0
    })
    .await
    .unwrap();
    bus.close().await;
    assert_eq!(other.proc.terminate(Duration::from_secs(30)), Some(0));
}
