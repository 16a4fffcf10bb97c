#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `amqp.tls_mode = "verify-full"` against a RabbitMQ node of the test's own (never the
//! shared one) whose only listener is AMQP over TLS, with a certificate for `localhost` from
//! a throw-away CA: chukan connects with verification, refuses a broker whose certificate
//! does not verify, refuses a plaintext URL when TLS is required, and a plaintext client
//! gets nowhere with the TLS port.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use chukan_config::{AmqpSettings, Settings};
use chukan_mq::{Bus, OutgoingMessage, QueueSpec};
use chukan_testkit::{
    pki::TestCa,
    tls_servers::{RabbitNode, ServerTls},
};
use lapin::options::BasicGetOptions;

/// Every step is bounded: a refused connection must fail, not hang.
async fn bounded<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(90), step)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than 90 s"))
}

/// The settings a deployment would write, through the real loader and its validation.
fn settings(pairs: &[(&str, &str)]) -> Result<AmqpSettings, chukan_config::SettingsError> {
    let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::load_with(None, env).map(|s| s.amqp)
}

#[test]
fn verify_full_with_a_plaintext_url_is_a_settings_error() {
    let error = settings(&[
        ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
        (
            "CHUKAN__AMQP__URL",
            "amqp://guest:s3cret@localhost:5671/%2f",
        ),
    ])
    .expect_err("verify-full accepted an amqp:// URL");
    let error = error.to_string();
    assert!(error.contains("amqp.tls_mode"), "{error}");
    assert!(error.contains("amqps://"), "{error}");
    assert!(
        !error.contains("s3cret"),
        "the URL's password leaked: {error}"
    );
}

#[tokio::test]
async fn a_tls_only_broker_is_reached_with_verification_and_nothing_less() {
    let ca = TestCa::new("rabbitmq").unwrap();
    let server = ca.server("rabbitmq", &["localhost"]).unwrap();
    let node = bounded(
        "starting the TLS node",
        RabbitNode::start(ServerTls {
            identity: &server,
            client_ca_file: None,
        }),
    )
    .await
    .unwrap();
    let namespace = format!("t{}.", uuid::Uuid::new_v4().simple());

    // amqps to the name in the certificate, trusting the CA that signed it: connects and
    // carries messages (publisher confirms come back over the TLS connection).
    let amqp = settings(&[
        ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
        ("CHUKAN__AMQP__URL", &node.url("amqps", "localhost")),
        ("CHUKAN__AMQP__CA_FILE", &ca.ca_file()),
        ("CHUKAN__AMQP__NAMESPACE", &namespace),
        ("CHUKAN__AMQP__QUEUE_TYPE", "classic"),
    ])
    .unwrap();
    let bus = bounded("connecting over TLS", Bus::connect(&amqp))
        .await
        .unwrap();
    bounded("declaring the topology", bus.declare_topology())
        .await
        .unwrap();
    let queue = QueueSpec::new("tls", &["tls.check"]);
    bounded("declaring a queue", bus.declare_queue(&queue))
        .await
        .unwrap();
    let publisher = bounded("a publisher", bus.publisher()).await.unwrap();
    bounded(
        "a confirmed publish",
        publisher.publish(&OutgoingMessage::new("t1", "tls.check", b"{}".to_vec())),
    )
    .await
    .unwrap();
    let channel = bounded("a channel", bus.channel()).await.unwrap();
    let got = bounded(
        "reading the message back",
        channel.basic_get(
            queue.queue_name(bus.namespace()).as_str().into(),
            BasicGetOptions { no_ack: true },
        ),
    )
    .await
    .unwrap();
    assert!(got.is_some(), "the message did not come back over TLS");
    assert!(bus.is_healthy().await);
    bus.close().await;

    // A CA chukan was not told to trust: refused at once (no 30 s of retries).
    let stranger = TestCa::new("stranger").unwrap();
    let untrusting = settings(&[
        ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
        ("CHUKAN__AMQP__URL", &node.url("amqps", "localhost")),
        ("CHUKAN__AMQP__CA_FILE", &stranger.ca_file()),
    ])
    .unwrap();
    let started = Instant::now();
    let error = bounded("an untrusted broker", Bus::connect(&untrusting))
        .await
        .expect_err("a certificate from an unknown CA was accepted");
    assert!(format!("{error:#}").contains("UnknownIssuer"), "{error:#}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a failed verification was retried for {:?}",
        started.elapsed()
    );

    // The right CA, but dialled by a name the certificate does not carry.
    let by_address = settings(&[
        ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
        ("CHUKAN__AMQP__URL", &node.url("amqps", "127.0.0.1")),
        ("CHUKAN__AMQP__CA_FILE", &ca.ca_file()),
    ])
    .unwrap();
    let error = bounded("a broker under another name", Bus::connect(&by_address))
        .await
        .expect_err("a certificate for another name was accepted");
    assert!(
        format!("{error:#}").contains("not valid for name"),
        "{error:#}"
    );

    // A plaintext client at the TLS-only port: the broker never speaks AMQP to it.
    let plaintext = settings(&[("CHUKAN__AMQP__URL", &node.url("amqp", "localhost"))]).unwrap();
    let refused = bounded(
        "plaintext against the TLS port",
        Bus::connect_within(&plaintext, Duration::from_secs(3)),
    )
    .await;
    assert!(refused.is_err(), "a plaintext AMQP connection got through");
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_a_broker_that_requires_one() {
    let ca = TestCa::new("rabbitmq").unwrap();
    let server = ca.server("rabbitmq", &["localhost"]).unwrap();
    let client = ca.client("chukan-mq-client", "chukan").unwrap();
    let ca_file = ca.ca_file();
    let node = bounded(
        "starting the mutual-TLS node",
        RabbitNode::start(ServerTls {
            identity: &server,
            client_ca_file: Some(&ca_file),
        }),
    )
    .await
    .unwrap();
    let url = node.url("amqps", "localhost");

    let without = settings(&[
        ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
        ("CHUKAN__AMQP__URL", &url),
        ("CHUKAN__AMQP__CA_FILE", &ca_file),
    ])
    .unwrap();
    let refused = bounded(
        "a connection without a client certificate",
        Bus::connect_within(&without, Duration::from_secs(3)),
    )
    .await;
    let error = refused.expect_err("the broker went without a client certificate");
    assert!(
        format!("{error:#}").contains("CertificateRequired"),
        "{error:#}"
    );

    let with = settings(&[
        ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
        ("CHUKAN__AMQP__URL", &url),
        ("CHUKAN__AMQP__CA_FILE", &ca_file),
        ("CHUKAN__AMQP__CLIENT_CERT_FILE", &client.cert_file),
        ("CHUKAN__AMQP__CLIENT_KEY_FILE", &client.key_file),
    ])
    .unwrap();
    let bus = bounded("connecting with a client certificate", Bus::connect(&with))
        .await
        .unwrap();
    assert!(bus.is_healthy().await);
    bus.close().await;
}
