//! The tenant registry, GET /v1/tenants/self and the tenant.changed announcements.

use std::time::Duration;

use chukan_admin::TenantUpdate;
use chukan_core::ids::OrgCode;
use serde_json::Value;

use crate::helpers::{TENANT_A, TENANT_B, new_tenant, spawn_app};

/// An organisation spawn_app does not register.
const TENANT_C: &str = "0113000000000003";

#[actix_rt::test]
async fn the_caller_sees_its_own_tenant() {
    let app = spawn_app().await;
    for tenant in [TENANT_A, TENANT_B] {
        let token = app.token(tenant, "admin1").await;
        let res = app.get(&token, "/v1/tenants/self").await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["org_code"], tenant);
        assert_eq!(body["kind"], "municipality");
        assert_eq!(body["home_region"], "east");
        assert_eq!(body["upload_group"], "C");
    }
}

#[actix_rt::test]
async fn registering_a_tenant_again_is_a_no_op_and_bad_values_are_refused() {
    let app = spawn_app().await;
    let again = chukan_admin::create_tenant(&app.env.ctx.db, &new_tenant(TENANT_A, "別名"))
        .await
        .unwrap();
    assert!(!again);
    let token = app.token(TENANT_A, "admin1").await;
    let body: Value = app
        .get(&token, "/v1/tenants/self")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["name"], "テスト市", "the first registration stands");

    let mut bad = new_tenant("0113000000000003", "x");
    bad.home_region = "north".into();
    assert!(
        chukan_admin::create_tenant(&app.env.ctx.db, &bad)
            .await
            .is_err()
    );
    bad.home_region = "west".into();
    bad.population = 0;
    assert!(
        chukan_admin::create_tenant(&app.env.ctx.db, &bad)
            .await
            .is_err()
    );
}

#[actix_rt::test]
async fn registering_a_tenant_announces_its_settings_once() {
    let app = spawn_app().await;
    // spawn_app registered A and B: one announcement each, revision 1.
    let events = app.wait_tenant_events(2).await;
    let a = events
        .iter()
        .find(|(_, e)| e.org_code == TENANT_A)
        .expect("A announced");
    assert_eq!(a.0, TENANT_A, "tenant header");
    assert_eq!(a.1.kind, "municipality");
    assert_eq!(a.1.population, 120_000);
    assert_eq!(a.1.upload_group, "C");
    assert_eq!(a.1.home_region, "east");
    assert!(!a.1.immediate_replica_processing);
    assert_eq!(a.1.revision, 1);
    assert!(events.iter().any(|(_, e)| e.org_code == TENANT_B));

    // A third organisation, processed immediately and in no upload group.
    let mut c = new_tenant(TENANT_C, "例示村");
    c.kind = chukan_admin::TenantKind::Union;
    c.home_region = "west".into();
    c.upload_group = None;
    c.immediate_replica_processing = true;
    assert!(
        chukan_admin::create_tenant(&app.env.ctx.db, &c)
            .await
            .unwrap()
    );
    // Registering A again changes nothing and announces nothing.
    assert!(
        !chukan_admin::create_tenant(&app.env.ctx.db, &new_tenant(TENANT_A, "別名"))
            .await
            .unwrap()
    );
    let events = app.wait_tenant_events(3).await;
    let (header, c) = &events[2];
    assert_eq!(header, TENANT_C);
    assert_eq!(c.org_code, TENANT_C);
    assert_eq!(c.kind, "union");
    assert_eq!(c.home_region, "west");
    assert_eq!(c.upload_group, "");
    assert!(c.immediate_replica_processing);
    assert_eq!(c.revision, 1);

    // Give a stray announcement of the repeated registration time to arrive.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.tenant_events.lock().unwrap().len(), 3);
}

#[actix_rt::test]
async fn updating_a_tenant_bumps_its_revision_and_announces_the_new_settings() {
    let app = spawn_app().await;
    app.wait_tenant_events(2).await;
    let org = OrgCode::parse(TENANT_A).unwrap();

    let updated = chukan_admin::update_tenant(
        &app.env.ctx.db,
        &org,
        &TenantUpdate {
            population: Some(5_000),
            upload_group: Some(None),
            immediate_replica_processing: Some(true),
            ..TenantUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.population, 5_000);
    assert_eq!(updated.upload_group, None);
    assert!(updated.immediate_replica_processing);
    assert_eq!(updated.kind, "municipality", "unchanged settings stay");

    let (header, e) = app.wait_tenant_events(3).await.pop().unwrap();
    assert_eq!(header, TENANT_A);
    assert_eq!(e.org_code, TENANT_A);
    assert_eq!(e.revision, 2);
    assert_eq!(e.population, 5_000);
    assert_eq!(e.upload_group, "");
    assert!(e.immediate_replica_processing);
    assert_eq!(e.kind, "municipality");
    assert_eq!(e.home_region, "east");

    let updated = chukan_admin::update_tenant(
        &app.env.ctx.db,
        &org,
        &TenantUpdate {
            kind: Some(chukan_admin::TenantKind::Prefecture),
            upload_group: Some(Some('H')),
            immediate_replica_processing: Some(false),
            ..TenantUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.revision, 3);
    let (_, e) = app.wait_tenant_events(4).await.pop().unwrap();
    assert_eq!(e.revision, 3);
    assert_eq!(e.kind, "prefecture");
    assert_eq!(e.upload_group, "H");
    assert_eq!(e.population, 5_000);
    assert!(!e.immediate_replica_processing);

    // No change given: the current settings are announced again under a new revision.
    let again = chukan_admin::update_tenant(&app.env.ctx.db, &org, &TenantUpdate::default())
        .await
        .unwrap();
    assert_eq!(again.revision, 4);
    let (_, e) = app.wait_tenant_events(5).await.pop().unwrap();
    assert_eq!(e.revision, 4);
    assert_eq!(e.kind, "prefecture");

    // The API shows the same settings.
    let token = app.token(TENANT_A, "admin1").await;
    let body: Value = app
        .get(&token, "/v1/tenants/self")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["kind"], "prefecture");
    assert_eq!(body["upload_group"], "H");
    assert_eq!(body["population"], 5_000);
    assert_eq!(body["immediate_replica_processing"], false);
    assert_eq!(body["revision"], 4);

    // B was not touched.
    let token_b = app.token(TENANT_B, "admin1").await;
    let body: Value = app
        .get(&token_b, "/v1/tenants/self")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["revision"], 1);
}

#[actix_rt::test]
async fn updating_an_unknown_or_with_bad_values_is_refused_and_announces_nothing() {
    let app = spawn_app().await;
    app.wait_tenant_events(2).await;
    let unknown = OrgCode::parse(TENANT_C).unwrap();
    let err = chukan_admin::update_tenant(
        &app.env.ctx.db,
        &unknown,
        &TenantUpdate {
            population: Some(10),
            ..TenantUpdate::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("not registered"),
        "clear error: {err:#}"
    );

    let org = OrgCode::parse(TENANT_A).unwrap();
    for bad in [
        TenantUpdate {
            population: Some(0),
            ..TenantUpdate::default()
        },
        TenantUpdate {
            upload_group: Some(Some('Z')),
            ..TenantUpdate::default()
        },
    ] {
        assert!(
            chukan_admin::update_tenant(&app.env.ctx.db, &org, &bad)
                .await
                .is_err()
        );
    }
    // The refused changes rolled back: no new revision, no announcement.
    let owner = app.env.owner_pool().unwrap();
    let client = owner.get().await.unwrap();
    let revision: i64 = client
        .query_one(
            "SELECT revision FROM admin.tenants WHERE org_code = $1",
            &[&TENANT_A],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(revision, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.tenant_events.lock().unwrap().len(), 2);
}
