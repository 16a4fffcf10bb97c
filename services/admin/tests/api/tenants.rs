//! The tenant registry and GET /v1/tenants/self.

use serde_json::Value;

use crate::helpers::{TENANT_A, TENANT_B, new_tenant, spawn_app};

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
