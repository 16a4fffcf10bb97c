//! Spawns the audit service on the real HTTP server with a fresh database and namespace; the
//! tests play the other services, publishing `audit.record` on the bus. Also an independent
//! RFC 9162 verifier (SHA-256 from `sha2`, nothing from chukan-merkle).

use std::time::Duration;

use chrono::Utc;
use chukan_audit::AuditState;
use chukan_auth::Role;
use chukan_config::Settings;
use chukan_mq::OutgoingMessage;
use chukan_proto::{AuditRecord, Message};
use chukan_testkit::{TestApi, TestEnv};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const ORG_A: &str = "1310010000000001";
pub const ORG_B: &str = "2710000000000002";
pub const PEER_1: &str = "4010000000000004";
pub const PEER_2: &str = "4020000000000005";
pub const DEADLINE: Duration = Duration::from_secs(30);

pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    chukan_testkit::wait_until(DEADLINE, what, check)
        .await
        .unwrap();
}

pub struct TestApp {
    pub env: TestEnv,
    pub api: TestApi,
    /// A second handle on the service's state, to run a signing round on demand.
    pub state: AuditState,
}

/// The service with the periodic signer effectively off (tests sign with [`TestApp::sign`]).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The service started only after `backlog` was published (each record under its own bus
/// id), so it meets a full queue — what a restart after an outage looks like.
pub async fn spawn_app_with_backlog(backlog: &[AuditRecord]) -> TestApp {
    let env = TestEnv::new_with(
        &[chukan_audit::migrations()],
        |s| s.audit.tree_head_interval = Duration::from_secs(3600),
        std::sync::Arc::new(chukan_core::SystemClock),
    )
    .await
    .unwrap();
    env.ctx
        .bus
        .declare_queue(&chukan_audit::records_queue())
        .await
        .unwrap();
    let publisher = env.ctx.bus.publisher().await.unwrap();
    for r in backlog {
        let msg = OutgoingMessage::new(&r.tenant, chukan_proto::AUDIT_RECORD, r.encode_to_vec());
        publisher.publish(&msg).await.unwrap();
    }
    let parts = chukan_audit::start(&env.ctx).await.unwrap();
    let api = env.spawn_api(vec![parts]).await.unwrap();
    let state = chukan_audit::state(&env.ctx).unwrap();
    TestApp { env, api, state }
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let env = TestEnv::new_with(
        &[chukan_audit::migrations()],
        |s| {
            s.audit.tree_head_interval = Duration::from_secs(3600);
            configure(s);
        },
        std::sync::Arc::new(chukan_core::SystemClock),
    )
    .await
    .unwrap();
    let parts = chukan_audit::start(&env.ctx).await.unwrap();
    let api = env.spawn_api(vec![parts]).await.unwrap();
    let state = chukan_audit::state(&env.ctx).unwrap();
    TestApp { env, api, state }
}

pub fn record(tenant: &str, addressee: &str, counterpart: &str, procedure: &str) -> AuditRecord {
    AuditRecord {
        record_id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.into(),
        event: "provision.made".into(),
        inquirer_org: counterpart.into(),
        provider_org: tenant.into(),
        affair_code: "JM00000000000001".into(),
        procedure_code: procedure.into(),
        info_code: "TM00000000000002".into(),
        serial_no: "00000000000000000001".into(),
        branch_no: 1,
        permit_id: "permit-1".into(),
        addressee: addressee.into(),
        requested_at_ms: Utc::now().timestamp_millis() - 1000,
        provided_at_ms: Utc::now().timestamp_millis(),
        non_disclosure: false,
        outcome: "provided".into(),
        at_ms: Utc::now().timestamp_millis(),

        ..Default::default()
    }
}

impl TestApp {
    pub fn token(&self, tenant: &str) -> String {
        self.env.token(tenant, &[Role::BusinessStaff])
    }

    pub async fn publish_msg(&self, msg: &OutgoingMessage) {
        self.env.publish(msg).await;
    }

    /// Publishes the record under a new bus message id; returns the message.
    pub async fn publish(&self, r: &AuditRecord) -> OutgoingMessage {
        let msg = OutgoingMessage::new(&r.tenant, chukan_proto::AUDIT_RECORD, r.encode_to_vec());
        self.publish_msg(&msg).await;
        msg
    }

    /// One value from the service's tables, read as `tenant` (RLS applies).
    pub async fn scalar_i64(&self, tenant: &str, sql: &str) -> i64 {
        self.env.scalar_i64(tenant, sql).await
    }

    /// Publishes the records and waits until the tenant's log holds `want` leaves.
    pub async fn append_all(&self, records: &[AuditRecord], want: i64) {
        let tenant = records[0].tenant.clone();
        for r in records {
            self.publish(r).await;
        }
        wait_until("records appended", || async {
            self.scalar_i64(&tenant, "SELECT count(*) FROM audit.records")
                .await
                == want
        })
        .await;
    }

    /// Runs one signing round now.
    pub async fn sign(&self) {
        chukan_audit::heads::sign_all(&self.state).await.unwrap();
    }

    pub async fn get(&self, tenant: &str, path: &str) -> (u16, Value) {
        self.get_with(&self.token(tenant), path).await
    }

    pub async fn get_with(&self, token: &str, path: &str) -> (u16, Value) {
        self.api.get(token, path).await
    }

    pub async fn post(&self, tenant: &str, path: &str, body: &Value) -> (u16, Value) {
        self.api.post(&self.token(tenant), path, body).await
    }

    /// Verifies `tenant`'s whole log with the service's own key.
    pub async fn verify(&self, tenant: &str) -> chukan_audit::VerifyReport {
        let vault = chukan_crypto::Vault::new(self.env.ctx.kek.clone(), chukan_audit::SCHEMA);
        let verifiers = chukan_audit::verifiers(&self.env.settings.audit).unwrap();
        let mut client = self.env.ctx.db.get().await.unwrap();
        chukan_audit::verify_tenant(&mut client, &vault, &verifiers, tenant)
            .await
            .unwrap()
    }

    /// Runs `sql` as the database owner (bypassing the service), inside `tenant`'s setting.
    pub async fn tamper(&self, tenant: &str, sql: &str) {
        let owner = self.env.owner_pool().unwrap();
        let mut oc = owner.get().await.unwrap();
        let tx = chukan_db::tenant_tx(&mut oc, tenant).await.unwrap();
        tx.execute(sql, &[]).await.unwrap();
        tx.commit().await.unwrap();
    }
}

pub fn unhex(s: &Value) -> [u8; 32] {
    hex::decode(s.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// RFC 9162 leaf hash of the documented leaf bytes v1: `0x01 || protobuf(AuditRecord)`.
pub fn independent_leaf_hash(r: &AuditRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8, 1u8]);
    h.update(r.encode_to_vec());
    h.finalize().into()
}

/// RFC 9162 §2.1.3.2, step by step.
pub fn independent_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8; 32],
    path: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    if index >= size {
        return false;
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode /= 2;
                    snode /= 2;
                }
            }
        } else {
            r = node(&r, p);
        }
        fnode /= 2;
        snode /= 2;
    }
    snode == 0 && r == *root
}

/// RFC 9162 §2.1.4.2, step by step.
pub fn independent_consistency(
    first: u64,
    second: u64,
    first_hash: &[u8; 32],
    second_hash: &[u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    if first == second {
        return proof.is_empty() && first_hash == second_hash;
    }
    if first == 0 || first > second {
        return false;
    }
    let mut path: Vec<[u8; 32]> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_hash);
    }
    if path.is_empty() {
        return false;
    }
    let mut fnode = first - 1;
    let mut snode = second - 1;
    while fnode & 1 == 1 {
        fnode /= 2;
        snode /= 2;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode /= 2;
                    snode /= 2;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        fnode /= 2;
        snode /= 2;
    }
    fr == *first_hash && sr == *second_hash && snode == 0
}
