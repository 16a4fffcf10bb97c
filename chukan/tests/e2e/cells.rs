//! Any door (ADR 0006): two cells, east and west, each its own database and bus namespace and
//! its own token signing key, each with the other's API as its peer door. A west
//! organisation's callers may use the east door: their requests are forwarded to west and
//! answered as west answers them.

use std::time::Duration;

use chukan_proto::Message as _;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::helpers::{Proc, STAFF_PASSWORD, Stack, chukan, free_port, wait_ready};

/// An organisation homed in east.
const EAST_ORG: &str = "1310010000000001";
/// An organisation homed in west.
const WEST_ORG: &str = "2710000000000002";

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// One more API process of `cell` (`--target=admin`, same database and bus) whose peer doors
/// are `peers`; returns it with its API base URL.
async fn door(cell: &Stack, name: &'static str, peers: &[String]) -> (Proc, String) {
    for _attempt in 0..4 {
        let (api, ops) = (free_port(), free_port());
        let mut env = cell.env.clone();
        // Later entries win: this process's own ports and peer doors.
        env.extend([
            ("CHUKAN__SERVER__PORT".to_owned(), api.to_string()),
            ("CHUKAN__METRICS__PORT".to_owned(), ops.to_string()),
            ("CHUKAN__CELLS__PEER_API_URLS".to_owned(), peers.join(",")),
        ]);
        let mut proc = Proc {
            name,
            child: chukan(&env, &["--target=admin"]).spawn().unwrap(),
        };
        if wait_ready(&cell.http, &format!("{}/readyz", url(ops)), &mut proc).await {
            return (proc, url(api));
        }
    }
    panic!("{name} did not start in four attempts (run with TEST_LOG=1 to see why)");
}

async fn password_grant(http: &reqwest::Client, api: &str, org: &str) -> (u16, Value) {
    let res = http
        .post(format!("{api}/v1/auth/token"))
        .json(&json!({
            "grant_type": "password", "tenant": org, "username": "staff1", "password": STAFF_PASSWORD
        }))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn own_tenant(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    forwarded_by: Option<&str>,
) -> (u16, String, Value) {
    let mut req = http
        .get(format!("{api}/v1/tenants/self"))
        .bearer_auth(token);
    if let Some(cell) = forwarded_by {
        req = req.header("Chukan-Forwarded-By", cell);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.unwrap();
    (
        status,
        kind,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_west_organisation_is_served_through_the_east_door() {
    let (east_api, west_api) = (free_port(), free_port());
    let (east_port, west_port) = (east_api.to_string(), west_api.to_string());
    let (east_peer, west_peer) = (url(east_api), url(west_api));
    // Each cell signs tokens with its own key (ADR 0006, Keys): east cannot verify west's.
    let west_key = chukan_crypto::generate_key_base64();
    let east_extra = [
        ("CHUKAN__REGION", "east"),
        ("CHUKAN__SERVER__PORT", east_port.as_str()),
        ("CHUKAN__CELLS__PEER_API_URLS", west_peer.as_str()),
    ];
    let west_extra = [
        ("CHUKAN__REGION", "west"),
        ("CHUKAN__SERVER__PORT", west_port.as_str()),
        ("CHUKAN__CELLS__PEER_API_URLS", east_peer.as_str()),
        ("CHUKAN__AUTH__SIGNING_KEY", west_key.as_str()),
        ("CHUKAN__AUTH__SIGNING_KID", "west-e2e-1"),
    ];
    let (mut east, mut west) = tokio::join!(
        Stack::start_with(&east_extra),
        Stack::start_with(&west_extra)
    );
    // The API ports were chosen here (each cell names the other's), not by the stack.
    east.api = url(east_api);
    west.api = url(west_api);
    // An organisation of each cell, created in its own cell (the east one's token comes
    // through the east door, served there: homed organisations are not forwarded).
    let east_token = east.tenant(EAST_ORG, "東の市").await;
    west.tenant(WEST_ORG, "西の市").await;
    let direct_token = west.staff_token(WEST_ORG).await;
    let http = &east.http;

    // The password grant through the east door is west's answer.
    let (direct_status, _) = password_grant(http, &west.api, WEST_ORG).await;
    let (status, issued) = password_grant(http, &east.api, WEST_ORG).await;
    assert_eq!((status, direct_status), (200, 200), "{issued}");
    let token = issued["access_token"].as_str().unwrap().to_owned();

    // So is reading the organisation with that token: the same status and body as direct.
    let direct = own_tenant(http, &west.api, &direct_token, None).await;
    let through_east = own_tenant(http, &east.api, &token, None).await;
    assert_eq!(through_east.0, 200, "{:?}", through_east.2);
    assert_eq!(through_east.0, direct.0);
    assert_eq!(through_east.2["org_code"], WEST_ORG);
    assert_eq!(through_east.2["home_region"], "west");
    assert_eq!(through_east.2, direct.2);
    // West's own door answers east's organisation the same way, the other way round.
    assert_eq!(
        own_tenant(http, &west.api, &east_token, None).await.2["org_code"],
        EAST_ORG
    );

    // A request that was already forwarded is answered where it arrives, never sent on:
    // east cannot verify a west token, so it is refused here, not answered as west would.
    let (status, _, body) = own_tenant(http, &east.api, &token, Some("west")).await;
    assert_eq!(status, 401, "{body}");
    assert_ne!(body["org_code"], WEST_ORG);

    // An east door whose first peer door is down goes on to the next one.
    let (mut fallback, fallback_api) = door(
        &east,
        "east-door-fallback",
        &[url(free_port()), url(west_api)],
    )
    .await;
    let via_fallback = own_tenant(http, &fallback_api, &token, None).await;
    assert_eq!(via_fallback.0, 200, "{:?}", via_fallback.2);
    assert_eq!(via_fallback.2["org_code"], WEST_ORG);
    let (status, _) = password_grant(http, &fallback_api, WEST_ORG).await;
    assert_eq!(status, 200);
    let _ = fallback.terminate(Duration::from_secs(20));

    // No peer door reachable: 502 problem, with what to do next.
    let (mut stranded, stranded_api) = door(
        &east,
        "east-door-stranded",
        &[url(free_port()), url(free_port())],
    )
    .await;
    let (status, kind, problem) = own_tenant(http, &stranded_api, &token, None).await;
    assert_eq!(status, 502, "{problem}");
    assert!(kind.starts_with("application/problem+json"), "{kind}");
    assert_eq!(problem["code"], "peer-cell-unreachable");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(problem["action"].as_str().is_some_and(|a| !a.is_empty()));
    // A homed organisation is still served by that door.
    let homed = own_tenant(http, &stranded_api, &east_token, None).await;
    assert_eq!(homed.0, 200);
    assert_eq!(homed.2["org_code"], EAST_ORG);
    let _ = stranded.terminate(Duration::from_secs(20));

    // The forwards are counted (by result only: no organisation, no path).
    let forwarded = east
        .metric("chukan_door_forwarded_total{result=\"ok\"}")
        .await;
    assert!(forwarded >= 2.0, "{forwarded}");
    let metrics = east.metrics_text().await;
    assert!(metrics.contains("chukan_door_forward_seconds_count"));
    assert!(!metrics.contains(WEST_ORG));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_a_delivery_for_an_organisation_homed_in_the_other_cell() {
    let east = Stack::start_with(&[("CHUKAN__REGION", "east")]).await;
    east.tenant(EAST_ORG, "東の市").await;
    let nws = chukan_crypto::Signer::from_seed_base64(
        &east.settings.nws_sim.signing_kid,
        east.settings.nws_sim.signing_key.expose_secret(),
    )
    .unwrap();
    let mut envelope = chukan_proto::Envelope {
        message_id: uuid::Uuid::now_v7().to_string(),
        kind: "code.acquired".into(),
        sender: "NWS".into(),
        recipient: WEST_ORG.into(),
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
        correlation_id: uuid::Uuid::now_v7().to_string(),
        body: Vec::new(),
        traceparent: String::new(),
        kid: nws.kid().to_owned(),
        signature: Vec::new(),
    };
    envelope.signature = nws.sign(&chukan_proto::signing_bytes(&envelope)).to_vec();
    let res = east
        .http
        .post(format!("{}/nws/v1/messages", east.relay_in))
        .header("content-type", "application/x-protobuf")
        .body(envelope.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "not-homed-here");

    let (db, conn) = tokio_postgres::connect(&east.settings.database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM relay.received WHERE message_id = $1",
            &[&envelope.message_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "nothing is stored for a misdirected delivery");
}
