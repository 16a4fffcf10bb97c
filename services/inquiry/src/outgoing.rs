//! Messages the inquiry service writes to its outbox: the 情報照会要求 towards the NWS and
//! the audit events (情報提供等記録) for the audit service.

use chrono::{DateTime, Utc};
use chukan_mq::OutgoingMessage;
use chukan_proto::{AuditRecord, InquiryCondition, InquiryRequest, Message, NwsOutbound};
use uuid::Uuid;

/// What an inquiry request carries, however it was entered.
pub struct Request<'a> {
    pub tenant: &'a str,
    pub id: Uuid,
    pub serial_no: &'a str,
    pub branch_no: i32,
    pub code: &'a str,
    pub affair_code: &'a str,
    pub procedure_code: &'a str,
    pub info_code: &'a str,
    pub provider_org: &'a str,
    pub condition: InquiryCondition,
    pub non_disclosure: bool,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// NwsOutbound{kind "inquiry.request"} on `nws.out`; the correlation id is the inquiry id.
pub fn inquiry_request(r: &Request<'_>) -> OutgoingMessage {
    let body = InquiryRequest {
        serial_no: r.serial_no.to_owned(),
        branch_no: r.branch_no,
        inquirer_code: r.code.to_owned(),
        affair_code: r.affair_code.to_owned(),
        procedure_code: r.procedure_code.to_owned(),
        info_code: r.info_code.to_owned(),
        provider_org: r.provider_org.to_owned(),
        condition: Some(r.condition.clone()),
        inquirer_non_disclosure: r.non_disclosure,
        requested_at_ms: r.requested_at.timestamp_millis(),
        expires_at_ms: r.expires_at.timestamp_millis(),
    };
    let outbound = NwsOutbound {
        kind: "inquiry.request".into(),
        sender_org: r.tenant.to_owned(),
        recipient: "NWS".into(),
        correlation_id: r.id.to_string(),
        body: body.encode_to_vec(),
    };
    OutgoingMessage::new(r.tenant, chukan_proto::NWS_OUT, outbound.encode_to_vec())
}

/// The audit side of an exchange event of this tenant (the inquirer).
pub struct AuditFacts<'a> {
    pub tenant: &'a str,
    pub event: &'a str,
    pub provider_org: &'a str,
    pub affair_code: &'a str,
    pub procedure_code: &'a str,
    pub info_code: &'a str,
    pub serial_no: &'a str,
    pub branch_no: i32,
    pub permit_id: &'a str,
    pub addressee: &'a str,
    pub requested_at: DateTime<Utc>,
    pub provided_at: Option<DateTime<Utc>>,
    pub non_disclosure: bool,
    pub outcome: &'a str,
    pub at: DateTime<Utc>,
}

/// AuditRecord on `audit.record`, and its counting twin on `stats.exchange`.
pub fn audit(f: &AuditFacts<'_>) -> [OutgoingMessage; 2] {
    let record_id = Uuid::now_v7();
    let record = AuditRecord {
        record_id: record_id.to_string(),
        tenant: f.tenant.to_owned(),
        event: f.event.to_owned(),
        inquirer_org: f.tenant.to_owned(),
        provider_org: f.provider_org.to_owned(),
        affair_code: f.affair_code.to_owned(),
        procedure_code: f.procedure_code.to_owned(),
        info_code: f.info_code.to_owned(),
        serial_no: f.serial_no.to_owned(),
        branch_no: f.branch_no,
        permit_id: f.permit_id.to_owned(),
        addressee: f.addressee.to_owned(),
        requested_at_ms: f.requested_at.timestamp_millis(),
        provided_at_ms: f.provided_at.map_or(0, |t| t.timestamp_millis()),
        non_disclosure: f.non_disclosure,
        outcome: f.outcome.to_owned(),
        at_ms: f.at.timestamp_millis(),
        ..Default::default()
    };
    chukan_runtime::audit_messages(&record)
}
