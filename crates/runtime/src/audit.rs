//! The messages one exchange event sends: its provision record (`audit.record`, with the
//! resident, sealed by the audit service) and that record's counting twin for the statistics
//! service (`stats.exchange`, without the resident). Every service that records an exchange
//! builds them here, so no record is ever counted differently from how it is logged.

use chukan_mq::OutgoingMessage;
use chukan_proto::{AUDIT_RECORD, AuditRecord, ExchangeStat, Message as _, STATS_EXCHANGE};
use uuid::Uuid;

/// `record` on `audit.record` and its [`ExchangeStat`] on `stats.exchange`, for the caller's
/// outbox (`chukan_mq::outbox::enqueue_all`). The audit message's bus id is the record id,
/// the audit service's idempotency key.
pub fn audit_messages(record: &AuditRecord) -> [OutgoingMessage; 2] {
    let mut audit = OutgoingMessage::new(&record.tenant, AUDIT_RECORD, record.encode_to_vec());
    if let Ok(id) = Uuid::parse_str(&record.record_id) {
        audit.id = id;
    }
    let stat = OutgoingMessage::new(
        &record.tenant,
        STATS_EXCHANGE,
        ExchangeStat::of(record).encode_to_vec(),
    );
    [audit, stat]
}
