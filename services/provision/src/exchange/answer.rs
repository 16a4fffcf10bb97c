//! What an answer to a provision request (情報提供) is made of: the permit check, the
//! point-in-time read (時点指定) of the replicas, the answer and the audit record, shared by the
//! automatic answer (自動応答), staff's manual answers and the expiry sweep.

use chrono::{DateTime, NaiveDate, Utc};
use chukan_crypto::{TenantKeys, Verifiers};
use chukan_mq::OutgoingMessage;
use chukan_proto::{
    AuditRecord, InquiryCondition, Message, NWS_OUT, NwsOutbound, ProvidedRecord, ProvisionAnswer,
    ProvisionPermit, SignedPermit,
};

use crate::{
    history::{self, HistoryFacts, PointInTime},
    seal::{self, SealedReplica},
    store::{AnswerStatus, ProvisionRow, StoredReplica},
};

/// Kind of the answer message on the NWS.
pub const ANSWER_KIND: &str = "provision.answer";

/// Replicas answering `when`, opened, among those public on `today` (公開開始日 ≦ today ≦
/// 公開終了日). History entries compete within dataset, version and parent record.
pub fn select_at(
    keys: &TenantKeys,
    tenant: &str,
    rows: Vec<StoredReplica>,
    when: PointInTime,
    today: NaiveDate,
) -> anyhow::Result<Vec<(StoredReplica, SealedReplica)>> {
    let mut opened = Vec::with_capacity(rows.len());
    for row in rows {
        if row.public_start.is_some_and(|s| s > today) || row.public_end.is_some_and(|e| e < today)
        {
            continue;
        }
        let sealed = seal::open_replica(keys, tenant, &row.kind, &row.key_bidx, &row.sealed)?;
        opened.push((row, sealed));
    }
    let facts: Vec<HistoryFacts> = opened
        .iter()
        .map(|(row, s)| HistoryFacts {
            group: format!(
                "{}|{}|{}",
                row.kind.dataset,
                row.kind.major_version,
                s.parent_record_key.as_deref().unwrap_or("")
            ),
            valid_from: s.valid_from,
            valid_to: s.valid_to,
            registered_at: row.registered_at,
        })
        .collect();
    let chosen = history::select(&facts, when);
    let mut slots: Vec<Option<(StoredReplica, SealedReplica)>> =
        opened.into_iter().map(Some).collect();
    Ok(chosen
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect())
}

/// The records of an answer, as the data standard layout's XML fragment.
pub fn provided_records(selected: &[(StoredReplica, SealedReplica)]) -> Vec<ProvidedRecord> {
    selected
        .iter()
        .map(|(row, s)| ProvidedRecord {
            dataset: row.kind.dataset.clone(),
            major_version: row.kind.major_version.clone(),
            payload_xml: chukan_replica_list::write_payload(&s.payload),
            valid_from: s.valid_from.map(|d| d.to_string()).unwrap_or_default(),
            valid_to: s.valid_to.map(|d| d.to_string()).unwrap_or_default(),
        })
        .collect()
}

/// 照会条件 → point in time: kind "1" = as of `from`, "2" = `from`..`to`, none = now.
pub fn when_of(condition: Option<&InquiryCondition>) -> Option<PointInTime> {
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    match condition {
        None => Some(PointInTime::Current),
        Some(c) => match c.kind.as_str() {
            "" if c.from.is_empty() && c.to.is_empty() => Some(PointInTime::Current),
            "1" => day(&c.from).map(PointInTime::On),
            "2" => match (day(&c.from), day(&c.to)) {
                (Some(from), Some(to)) if from <= to => Some(PointInTime::Period { from, to }),
                _ => None,
            },
            _ => None,
        },
    }
}

pub fn condition_json(c: Option<&InquiryCondition>) -> serde_json::Value {
    match c {
        None => serde_json::json!({}),
        Some(c) => serde_json::json!({
            "kind": c.kind, "year_kind": c.year_kind, "from": c.from, "to": c.to
        }),
    }
}

pub fn condition_from_json(v: &serde_json::Value) -> Option<InquiryCondition> {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    v.get("kind").map(|_| InquiryCondition {
        kind: s("kind"),
        year_kind: s("year_kind"),
        from: s("from"),
        to: s("to"),
    })
}

/// Why a permit is refused: stable code, Japanese reason, and what could be read of it.
#[derive(Debug)]
pub struct PermitRefusal {
    pub code: &'static str,
    pub reason: &'static str,
    /// The permit's fields when they could be decoded (not trusted: for the record only).
    pub permit: Option<Box<ProvisionPermit>>,
}

/// Verifies the NWS's signature and that the permit is for this provider, this request and
/// still valid.
pub fn verify_permit(
    verifiers: &Verifiers,
    signed: Option<&SignedPermit>,
    recipient: &str,
    correlation_id: &str,
    now_ms: i64,
) -> Result<ProvisionPermit, PermitRefusal> {
    let invalid = |permit| PermitRefusal {
        code: "invalid-permit",
        reason: "情報提供許可証を検証できません（署名・提供者・許可証番号のいずれかが一致しません）。",
        permit,
    };
    let Some(signed) = signed else {
        return Err(invalid(None));
    };
    let decoded = ProvisionPermit::decode(signed.permit.as_slice())
        .ok()
        .map(Box::new);
    let signing = chukan_proto::permit_signing_bytes(&signed.permit);
    if verifiers
        .verify(&signed.kid, &signing, &signed.signature)
        .is_err()
    {
        return Err(invalid(decoded));
    }
    let Some(permit) = decoded else {
        return Err(invalid(None));
    };
    let permit = *permit;
    if permit.provider_org != recipient || permit.permit_id != correlation_id {
        return Err(invalid(Some(Box::new(permit))));
    }
    if permit.expires_at_ms <= now_ms {
        return Err(PermitRefusal {
            code: "expired-permit",
            reason: "情報提供許可証の有効期限が過ぎています。",
            permit: Some(Box::new(permit)),
        });
    }
    Ok(permit)
}

pub fn at_ms(ms: i64) -> Option<DateTime<Utc>> {
    (ms > 0)
        .then(|| DateTime::from_timestamp_millis(ms))
        .flatten()
}

/// The answer message and its audit record, ready for the outbox.
pub struct Outgoing {
    pub answer: OutgoingMessage,
    /// The provision record and its counting twin.
    pub audit: [OutgoingMessage; 2],
}

/// Builds the NwsOutbound answer and the AuditRecord of one provision.
pub fn outgoing(
    tenant: &str,
    row: &ProvisionRow,
    answer: &ProvisionAnswer,
    event: &str,
    outcome: &str,
    addressee: &str,
    now: DateTime<Utc>,
) -> Outgoing {
    let out = NwsOutbound {
        kind: ANSWER_KIND.into(),
        sender_org: tenant.into(),
        recipient: "NWS".into(),
        correlation_id: row.permit_id.clone(),
        body: answer.encode_to_vec(),
    };
    let audit = AuditRecord {
        record_id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.into(),
        event: event.into(),
        inquirer_org: row.inquirer_org.clone(),
        provider_org: tenant.into(),
        affair_code: row.affair_code.clone(),
        procedure_code: row.procedure_code.clone(),
        info_code: row.info_code.clone(),
        serial_no: row.serial_no.clone(),
        branch_no: row.branch_no,
        permit_id: row.permit_id.clone(),
        addressee: addressee.into(),
        requested_at_ms: row.requested_at.map(|t| t.timestamp_millis()).unwrap_or(0),
        provided_at_ms: answer.provided_at_ms,
        non_disclosure: answer.provider_non_disclosure,
        outcome: outcome.into(),
        at_ms: now.timestamp_millis(),
        ..Default::default()
    };
    Outgoing {
        answer: OutgoingMessage::new(tenant, NWS_OUT, out.encode_to_vec()),
        audit: chukan_runtime::audit_messages(&audit),
    }
}

/// The answer of a provision that expired before staff answered it.
pub fn expired_answer(permit_id: &str, now: DateTime<Utc>) -> ProvisionAnswer {
    ProvisionAnswer {
        permit_id: permit_id.into(),
        status: AnswerStatus::Expired.as_str().into(),
        records: Vec::new(),
        reason_code: "request-expired".into(),
        reason: "有効期間内に情報提供できませんでした（照会要求の有効期限切れ）。".into(),
        provider_non_disclosure: false,
        manual: false,
        provided_at_ms: now.timestamp_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chukan_crypto::{Signer, generate_key_base64};

    fn cond(kind: &str, from: &str, to: &str) -> InquiryCondition {
        InquiryCondition {
            kind: kind.into(),
            year_kind: "0".into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn conditions_map_to_points_in_time() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(when_of(None), Some(PointInTime::Current));
        assert_eq!(
            when_of(Some(&cond("1", "2017-02-28", ""))),
            Some(PointInTime::On(d("2017-02-28")))
        );
        assert_eq!(
            when_of(Some(&cond("2", "2017-01-01", "2017-12-31"))),
            Some(PointInTime::Period {
                from: d("2017-01-01"),
                to: d("2017-12-31")
            })
        );
        assert_eq!(when_of(Some(&cond("2", "2018-01-01", "2017-12-31"))), None);
        assert_eq!(when_of(Some(&cond("1", "20170228", ""))), None);
        let c = cond("1", "2017-02-28", "");
        assert_eq!(condition_from_json(&condition_json(Some(&c))), Some(c));
    }

    fn signed(signer: &Signer, permit: &ProvisionPermit) -> SignedPermit {
        let bytes = permit.encode_to_vec();
        SignedPermit {
            signature: signer
                .sign(&chukan_proto::permit_signing_bytes(&bytes))
                .to_vec(),
            kid: signer.kid().into(),
            permit: bytes,
        }
    }

    #[test]
    fn permits_are_checked_for_signature_provider_id_and_expiry() {
        let nws = Signer::from_seed_base64("nws-1", &generate_key_base64()).unwrap();
        let other = Signer::from_seed_base64("nws-1", &generate_key_base64()).unwrap();
        let v = Verifiers::parse_entries(&[format!("nws-1={}", nws.public_key_base64())]).unwrap();
        let permit = ProvisionPermit {
            permit_id: "p1".into(),
            provider_org: "1310010000000001".into(),
            expires_at_ms: 2_000,
            ..ProvisionPermit::default()
        };
        let ok = signed(&nws, &permit);
        assert!(verify_permit(&v, Some(&ok), "1310010000000001", "p1", 1_000).is_ok());
        let code = |r: Result<ProvisionPermit, PermitRefusal>| r.unwrap_err().code;
        assert_eq!(
            code(verify_permit(
                &v,
                Some(&ok),
                "2710000000000002",
                "p1",
                1_000
            )),
            "invalid-permit"
        );
        assert_eq!(
            code(verify_permit(
                &v,
                Some(&ok),
                "1310010000000001",
                "p2",
                1_000
            )),
            "invalid-permit"
        );
        assert_eq!(
            code(verify_permit(
                &v,
                Some(&ok),
                "1310010000000001",
                "p1",
                2_000
            )),
            "expired-permit"
        );
        let forged = signed(&other, &permit);
        assert_eq!(
            code(verify_permit(
                &v,
                Some(&forged),
                "1310010000000001",
                "p1",
                1_000
            )),
            "invalid-permit"
        );
        assert_eq!(
            code(verify_permit(&v, None, "1310010000000001", "p1", 1_000)),
            "invalid-permit"
        );
    }
}
