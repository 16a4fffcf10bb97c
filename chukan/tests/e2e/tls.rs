//! The binary with TLS configured (issue 15): the API over HTTPS, the relay's door with
//! mutual TLS, and every configured certificate's expiry on the operations port.

use std::time::Duration;

use chukan_testkit::pki::TestCa;

use crate::helpers::*;

#[tokio::test]
async fn the_binary_serves_tls_where_configured_and_reports_each_certificates_expiry() {
    let platform = TestCa::new("platform").unwrap();
    let nws_ca = TestCa::new("nws").unwrap();
    let api_cert = platform.server("api", &["127.0.0.1"]).unwrap();
    let door = platform.server("door", &["127.0.0.1"]).unwrap();
    let nws = nws_ca.client("nws", "nws.test").unwrap();

    let settings = chukan_testkit::test_settings();
    let ports = (free_port(), free_port(), free_port(), free_port());
    let mut env = env_for(&settings, ports);
    env.extend(
        [
            ("CHUKAN__SERVER__TLS_CERT_FILE", api_cert.cert_file.clone()),
            ("CHUKAN__SERVER__TLS_KEY_FILE", api_cert.key_file.clone()),
            (
                "CHUKAN__RELAY__INBOUND_TLS_CERT_FILE",
                door.cert_file.clone(),
            ),
            ("CHUKAN__RELAY__INBOUND_TLS_KEY_FILE", door.key_file.clone()),
            ("CHUKAN__RELAY__INBOUND_CLIENT_CA_FILE", nws_ca.ca_file()),
            ("CHUKAN__RELAY__NWS_CA_FILE", nws_ca.ca_file()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    run_json(&env, &["migrate"]);
    let mut relay = Proc {
        name: "chukan --target=relay",
        child: chukan(&env, &["--target=relay"]).spawn().unwrap(),
    };
    let http = reqwest::Client::new();
    let ops = format!("http://127.0.0.1:{}", ports.1);
    assert!(
        wait_ready(&http, &format!("{ops}/readyz"), &mut relay).await,
        "the relay process exited before it was ready (TEST_LOG=1 shows why)"
    );

    // The API over HTTPS: served to a client trusting the platform CA, to no one else.
    let api = format!("https://127.0.0.1:{}/openapi.json", ports.0);
    let res = platform
        .https_client(None)
        .unwrap()
        .get(&api)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(reqwest::Client::new().get(&api).send().await.is_err());
    let plain = http.get(api.replace("https://", "http://")).send().await;
    assert!(plain.is_err(), "{plain:?}");

    // The relay's door: only a client holding the NWS CA's certificate reaches the route,
    // which then checks the envelope as ever (garbage is refused by the application).
    let door_url = format!("https://127.0.0.1:{}/nws/v1/messages", ports.2);
    let anonymous = platform
        .https_client(None)
        .unwrap()
        .post(&door_url)
        .body(vec![0xff])
        .send()
        .await;
    assert!(anonymous.is_err(), "{anonymous:?}");
    let res = platform
        .https_client(Some(&nws))
        .unwrap()
        .post(&door_url)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());

    // Each configured certificate file's notAfter, under its settings key.
    let expected = [
        ("server.tls_cert_file", api_cert.not_after),
        ("relay.inbound_tls_cert_file", door.not_after),
    ];
    let metrics = || async {
        http.get(format!("{ops}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let sample = |text: &str, key: &str| -> Option<f64> {
        let series =
            format!("chukan_tls_certificate_expiry_timestamp_seconds{{certificate=\"{key}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series).and_then(|v| v.trim().parse().ok()))
    };
    chukan_testkit::wait_until(Duration::from_secs(20), "expiry reported", || async {
        let text = metrics().await;
        expected.iter().all(|(key, _)| sample(&text, key).is_some())
    })
    .await
    .unwrap();
    let text = metrics().await;
    for (key, not_after) in expected {
        assert_eq!(sample(&text, key), Some(not_after as f64), "{key}");
    }
    // A CA bundle counts too (its earliest certificate): the NWS CA's own notAfter.
    for key in ["relay.inbound_client_ca_file", "relay.nws_ca_file"] {
        let value = sample(&text, key).unwrap_or_else(|| panic!("{key} not reported"));
        assert!(value > api_cert.not_after as f64, "{key}: {value}");
    }
    assert_eq!(relay.terminate(Duration::from_secs(30)), Some(0));
}
