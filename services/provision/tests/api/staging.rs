//! The staging path of replica registration (binary COPY into the session's temporary table,
//! then into the replicas under the tenant's policy), as the application role: nothing staged
//! outlives its transaction on a pooled connection or reaches another connection, and the
//! wall between organisations holds for every row that goes through it.

use chrono::Utc;
use chukan_layout::RecordKind;
use chukan_provision::store::{self, StagedReplica};
use chukan_testkit::TestEnv;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::helpers::{MEDICAL, ORG_A, ORG_B};

fn kind() -> RecordKind {
    RecordKind {
        info_code: MEDICAL.into(),
        major_version: "0002".into(),
        dataset: "0101".into(),
    }
}

fn row<'a>(kind: &'a RecordKind, key: &'a [u8], id: &'a str, overwrite: bool) -> StagedReplica<'a> {
    StagedReplica {
        key_bidx: key,
        kind,
        record_id: id,
        addressee_bidx: b"addressee",
        public_start: None,
        public_end: None,
        sealed: b"sealed",
        bytes: 6,
        overwrite,
    }
}

async fn env() -> TestEnv {
    TestEnv::new(&[chukan_provision::migrations()])
        .await
        .unwrap()
}

#[actix_rt::test]
async fn staged_rows_never_outlive_their_transaction_on_a_pooled_connection() {
    let env = env().await;
    let k = kind();
    let upload = Uuid::now_v7();
    let mut client = env.ctx.db.get().await.unwrap();

    // The application role, which bypasses no policy, may create temporary tables.
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    let role = tx
        .query_one(
            "SELECT rolsuper OR rolbypassrls, has_database_privilege(current_database(), 'TEMP')
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert!(!role.get::<_, bool>(0), "tests run as the application role");
    assert!(
        role.get::<_, bool>(1),
        "the application role may create temporary tables"
    );
    // A chunk that fails after staging: its rows (and the table it created) roll back.
    let staged = store::stage_replicas(&tx, &[row(&k, b"k1", "R1", false)])
        .await
        .unwrap();
    assert_eq!(staged, 1);
    tx.rollback().await.unwrap();

    // A transaction that stages and commits without moving its rows leaves nothing behind.
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    let staged = store::stage_replicas(
        &tx,
        &[row(&k, b"k2", "R2", false), row(&k, b"k3", "R3", true)],
    )
    .await
    .unwrap();
    assert_eq!(staged, 2);
    tx.commit().await.unwrap();

    // The next chunk on the same connection moves its own row only.
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    store::stage_replicas(&tx, &[row(&k, b"k4", "R4", false)])
        .await
        .unwrap();
    let inserted = store::insert_staged(&tx, ORG_A, upload, Utc::now())
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let updated = store::update_staged(&tx, ORG_A, upload, Utc::now(), &[b"k3".as_slice()])
        .await
        .unwrap();
    assert_eq!(
        updated, 0,
        "nothing staged for overwriting in this transaction"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        env.scalar_i64(
            ORG_A,
            "SELECT count(*) FROM provision.replicas WHERE record_id = 'R4'"
        )
        .await,
        1
    );
    assert_eq!(
        env.scalar_i64(ORG_A, "SELECT count(*) FROM provision.replicas")
            .await,
        1
    );
}

#[actix_rt::test]
async fn two_connections_stage_apart() {
    let env = env().await;
    let k = kind();
    let upload = Uuid::now_v7();
    let mut first = env.ctx.db.get().await.unwrap();
    let mut second = env.ctx.db.get().await.unwrap();
    let tx1 = chukan_db::tenant_tx(&mut first, ORG_A).await.unwrap();
    let tx2 = chukan_db::tenant_tx(&mut second, ORG_A).await.unwrap();
    store::stage_replicas(
        &tx1,
        &[row(&k, b"k1", "R1", false), row(&k, b"k2", "R2", false)],
    )
    .await
    .unwrap();
    store::stage_replicas(&tx2, &[row(&k, b"k3", "R3", false)])
        .await
        .unwrap();
    // Two chunks in flight at once: each moves what it staged itself.
    let inserted = store::insert_staged(&tx2, ORG_A, upload, Utc::now())
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    tx2.commit().await.unwrap();
    let inserted = store::insert_staged(&tx1, ORG_A, upload, Utc::now())
        .await
        .unwrap();
    assert_eq!(inserted, 2);
    tx1.commit().await.unwrap();
    assert_eq!(
        env.scalar_i64(ORG_A, "SELECT count(*) FROM provision.replicas")
            .await,
        3
    );
}

#[actix_rt::test]
async fn the_staging_path_keeps_the_wall_between_organisations() {
    let env = env().await;
    let k = kind();
    let upload = Uuid::now_v7();
    let mut client = env.ctx.db.get().await.unwrap();
    // B's replica, registered through the staging path as B.
    let tx = chukan_db::tenant_tx(&mut client, ORG_B).await.unwrap();
    store::stage_replicas(&tx, &[row(&k, b"kb", "B-1", false)])
        .await
        .unwrap();
    store::insert_staged(&tx, ORG_B, upload, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Inside A's transaction, rows written in B's name are refused by the policy...
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    store::stage_replicas(&tx, &[row(&k, b"ka", "A-1", false)])
        .await
        .unwrap();
    let refused = store::insert_staged(&tx, ORG_B, upload, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    tx.rollback().await.unwrap();

    // ... and B's row cannot be overwritten: the policy hides it.
    for tenant in [ORG_A, ORG_B] {
        let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
        store::stage_replicas(&tx, &[row(&k, b"kb", "A-2", true)])
            .await
            .unwrap();
        let updated = store::update_staged(&tx, tenant, upload, Utc::now(), &[b"kb".as_slice()])
            .await
            .unwrap();
        assert_eq!(updated, 0, "overwriting as {tenant} inside A's transaction");
        tx.commit().await.unwrap();
    }
    assert_eq!(
        env.scalar_i64(
            ORG_B,
            "SELECT count(*) FROM provision.replicas WHERE record_id = 'B-1'"
        )
        .await,
        1
    );
    assert_eq!(
        env.scalar_i64(ORG_A, "SELECT count(*) FROM provision.replicas")
            .await,
        0
    );
}
