//! Spawns the provision service on the real HTTP server with a fresh database and namespace,
//! a manual clock, and a second state for running batch jobs directly (as `chukan batch run`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Tokyo;
use chukan_auth::Role;
use chukan_config::Settings;
use chukan_core::ManualClock;
use chukan_layout::{ItemValue, Payload};
use chukan_mq::{Delivery, QueueSpec};
use chukan_provision::{
    ProvisionState,
    replica::jobs::{self, Job, JobReport},
    store::{self, Org},
};
use chukan_replica_list::{EntrySpec, ListWriter, Operation};
use chukan_testkit::{TestApi, TestEnv};
use futures_util::FutureExt;

pub const ORG_A: &str = "1310010000000001";
pub const ORG_B: &str = "2710000000000002";
pub const MEDICAL: &str = "TM00000000000031";
pub const LOCAL_TAX: &str = "TM00000000000002";

/// Tuesday 2026-11-24 10:00 in Japan: a weekday, inside service hours.
pub fn tuesday_10() -> DateTime<Utc> {
    japan(2026, 11, 24, 10, 0)
}

pub fn japan(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Tokyo
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

pub struct TestApp {
    pub env: TestEnv,
    pub api: TestApi,
    pub clock: Arc<ManualClock>,
    /// A second state on the same database, to run batch jobs as `chukan batch run` does.
    pub state: ProvisionState,
    /// Replica-count events seen on the bus.
    pub counts: Arc<Mutex<Vec<Delivery>>>,
    /// Signs provision permits as the NWS would; its public key is in relay.nws_public_keys.
    pub nws: Arc<chukan_crypto::Signer>,
    /// What provision published on nws.out, audit.record, stats.exchange and flags.changed.
    pub out: Arc<Mutex<Vec<Delivery>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(tuesday_10(), |_| {}).await
}

pub async fn spawn_app_with(at: DateTime<Utc>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let clock = Arc::new(ManualClock::new(at));
    let nws = Arc::new(
        chukan_crypto::Signer::from_seed_base64("nws-test", &chukan_crypto::generate_key_base64())
            .unwrap(),
    );
    let nws_entry = format!("nws-test={}", nws.public_key_base64());
    let env = TestEnv::new_with(
        &[chukan_provision::migrations()],
        |s| {
            s.provision.batch_chunk_entries = 50;
            s.relay.nws_public_keys = vec![nws_entry];
            configure(s)
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let parts = chukan_provision::start(&env.ctx).await.unwrap();
    let outbox = chukan_mq::outbox::start(
        env.ctx.db.clone(),
        chukan_provision::SCHEMA,
        env.ctx.bus.clone(),
        Duration::from_millis(100),
    );
    let (state, _rx) = chukan_provision::build_state(&env.ctx, outbox.clone()).unwrap();
    let counts: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let spec = QueueSpec::new("test.replica-counts", &["stats.replica-count"]);
    env.ctx.bus.declare_queue(&spec).await.unwrap();
    let sink = counts.clone();
    let consumer = chukan_mq::consumer::start(
        &env.ctx.bus,
        &spec,
        "test",
        16,
        Arc::new(move |d: Delivery| {
            sink.lock().unwrap().push(d);
            async { Ok(()) }.boxed()
        }),
    );
    // admin consumes batch.progress in the real system; here a queue keeps it routable.
    env.ctx
        .bus
        .declare_queue(&QueueSpec::new("test.batch-progress", &["batch.progress"]))
        .await
        .unwrap();
    // Stand-ins for relay (nws.out), audit (audit.record), stats (stats.exchange) and inquiry
    // (flags.changed).
    let out: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let spec = QueueSpec::new(
        "test.provision-out",
        &[
            chukan_proto::NWS_OUT,
            chukan_proto::AUDIT_RECORD,
            chukan_proto::STATS_EXCHANGE,
            chukan_proto::STATUS_COMPONENT,
            chukan_proto::FLAGS_CHANGED,
        ],
    );
    env.ctx.bus.declare_queue(&spec).await.unwrap();
    let sink = out.clone();
    let out_consumer = chukan_mq::consumer::start(
        &env.ctx.bus,
        &spec,
        "test",
        16,
        Arc::new(move |d: Delivery| {
            sink.lock().unwrap().push(d);
            async { Ok(()) }.boxed()
        }),
    );
    let mut api = env.spawn_api(vec![parts]).await.unwrap();
    api.workers
        .push(out_consumer.into_worker("test.provision-out"));
    api.workers
        .push(consumer.into_worker("test.replica-counts"));
    api.workers.push(outbox.into_worker("test.outbox"));
    let app = TestApp {
        env,
        api,
        clock,
        state,
        counts,
        nws,
        out,
    };
    app.set_org(ORG_A, 200_000, Some('A'), false).await;
    app.set_org(ORG_B, 200_000, Some('B'), false).await;
    app
}

impl TestApp {
    pub fn token(&self, tenant: &str) -> String {
        self.env
            .token(tenant, &[Role::SystemClient, Role::BusinessStaff])
    }

    /// As admin's tenant.changed would set it.
    pub async fn set_org(&self, org: &str, population: i64, group: Option<char>, immediate: bool) {
        self.set_org_of_kind(org, "municipality", population, group, immediate)
            .await
    }

    /// As [`TestApp::set_org`], for a prefecture or a union (一部事務組合).
    pub async fn set_org_of_kind(
        &self,
        org: &str,
        kind: &str,
        population: i64,
        group: Option<char>,
        immediate: bool,
    ) {
        let client = self.env.ctx.db.get().await.unwrap();
        let revision = chrono::Utc::now().timestamp_micros();
        store::upsert_org(
            &client,
            &Org {
                org_code: org.into(),
                kind: kind.into(),
                population,
                upload_group: group,
                immediate,
            },
            revision,
        )
        .await
        .unwrap();
    }

    pub async fn upload(&self, tenant: &str, body: Vec<u8>) -> reqwest::Response {
        self.api
            .http
            .post(self.api.url("/v1/replica-uploads?file_name=test.xml"))
            .bearer_auth(self.token(tenant))
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Uploads and expects 202; returns the upload id.
    pub async fn upload_ok(&self, tenant: &str, body: Vec<u8>) -> String {
        let res = self.upload(tenant, body).await;
        let status = res.status();
        let json: serde_json::Value = res.json().await.unwrap();
        assert_eq!(status, 202, "{json}");
        json["upload_id"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, tenant: &str, path: &str) -> (u16, serde_json::Value) {
        self.api.get(&self.token(tenant), path).await
    }

    pub async fn post(
        &self,
        tenant: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.api.post(&self.token(tenant), path, &body).await
    }

    pub async fn report(&self, tenant: &str, id: &str) -> serde_json::Value {
        let (status, json) = self.get(tenant, &format!("/v1/replica-uploads/{id}")).await;
        assert_eq!(status, 200, "{json}");
        json
    }

    pub async fn run(&self, job: Job) -> JobReport {
        jobs::run(&self.state, job).await.unwrap()
    }

    /// Rows of a provision table visible to `tenant` (the application role: RLS applies).
    pub async fn count_rows(&self, tenant: &str, table: &str) -> i64 {
        let mut client = self.env.ctx.db.get().await.unwrap();
        let tx = chukan_db::tenant_tx(&mut client, tenant).await.unwrap();
        tx.query_one(&format!("SELECT count(*) FROM provision.{table}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Point-in-time read.
    pub async fn query(&self, tenant: &str, body: serde_json::Value) -> Vec<serde_json::Value> {
        let (status, json) = self.post(tenant, "/v1/replica-queries", body).await;
        assert_eq!(status, 200, "{json}");
        json["entries"].as_array().unwrap().clone()
    }
}

/// One item value.
pub fn item(code: &str, value: &str) -> ItemValue {
    ItemValue {
        code: code.into(),
        value: Some(value.into()),
        version: None,
        updated: None,
        null_reason: None,
    }
}

/// A repeating-group item value.
pub fn group_item(code: &str, value: &str) -> ItemValue {
    ItemValue {
        version: Some("0002".into()),
        updated: Some(NaiveDate::from_ymd_opt(2017, 3, 1).unwrap()),
        ..item(code, value)
    }
}

/// A No. 31 (medical insurance) eligibility entry: member number, acquired, lost.
pub fn medical(member: &str, acquired: &str, lost: Option<&str>) -> Payload {
    let mut p = vec![group_item("I0001", member), item("I0002", acquired)];
    if let Some(l) = lost {
        p.push(item("I0003", l));
    }
    p
}

/// An entry to write.
#[derive(Clone)]
pub struct Rec {
    pub op: Operation,
    pub record_id: String,
    pub addressee: String,
    pub info_code: String,
    pub dataset: String,
    pub key: String,
    pub version: String,
    pub public_start: Option<NaiveDate>,
    pub public_end: Option<NaiveDate>,
    pub payload: Payload,
}

impl Rec {
    /// No. 31 entry number `n` (fixed-width fields, so every entry has the same size).
    pub fn medical(n: u32) -> Rec {
        Rec {
            op: Operation::Register,
            record_id: format!("R{n:015}"),
            addressee: format!("{:015}", 100_000 + n),
            info_code: MEDICAL.into(),
            dataset: "0101".into(),
            key: format!("K{n:09}"),
            version: "0002".into(),
            public_start: None,
            public_end: None,
            payload: medical(&format!("M{n:09}"), "2015-04-01", None),
        }
    }
}

pub fn list(recs: &[Rec]) -> Vec<u8> {
    let mut w = ListWriter::new(Vec::new()).unwrap();
    for r in recs {
        w.write(&EntrySpec {
            operation: r.op,
            record_id: &r.record_id,
            addressee: &r.addressee,
            info_code: &r.info_code,
            dataset: &r.dataset,
            record_key: &r.key,
            major_version: &r.version,
            parent_record_key: None,
            public_start: r.public_start,
            public_end: r.public_end,
            payload: &r.payload,
        })
        .unwrap();
    }
    w.finish().unwrap()
}

pub fn medical_list(range: std::ops::Range<u32>) -> Vec<u8> {
    list(&range.map(Rec::medical).collect::<Vec<_>>())
}
