//! Messages the notice service writes to its outbox: `notice.send` and `notice.status-check`
//! towards the NWS (through relay, on `nws.out`) and the audit events for the audit service.

use chrono::{DateTime, Utc};
use chukan_mq::OutgoingMessage;
use chukan_proto::{
    AuditRecord, Message, NoticeContent, NoticeSend, NoticeStatusCheck, NwsOutbound,
};
use uuid::Uuid;

fn to_nws(tenant: &str, kind: &str, correlation_id: Uuid, body: Vec<u8>) -> OutgoingMessage {
    let outbound = NwsOutbound {
        kind: kind.into(),
        sender_org: tenant.to_owned(),
        recipient: "NWS".into(),
        correlation_id: correlation_id.to_string(),
        body,
    };
    OutgoingMessage::new(tenant, chukan_proto::NWS_OUT, outbound.encode_to_vec())
}

/// NwsOutbound{kind "notice.send"}; the correlation id is the notice id.
pub fn notice_send(
    tenant: &str,
    notice_id: Uuid,
    code: &str,
    content: NoticeContent,
    sent_at: DateTime<Utc>,
) -> OutgoingMessage {
    let body = NoticeSend {
        code: code.to_owned(),
        content: Some(content),
        sent_at_ms: sent_at.timestamp_millis(),
    };
    to_nws(tenant, "notice.send", notice_id, body.encode_to_vec())
}

/// NwsOutbound{kind "notice.status-check"}; the correlation id is the check id.
pub fn status_check(tenant: &str, check_id: Uuid, notice_ids: &[Uuid]) -> OutgoingMessage {
    let body = NoticeStatusCheck {
        notice_ids: notice_ids.iter().map(Uuid::to_string).collect(),
    };
    to_nws(
        tenant,
        "notice.status-check",
        check_id,
        body.encode_to_vec(),
    )
}

/// AuditRecord on `audit.record` for a notice event of this tenant ("notice.sent",
/// "notice.status-received"), and its counting twin on `stats.exchange`; `outcome` is the
/// notice's state.
pub fn audit(
    tenant: &str,
    event: &str,
    addressee: &str,
    requested_at: DateTime<Utc>,
    outcome: &str,
    at: DateTime<Utc>,
) -> [OutgoingMessage; 2] {
    let record_id = Uuid::now_v7();
    let record = AuditRecord {
        record_id: record_id.to_string(),
        tenant: tenant.to_owned(),
        event: event.to_owned(),
        inquirer_org: tenant.to_owned(),
        addressee: addressee.to_owned(),
        requested_at_ms: requested_at.timestamp_millis(),
        outcome: outcome.to_owned(),
        at_ms: at.timestamp_millis(),
        ..Default::default()
    };
    chukan_runtime::audit_messages(&record)
}
