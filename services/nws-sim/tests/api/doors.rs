//! Both doors of an organisation (ADR 0006): deliveries go to `endpoint_url`, and to
//! `standby_endpoint_url` in the same attempt when the first does not answer or answers 421.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, http::StatusCode, web};

use crate::{ORG_A, RESIDENT, helpers::*};

/// A door that answers every delivery with one status and counts the calls.
struct StatusDoor {
    url: String,
    calls: Arc<AtomicUsize>,
    handle: ServerHandle,
}

impl StatusDoor {
    fn start(status: u16) -> StatusDoor {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let server = HttpServer::new(move || {
            let counted = counted.clone();
            App::new().route(
                "/nws/v1/messages",
                web::post().to(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        HttpResponse::build(StatusCode::from_u16(status).unwrap())
                            .content_type("application/problem+json")
                            .body(r#"{"code":"not-homed-here"}"#)
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        StatusDoor {
            url: format!("http://127.0.0.1:{port}"),
            calls,
            handle,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

fn url_of(receiver: &Receiver) -> String {
    format!("http://127.0.0.1:{}", receiver.port)
}

/// Registers `org` with its primary door `primary` and its standby door `standby`.
async fn register_doors(
    sim: &TestSim,
    org: &TestOrg,
    primary: &str,
    standby: Option<&str>,
) -> reqwest::Response {
    sim.http
        .post(format!("{}/v1/organizations", sim.base))
        .json(&serde_json::json!({
            "org_code": org.code,
            "name": format!("団体 {}", org.code),
            "endpoint_url": primary,
            "standby_endpoint_url": standby,
            "keys": [{"kid": org.signer.kid(), "public_key": org.signer.public_key_base64()}],
        }))
        .send()
        .await
        .unwrap()
}

/// (delivered, delivered_via, attempts, last_error) of the simulator's only delivery.
async fn the_delivery(sim: &TestSim) -> (bool, Option<String>, i32, Option<String>) {
    let row = sim
        .db()
        .await
        .query_one(
            "SELECT delivered_at IS NOT NULL, delivered_via, attempts, last_error FROM deliveries",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

async fn wait_delivered(sim: &TestSim) {
    wait_until("the delivery is marked delivered", || async {
        sim.count("SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL")
            .await
            == 1
    })
    .await;
}

async fn metrics_text(sim: &TestSim) -> String {
    sim.http
        .get(format!("{}/metrics", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_standby_door_is_registered_shown_and_checked() {
    let sim = TestSim::spawn().await;
    let org = TestOrg::new(ORG_A, 1);
    let created = register_doors(&sim, &org, "http://east:8080", Some("http://west:8080")).await;
    assert_eq!(created.status(), 201);
    let show = || async {
        sim.http
            .get(format!("{}/v1/organizations/{ORG_A}", sim.base))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let got = show().await;
    assert_eq!(got["endpoint_url"], "http://east:8080");
    assert_eq!(got["standby_endpoint_url"], "http://west:8080");

    // Empty means none, as absent does.
    assert_eq!(
        register_doors(&sim, &org, "http://east:8080", Some(""))
            .await
            .status(),
        200
    );
    assert!(show().await["standby_endpoint_url"].is_null());
    assert_eq!(sim.register(&org).await.status(), 200);
    assert!(show().await["standby_endpoint_url"].is_null());

    let bad = register_doors(&sim, &org, "http://east:8080", Some("west:8080")).await;
    assert_eq!(problem_code(bad).await, (400, "invalid-field".into()));
    sim.finish().await;
}

#[tokio::test]
async fn a_closed_primary_door_sends_the_delivery_to_the_standby() {
    let sim = TestSim::spawn().await;
    let standby = Receiver::start();
    let a = TestOrg::new(ORG_A, unused_port());
    let closed = a.endpoint_url.clone();
    register_doors(&sim, &a, &closed, Some(&url_of(&standby))).await;

    let request = a.acquire(RESIDENT);
    assert_eq!(sim.send(&request).await.status(), 202);
    wait_until("the standby door has the answer", || async {
        standby.count() == 1
    })
    .await;
    wait_delivered(&sim).await;
    let delivered = &standby.all()[0];
    assert_eq!(delivered.correlation_id, request.correlation_id);
    assert!(open_result(delivered, &sim.verifiers().await).ok);
    let (_, via, attempts, _) = the_delivery(&sim).await;
    assert_eq!(via.as_deref(), Some("standby"));
    assert_eq!(attempts, 1, "both doors are tried in the same attempt");

    let metrics = metrics_text(&sim).await;
    assert!(
        metrics.contains(r#"chukan_nws_sim_deliveries_total{door="primary",result="unanswered"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"chukan_nws_sim_deliveries_total{door="standby",result="delivered"}"#),
        "{metrics}"
    );
    sim.finish().await;
    standby.stop().await;
}

#[tokio::test]
async fn a_primary_answering_421_or_503_sends_the_delivery_to_the_standby() {
    // 421: a relay of a cell the organisation is not homed in; 503: a gateway before a relay
    // that is down.
    for status in [421, 503] {
        let sim = TestSim::spawn().await;
        let primary = StatusDoor::start(status);
        let standby = Receiver::start();
        let a = TestOrg::new(ORG_A, 1);
        register_doors(&sim, &a, &primary.url, Some(&url_of(&standby))).await;

        assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
        wait_delivered(&sim).await;
        assert_eq!(standby.count(), 1, "after {status}");
        assert_eq!(primary.calls(), 1, "after {status}");
        let (_, via, attempts, _) = the_delivery(&sim).await;
        assert_eq!(via.as_deref(), Some("standby"), "after {status}");
        assert_eq!(attempts, 1, "after {status}");
        sim.finish().await;
        primary.stop().await;
        standby.stop().await;
    }
}

#[tokio::test]
async fn a_primary_that_takes_it_leaves_the_standby_alone() {
    let sim = TestSim::spawn().await;
    let primary = Receiver::start();
    let standby = StatusDoor::start(202);
    let a = TestOrg::new(ORG_A, primary.port);
    register_doors(&sim, &a, &a.endpoint_url, Some(&standby.url)).await;

    for _ in 0..2 {
        assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
    }
    wait_until("both answers are marked delivered", || async {
        sim.count("SELECT count(*) FROM deliveries WHERE delivered_via = 'primary'")
            .await
            == 2
    })
    .await;
    assert_eq!(primary.count(), 2);
    assert_eq!(standby.calls(), 0, "the standby door is never called");
    sim.finish().await;
    primary.stop().await;
    standby.stop().await;
}

#[tokio::test]
async fn a_primary_refusing_with_another_status_is_retried_not_sent_to_the_standby() {
    let sim = TestSim::spawn().await;
    let refusing = StatusDoor::start(400);
    let standby = StatusDoor::start(202);
    let a = TestOrg::new(ORG_A, 1);
    register_doors(&sim, &a, &refusing.url, Some(&standby.url)).await;

    assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
    wait_until("two attempts have failed", || async {
        refusing.calls() >= 2
    })
    .await;
    let (delivered, _, _, error) = the_delivery(&sim).await;
    assert!(!delivered);
    assert_eq!(error.as_deref(), Some("HTTP 400"));
    assert_eq!(standby.calls(), 0);
    sim.finish().await;
    refusing.stop().await;
    standby.stop().await;
}

#[tokio::test]
async fn with_both_doors_down_the_delivery_is_retried_until_one_comes_up() {
    let mut settings = settings(&fresh_database_url());
    // Enough retries that the door comes up before the last.
    settings.delivery_retry_ms = vec![50; 200];
    let sim = TestSim::spawn_with(settings).await;
    let (primary_port, standby_port) = (unused_port(), unused_port());
    let a = TestOrg::new(ORG_A, primary_port);
    register_doors(
        &sim,
        &a,
        &a.endpoint_url,
        Some(&format!("http://127.0.0.1:{standby_port}")),
    )
    .await;

    assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
    wait_until("two attempts at both doors have failed", || async {
        sim.count(
            "SELECT count(*) FROM deliveries
              WHERE delivered_at IS NULL AND failed_at IS NULL AND attempts >= 2",
        )
        .await
            == 1
    })
    .await;
    let (_, via, _, error) = the_delivery(&sim).await;
    assert_eq!(via, None);
    assert_eq!(
        error.as_deref(),
        Some("primary: connection failed; standby: connection failed")
    );

    let standby = Receiver::start_on(standby_port);
    wait_until("the standby door has the answer", || async {
        standby.count() == 1
    })
    .await;
    wait_delivered(&sim).await;
    let (_, via, _, error) = the_delivery(&sim).await;
    assert_eq!(via.as_deref(), Some("standby"));
    assert_eq!(error, None);
    assert_eq!(standby.count(), 1, "delivered once");
    sim.finish().await;
    standby.stop().await;
}
