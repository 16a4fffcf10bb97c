//! The NWS link over TLS (ARCHITECTURE §3): the inbound door with mutual TLS, the NWS client
//! checking the NWS's certificate, and relay and the real simulator talking HTTPS with
//! client certificates both ways.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpResponse, HttpServer, web};
use chukan_core::SystemClock;
use chukan_mq::OutgoingMessage;
use chukan_proto::{CodeAcquireRequest, Message as _, NWS_OUT, NwsInbound, NwsOutbound};
use chukan_testkit::pki::{Issued, TestCa};
use chukan_tls::server::{ServerFiles, server_config};

use super::{ORG, result_body};
use crate::helpers::*;

#[actix_web::test]
async fn the_inbound_door_with_a_client_ca_serves_only_clients_holding_its_certificate() {
    let platform = TestCa::new("platform").unwrap();
    let nws_ca = TestCa::new("nws").unwrap();
    let stranger_ca = TestCa::new("stranger").unwrap();
    let door = platform.server("inbound", &["127.0.0.1"]).unwrap();
    let nws = nws_ca.client("nws", "nws.test").unwrap();
    let stranger = stranger_ca.client("stranger", "nws.test").unwrap();
    let relay = TestRelay::start(|s| {
        s.relay.inbound_tls_cert_file = door.cert_file.clone();
        s.relay.inbound_tls_key_file = door.key_file.clone();
        s.relay.inbound_client_ca_file = nws_ca.ca_file();
    })
    .await;
    assert!(
        relay.inbound_url.starts_with("https://"),
        "{}",
        relay.inbound_url
    );
    let body = relay
        .envelope("code.acquired", ORG, result_body())
        .encode_to_vec();
    let post = |client: reqwest::Client, url: String, body: Vec<u8>| async move {
        client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
    };

    // Refused in the handshake: no certificate, one from another CA, a client that does not
    // trust the door's own certificate, and plain HTTP.
    for (what, client) in [
        (
            "no client certificate",
            platform.https_client(None).unwrap(),
        ),
        (
            "a certificate of another CA",
            platform.https_client(Some(&stranger)).unwrap(),
        ),
        (
            "a client that does not trust the door",
            stranger_ca.https_client(Some(&nws)).unwrap(),
        ),
    ] {
        let res = post(client, relay.inbound_url.clone(), body.clone()).await;
        assert!(res.is_err(), "{what}: {res:?}");
    }
    let plain = post(
        reqwest::Client::new(),
        relay.inbound_url.replace("https://", "http://"),
        body.clone(),
    )
    .await;
    assert!(plain.is_err(), "plain HTTP: {plain:?}");
    assert_eq!(relay.received_rows().await, 0);

    // The NWS's certificate is served; the envelope's signature is still checked.
    let nws_client = platform.https_client(Some(&nws)).unwrap();
    let res = post(nws_client.clone(), relay.inbound_url.clone(), body)
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let mut tampered = relay.envelope("code.acquired", ORG, result_body());
    tampered.body.push(0);
    let res = post(
        nws_client,
        relay.inbound_url.clone(),
        tampered.encode_to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(relay.received_rows().await, 1);
    relay.shutdown().await;
}

/// An HTTPS stand-in for the NWS answering `GET /v1/ready`, with `files`' certificate.
fn stub_nws(files: &ServerFiles<'_>) -> (String, actix_web::dev::ServerHandle) {
    let tls = server_config(files).unwrap().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new().route(
            "/v1/ready",
            web::get().to(|| async { HttpResponse::Ok().finish() }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(listener, tls)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("https://127.0.0.1:{port}/v1/ready"), handle)
}

fn files<'a>(cert: &'a Issued, client_ca: &'a str) -> ServerFiles<'a> {
    ServerFiles {
        cert: ("test.cert", &cert.cert_file),
        key: ("test.key", &cert.key_file),
        client_ca: ("test.client_ca", client_ca),
    }
}

#[actix_web::test]
async fn the_nws_client_checks_the_nws_certificate_and_presents_its_own() {
    let nws_ca = TestCa::new("nws").unwrap();
    let other_ca = TestCa::new("other").unwrap();
    let platform = TestCa::new("platform").unwrap();
    let relay_cert = platform.client("relay", ORG).unwrap();
    let mut settings = chukan_testkit::test_settings().relay;
    settings.nws_ca_file = nws_ca.ca_file();
    let nws_client = chukan_relay::outbound::nws_client(&settings).unwrap();

    // The right certificate: answered.
    let good = nws_ca.server("good", &["127.0.0.1"]).unwrap();
    let (url, good_nws) = stub_nws(&files(&good, ""));
    assert_eq!(nws_client.get(&url).send().await.unwrap().status(), 200);

    // A certificate that does not chain to relay.nws_ca_file: refused.
    let foreign = other_ca.server("foreign", &["127.0.0.1"]).unwrap();
    let (url, foreign_nws) = stub_nws(&files(&foreign, ""));
    let err = nws_client.get(&url).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // The right CA, but issued to another name: refused.
    let misnamed = nws_ca.server("misnamed", &["nws.elsewhere.test"]).unwrap();
    let (url, misnamed_nws) = stub_nws(&files(&misnamed, ""));
    let err = nws_client.get(&url).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");

    // An NWS that asks for the platform's client certificate: refused without it, served
    // with relay.nws_client_cert_file.
    let platform_ca = platform.ca_file();
    let (url, strict_nws) = stub_nws(&files(&good, &platform_ca));
    assert!(nws_client.get(&url).send().await.is_err());
    settings.nws_client_cert_file = relay_cert.cert_file.clone();
    settings.nws_client_key_file = relay_cert.key_file.clone();
    let with_cert = chukan_relay::outbound::nws_client(&settings).unwrap();
    assert_eq!(with_cert.get(&url).send().await.unwrap().status(), 200);

    for handle in [good_nws, foreign_nws, misnamed_nws, strict_nws] {
        handle.stop(true).await;
    }
}

#[actix_web::test]
async fn relay_and_the_simulator_talk_https_with_client_certificates_both_ways() {
    let platform = TestCa::new("platform").unwrap();
    let nws_ca = TestCa::new("nws").unwrap();
    let relay_door = platform.server("relay-door", &["127.0.0.1"]).unwrap();
    let relay_client = platform.client("relay-client", ORG).unwrap();
    let nws_door = nws_ca.server("nws-door", &["127.0.0.1"]).unwrap();
    let nws_client = nws_ca.client("nws-client", "nws.test").unwrap();

    // The simulator serves HTTPS to holders of a platform certificate and delivers with its
    // own; the test registers the organisation as the platform would.
    let nws = TestNws::spawn_with(
        Arc::new(SystemClock),
        |s| {
            s.tls_cert_file = nws_door.cert_file.clone();
            s.tls_key_file = nws_door.key_file.clone();
            s.client_ca_file = platform.ca_file();
            s.delivery_ca_file = platform.ca_file();
            s.delivery_client_cert_file = nws_client.cert_file.clone();
            s.delivery_client_key_file = nws_client.key_file.clone();
        },
        nws_ca.https_client(Some(&relay_client)).unwrap(),
    )
    .await;
    assert!(nws.base.starts_with("https://"), "{}", nws.base);
    let ready = format!("{}/v1/ready", nws.base);
    let anonymous = nws_ca.https_client(None).unwrap().get(&ready).send().await;
    assert!(
        anonymous.is_err(),
        "the simulator served a client without a certificate"
    );
    let holder = nws_ca
        .https_client(Some(&relay_client))
        .unwrap()
        .get(&ready)
        .send()
        .await;
    assert_eq!(holder.unwrap().status(), 200);
    let relay = TestRelay::start(|s| {
        s.relay.nws_url = nws.base.clone();
        s.relay.nws_public_keys = vec![nws.public_key_entry()];
        s.relay.nws_ca_file = nws_ca.ca_file();
        s.relay.nws_client_cert_file = relay_client.cert_file.clone();
        s.relay.nws_client_key_file = relay_client.key_file.clone();
        s.relay.inbound_tls_cert_file = relay_door.cert_file.clone();
        s.relay.inbound_tls_key_file = relay_door.key_file.clone();
        s.relay.inbound_client_ca_file = nws_ca.ca_file();
    })
    .await;
    let captured = Captured::start(&relay.env.ctx.bus, "code-in", &["nws.in.code"])
        .await
        .unwrap();
    nws.register(ORG, &relay).await;

    // A code acquisition goes out to the simulator, whose answer comes back in.
    let request = NwsOutbound {
        kind: "code.acquire".into(),
        sender_org: ORG.into(),
        recipient: String::new(),
        correlation_id: "corr-tls".into(),
        body: CodeAcquireRequest {
            resident_record_code: "10000000001".into(),
        }
        .encode_to_vec(),
    };
    relay
        .env
        .publish(&OutgoingMessage::new(ORG, NWS_OUT, request.encode_to_vec()))
        .await;
    wait_until("the simulator's answer is published", || async {
        captured.count() == 1
    })
    .await;
    assert_eq!(nws.received("code.acquire").await.len(), 1);
    let inbound = NwsInbound::decode(captured.all()[0].body.as_slice()).unwrap();
    assert_eq!(inbound.kind, "code.acquired");
    assert_eq!(inbound.correlation_id, "corr-tls");
    assert_eq!(inbound.recipient_org, ORG);

    captured.stop().await;
    relay.shutdown().await;
    nws.finish().await;
}
