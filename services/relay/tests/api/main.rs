#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod hold;
mod tls;

use chukan_mq::{OutgoingMessage, metrics as mq_metrics};
use chukan_proto::{CodeAcquireResult, Message as _, NWS_OUT, NwsInbound};
use chukan_relay::metrics;
use helpers::*;

const ORG: &str = HOMED_ORG;

fn result_body() -> Vec<u8> {
    CodeAcquireResult {
        ok: true,
        code: "ABCDEF".into(),
        reason_code: String::new(),
        reason: String::new(),
    }
    .encode_to_vec()
}

async fn problem(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[actix_web::test]
async fn a_valid_inbound_message_is_published_to_the_recipient_tenant() {
    let relay = TestRelay::start(|_| {}).await;
    let captured = Captured::start(&relay.env.ctx.bus, "code-in", &["nws.in.code"])
        .await
        .unwrap();

    let mut env = relay.envelope("code.acquired", ORG, result_body());
    env.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into();
    relay.sign(&mut env);
    assert_eq!(relay.post(&env).await.status(), 202);
    wait_until("the message is published", || async {
        captured.count() == 1
    })
    .await;

    let delivery = &captured.all()[0];
    assert_eq!(delivery.tenant, ORG);
    assert_eq!(delivery.routing_key, "nws.in.code");
    let inbound = NwsInbound::decode(delivery.body.as_slice()).unwrap();
    assert_eq!(inbound.kind, "code.acquired");
    assert_eq!(inbound.recipient_org, ORG);
    assert_eq!(inbound.correlation_id, env.correlation_id);
    assert_eq!(inbound.nws_message_id, env.message_id);
    assert_eq!(inbound.body, result_body());
    assert_eq!(relay.received_rows().await, 1);
    // The verified envelope's trace goes on with the published message: one trace across
    // the NWS hop.
    let traceparent = delivery.traceparent.as_deref().unwrap_or_default();
    assert_eq!(
        traceparent.split('-').nth(1),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{traceparent:?}"
    );

    captured.stop().await;
    relay.shutdown().await;
}

#[actix_web::test]
async fn refused_inbound_messages_are_counted_and_never_published() {
    let relay = TestRelay::start(|_| {}).await;
    let captured = Captured::start(&relay.env.ctx.bus, "code-in", &["nws.in.#"])
        .await
        .unwrap();

    let mut tampered = relay.envelope("code.acquired", ORG, result_body());
    tampered.body.push(0);
    let before = metrics::inbound_refused("bad-signature");
    assert_eq!(
        problem(relay.post(&tampered).await).await,
        (401, "bad-signature".into())
    );
    assert!(metrics::inbound_refused("bad-signature") > before);

    let mut unknown_key = relay.envelope("code.acquired", ORG, result_body());
    unknown_key.kid = "nws-other".into();
    let before = metrics::inbound_refused("unknown-key");
    assert_eq!(
        problem(relay.post(&unknown_key).await).await,
        (401, "unknown-key".into())
    );
    assert!(metrics::inbound_refused("unknown-key") > before);

    let mut stale = relay.envelope("code.acquired", ORG, result_body());
    stale.timestamp_ms -= 301_000;
    relay.sign(&mut stale);
    assert_eq!(
        problem(relay.post(&stale).await).await,
        (400, "stale-message".into())
    );
    let mut future = relay.envelope("code.acquired", ORG, result_body());
    future.timestamp_ms += 301_000;
    relay.sign(&mut future);
    assert_eq!(
        problem(relay.post(&future).await).await,
        (400, "stale-message".into())
    );

    let mut not_nws = relay.envelope("code.acquired", ORG, result_body());
    not_nws.sender = "0000000000000002".into();
    relay.sign(&mut not_nws);
    assert_eq!(
        problem(relay.post(&not_nws).await).await,
        (403, "unknown-sender".into())
    );

    let bad_recipient = relay.envelope("code.acquired", "NWS", result_body());
    assert_eq!(
        problem(relay.post(&bad_recipient).await).await,
        (400, "invalid-recipient".into())
    );

    let before = metrics::inbound_refused("malformed-envelope");
    assert_eq!(
        problem(relay.post_raw(vec![0xff, 0x01, 0x02]).await).await,
        (400, "malformed-envelope".into())
    );
    assert!(metrics::inbound_refused("malformed-envelope") > before);

    // A replay is refused and published once only.
    let once = relay.envelope("code.acquired", ORG, result_body());
    assert_eq!(relay.post(&once).await.status(), 202);
    assert_eq!(
        problem(relay.post(&once).await).await,
        (409, "replayed".into())
    );
    // A later valid message shows the queue is live; only the two valid ones arrive.
    let later = relay.envelope("code.acquired", ORG, result_body());
    assert_eq!(relay.post(&later).await.status(), 202);
    wait_until("both valid messages are published", || async {
        captured.count() >= 2
    })
    .await;
    let mut ids: Vec<String> = captured
        .all()
        .iter()
        .map(|d| {
            NwsInbound::decode(d.body.as_slice())
                .unwrap()
                .nws_message_id
        })
        .collect();
    ids.sort();
    let mut expected = vec![once.message_id.clone(), later.message_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(relay.received_rows().await, 2);

    captured.stop().await;
    relay.shutdown().await;
}

#[actix_web::test]
async fn a_delivery_for_an_organisation_homed_elsewhere_is_misdirected_and_nothing_is_stored() {
    const ELSEWHERE: &str = "2710000000000002";
    let relay = TestRelay::start(|_| {}).await;
    let captured = Captured::start(&relay.env.ctx.bus, "code-in", &["nws.in.#"])
        .await
        .unwrap();

    let misdirected = relay.envelope("code.acquired", ELSEWHERE, result_body());
    let before = metrics::inbound_refused("not-homed-here");
    let res = relay.post(&misdirected).await;
    assert_eq!(res.status(), 421);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not-homed-here");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(body["action"].as_str().is_some_and(|a| !a.is_empty()));
    assert!(metrics::inbound_refused("not-homed-here") > before);
    // Nothing stored: the NWS may deliver the same message to the other door, or here again
    // once the organisation is homed here, and it is taken then.
    assert_eq!(relay.received_rows().await, 0);
    assert_eq!(relay.count("SELECT count(*) FROM relay.outbox").await, 0);

    // An organisation registered a moment ago is held at once (not after a cache refresh).
    relay.home(ELSEWHERE).await;
    assert_eq!(relay.post(&misdirected).await.status(), 202);
    wait_until("the message is published", || async {
        captured.count() == 1
    })
    .await;
    assert_eq!(captured.all()[0].tenant, ELSEWHERE);
    assert_eq!(relay.received_rows().await, 1);

    captured.stop().await;
    relay.shutdown().await;
}

// Sending to the NWS (unreachable, 5xx then accepted, refused) is tested end to end
// against the real nws-sim process in chukan/tests/e2e: nws-sim is the only stand-in for
// the national network.

#[actix_web::test]
async fn a_garbage_outbound_message_is_dead_lettered_without_being_sent() {
    let relay = TestRelay::start(|s| {
        // Nothing listens here: if relay tried to send, the message would be retried.
        s.relay.nws_url = format!("http://127.0.0.1:{}", unused_port());
        s.amqp.retry_delays_ms = vec![50];
    })
    .await;
    let queue = relay.outbound_queue();
    let publisher = relay.env.ctx.bus.publisher().await.unwrap();
    publisher
        .publish(&OutgoingMessage::new(ORG, NWS_OUT, vec![0xff, 0xff]))
        .await
        .unwrap();
    wait_until("the garbage is dead-lettered", || async {
        mq_metrics::dead_lettered(&queue) == 1
    })
    .await;
    assert_eq!(
        mq_metrics::consumed(&queue, "retried"),
        0,
        "garbage is never retried"
    );
    relay.shutdown().await;
}
