//! Sending a notice: its `notice.send`, its `notice.sent` audit event and the dispatched mark
//! go into one transaction (the caller's), so the notice leaves exactly once.

use chrono::{DateTime, Utc};
use chukan_proto::NoticeContent;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::{outgoing, store};

pub struct Dispatch<'a> {
    pub tenant: &'a str,
    pub notice_id: Uuid,
    pub code: &'a str,
    pub addressee: &'a str,
    pub content: NoticeContent,
    pub accepted_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// Writes the send and the audit event to the outbox and marks the notice dispatched.
pub async fn dispatch(
    tx: &impl GenericClient,
    d: Dispatch<'_>,
) -> Result<(), tokio_postgres::Error> {
    let send = outgoing::notice_send(d.tenant, d.notice_id, d.code, d.content, d.now);
    let audit = outgoing::audit(
        d.tenant,
        "notice.sent",
        d.addressee,
        d.accepted_at,
        "sent",
        d.now,
    );
    let (sent, audited, marked) = futures_util::join!(
        chukan_mq::outbox::enqueue(tx, crate::SCHEMA, &send),
        chukan_mq::outbox::enqueue_all(tx, crate::SCHEMA, &audit),
        store::mark_dispatched(tx, d.notice_id, d.now, send.id),
    );
    sent?;
    audited?;
    marked?;
    Ok(())
}
