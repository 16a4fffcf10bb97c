//! Queue depths for `/metrics`: each consumer and RPC server reads how many messages wait in
//! its queue and in the queue's `.dead` queue every `amqp.backlog_sample_ms`.

use lapin::{Channel, options::QueueDeclareOptions, types::FieldTable};
use tokio::sync::watch;

use crate::{Bus, QueueSpec, lifecycle, metrics};

/// Samples `spec`'s depths until a stop is requested or the bus is closed.
pub(crate) async fn sample_until_stopped(
    bus: Bus,
    spec: QueueSpec,
    mut stop: watch::Receiver<bool>,
) {
    let every = bus.settings().backlog_sample;
    // One channel for the sampler's whole life, re-opened after an error (a passive declare
    // of a missing queue closes it).
    let mut channel: Option<Channel> = None;
    loop {
        if bus.is_closed() {
            break;
        }
        if let Err(error) = sample(&bus, &spec, &mut channel).await {
            channel = None;
            tracing::debug!(queue = %spec.name, error = format!("{error:#}"), "queue depth could not be sampled");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = lifecycle::stopped(&mut stop) => break,
        }
    }
    if let Some(channel) = channel {
        let _ = channel.close(200, "depth sampler stopped".into()).await;
    }
}

/// Sets `chukan_mq_queue_messages` and `chukan_mq_dead_letter_messages` for `spec`, labelled
/// with its unqualified name (the namespace only tells test runs apart).
async fn sample(bus: &Bus, spec: &QueueSpec, channel: &mut Option<Channel>) -> anyhow::Result<()> {
    let open = match channel.take() {
        Some(open) if open.status().connected() => open,
        _ => bus.channel().await?,
    };
    let ns = bus.namespace();
    let ready = ready_messages(&open, &spec.queue_name(ns)).await?;
    let dead = ready_messages(&open, &spec.dead_queue_name(ns)).await?;
    *channel = Some(open);
    metrics::QUEUE_MESSAGES
        .with_label_values(&[spec.name.as_str()])
        .set(i64::from(ready));
    metrics::DEAD_LETTER_MESSAGES
        .with_label_values(&[spec.name.as_str()])
        .set(i64::from(dead));
    Ok(())
}

/// Messages ready in `queue` (not delivered or delivered and returned; unacked ones are not
/// counted).
async fn ready_messages(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    let declared = channel
        .queue_declare(
            queue.into(),
            // Passive: only look; never create a queue with the wrong arguments.
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count())
}
