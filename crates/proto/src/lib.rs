//! Bus and NWS message contracts compiled from `proto/chukan/v1/*.proto`.

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/chukan.v1.rs"));
}

pub use prost::Message;
pub use v1::*;

/// Routing key relay publishes an inbound message of `kind` on: `nws.in.<domain>`, where the
/// domain is the part of the kind before the first dot ("code.acquired" → "nws.in.code").
pub fn inbound_routing_key(kind: &str) -> String {
    let domain = kind.split('.').next().unwrap_or(kind);
    format!("nws.in.{domain}")
}

/// Routing key of every outbound NWS message.
pub const NWS_OUT: &str = "nws.out";
/// Routing keys of the platform's own events (see platform.proto).
pub const CODE_LINKED: &str = "code.linked";
pub const FLAGS_CHANGED: &str = "flags.changed";
pub const DEPARTMENT_CHANGED: &str = "department.changed";
pub const AUDIT_RECORD: &str = "audit.record";
/// The tenant header of a message that belongs to the platform, not to an organisation
/// (calendar, operating status).
pub const PLATFORM_TENANT: &str = "platform";
/// Planned outages announced by platform operators (CalendarChanged), to every process.
pub const CALENDAR_CHANGED: &str = "calendar.changed";
/// Admin's request/reply queue answering the current calendar (CalendarRequest → CalendarChanged).
pub const CALENDAR_RPC: &str = "admin.calendar-rpc";
/// A component's health changed (ComponentStatus), for admin's operating status.
pub const STATUS_COMPONENT: &str = "status.component";
/// The operating status changed (StatusChanged).
pub const STATUS_CHANGED: &str = "status.changed";
/// Exchange events counted by the statistics service (ExchangeStat).
pub const STATS_EXCHANGE: &str = "stats.exchange";
/// Replica counts provision announces (ReplicaCountChanged), for the statistics service.
pub const STATS_REPLICA_COUNT: &str = "stats.replica-count";

/// Validity of an inquiry request and of its provision permit (DOMAIN §6: 30 days).
pub const REQUEST_VALIDITY_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// The bytes the NWS signs for a provision permit (情報提供許可証): a domain tag, so a permit
/// signature can never be replayed as an envelope signature or the other way round.
pub fn permit_signing_bytes(permit: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + permit.len());
    out.extend_from_slice(b"chukan-provision-permit-v1\n");
    out.extend_from_slice(permit);
    out
}

/// The bytes an envelope's signature covers: a fixed, versioned layout of every field but
/// `kid` and `signature`, so both parties compute it the same way whatever their encoder.
pub fn signing_bytes(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + env.body.len());
    out.extend_from_slice(b"chukan-nws-envelope-v1\n");
    for field in [
        env.message_id.as_str(),
        env.kind.as_str(),
        env.sender.as_str(),
        env.recipient.as_str(),
    ] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&env.timestamp_ms.to_be_bytes());
    for field in [
        env.correlation_id.as_bytes(),
        env.traceparent.as_bytes(),
        &env.body,
    ] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

impl ExchangeStat {
    /// The counting twin of `record`: its codes, outcome and times, without the resident,
    /// the permit or the serial number.
    pub fn of(record: &AuditRecord) -> Self {
        ExchangeStat {
            tenant: record.tenant.clone(),
            event: record.event.clone(),
            inquirer_org: record.inquirer_org.clone(),
            provider_org: record.provider_org.clone(),
            affair_code: record.affair_code.clone(),
            procedure_code: record.procedure_code.clone(),
            info_code: record.info_code.clone(),
            outcome: record.outcome.clone(),
            requested_at_ms: record.requested_at_ms,
            at_ms: if record.provided_at_ms > 0 {
                record.provided_at_ms
            } else {
                record.at_ms
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            message_id: "m1".into(),
            kind: "code.acquire".into(),
            sender: "0123456789012345".into(),
            recipient: "NWS".into(),
            timestamp_ms: 1,
            correlation_id: "c1".into(),
            body: vec![1, 2, 3],
            traceparent: String::new(),
            kid: "k".into(),
            signature: vec![9; 64],
        }
    }

    #[test]
    fn signing_bytes_ignore_kid_and_signature_but_cover_everything_else() {
        let a = sample();
        let mut b = sample();
        b.kid = "other".into();
        b.signature = vec![];
        assert_eq!(signing_bytes(&a), signing_bytes(&b));
        let mut c = sample();
        c.body = vec![1, 2, 4];
        assert_ne!(signing_bytes(&a), signing_bytes(&c));
        let mut d = sample();
        d.timestamp_ms = 2;
        assert_ne!(signing_bytes(&a), signing_bytes(&d));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = sample();
        a.message_id = "ab".into();
        a.kind = "c".into();
        let mut b = sample();
        b.message_id = "a".into();
        b.kind = "bc".into();
        assert_ne!(signing_bytes(&a), signing_bytes(&b));
    }

    #[test]
    fn envelope_round_trips_through_protobuf() {
        let env = sample();
        let decoded = Envelope::decode(env.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, env);
        assert_eq!(inbound_routing_key("code.acquired"), "nws.in.code");
    }
}
