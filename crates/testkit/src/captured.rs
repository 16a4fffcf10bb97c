//! A test queue that records everything published on some routing keys: the tests' view of
//! what a service sent (towards the NWS, to the audit log, …).

use std::sync::{Arc, Mutex, PoisonError};

use chukan_mq::{Bus, Delivery, HandleError, QueueSpec, consumer::ConsumerHandle};
use futures_util::future::BoxFuture;

/// Everything published on some routing keys, kept in arrival order.
pub struct Captured {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    handle: ConsumerHandle,
}

impl Captured {
    /// Declares `test.{name}` bound to `bindings` and starts recording. Start it before the
    /// service under test: outboxes publish mandatory, so an unbound key would stall them.
    pub async fn start(bus: &Bus, name: &str, bindings: &[&str]) -> anyhow::Result<Captured> {
        let spec = QueueSpec::new(format!("test.{name}"), bindings);
        bus.declare_queue(&spec).await?;
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let sink = deliveries.clone();
        let handler = move |d: Delivery| -> BoxFuture<'static, Result<(), HandleError>> {
            sink.lock().unwrap_or_else(PoisonError::into_inner).push(d);
            Box::pin(async { Ok(()) })
        };
        let handle = chukan_mq::consumer::start(bus, &spec, "test", 64, Arc::new(handler));
        Ok(Captured { deliveries, handle })
    }

    pub fn count(&self) -> usize {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn stop(self) {
        self.handle.stop().await;
    }
}
