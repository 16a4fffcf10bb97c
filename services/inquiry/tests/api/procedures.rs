//! `GET /v1/procedures`: 別表第二 as the NWS serves it, cached, and a clear 503 when it was
//! never reachable. A tiny local server stands in for the NWS with the simulator's own table.

use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use chukan_auth::Role;
use serde_json::Value;

use crate::helpers::{ORG_A, spawn_app_with};

/// Serves `GET /v1/beppyo2` with the simulator's table; the URL and a handle to stop it.
fn stand_in_nws() -> (String, ServerHandle) {
    let table =
        serde_json::to_value(chukan_nws_sim::beppyo2::Beppyo2::embedded().unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let table = table.clone();
        App::new().route(
            "/v1/beppyo2",
            web::get().to(move || {
                let table = table.clone();
                async move { HttpResponse::Ok().json(table) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (url, handle)
}

#[actix_web::test]
async fn procedures_show_each_procedure_with_its_affair_and_items_and_outlive_the_nws() {
    let (url, nws) = stand_in_nws();
    let app = spawn_app_with(|s| s.relay.nws_url = url).await;
    let staff = app.env.token(ORG_A, &[Role::BusinessStaff]);

    let list = app.get_json(&staff, "/v1/procedures").await;
    let procedures = list["procedures"].as_array().unwrap();
    let expected = chukan_nws_sim::beppyo2::Beppyo2::embedded().unwrap();
    assert_eq!(procedures.len(), expected.procedures.len());
    let want = &expected.procedures[0];
    let first = &procedures[0];
    assert_eq!(first["code"], want.code.as_str());
    assert_eq!(first["name"], want.name.as_str());
    assert_eq!(first["affair"]["code"], want.affair.code.as_str());
    assert_eq!(first["affair"]["name"], want.affair.name.as_str());
    let items: Vec<(&str, &str)> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["code"].as_str().unwrap(), i["name"].as_str().unwrap()))
        .collect();
    let want_items: Vec<(&str, &str)> = want
        .items
        .iter()
        .map(|i| (i.code.as_str(), i.name.as_str()))
        .collect();
    assert_eq!(items, want_items, "the allowed items, with names, in order");
    assert!(list["fetched_at"].is_string());

    // The NWS goes away: the copy fetched a moment ago is still served.
    nws.stop(true).await;
    let again = app.get_json(&app.token(ORG_A), "/v1/procedures").await;
    assert_eq!(again, list, "served from the cache, as fetched");

    // Roles as documented: not for system administrators, not without a token.
    let admin = app.env.token(ORG_A, &[Role::SystemAdmin]);
    assert_eq!(app.get(&admin, "/v1/procedures").await.status(), 403);
    assert_eq!(app.get("", "/v1/procedures").await.status(), 401);
}

#[actix_web::test]
async fn procedures_are_unavailable_while_the_nws_was_never_reached() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|s| s.relay.nws_url = format!("http://127.0.0.1:{port}")).await;
    let res = app
        .get(
            &app.env.token(ORG_A, &[Role::BusinessStaff]),
            "/v1/procedures",
        )
        .await;
    assert_eq!(res.status(), 503);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "procedures-unavailable");
    assert!(problem["detail"].as_str().unwrap().contains("別表第二"));
    assert!(!problem["action"].as_str().unwrap().is_empty());
}
