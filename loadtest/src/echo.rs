//! The raw RabbitMQ ceiling: publish → consume through lapin with the guarantees chukan's bus
//! uses and nothing else, so an end-to-end rate can be read as a share of what the broker does
//! on this machine.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

/// Publish → consume through one durable queue: persistent messages, publisher confirms,
/// manual acks, 256 in flight — the same guarantees chukan's bus uses, with nothing else.
pub async fn raw_echo(url: &str, run_for: Duration) -> anyhow::Result<Value> {
    use lapin::{
        BasicProperties, Connection, ConnectionProperties,
        options::{
            BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
            QueueDeclareOptions, QueueDeleteOptions,
        },
        types::FieldTable,
    };
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let publish = conn.create_channel().await?;
    let consume = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = format!("bench.echo.{}", uuid::Uuid::new_v4().simple());
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    publish
        .queue_declare(queue.as_str().into(), durable, FieldTable::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "echo".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let origin = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let (rx_count, rx_lat) = (received.clone(), latencies.clone());
    let reader = tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let sent = u64::from_be_bytes(delivery.data[..8].try_into().unwrap_or([0; 8]));
            let now = origin.elapsed().as_micros() as u64;
            rx_lat
                .lock()
                .map(|mut l| l.push(now.saturating_sub(sent)))
                .ok();
            let _ = delivery.ack(BasicAckOptions::default()).await;
            rx_count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(256));
    let mut sent = 0u64;
    let mut confirms = tokio::task::JoinSet::new();
    while origin.elapsed() < run_for {
        let permit = slots.clone().acquire_owned().await?;
        let mut body = (origin.elapsed().as_micros() as u64).to_be_bytes().to_vec();
        body.resize(512, 0);
        let confirm = publish
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        confirms.spawn(async move {
            let _permit = permit;
            confirm.await
        });
        sent += 1;
        while let Some(done) = confirms.try_join_next() {
            done??;
        }
    }
    while let Some(done) = confirms.join_next().await {
        done??;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = origin.elapsed().as_secs_f64();
    reader.abort();
    let _ = publish
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(0, "done".into()).await;
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
            .map(|us| *us as f64 / 1000.0)
    };
    Ok(json!({
        "messages": sent,
        "received": received.load(Ordering::Relaxed),
        "messages_per_s": received.load(Ordering::Relaxed) as f64 / elapsed,
        "latency_ms": { "p50": pct(0.5), "p99": pct(0.99) },
    }))
}
