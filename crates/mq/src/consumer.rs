//! Consumer actor: manual acks after the handler's transaction commits, retries through the
//! per-delay retry queues, dead-lettering after the last one, and reconnection.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, AsyncContext as _, Context, WrapFuture as _,
};
use chukan_core::worker::{StopStage, Worker};
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::{
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::FieldTable,
};
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    Bus, Delivery, Envelope, HandleError, Handler, Publisher, QueueSpec, depth, lifecycle, metrics,
    trace,
};

/// Longest wait for in-flight handlers when stopping.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest pause between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

struct ConsumerConfig {
    bus: Bus,
    spec: QueueSpec,
    queue: String,
    tag_prefix: String,
    prefetch: u16,
    handler: Arc<dyn Handler>,
}

/// Consumes one queue until stopped; re-opens its channel when it is lost.
pub struct QueueConsumer {
    config: Arc<ConsumerConfig>,
    stop: watch::Receiver<bool>,
    done: Option<watch::Sender<lifecycle::Done>>,
}

impl Actor for QueueConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let run = run(self.config.clone(), self.stop.clone());
        ctx.spawn(run.into_actor(self).map(|result, actor, ctx| {
            if let Some(done) = actor.done.take() {
                let _ = done.send(Some(result.map_err(|e| format!("{e:#}"))));
            }
            ctx.stop();
        }));
        let depths = depth::sample_until_stopped(
            self.config.bus.clone(),
            self.config.spec.clone(),
            self.stop.clone(),
        );
        ctx.spawn(depths.into_actor(self));
    }
}

/// Starts consuming `spec` (declared beforehand with [`Bus::declare_queue`]) inside an
/// actix system; at most `prefetch` deliveries are handled at once.
pub fn start(
    bus: &Bus,
    spec: &QueueSpec,
    consumer_tag_prefix: &str,
    prefetch: u16,
    handler: Arc<dyn Handler>,
) -> ConsumerHandle {
    let (stop_tx, stop_rx, done_tx, done_rx) = lifecycle::channels();
    let config = Arc::new(ConsumerConfig {
        bus: bus.clone(),
        queue: spec.queue_name(bus.namespace()),
        spec: spec.clone(),
        tag_prefix: consumer_tag_prefix.to_owned(),
        prefetch,
        handler,
    });
    QueueConsumer {
        config,
        stop: stop_rx,
        done: Some(done_tx),
    }
    .start();
    ConsumerHandle {
        stop: Arc::new(stop_tx),
        done: done_rx,
    }
}

/// Stops a [`QueueConsumer`] or waits for it to end.
#[derive(Debug, Clone)]
pub struct ConsumerHandle {
    stop: Arc<watch::Sender<bool>>,
    done: watch::Receiver<lifecycle::Done>,
}

impl ConsumerHandle {
    /// Cancels the consumer, waits for in-flight handlers (bounded), closes the channel.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let _ = lifecycle::finished(self.done.clone()).await;
    }

    /// The consumer as a worker stopped with the other consumers.
    pub fn into_worker(self, name: &str) -> Worker {
        lifecycle::worker(name, StopStage::Consumers, self.stop, self.done)
    }
}

enum SessionEnd {
    Stopped,
    Lost(anyhow::Error),
}

async fn run(config: Arc<ConsumerConfig>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match session(&config, &mut stop).await {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::Lost(error) => {
                if config.bus.is_closed() {
                    // Closed on purpose (shutdown or a simulated crash): nothing to resume.
                    return Ok(());
                }
                tracing::warn!(queue = %config.queue, error = format!("{error:#}"), "consumer lost its channel; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = lifecycle::stopped(&mut stop) => return Ok(()),
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// One channel's life: consume until stopped or the channel dies.
async fn session(config: &Arc<ConsumerConfig>, stop: &mut watch::Receiver<bool>) -> SessionEnd {
    let opened = async {
        let channel = config.bus.channel().await?;
        // Prefetch bounds unacked deliveries, and so the handlers running at once.
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        // Retries are re-published with confirms before the original is acked.
        let publisher = config.bus.publisher().await?;
        let tag = format!("{}.{}", config.tag_prefix, Uuid::new_v4().simple());
        let consumer = channel
            .basic_consume(
                config.queue.as_str().into(),
                tag.as_str().into(),
                // Manual acks (no_ack = false): unacked messages return to the queue if we die.
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        anyhow::Ok((channel, publisher, tag, consumer))
    };
    let (channel, publisher, tag, mut consumer) = match opened.await {
        Ok(parts) => parts,
        Err(error) => return SessionEnd::Lost(error),
    };
    tracing::info!(queue = %config.queue, consumer_tag = %tag, "consuming");

    let mut in_flight = JoinSet::new();
    let end = loop {
        tokio::select! {
            () = lifecycle::stopped(stop) => break SessionEnd::Stopped,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    in_flight.spawn(process(config.clone(), publisher.clone(), delivery));
                }
                Some(Err(error)) => break SessionEnd::Lost(error.into()),
                None => break SessionEnd::Lost(anyhow::anyhow!("consumer cancelled by the broker")),
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    };

    if matches!(end, SessionEnd::Stopped) {
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(queue = %config.queue, "handlers still running at stop; their messages will be redelivered");
        }
        let _ = channel.close(200, "consumer stopped".into()).await;
    } else {
        // Let running handlers finish their transactions; their acks fail and the broker
        // redelivers, which the inbox turns into a no-op.
        in_flight.detach_all();
        let _ = channel.close(200, "consumer restarting".into()).await;
    }
    end
}

/// Handles one delivery and settles it with the broker.
async fn process(config: Arc<ConsumerConfig>, publisher: Publisher, raw: lapin::message::Delivery) {
    let queue = config.queue.as_str();
    let Some(envelope) = Envelope::from_properties(&raw.properties) else {
        // Without an id the message cannot be deduplicated; park it for an operator.
        tracing::error!(queue, "delivery without a message id; dead-lettering");
        settle_dead(&config, &raw, "rejected").await;
        return;
    };
    let delivery = Delivery {
        id: envelope.id,
        tenant: envelope.tenant.clone(),
        routing_key: raw.routing_key.as_str().to_owned(),
        body: raw.data.clone(),
        attempt: envelope.attempt,
        traceparent: envelope.traceparent.clone(),
    };
    let span = tracing::info_span!("consume", queue, message_id = %envelope.id, attempt = envelope.attempt);
    trace::set_remote_parent(&span, envelope.traceparent.as_deref());
    // A panicking handler is a defect, but its delivery must still be settled: left
    // unacknowledged it would hold a prefetch slot until the channel closes. It is retried
    // like any failure (the panic may have been a passing state) and dead-lettered after
    // the last delay, so it is neither lost nor stuck.
    let handler = config.handler.clone();
    let outcome = AssertUnwindSafe(async move { handler.handle(delivery).await })
        .catch_unwind()
        .instrument(span.clone())
        .await
        .unwrap_or_else(|_| {
            metrics::HANDLER_PANICS.with_label_values(&[queue]).inc();
            let _in_span = span.enter();
            tracing::error!("handler panicked; the delivery is retried, then dead-lettered");
            Err(HandleError::Retry(anyhow::anyhow!("handler panicked")))
        });
    settle(&config, &publisher, &raw, envelope, outcome)
        .instrument(span)
        .await;
}

/// Acks, schedules a retry or dead-letters, by the handler's outcome.
async fn settle(
    config: &ConsumerConfig,
    publisher: &Publisher,
    raw: &lapin::message::Delivery,
    envelope: Envelope,
    outcome: Result<(), HandleError>,
) {
    let queue = config.queue.as_str();
    match outcome {
        Ok(()) => {
            if raw.acker.ack(BasicAckOptions::default()).await.is_ok() {
                metrics::CONSUMED.with_label_values(&[queue, "ok"]).inc();
            }
        }
        Err(HandleError::Retry(error)) => {
            let delays = config.bus.settings().retry_delays_ms.len();
            let attempt = envelope.attempt as usize;
            if attempt < delays {
                tracing::warn!(error = format!("{error:#}"), "handler asked for a retry");
                let retry_queue = config
                    .spec
                    .retry_queue_name(config.bus.namespace(), attempt);
                let next = Envelope {
                    attempt: envelope.attempt + 1,
                    ..envelope
                };
                // Default exchange: the retry queue's own name routes to it.
                match publisher
                    .publish_envelope("", &retry_queue, &next, &raw.data)
                    .await
                {
                    Ok(()) => {
                        if raw.acker.ack(BasicAckOptions::default()).await.is_ok() {
                            metrics::CONSUMED
                                .with_label_values(&[queue, "retried"])
                                .inc();
                        }
                    }
                    Err(publish_error) => {
                        // Not re-published, so keep the original: back to the queue.
                        tracing::warn!(error = %publish_error, "retry could not be scheduled; requeueing");
                        let _ = raw
                            .acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                multiple: false,
                            })
                            .await;
                        metrics::CONSUMED
                            .with_label_values(&[queue, "requeued"])
                            .inc();
                    }
                }
            } else {
                tracing::error!(
                    error = format!("{error:#}"),
                    "retries exhausted; dead-lettering"
                );
                settle_dead(config, raw, "dead_lettered").await;
            }
        }
        Err(HandleError::Reject(error)) => {
            tracing::error!(
                error = format!("{error:#}"),
                "handler rejected the message; dead-lettering"
            );
            settle_dead(config, raw, "rejected").await;
        }
    }
}

/// nack without requeue: the queue's dead-letter exchange routes it to `{name}.dead`.
async fn settle_dead(config: &ConsumerConfig, raw: &lapin::message::Delivery, outcome: &str) {
    let nacked = raw
        .acker
        .nack(BasicNackOptions {
            requeue: false,
            multiple: false,
        })
        .await;
    if nacked.is_ok() {
        metrics::CONSUMED
            .with_label_values(&[&config.queue, outcome])
            .inc();
        metrics::DEAD_LETTERED
            .with_label_values(&[&config.queue])
            .inc();
    }
}
