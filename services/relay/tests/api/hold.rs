//! 送受信停止 (send/receive stop window): outbound messages are held durably while the link is
//! stopped and released paced, once the calendar is open and the real NWS simulator is ready.

use std::{collections::BTreeSet, sync::Arc};

use chrono::{DateTime, TimeZone as _, Utc};
use chukan_config::Settings;
use chukan_core::ManualClock;
use chukan_mq::OutgoingMessage;
use chukan_proto::{CodeAcquireRequest, Message as _, NWS_OUT, NwsOutbound};
use chukan_relay::metrics;

use crate::helpers::*;

const ORG: &str = HOMED_ORG;
/// Not registered with the simulator: it refuses this sender's messages (403).
const STRANGER: &str = "0000000000000009";

fn jst(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono::FixedOffset::east_opt(9 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn acquire(sender: &str, i: usize) -> OutgoingMessage {
    let body = NwsOutbound {
        kind: "code.acquire".into(),
        sender_org: sender.into(),
        recipient: String::new(),
        correlation_id: format!("corr-{i}"),
        body: CodeAcquireRequest {
            resident_record_code: format!("{:011}", 10_000_000_000u64 + i as u64),
        }
        .encode_to_vec(),
    };
    OutgoingMessage::new(sender, NWS_OUT, body.encode_to_vec())
}

/// A relay with the service hours enforced, talking to a real simulator on the same clock.
async fn start(
    clock: &Arc<ManualClock>,
    configure: impl FnOnce(&mut Settings),
) -> (TestRelay, TestNws) {
    let nws = TestNws::spawn(clock.clone()).await;
    let nws_url = nws.base.clone();
    let nws_key = nws.public_key_entry();
    let relay = TestRelay::start_with(
        |s| {
            s.calendar.enforce_service_hours = true;
            s.relay.nws_url = nws_url;
            s.relay.nws_public_keys = vec![nws_key];
            s.relay.release_per_second = 10;
            s.relay.readiness_poll = std::time::Duration::from_millis(100);
            configure(s);
        },
        clock.clone(),
    )
    .await;
    nws.register(ORG, &relay).await;
    (relay, nws)
}

async fn publish(relay: &TestRelay, messages: &[OutgoingMessage]) {
    let publisher = relay.env.ctx.bus.publisher().await.unwrap();
    for m in messages {
        publisher.publish(m).await.unwrap();
    }
}

async fn held_rows(relay: &TestRelay) -> i64 {
    relay.count("SELECT count(*) FROM relay.held").await
}

#[actix_web::test]
async fn messages_in_the_stop_window_are_held_then_released_paced_once_the_nws_is_ready() {
    const N: usize = 30;
    // Wednesday 21:30 Japan time: data send/receive is stopped.
    let clock = Arc::new(ManualClock::new(jst(2026, 12, 2, 21, 30)));
    let (relay, nws) = start(&clock, |_| {}).await;
    let messages: Vec<OutgoingMessage> = (0..N).map(|i| acquire(ORG, i)).collect();
    publish(&relay, &messages).await;

    wait_until("the consumer has held every message", || async {
        held_rows(&relay).await == N as i64
    })
    .await;
    assert!(nws.received("code.acquire").await.is_empty());
    // As if held since the evening before: the releaser's count reports the oldest's age.
    relay
        .env
        .owner_pool()
        .unwrap()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE relay.held SET held_at = now() - interval '2 hours'",
            &[],
        )
        .await
        .unwrap();
    wait_until("the held backlog and its age are reported", || async {
        metrics::held() == N as i64 && metrics::held_oldest_age_seconds() >= 7200.0
    })
    .await;

    // Thursday 08:00: open, but the peer is not up yet. The releaser keeps asking, sends nothing.
    nws.set_ready(false).await;
    let not_ready_before = metrics::readiness_checks("not-ready");
    clock.set(jst(2026, 12, 3, 8, 0));
    wait_until(
        "the releaser has found the NWS not ready three times",
        || async { metrics::readiness_checks("not-ready") >= not_ready_before + 3 },
    )
    .await;
    assert!(nws.received("code.acquire").await.is_empty());
    assert_eq!(
        relay
            .count("SELECT count(*) FROM relay.held WHERE released_at IS NULL AND attempts = 0")
            .await,
        N as i64
    );
    // Held bodies are sealed: the 住民票コード of a code acquisition is not in the table.
    assert_eq!(
        relay
            .count(
                "SELECT count(*) FROM relay.held
                  WHERE position(convert_to('10000000000', 'UTF8') IN body) > 0
                     OR position(convert_to('corr-0', 'UTF8') IN body) > 0"
            )
            .await,
        0
    );

    // The peer is up: everything goes, once each, paced.
    let released_before = metrics::released();
    nws.set_ready(true).await;
    wait_until("every held message reached the NWS", || async {
        nws.received("code.acquire").await.len() == N
    })
    .await;
    let arrived = nws.received("code.acquire").await;
    let arrived_ids: BTreeSet<String> = arrived.iter().map(|(id, _)| id.clone()).collect();
    let sent_ids: BTreeSet<String> = messages.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(
        arrived_ids, sent_ids,
        "the envelopes keep the bus message ids"
    );
    let spread = arrived[N - 1].1 - arrived[0].1;
    let min_ms = ((N - 1) as f64 / 10.0 * 0.8 * 1000.0) as i64;
    assert!(
        spread.num_milliseconds() >= min_ms,
        "released in {} ms, expected at least {min_ms} ms at 10/s",
        spread.num_milliseconds()
    );
    wait_until("every held row is marked released", || async {
        relay
            .count("SELECT count(*) FROM relay.held WHERE released_at IS NOT NULL AND attempts = 1")
            .await
            == N as i64
    })
    .await;
    assert!(metrics::released() >= released_before + N as u64);
    wait_until("no held message is reported any more", || async {
        metrics::held() == 0 && metrics::held_oldest_age_seconds() == 0.0
    })
    .await;
    // Nothing of a released message's content is kept.
    assert_eq!(
        relay
            .count("SELECT count(*) FROM relay.held WHERE length(body) > 0")
            .await,
        0
    );
    assert_eq!(
        relay
            .count("SELECT count(*) FROM relay.held WHERE dead_at IS NOT NULL")
            .await,
        0
    );

    // The backlog is gone: a new message goes out at once, without being held.
    let live = acquire(ORG, N);
    publish(&relay, std::slice::from_ref(&live)).await;
    wait_until("the live message reaches the NWS", || async {
        nws.received("code.acquire").await.len() == N + 1
    })
    .await;
    assert_eq!(held_rows(&relay).await, N as i64);
    // The NWS took relay's sends: the link is announced healthy, once, not per send.
    wait_until("the link's health announced", || async {
        relay.link_status.count() >= 1
    })
    .await;
    let announced = relay.link_status.all();
    assert_eq!(announced.len(), 1, "announced on a change only");
    let status = chukan_proto::ComponentStatus::decode(announced[0].body.as_slice()).unwrap();
    assert_eq!(
        (status.component.as_str(), status.status.as_str()),
        ("nws-link", "ok")
    );

    relay.shutdown().await;
    nws.finish().await;
}

#[actix_web::test]
async fn a_planned_outage_day_holds_like_a_closed_day_and_a_refused_message_is_marked_dead() {
    // Wednesday 2026-12-09 is a planned outage (計画停止日): closed at 10:00.
    let clock = Arc::new(ManualClock::new(jst(2026, 12, 9, 10, 0)));
    let (relay, nws) = start(&clock, |s| {
        s.calendar.planned_outages = vec!["2026-12-09".into()];
    })
    .await;
    let mut messages: Vec<OutgoingMessage> = (0..3).map(|i| acquire(ORG, i)).collect();
    let refused = acquire(STRANGER, 99);
    messages.push(refused.clone());
    publish(&relay, &messages).await;
    wait_until("all four are held", || async {
        held_rows(&relay).await == 4
    })
    .await;

    // A redelivered message is held once: publish the same bus message again.
    let queue = relay.outbound_queue();
    publish(&relay, std::slice::from_ref(&messages[0])).await;
    wait_until("the redelivery is taken", || async {
        chukan_mq::metrics::consumed(&queue, "ok") == 5
    })
    .await;
    assert_eq!(held_rows(&relay).await, 4);
    assert!(nws.received("code.acquire").await.is_empty());
    let ready_before = metrics::readiness_checks("ready");
    let dead_before = metrics::held_dead();

    // The next day is an ordinary Thursday: open at 10:00.
    clock.set(jst(2026, 12, 10, 10, 0));
    wait_until(
        "the three from the registered organisation arrive",
        || async { nws.received("code.acquire").await.len() == 3 },
    )
    .await;
    wait_until("the refused one is marked dead", || async {
        relay
            .count("SELECT count(*) FROM relay.held WHERE dead_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert!(metrics::readiness_checks("ready") > ready_before);
    assert!(metrics::held_dead() > dead_before);
    let dead_id: uuid::Uuid = relay
        .env
        .owner_pool()
        .unwrap()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT message_id FROM relay.held WHERE dead_at IS NOT NULL AND last_error LIKE '%403%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead_id, refused.id);
    assert_eq!(held_rows(&relay).await, 4);
    assert_eq!(
        relay
            .count("SELECT count(*) FROM relay.held WHERE released_at IS NOT NULL")
            .await,
        3
    );

    relay.shutdown().await;
    nws.finish().await;
}

#[actix_web::test]
async fn two_relay_replicas_release_a_held_backlog_once_at_the_cells_pace() {
    const N: usize = 30;
    // Wednesday 21:30 Japan time: data send/receive is stopped.
    let clock = Arc::new(ManualClock::new(jst(2026, 12, 2, 21, 30)));
    let (relay, nws) = start(&clock, |_| {}).await;
    // A second replica of relay on the same database, bus and clock: its consumer competes
    // for the outbound queue, its releaser waits for the `relay-releaser` lease (ADR 0005).
    let second = chukan_relay::start(&relay.env.ctx).await.unwrap();
    let messages: Vec<OutgoingMessage> = (0..N).map(|i| acquire(ORG, i)).collect();
    publish(&relay, &messages).await;
    wait_until("the replicas have held every message", || async {
        held_rows(&relay).await == N as i64
    })
    .await;

    // Thursday 08:00: open. One releaser sends, at relay.release_per_second (10/s); two
    // would take half the time.
    clock.set(jst(2026, 12, 3, 8, 0));
    wait_until("every held message reached the NWS", || async {
        nws.received("code.acquire").await.len() >= N
    })
    .await;
    let arrived = nws.received("code.acquire").await;
    let arrived_ids: BTreeSet<String> = arrived.iter().map(|(id, _)| id.clone()).collect();
    let sent_ids: BTreeSet<String> = messages.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(arrived.len(), N, "each held message sent once");
    assert_eq!(arrived_ids, sent_ids);
    let spread = arrived[N - 1].1 - arrived[0].1;
    let min_ms = ((N - 1) as f64 / 10.0 * 0.8 * 1000.0) as i64;
    assert!(
        spread.num_milliseconds() >= min_ms,
        "released in {} ms, expected at least {min_ms} ms at 10/s for the whole cell",
        spread.num_milliseconds()
    );

    // The backlog is gone: both replicas (the one without the lease too, once its own count
    // of the held rows has seen it gone) send live again. Wanted: six messages in a row, taken
    // by whichever replica's consumer, that reach the NWS without being held.
    let mut in_a_row = 0;
    let mut i = N;
    while in_a_row < 6 {
        assert!(i < N + 60, "the replicas never all sent live again");
        let held_before = held_rows(&relay).await;
        publish(&relay, &[acquire(ORG, i)]).await;
        i += 1;
        wait_until("the message reaches the NWS", || async {
            nws.received("code.acquire").await.len() == i
        })
        .await;
        in_a_row = if held_rows(&relay).await == held_before {
            in_a_row + 1
        } else {
            0
        };
    }

    let mut workers = second.workers;
    workers.sort_by_key(|w| w.stage);
    for w in workers {
        (w.stop)().await;
    }
    relay.shutdown().await;
    nws.finish().await;
}
