//! The NWS link's health as relay's own sends show it (稼動状態 "nws-link"): a send the NWS
//! took makes it `ok`, one that did not reach it (timeout, refused connection, 5xx) makes it
//! `degraded`. Each change — never each send — is written to relay's outbox as a
//! `status.component` for admin's operating status, so it survives a crash like any message.

use std::sync::{Arc, Mutex};

use chukan_core::Clock;
use chukan_mq::outbox::OutboxHandle;

use crate::{SCHEMA, outbound::Outcome};

/// The component name in the operating status.
pub const COMPONENT: &str = "nws-link";

pub struct LinkHealth {
    db: chukan_db::Pool,
    outbox: OutboxHandle,
    clock: Arc<dyn Clock>,
    /// `None` until the first send: nothing is known (and nothing announced) before.
    healthy: Mutex<Option<bool>>,
}

impl LinkHealth {
    pub fn new(db: chukan_db::Pool, outbox: OutboxHandle, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            db,
            outbox,
            clock,
            healthy: Mutex::new(None),
        })
    }

    /// Notes a send's outcome; announces the link's health when it changed.
    pub(crate) fn observe(self: &Arc<Self>, outcome: Outcome) {
        let healthy = match outcome {
            Outcome::Sent | Outcome::Duplicate => true,
            Outcome::Retry => false,
            // The NWS answered (it refused one message): no news of the link.
            Outcome::Rejected => return,
        };
        {
            let mut known = self
                .healthy
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *known == Some(healthy) {
                return;
            }
            *known = Some(healthy);
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.announce(healthy).await {
                // Forget the state so the next send announces it again.
                *this
                    .healthy
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                tracing::warn!(error = %format!("{e:#}"), "NWS link status not announced");
            }
        });
    }

    async fn announce(&self, healthy: bool) -> anyhow::Result<()> {
        let detail = if healthy {
            "情報提供ネットワークシステムとの送受信は正常です。"
        } else {
            "情報提供ネットワークシステムに送信できません（再送を続けています）。"
        };
        let message =
            chukan_runtime::component_status(COMPONENT, healthy, detail, self.clock.now());
        let client = self.db.get().await?;
        chukan_mq::outbox::enqueue(&client, SCHEMA, &message).await?;
        self.outbox.wake();
        tracing::info!(healthy, "NWS link status changed");
        Ok(())
    }
}
