#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The public API served over HTTPS by the process itself (`server.tls_cert_file`), and the
//! expiry of that certificate on the operations listener's `/metrics`.

use std::sync::Arc;

use chukan_core::SystemClock;
use chukan_testkit::{TestEnv, pki::TestCa};

#[actix_web::test]
async fn the_api_serves_https_to_clients_that_trust_its_ca_and_its_expiry_is_a_metric() {
    let ca = TestCa::new("api").unwrap();
    let other = TestCa::new("other").unwrap();
    let cert = ca.server("api", &["127.0.0.1"]).unwrap();
    let env = TestEnv::new_with(
        &[],
        |s| {
            s.server.tls_cert_file = cert.cert_file.clone();
            s.server.tls_key_file = cert.key_file.clone();
        },
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let api = env.spawn_api(vec![]).await.unwrap();
    assert!(api.base_url.starts_with("https://"), "{}", api.base_url);

    // A client trusting the CA gets the document over TLS.
    let res = ca
        .https_client(None)
        .unwrap()
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: serde_json::Value = res.json().await.unwrap();
    assert_eq!(doc["info"]["title"], "chukan API");

    // A client trusting another CA, or only the system's roots, is refused the handshake.
    for (what, client) in [
        ("another CA", other.https_client(None).unwrap()),
        ("the system roots", reqwest::Client::new()),
    ] {
        let err = client
            .get(api.url("/openapi.json"))
            .send()
            .await
            .expect_err(what);
        assert!(
            format!("{err:?}").contains("UnknownIssuer"),
            "{what}: {err:?}"
        );
    }
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(api.url("/openapi.json").replace("https://", "http://"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // The certificate's notAfter on /metrics, under its settings key.
    chukan_tls::expiry::refresh(&chukan_tls::expiry::chukan_files(&env.settings));
    let ops = chukan_telemetry::OpsServer::bind(&env.settings.metrics, vec![]).unwrap();
    let port = ops.port();
    tokio::spawn(ops.run());
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "chukan_tls_certificate_expiry_timestamp_seconds{certificate=\"server.tls_cert_file\"}",
            )
        })
        .unwrap_or_else(|| panic!("no expiry of server.tls_cert_file in:\n{metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, cert.not_after as f64, "{line}");
    api.server.stop(true).await;
}
