//! The shared edge, seen from outside: every service answers the same way when the database
//! does not, and every problem answer carries a support id the help desk can look up.

use std::time::Duration;

use chukan_auth::Role;
use serde_json::Value;

use crate::access::every_service_with;

const TENANT: &str = "1310010000000001";
const UNKNOWN: &str = "0190a0c4-1d2e-7000-8000-000000000001";

/// One database-backed route per service, with a role that may call it.
fn one_route_per_service() -> Vec<(&'static str, String, Role)> {
    vec![
        ("admin", "/v1/users".into(), Role::SystemAdmin),
        (
            "code",
            format!("/v1/codes/acquisitions/{UNKNOWN}"),
            Role::BusinessStaff,
        ),
        ("provision", "/v1/provisions".into(), Role::BusinessStaff),
        ("inquiry", "/v1/inquiries".into(), Role::BusinessStaff),
        ("audit", "/v1/records/tree-head".into(), Role::BusinessStaff),
        (
            "notice",
            format!("/v1/notices/{UNKNOWN}"),
            Role::BusinessStaff,
        ),
        (
            "selfinfo",
            "/v1/selfinfo/requests".into(),
            Role::BusinessStaff,
        ),
    ]
}

fn is_support_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

#[actix_rt::test]
async fn a_pool_that_cannot_lend_a_connection_is_503_with_retry_after_on_every_service() {
    let (env, api) = every_service_with(|s| {
        s.database.pool_max_size = 2;
        s.database.pool_wait_timeout = std::time::Duration::from_millis(200);
    })
    .await;
    // Hold every connection of the services' pool (their workers may hold one a moment;
    // each `get` waits at most the pool's 200 ms).
    let mut held = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while held.len() < 2 {
        assert!(std::time::Instant::now() < until, "the pool was never free");
        if let Ok(c) = env.ctx.db.get().await {
            held.push(c);
        }
    }

    let mut failures = Vec::new();
    for (service, path, status, retry_after, body) in ask_every_service(&env, &api).await {
        if status != 503
            || body["code"] != "service-unavailable"
            || !retry_after
            || !is_support_id(&body["support_id"])
        {
            failures.push(format!(
                "{service} GET {path}: {status} retry-after {retry_after} {body}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Given its connections back, every service answers again.
    drop(held);
    for (service, path, status, _, body) in ask_every_service(&env, &api).await {
        assert!(status < 500, "{service} GET {path}: {status} {body}");
    }
}

/// Each service's route asked once: (service, path, status, Retry-After present, body).
async fn ask_every_service(
    env: &chukan_testkit::TestEnv,
    api: &chukan_testkit::TestApi,
) -> Vec<(&'static str, String, u16, bool, Value)> {
    let mut answers = Vec::new();
    for (service, path, role) in one_route_per_service() {
        let res = api.get_response(&env.token(TENANT, &[role]), &path).await;
        let status = res.status().as_u16();
        let retry_after = res.headers().contains_key("retry-after");
        let body: Value = res.json().await.unwrap_or(Value::Null);
        answers.push((service, path, status, retry_after, body));
    }
    answers
}

#[actix_rt::test]
async fn every_kind_of_refusal_carries_a_support_id() {
    let (env, api) = every_service_with(|_| {}).await;
    let staff = env.token(TENANT, &[Role::BusinessStaff]);
    let admin = env.token(TENANT, &[Role::SystemAdmin]);
    let cases = [
        // The auth gate: no token, wrong role.
        (api.http.get(api.url("/v1/inquiries")), 401),
        (
            api.http.get(api.url("/v1/inquiries")).bearer_auth(&admin),
            403,
        ),
        // The edge: unknown route, NUL in the query.
        (api.http.get(api.url("/v1/no-such-thing")), 404),
        (
            api.http
                .get(api.url("/v1/inquiries?status=%00"))
                .bearer_auth(&staff),
            400,
        ),
        // An extractor: JSON that does not parse.
        (
            api.http
                .post(api.url("/v1/inquiries"))
                .bearer_auth(&staff)
                .header("content-type", "application/json")
                .body("{"),
            400,
        ),
        // A handler: an id nobody has.
        (
            api.http
                .get(api.url(&format!("/v1/inquiries/{UNKNOWN}")))
                .bearer_auth(&staff),
            404,
        ),
    ];
    let mut ids = std::collections::HashSet::new();
    for (req, want) in cases {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, want, "{body}");
        assert!(is_support_id(&body["support_id"]), "{body}");
        assert!(ids.insert(body["support_id"].as_str().unwrap().to_owned()));
    }
}
