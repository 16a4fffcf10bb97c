//! A component's health for admin's operating status (稼動状態, `status.component`), built
//! alike by every service that announces one: relay (the NWS link) and provision (the
//! nightly batch), each on a change only, through its own outbox.

use chukan_mq::OutgoingMessage;
use chukan_proto::{ComponentStatus, Message as _, PLATFORM_TENANT, STATUS_COMPONENT};

/// `component`'s health (`ok` or `degraded`) with a short Japanese `detail`, as of `at`.
pub fn component_status(
    component: &str,
    healthy: bool,
    detail: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> OutgoingMessage {
    let event = ComponentStatus {
        component: component.into(),
        status: if healthy { "ok" } else { "degraded" }.into(),
        detail: detail.into(),
        at_ms: at.timestamp_millis(),
    };
    OutgoingMessage::new(PLATFORM_TENANT, STATUS_COMPONENT, event.encode_to_vec())
}
