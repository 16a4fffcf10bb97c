//! Messages the self-information service writes to its outbox: the 自己情報提供 answer towards
//! the NWS and the answer's own provision record (情報提供等記録) for the audit service.

use chrono::{DateTime, Utc};
use chukan_mq::OutgoingMessage;
use chukan_proto::{AuditRecord, Message as _, NwsOutbound, SelfInfoAnswer};
use uuid::Uuid;

/// NwsOutbound{kind "selfinfo.answer"} on `nws.out`; the correlation id is the portal's
/// request id.
pub fn answer(tenant: &str, request_id: &str, answer: &SelfInfoAnswer) -> OutgoingMessage {
    let outbound = NwsOutbound {
        kind: crate::ANSWER_KIND.into(),
        sender_org: tenant.to_owned(),
        recipient: "NWS".into(),
        correlation_id: request_id.to_owned(),
        body: answer.encode_to_vec(),
    };
    OutgoingMessage::new(tenant, chukan_proto::NWS_OUT, outbound.encode_to_vec())
}

/// What the record of one answer says.
pub struct AuditFacts<'a> {
    pub tenant: &'a str,
    /// "selfinfo.answered" | "selfinfo.refused".
    pub event: &'a str,
    /// The single item asked for, else empty (the record is of the request as a whole).
    pub info_code: &'a str,
    /// 団体内統合宛名番号; empty when the code named nobody here.
    pub addressee: &'a str,
    pub requested_at: Option<DateTime<Utc>>,
    pub outcome: &'a str,
    pub at: DateTime<Utc>,
}

/// AuditRecord on `audit.record` (the bus message id is the record id, audit's idempotency
/// key), and its counting twin on `stats.exchange`.
pub fn audit(f: &AuditFacts<'_>) -> [OutgoingMessage; 2] {
    let record_id = Uuid::now_v7();
    let record = AuditRecord {
        record_id: record_id.to_string(),
        tenant: f.tenant.to_owned(),
        event: f.event.to_owned(),
        // The resident asked through the portal; the organisation is the provider.
        inquirer_org: String::new(),
        provider_org: f.tenant.to_owned(),
        info_code: f.info_code.to_owned(),
        addressee: f.addressee.to_owned(),
        requested_at_ms: f.requested_at.map_or(0, |t| t.timestamp_millis()),
        provided_at_ms: f.at.timestamp_millis(),
        non_disclosure: false,
        outcome: f.outcome.to_owned(),
        at_ms: f.at.timestamp_millis(),
        ..AuditRecord::default()
    };
    chukan_runtime::audit_messages(&record)
}
