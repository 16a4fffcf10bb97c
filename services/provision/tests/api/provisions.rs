//! Provision requests (情報提供要求) from the NWS: automatic answers from the replicas, residents'
//! flags, the manual-answer queue, refused and expired permits, exactly-once answers.

use std::time::Duration;

use chukan_crypto::Signer;
use chukan_mq::OutgoingMessage;
use chukan_proto::{
    AuditRecord, CODE_LINKED, CodeLinked, FlagsChanged, InquiryCondition, Message, NwsInbound,
    NwsOutbound, ProvisionAnswer, ProvisionPermit, ProvisionRequest, SignedPermit,
};
use chukan_testkit::wait_until;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

const ADDRESSEE: &str = "000000000012345";
const CODE: &str = "PCODE0000000000000001";
const AFFAIR: &str = "JM00000000000001";
const PROCEDURE: &str = "JT00000000000001";
const INQUIRER: &str = "4010000000000004";
const DEADLINE: Duration = Duration::from_secs(20);

fn record(rid: &str, key: &str, m: &str, from: &str, to: Option<&str>) -> serde_json::Value {
    let mut items = vec![
        json!({"code": "I0001", "value": m, "version": "0002", "updated": "2017-03-01"}),
        json!({"code": "I0002", "value": from}),
    ];
    match to {
        Some(t) => items.push(json!({"code": "I0003", "value": t})),
        None => items.push(json!({"code": "I0003", "null_reason": "NotAcceptable"})),
    }
    json!({
        "operation": "register", "record_id": rid, "integrated_addressee_number": ADDRESSEE,
        "info_code": MEDICAL, "dataset": "0101", "record_key": key, "major_version": "0002",
        "items": items
    })
}

/// Enhancement #14's fixture: member number 11111 lost on 2017-02-28, 2222 acquired that day;
/// and the resident's code linked as the code service announces it.
async fn resident_with_switch(app: &TestApp, tenant: &str) {
    let (status, r) = app
        .post(
            tenant,
            "/v1/replicas",
            json!({"records": [
                record("R1", "K1", "11111", "2010-04-01", Some("2017-02-28")),
                record("R2", "K2", "2222", "2017-02-28", None),
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    link(app, tenant, ADDRESSEE, CODE).await;
}

async fn publish(app: &TestApp, msg: &OutgoingMessage) {
    app.env
        .ctx
        .bus
        .publisher()
        .await
        .unwrap()
        .publish(msg)
        .await
        .unwrap();
}

/// code.linked as the code service publishes it; waits until provision holds the link.
async fn link(app: &TestApp, tenant: &str, addressee: &str, code: &str) {
    let before = app.count_rows(tenant, "code_links").await;
    let event = CodeLinked {
        tenant: tenant.into(),
        addressee: addressee.into(),
        code: code.into(),
        linked_at_ms: app.clock_ms(),
    };
    publish(
        app,
        &OutgoingMessage::new(tenant, CODE_LINKED, event.encode_to_vec()),
    )
    .await;
    wait_until(DEADLINE, "code link kept", || async {
        app.count_rows(tenant, "code_links").await > before
    })
    .await
    .unwrap();
}

impl TestApp {
    fn clock_ms(&self) -> i64 {
        use chukan_core::Clock as _;
        self.clock.now().timestamp_millis()
    }

    /// A valid permit for ORG_A's resident, No. 31, issued now.
    fn permit(&self) -> ProvisionPermit {
        let now = self.clock_ms();
        ProvisionPermit {
            permit_id: Uuid::now_v7().to_string(),
            inquirer_org: INQUIRER.into(),
            provider_org: ORG_A.into(),
            affair_code: AFFAIR.into(),
            procedure_code: PROCEDURE.into(),
            info_code: MEDICAL.into(),
            provider_code: CODE.into(),
            issued_at_ms: now,
            expires_at_ms: now + chukan_proto::REQUEST_VALIDITY_MS,
            serial_no: "S0000000001".into(),
            branch_no: 1,
        }
    }

    /// Publishes a provision request as relay hands it over; returns the bus message.
    async fn request_signed(
        &self,
        recipient: &str,
        permit: &ProvisionPermit,
        condition: InquiryCondition,
        signer: &Signer,
    ) -> OutgoingMessage {
        let bytes = permit.encode_to_vec();
        let signed = SignedPermit {
            signature: signer
                .sign(&chukan_proto::permit_signing_bytes(&bytes))
                .to_vec(),
            kid: signer.kid().into(),
            permit: bytes,
        };
        let req = ProvisionRequest {
            permit: Some(signed),
            condition: Some(condition),
            inquirer_non_disclosure: false,
            requested_at_ms: permit.issued_at_ms,
        };
        let inbound = NwsInbound {
            kind: "provision.request".into(),
            recipient_org: recipient.into(),
            correlation_id: permit.permit_id.clone(),
            body: req.encode_to_vec(),
            nws_message_id: Uuid::now_v7().to_string(),
        };
        let msg = OutgoingMessage::new(recipient, "nws.in.provision", inbound.encode_to_vec());
        publish(self, &msg).await;
        msg
    }

    async fn request(&self, permit: &ProvisionPermit, condition: InquiryCondition) {
        let nws = self.nws.clone();
        self.request_signed(ORG_A, permit, condition, &nws).await;
    }

    fn answers(&self) -> Vec<ProvisionAnswer> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.routing_key.ends_with(chukan_proto::NWS_OUT))
            .map(|d| {
                let out = NwsOutbound::decode(d.body.as_slice()).unwrap();
                assert_eq!(out.kind, "provision.answer");
                assert_eq!(out.recipient, "NWS");
                assert_eq!(out.sender_org, d.tenant);
                let a = ProvisionAnswer::decode(out.body.as_slice()).unwrap();
                assert_eq!(out.correlation_id, a.permit_id);
                a
            })
            .collect()
    }

    fn audits(&self) -> Vec<AuditRecord> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.routing_key.ends_with(chukan_proto::AUDIT_RECORD))
            .map(|d| AuditRecord::decode(d.body.as_slice()).unwrap())
            .collect()
    }

    /// The counting twins of the audit records (stats.exchange).
    fn stats(&self) -> Vec<chukan_proto::ExchangeStat> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.routing_key.ends_with(chukan_proto::STATS_EXCHANGE))
            .map(|d| chukan_proto::ExchangeStat::decode(d.body.as_slice()).unwrap())
            .collect()
    }

    fn flag_events(&self) -> Vec<FlagsChanged> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.routing_key.ends_with(chukan_proto::FLAGS_CHANGED))
            .map(|d| FlagsChanged::decode(d.body.as_slice()).unwrap())
            .collect()
    }

    /// The one answer to `permit_id`, once it has arrived.
    async fn answer_for(&self, permit_id: &str) -> ProvisionAnswer {
        wait_until(DEADLINE, "provision answer", || async {
            self.answers().iter().any(|a| a.permit_id == permit_id)
        })
        .await
        .unwrap();
        let mut mine: Vec<_> = self
            .answers()
            .into_iter()
            .filter(|a| a.permit_id == permit_id)
            .collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        mine.remove(0)
    }

    async fn audit_for(&self, permit_id: &str, event: &str) -> AuditRecord {
        wait_until(DEADLINE, "audit record", || async {
            self.audits()
                .iter()
                .any(|a| a.permit_id == permit_id && a.event == event)
        })
        .await
        .unwrap();
        self.audits()
            .into_iter()
            .find(|a| a.permit_id == permit_id && a.event == event)
            .unwrap()
    }

    async fn wait_state(&self, tenant: &str, permit_id: &str, state: &str) -> serde_json::Value {
        let path = format!("/v1/provisions/{permit_id}");
        wait_until(DEADLINE, "provision state", || async {
            let (status, p) = self.get(tenant, &path).await;
            status == 200 && p["state"] == state
        })
        .await
        .unwrap();
        self.get(tenant, &path).await.1
    }

    /// Sets a resident's flags, the number in the body (PUT /v1/flags).
    async fn put_flags(
        &self,
        tenant: &str,
        addressee: &str,
        mut body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        body["integrated_addressee_number"] = json!(addressee);
        let res = self
            .api
            .http
            .put(self.api.url("/v1/flags"))
            .bearer_auth(self.token(tenant))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A resident's flags, the number in the body (POST /v1/flags/query).
    async fn flags(&self, tenant: &str, addressee: &str) -> (u16, serde_json::Value) {
        self.post(
            tenant,
            "/v1/flags/query",
            json!({ "integrated_addressee_number": addressee }),
        )
        .await
    }

    /// Deliveries of nws.in.provision handled so far (acked).
    fn handled(&self) -> u64 {
        chukan_mq::metrics::consumed(
            &chukan_provision::nws_in_queue().queue_name(self.env.ctx.bus.namespace()),
            "ok",
        )
    }
}

fn on(day: &str) -> InquiryCondition {
    InquiryCondition {
        kind: "1".into(),
        year_kind: "0".into(),
        from: day.into(),
        to: String::new(),
    }
}

fn period(from: &str, to: &str) -> InquiryCondition {
    InquiryCondition {
        kind: "2".into(),
        year_kind: "0".into(),
        from: from.into(),
        to: to.into(),
    }
}

fn members(a: &ProvisionAnswer) -> Vec<String> {
    a.records
        .iter()
        .map(|r| {
            let xml = &r.payload_xml;
            let start = xml.find("<I0001").unwrap();
            let open = start + xml[start..].find('>').unwrap() + 1;
            let close = open + xml[open..].find('<').unwrap();
            xml[open..close].to_string()
        })
        .collect()
}

#[actix_rt::test]
async fn the_automatic_answer_gives_the_records_valid_at_the_point_in_time() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;

    // 2017-02-28: the same-day switch answers 2222 only.
    let p = app.permit();
    app.request(&p, on("2017-02-28")).await;
    let a = app.answer_for(&p.permit_id).await;
    assert_eq!(a.status, "provided");
    assert_eq!(members(&a), vec!["2222"]);
    assert_eq!(a.records[0].dataset, "0101");
    assert_eq!(a.records[0].major_version, "0002");
    assert_eq!(a.records[0].valid_from, "2017-02-28");
    assert_eq!(a.records[0].valid_to, "");
    assert!(!a.manual && !a.provider_non_disclosure);

    let p2 = app.permit();
    app.request(&p2, on("2017-02-27")).await;
    let a2 = app.answer_for(&p2.permit_id).await;
    assert_eq!(members(&a2), vec!["11111"]);
    assert_eq!(a2.records[0].valid_to, "2017-02-28");

    let p3 = app.permit();
    app.request(&p3, period("2017-01-01", "2017-12-31")).await;
    assert_eq!(
        members(&app.answer_for(&p3.permit_id).await),
        vec!["11111", "2222"]
    );

    // The provider's record of the provision (番号法 §23) and the audit event.
    let audit = app.audit_for(&p.permit_id, "provision.made").await;
    assert_eq!(audit.tenant, ORG_A);
    assert_eq!(audit.provider_org, ORG_A);
    assert_eq!(audit.inquirer_org, INQUIRER);
    assert_eq!(audit.addressee, ADDRESSEE);
    assert_eq!(audit.info_code, MEDICAL);
    assert_eq!(audit.procedure_code, PROCEDURE);
    assert_eq!(audit.serial_no, "S0000000001");
    assert_eq!(audit.outcome, "provided");
    assert!(audit.provided_at_ms > 0 && audit.requested_at_ms > 0);
    assert!(Uuid::parse_str(&audit.record_id).is_ok());
    let (status, row) = app
        .get(ORG_A, &format!("/v1/provisions/{}", p.permit_id))
        .await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["state"], "answered");
    assert_eq!(row["addressee"], ADDRESSEE);
    assert_eq!(row["records"], 1);
    assert_eq!(row["manual"], false);
}

#[actix_rt::test]
async fn an_unknown_code_is_answered_with_no_record() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    let mut p = app.permit();
    p.provider_code = "PCODE-UNKNOWN".into();
    app.request(&p, on("2017-02-28")).await;
    let a = app.answer_for(&p.permit_id).await;
    assert_eq!(a.status, "provided");
    assert!(a.records.is_empty());
    assert_eq!(a.reason_code, "no-record");
    let audit = app.audit_for(&p.permit_id, "provision.made").await;
    assert_eq!(audit.outcome, "no-record");
    assert_eq!(audit.addressee, "");
}

#[actix_rt::test]
async fn invalid_permits_are_refused() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    // Signed by a key that is not the NWS's (same key id).
    let forger =
        Signer::from_seed_base64("nws-test", &chukan_crypto::generate_key_base64()).unwrap();
    let forged = app.permit();
    app.request_signed(ORG_A, &forged, on("2017-02-28"), &forger)
        .await;
    // A genuine permit for another provider, delivered to ORG_A.
    let mut elsewhere = app.permit();
    elsewhere.provider_org = ORG_B.into();
    app.request(&elsewhere, on("2017-02-28")).await;
    // Expired: issued 31 days ago.
    let mut old = app.permit();
    old.issued_at_ms -= 31 * 24 * 3600 * 1000;
    old.expires_at_ms = old.issued_at_ms + chukan_proto::REQUEST_VALIDITY_MS;
    app.request(&old, on("2017-02-28")).await;

    for (permit, code) in [
        (&forged, "invalid-permit"),
        (&elsewhere, "invalid-permit"),
        (&old, "expired-permit"),
    ] {
        let a = app.answer_for(&permit.permit_id).await;
        assert_eq!(a.status, "refused", "{code}");
        assert_eq!(a.reason_code, code);
        assert!(a.records.is_empty());
        assert!(!a.reason.is_empty());
        let audit = app.audit_for(&permit.permit_id, "provision.refused").await;
        assert_eq!(audit.outcome, code);
        assert_eq!(audit.addressee, "", "a refused permit names nobody");
    }
    let (_, row) = app
        .get(ORG_A, &format!("/v1/provisions/{}", old.permit_id))
        .await;
    assert_eq!(row["state"], "refused");
    assert_eq!(row["reason_code"], "expired-permit");
}

#[actix_rt::test]
async fn a_redelivered_request_is_answered_once() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    let p = app.permit();
    let nws = app.nws.clone();
    let first = app.request_signed(ORG_A, &p, on("2017-02-28"), &nws).await;
    app.answer_for(&p.permit_id).await;
    // The same bus message again, and the same permit under a new bus message id.
    publish(&app, &first).await;
    app.request(&p, on("2017-02-28")).await;
    wait_until(DEADLINE, "redeliveries handled", || async {
        app.handled() >= 3
    })
    .await
    .unwrap();
    // A later request's answer comes after anything the duplicates could have enqueued.
    let later = app.permit();
    app.request(&later, on("2017-02-28")).await;
    app.answer_for(&later.permit_id).await;
    app.state.outbox.flush().await.unwrap();
    assert_eq!(
        app.answers()
            .iter()
            .filter(|a| a.permit_id == p.permit_id)
            .count(),
        1
    );
    assert_eq!(
        app.audits()
            .iter()
            .filter(|a| a.permit_id == p.permit_id)
            .count(),
        1
    );
    // Every provision record has its counting twin for the statistics, and only one.
    wait_until(DEADLINE, "a stats twin per audit record", || async {
        app.stats().len() == app.audits().len()
    })
    .await
    .unwrap();
    let mut twins: Vec<_> = app
        .stats()
        .into_iter()
        .map(|s| (s.event, s.outcome))
        .collect();
    let mut records: Vec<_> = app
        .audits()
        .into_iter()
        .map(|a| (a.event, a.outcome))
        .collect();
    twins.sort();
    records.sort();
    assert_eq!(twins, records);
    assert_eq!(app.count_rows(ORG_A, "provisions").await, 2);
}

#[actix_rt::test]
async fn a_prohibited_item_waits_for_staff_who_provide_by_hand() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    let (status, f) = app
        .put_flags(
            ORG_A,
            ADDRESSEE,
            json!({"non_disclosure": false, "self_info_prohibited": false,
                   "auto_response_prohibited": [{"info_code": MEDICAL, "dataset": null}]}),
        )
        .await;
    assert_eq!(status, 200, "{f}");
    let p = app.permit();
    app.request(&p, on("2017-02-28")).await;
    let row = app.wait_state(ORG_A, &p.permit_id, "waiting").await;
    assert_eq!(row["status"], serde_json::Value::Null);
    assert_eq!(row["addressee"], ADDRESSEE);
    let (status, list) = app.get(ORG_A, "/v1/provisions?state=waiting").await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["permit_id"], p.permit_id.as_str());
    assert_eq!(list[0]["procedure_code"], PROCEDURE);
    assert_eq!(list[0]["inquirer_org"], INQUIRER);
    assert_eq!(list[0]["serial_no"], "S0000000001");

    let (status, done) = app
        .post(
            ORG_A,
            &format!("/v1/provisions/{}/answer", p.permit_id),
            json!({"decision": "provide"}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "answered");
    assert_eq!(done["manual"], true);
    assert_eq!(done["answered_by"], "test-user");
    // Exactly one answer: the automatic path sent none.
    let a = app.answer_for(&p.permit_id).await;
    assert!(a.manual);
    assert_eq!(a.status, "provided");
    assert_eq!(members(&a), vec!["2222"]);
    let audit = app.audit_for(&p.permit_id, "provision.manual").await;
    assert_eq!(audit.outcome, "provided");
    assert_eq!(audit.addressee, ADDRESSEE);
    // Already answered.
    let (status, problem) = app
        .post(
            ORG_A,
            &format!("/v1/provisions/{}/answer", p.permit_id),
            json!({"decision": "provide"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("provision-not-waiting"))
    );
    let (_, list) = app.get(ORG_A, "/v1/provisions?state=waiting").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[actix_rt::test]
async fn a_prohibited_dataset_holds_only_answers_containing_it_and_staff_may_refuse() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    // Another dataset prohibited: the answer (dataset 0101) goes out automatically.
    let (status, _) = app
        .put_flags(
            ORG_A,
            ADDRESSEE,
            json!({"non_disclosure": false, "self_info_prohibited": false,
                   "auto_response_prohibited": [{"info_code": MEDICAL, "dataset": "0102"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let free = app.permit();
    app.request(&free, on("2017-02-28")).await;
    assert!(!app.answer_for(&free.permit_id).await.manual);
    // Dataset 0101 prohibited: effective for the very next request.
    let (status, _) = app
        .put_flags(
            ORG_A,
            ADDRESSEE,
            json!({"non_disclosure": false, "self_info_prohibited": false,
                   "auto_response_prohibited": [{"info_code": MEDICAL, "dataset": "0101"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let held = app.permit();
    app.request(&held, on("2017-02-28")).await;
    app.wait_state(ORG_A, &held.permit_id, "waiting").await;

    let path = format!("/v1/provisions/{}/answer", held.permit_id);
    let (status, problem) = app.post(ORG_A, &path, json!({"decision": "refuse"})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("reason-required"))
    );
    let (status, done) = app
        .post(
            ORG_A,
            &path,
            json!({"decision": "refuse", "reason": "本人からの申出により提供しません。"}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "refused");
    let a = app.answer_for(&held.permit_id).await;
    assert_eq!(a.status, "refused");
    assert_eq!(a.reason_code, "refused-by-staff");
    assert_eq!(a.reason, "本人からの申出により提供しません。");
    assert!(a.records.is_empty() && a.manual);
    let audit = app.audit_for(&held.permit_id, "provision.refused").await;
    assert_eq!(audit.outcome, "refused");
}

#[actix_rt::test]
async fn a_non_disclosed_resident_is_answered_with_the_provider_non_disclosure_code() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    let (status, _) = app
        .put_flags(
            ORG_A,
            ADDRESSEE,
            json!({"non_disclosure": true, "self_info_prohibited": false}),
        )
        .await;
    assert_eq!(status, 200);
    let p = app.permit();
    app.request(&p, on("2017-02-28")).await;
    let a = app.answer_for(&p.permit_id).await;
    assert!(a.provider_non_disclosure);
    assert_eq!(members(&a), vec!["2222"]);
    assert!(
        app.audit_for(&p.permit_id, "provision.made")
            .await
            .non_disclosure
    );
}

#[actix_rt::test]
async fn flags_are_read_set_validated_and_announced() {
    let app = spawn_app().await;
    let (status, f) = app.flags(ORG_A, ADDRESSEE).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["non_disclosure"], false);
    assert_eq!(f["self_info_prohibited"], false);
    assert_eq!(f["auto_response_prohibited"], json!([]));
    assert_eq!(f["revision"], 0);

    let body = json!({"non_disclosure": true, "self_info_prohibited": true,
    "auto_response_prohibited": [
        {"info_code": MEDICAL, "dataset": "0101"},
        {"info_code": LOCAL_TAX, "dataset": null},
        {"info_code": MEDICAL, "dataset": "0101"}
    ]});
    let (status, f) = app.put_flags(ORG_A, ADDRESSEE, body).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["revision"], 1);
    let (_, f) = app.flags(ORG_A, ADDRESSEE).await;
    // The deprecated form (the number in the URL) answers the same for one more release.
    let (status, old) = app.get(ORG_A, &format!("/v1/flags/{ADDRESSEE}")).await;
    assert_eq!((status, &old), (200, &f));
    assert_eq!(f["non_disclosure"], true);
    assert_eq!(f["self_info_prohibited"], true);
    assert_eq!(
        f["auto_response_prohibited"],
        json!([
            {"info_code": LOCAL_TAX, "dataset": null},
            {"info_code": MEDICAL, "dataset": "0101"}
        ])
    );
    let (status, f) = app
        .put_flags(
            ORG_A,
            ADDRESSEE,
            json!({"non_disclosure": false, "self_info_prohibited": true}),
        )
        .await;
    assert_eq!((status, f["revision"].as_i64()), (200, Some(2)));

    // Bad input: a clear problem, nothing changed.
    for (addressee, body, code) in [
        (
            ADDRESSEE,
            json!({"non_disclosure": true, "self_info_prohibited": false,
                   "auto_response_prohibited": [{"info_code": MEDICAL, "dataset": "12"}]}),
            "invalid-field",
        ),
        (
            ADDRESSEE,
            json!({"non_disclosure": true, "self_info_prohibited": false,
                   "auto_response_prohibited": [{"info_code": "XX01", "dataset": null}]}),
            "invalid-field",
        ),
        (
            "12345678901234567",
            json!({"non_disclosure": true, "self_info_prohibited": false}),
            "invalid-field",
        ),
    ] {
        let (status, p) = app.put_flags(ORG_A, addressee, body).await;
        assert_eq!((status, p["code"].as_str()), (400, Some(code)), "{p}");
        assert!(!p["detail"].as_str().unwrap_or_default().is_empty());
    }
    let (_, f) = app.flags(ORG_A, ADDRESSEE).await;
    assert_eq!(f["revision"], 2);
    assert_eq!(f["non_disclosure"], false);
    // Another tenant's resident with the same number is another resident.
    let (_, other) = app.flags(ORG_B, ADDRESSEE).await;
    assert_eq!(other["revision"], 0);
    // A business system reads and sets them too (DOMAIN §6: "business systems can read and
    // set the flags over the API").
    let client = app.env.token(ORG_A, &[chukan_auth::Role::SystemClient]);
    let res = app
        .api
        .http
        .put(app.api.url(&format!("/v1/flags/{ADDRESSEE}")))
        .bearer_auth(&client)
        .json(&json!({"non_disclosure": true, "self_info_prohibited": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .api
        .http
        .get(app.api.url(&format!("/v1/flags/{ADDRESSEE}")))
        .bearer_auth(&client)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let read: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (read["revision"].as_i64(), read["non_disclosure"].as_bool()),
        (Some(3), Some(true))
    );
    // A token without a business role may do neither: not even an administrator, who manages
    // accounts and settings, not residents (separation of duties).
    for roles in [&[][..], &[chukan_auth::Role::SystemAdmin][..]] {
        let token = app.env.token(ORG_A, roles);
        let res = app
            .api
            .http
            .put(app.api.url("/v1/flags"))
            .bearer_auth(&token)
            .json(&json!({"integrated_addressee_number": ADDRESSEE,
                          "non_disclosure": false, "self_info_prohibited": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        let res = app
            .api
            .http
            .post(app.api.url("/v1/flags/query"))
            .bearer_auth(&token)
            .json(&json!({"integrated_addressee_number": ADDRESSEE}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
    }

    wait_until(DEADLINE, "flags.changed events", || async {
        app.flag_events().len() >= 3
    })
    .await
    .unwrap();
    let events = app.flag_events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].revision, 1);
    assert_eq!(events[0].tenant, ORG_A);
    assert_eq!(events[0].addressee, ADDRESSEE);
    assert!(events[0].non_disclosure && events[0].self_info_prohibited);
    assert_eq!(events[0].auto_response_prohibited.len(), 2);
    assert_eq!(events[0].auto_response_prohibited[0].dataset, "");
    assert_eq!(events[1].revision, 2);
    assert!(!events[1].non_disclosure);
    assert_eq!(events[2].revision, 3);
    assert!(events[2].non_disclosure);
}

#[actix_rt::test]
async fn another_tenant_can_neither_see_nor_answer_a_provision() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    app.put_flags(
        ORG_A,
        ADDRESSEE,
        json!({"non_disclosure": false, "self_info_prohibited": false,
               "auto_response_prohibited": [{"info_code": MEDICAL}]}),
    )
    .await;
    let p = app.permit();
    app.request(&p, on("2017-02-28")).await;
    app.wait_state(ORG_A, &p.permit_id, "waiting").await;
    let (status, problem) = app
        .get(ORG_B, &format!("/v1/provisions/{}", p.permit_id))
        .await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not-found")));
    let (status, _) = app
        .post(
            ORG_B,
            &format!("/v1/provisions/{}/answer", p.permit_id),
            json!({"decision": "provide"}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = app.get(ORG_B, "/v1/provisions?state=waiting").await;
    assert_eq!(list, json!([]));
    let (_, row) = app
        .get(ORG_A, &format!("/v1/provisions/{}", p.permit_id))
        .await;
    assert_eq!(row["state"], "waiting");
}

#[actix_rt::test]
async fn waiting_provisions_expire_at_the_end_of_their_validity() {
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    app.put_flags(
        ORG_A,
        ADDRESSEE,
        json!({"non_disclosure": false, "self_info_prohibited": false,
               "auto_response_prohibited": [{"info_code": MEDICAL}]}),
    )
    .await;
    let late = app.permit();
    app.request(&late, on("2017-02-28")).await;
    let swept = app.permit();
    app.request(&swept, on("2017-02-28")).await;
    app.wait_state(ORG_A, &late.permit_id, "waiting").await;
    app.wait_state(ORG_A, &swept.permit_id, "waiting").await;
    app.clock.advance(chrono::Duration::days(31));

    // Staff too late: 409, and the NWS is told the request expired.
    let (status, problem) = app
        .post(
            ORG_A,
            &format!("/v1/provisions/{}/answer", late.permit_id),
            json!({"decision": "provide"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("provision-expired"))
    );
    assert_eq!(app.answer_for(&late.permit_id).await.status, "expired");

    // The sweep expires the rest.
    assert_eq!(
        chukan_provision::exchange::manual::expire_due(&app.state)
            .await
            .unwrap(),
        1
    );
    let a = app.answer_for(&swept.permit_id).await;
    assert_eq!(a.status, "expired");
    let (_, row) = app
        .get(ORG_A, &format!("/v1/provisions/{}", swept.permit_id))
        .await;
    assert_eq!(row["state"], "expired");
    assert_eq!(
        chukan_provision::exchange::manual::expire_due(&app.state)
            .await
            .unwrap(),
        0
    );
}

/// Throughput and look-up latency of automatic answers (run by hand:
/// `cargo nextest run -p chukan-provision --run-ignored only load`; release builds for numbers
/// to compare with the targets, p99 look-up ≤ 2 ms and ≥ 1,000 answers/s on 2 cores).
#[actix_rt::test]
#[ignore = "load measurement, run by hand"]
async fn load_automatic_answers() {
    const N: usize = 2000;
    let app = spawn_app().await;
    resident_with_switch(&app, ORG_A).await;
    let warm = app.permit();
    app.request(&warm, on("2017-02-28")).await;
    app.answer_for(&warm.permit_id).await;
    let before = chukan_provision::metrics::LOOKUP.get_sample_count();
    let permits: Vec<_> = (0..N).map(|_| app.permit()).collect();
    let publisher = app.env.ctx.bus.publisher().await.unwrap();
    let nws = app.nws.clone();
    let started = std::time::Instant::now();
    // Published 100 at a time with confirms, so the consumer, not the publisher, is measured.
    let messages: Vec<OutgoingMessage> = permits
        .iter()
        .map(|p| {
            let bytes = p.encode_to_vec();
            let req = ProvisionRequest {
                permit: Some(SignedPermit {
                    signature: nws
                        .sign(&chukan_proto::permit_signing_bytes(&bytes))
                        .to_vec(),
                    kid: nws.kid().into(),
                    permit: bytes,
                }),
                condition: Some(on("2017-02-28")),
                inquirer_non_disclosure: false,
                requested_at_ms: p.issued_at_ms,
            };
            let inbound = NwsInbound {
                kind: "provision.request".into(),
                recipient_org: ORG_A.into(),
                correlation_id: p.permit_id.clone(),
                body: req.encode_to_vec(),
                nws_message_id: String::new(),
            };
            OutgoingMessage::new(ORG_A, "nws.in.provision", inbound.encode_to_vec())
        })
        .collect();
    for chunk in messages.chunks(100) {
        futures_util::future::join_all(chunk.iter().map(|m| publisher.publish(m)))
            .await
            .into_iter()
            .for_each(|r| r.unwrap());
    }
    let published = started.elapsed();
    wait_until(Duration::from_secs(120), "all answered", || async {
        app.count_rows(ORG_A, "provisions").await >= (N + 1) as i64
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let h = &chukan_provision::metrics::LOOKUP;
    let samples = h.get_sample_count() - before;
    let mut fam = prometheus::gather();
    fam.retain(|f| f.name() == "chukan_provision_lookup_seconds");
    let buckets: Vec<(f64, u64)> = fam[0].get_metric()[0]
        .get_histogram()
        .bucket
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    println!(
        "{N} requests: published in {published:?}, settled in {elapsed:?} ({:.0}/s); look-ups {samples}; buckets {buckets:?}",
        N as f64 / elapsed.as_secs_f64()
    );
}
