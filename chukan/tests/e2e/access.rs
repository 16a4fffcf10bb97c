//! Who may call what, cell by cell: every operation of `/openapi.json` asked by a token of
//! each role, and by no token, against every service started in one process. The document's
//! `security` (the bearer scheme's roles) is the only statement of who may call what; this
//! proves the server does exactly that, and docs/api.md shows the same matrix.

use std::collections::BTreeMap;

use chukan_auth::Role;
use chukan_testkit::{TestApi, TestEnv};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::chukan;

const TENANT: &str = "1310010000000001";
const ROLES: [Role; 4] = [
    Role::SystemAdmin,
    Role::BusinessStaff,
    Role::SystemClient,
    Role::PlatformOperator,
];

/// Cells where an allowed role is still refused, by the handler's own rule: (method, path,
/// role, why).
const CONDITIONAL: [(&str, &str, Role, &str); 1] = [(
    "GET",
    "/v1/users/{id}",
    Role::BusinessStaff,
    "staff may read their own user only (the random id here is someone else's)",
)];

async fn every_service() -> (TestEnv, TestApi) {
    every_service_with(|_| {}).await
}

/// Every service with an API in one process, on settings changed by `configure`.
pub async fn every_service_with(
    configure: impl FnOnce(&mut chukan_config::Settings),
) -> (TestEnv, TestApi) {
    let env = TestEnv::new_with(
        &[
            chukan_admin::migrations(),
            chukan_code::migrations(),
            chukan_provision::migrations(),
            chukan_inquiry::migrations(),
            chukan_audit::migrations(),
            chukan_notice::migrations(),
            chukan_selfinfo::migrations(),
            chukan_stats::migrations(),
        ],
        configure,
        std::sync::Arc::new(chukan_core::SystemClock),
    )
    .await
    .unwrap();
    let ctx = &env.ctx;
    for queue in chukan_inquiry::queues()
        .into_iter()
        .chain(chukan_notice::queues())
        .chain(chukan_selfinfo::queues())
        .chain(chukan_stats::queues())
        .chain([chukan_admin::status_queue()])
    {
        ctx.bus.declare_queue(&queue).await.unwrap();
    }
    let parts = vec![
        chukan_admin::start(ctx).await.unwrap(),
        chukan_code::start(ctx).await.unwrap(),
        chukan_provision::start(ctx).await.unwrap(),
        chukan_inquiry::start(ctx).await.unwrap(),
        chukan_audit::start(ctx).await.unwrap(),
        chukan_notice::start(ctx).await.unwrap(),
        chukan_selfinfo::start(ctx).await.unwrap(),
        chukan_stats::start(ctx).await.unwrap(),
    ];
    let api = env.spawn_api(parts).await.unwrap();
    (env, api)
}

/// A concrete URL for a path template: well-formed values for every parameter.
fn fill(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{addressee}" => "000000000000001".to_owned(),
            "{info_code}" => "TM00000000000002".to_owned(),
            "{file_name}" => "a.pdf".to_owned(),
            "{code}" => "NO-SUCH-DEPT".to_owned(),
            "{date}" => "2099-01-01".to_owned(),
            s if s.starts_with('{') => uuid::Uuid::now_v7().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every operation: (method, path template, roles; None for a public one).
fn operations(doc: &Value) -> Vec<(String, String, Option<Vec<String>>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let roles = op["security"].as_array().map(|reqs| {
                reqs[0]["bearer"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect()
            });
            out.push((method.to_uppercase(), path.clone(), roles));
        }
    }
    out
}

#[actix_rt::test]
async fn every_operation_answers_each_role_as_its_security_says() {
    let (env, api) = every_service().await;
    let doc: Value = api
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ops = operations(&doc);
    assert!(ops.len() >= 60, "{} operations", ops.len());
    let mut failures = Vec::new();
    let mut cells = 0;
    for (method, path, roles) in &ops {
        let url = api.url(&fill(path));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let send = |token: Option<String>| {
            let mut req = api.http.request(method.clone(), &url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if method == Method::POST || method == Method::PUT {
                req = req.header("content-type", "application/json").body("{}");
            }
            async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                (status, body)
            }
        };
        let Some(roles) = roles else {
            // Public: no token is no refusal.
            let (status, _) = send(None).await;
            if status == 401 || status == 403 {
                failures.push(format!(
                    "{method} {path} public, but {status} without a token"
                ));
            }
            continue;
        };
        assert!(!roles.is_empty(), "{method} {path} names no role");
        let (status, body) = send(None).await;
        if (status, body["code"].as_str()) != (401, Some("unauthenticated")) {
            failures.push(format!("{method} {path} without a token: {status} {body}"));
        }
        for role in ROLES {
            cells += 1;
            let allowed = roles.iter().any(|r| r == role.name());
            let conditional = CONDITIONAL
                .iter()
                .any(|(m, p, r, _)| *m == method.as_str() && p == path && *r == role);
            // The platform realm has no tenant (a token mixing them is never issued).
            let tenant = if role == Role::PlatformOperator {
                ""
            } else {
                TENANT
            };
            let (status, body) = send(Some(env.token(tenant, &[role]))).await;
            let refused = (status, body["code"].as_str()) == (403, Some("forbidden"));
            match (allowed && !conditional, refused) {
                (true, true) => failures.push(format!(
                    "{method} {path} refuses {} though its security allows it",
                    role.name()
                )),
                (false, false) => failures.push(format!(
                    "{method} {path} lets {} in ({status} {body}) though its security does not",
                    role.name()
                )),
                _ => {}
            }
            if allowed && status == 401 {
                failures.push(format!("{method} {path}: {} got 401", role.name()));
            }
            // Something under an id the caller cannot see is as unseen as the id (404).
            let by_id = path.ends_with("{id}")
                || path.contains("{id}/")
                || path.contains("{record_id}")
                || path.contains("{permit_id}");
            if allowed && !conditional && method == Method::GET && by_id && status != 404 {
                failures.push(format!(
                    "{method} {path} for an unknown id: {status} {body} (want 404)"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        cells,
        ops.iter().filter(|o| o.2.is_some()).count() * ROLES.len()
    );
    drop(env);
}

/// docs/api.md shows the matrix the document states (`chukan openapi --role-matrix`).
#[test]
fn docs_api_md_shows_the_role_matrix_the_code_states() {
    let out = chukan(&[], &["openapi", "--role-matrix"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let begin = "<!-- role-matrix:begin (generated: chukan openapi --role-matrix) -->\n";
    let end = "<!-- role-matrix:end -->";
    let start = docs.find(begin).expect("begin marker in docs/api.md") + begin.len();
    let stop = docs.find(end).expect("end marker in docs/api.md");
    assert!(
        docs[start..stop] == generated,
        "docs/api.md's role matrix is stale; regenerate it with \
         `target/debug/chukan openapi --role-matrix`:\n{generated}"
    );
    // Every operation appears once.
    let rows: BTreeMap<&str, usize> = generated.lines().skip(2).map(|l| (l, 1)).collect();
    assert!(rows.len() >= 60);
}
