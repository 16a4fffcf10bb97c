//! Announcements every process must see (a platform-wide setting changed), unlike work that
//! one consumer takes: each process binds a queue of its own — exclusive, server-named,
//! deleted with its channel — to the routing key, and hands each message's body to its
//! callback. Nothing here is durable: a message sent while a process was disconnected is lost
//! to it, so `on_subscribed` runs after every (re)subscription for the caller to fetch the
//! current state; the announcement only makes a change arrive at once.

use std::{sync::Arc, time::Duration};

use chukan_core::worker::{StopStage, Worker};
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::{
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use tokio::sync::watch;

use crate::Bus;

/// Longest pause before subscribing again after the broker went away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Subscribes this process to `routing_key` until stopped; see the module documentation.
pub fn subscribe(
    bus: Bus,
    name: &str,
    routing_key: &str,
    on_message: Arc<dyn Fn(Vec<u8>) + Send + Sync>,
    on_subscribed: Arc<dyn Fn() + Send + Sync>,
) -> Worker {
    let (stop_tx, mut stop) = watch::channel(false);
    let key = routing_key.to_owned();
    let label = name.to_owned();
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match listen(&bus, &key, &on_message, &on_subscribed, &mut stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(subscription = %label, error = %format!("{e:#}"), "broadcast subscription lost; subscribing again");
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    let abort = task.abort_handle();
    Worker {
        name: name.into(),
        stage: StopStage::Consumers,
        finished: async move {
            let _ = task.await;
            Ok(())
        }
        .boxed(),
        stop: Box::new(move || {
            async move {
                let _ = stop_tx.send(true);
                abort.abort();
            }
            .boxed()
        }),
    }
}

/// One subscription: `Ok` when asked to stop, `Err` when the channel or broker went away.
async fn listen(
    bus: &Bus,
    routing_key: &str,
    on_message: &Arc<dyn Fn(Vec<u8>) + Send + Sync>,
    on_subscribed: &Arc<dyn Fn() + Send + Sync>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let channel = bus.channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let name = queue.name().as_str().to_owned();
    channel
        .queue_bind(
            name.as_str().into(),
            bus.exchange().into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut deliveries = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    // Bound before fetching: a change made from here on arrives as a message.
    on_subscribed();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => on_message(delivery.data),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the broker ended the subscription"),
            },
        }
    }
}
