//! 自己情報提供 end to end: a resident asks, on the resident portal of nws-sim (its own process),
//! what municipality B holds about them. B's selfinfo service asks B's provision (replicas,
//! flags) and B's audit (disclosable provision records) over RabbitMQ request/reply, adds B's
//! attachment, and the answer travels back through relay and the NWS to the portal.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    ADDRESSEE, ORG_A, ORG_B, RESIDENT,
    helpers::Stack,
    inquiry::{
        MEDICAL, NHI_AFFAIR, NHI_BENEFIT, answered, inquiry, poll, send, two_municipalities,
    },
};

fn flags(non_disclosure: bool, self_info_prohibited: bool) -> Value {
    json!({
        "non_disclosure": non_disclosure, "self_info_prohibited": self_info_prohibited,
        "auto_response_prohibited": []
    })
}

/// The resident asks `org` on the portal; returns the portal's answer once it arrived.
async fn ask_on_portal(stack: &Stack, org: &str) -> Value {
    let res = stack
        .http
        .post(format!(
            "{}/v1/portal/residents/{RESIDENT}/selfinfo-requests",
            stack.nws
        ))
        .json(&json!({ "org": org }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!(
        "{}/v1/portal/residents/{RESIDENT}/selfinfo-requests/{id}",
        stack.nws
    );
    poll(60, "the self-information answer on the portal", || async {
        let v: Value = stack
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "answered" {
            Ok(v)
        } else {
            Err(v)
        }
    })
    .await
}

/// The events of `org`'s provision-record log (as its staff see them), sorted.
async fn events(stack: &Stack, staff: &str) -> Vec<String> {
    let (status, page) = stack
        .call(
            Method::POST,
            staff,
            "/v1/records/search",
            Some(serde_json::json!({"limit": 100})),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let mut events: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("").to_string())
        .collect();
    events.sort();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_sees_their_replicas_disclosed_records_and_attachments_but_not_what_is_withheld()
{
    let (stack, token_a, token_b) = two_municipalities().await;
    let staff_b = stack.staff_token(ORG_B).await;

    // A inquires of B: B provides, and records the provision (disclosed).
    let first = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28"),
    )
    .await;
    let result = answered(&stack, &token_a, first["id"].as_str().unwrap()).await;
    assert_eq!(result["status"], "provided", "{result}");

    // B flags the resident non-disclosed (DV victim): the next exchange is withheld.
    let (status, body) = stack
        .call(
            Method::PUT,
            &token_b,
            &format!("/v1/flags/{ADDRESSEE}"),
            Some(flags(true, false)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-27"),
    )
    .await;
    let result = answered(&stack, &token_a, second["id"].as_str().unwrap()).await;
    assert_eq!(result["provider_non_disclosure"], true, "{result}");
    poll(30, "both provisions in B's log", || async {
        let e = events(&stack, &staff_b).await;
        if e == ["provision.made", "provision.made"] {
            Ok(())
        } else {
            Err(json!(e))
        }
    })
    .await;

    // B's staff attach an explanation to the item.
    let pdf = b"%PDF-1.4 kokuho".to_vec();
    let res = stack
        .http
        .put(format!(
            "{}/v1/selfinfo/attachments/{MEDICAL}/setsumei.pdf",
            stack.api
        ))
        .bearer_auth(&staff_b)
        .header("content-type", "application/pdf")
        .body(pdf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let got = ask_on_portal(&stack, ORG_B).await;
    let answer = &got["answer"];
    assert_eq!(answer["status"], "answered", "{got}");
    // The replica held now: the No. 31 entry acquired on 2017-02-28.
    let items = answer["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{answer}");
    assert_eq!(items[0]["info_code"], MEDICAL);
    let payloads: Vec<&str> = items[0]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["payload_xml"].as_str().unwrap())
        .collect();
    assert!(payloads.iter().any(|p| p.contains("2222")), "{payloads:?}");
    // The disclosed exchange only: the one made while the flag was set is left out.
    let records = answer["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{answer}");
    assert_eq!(records[0]["event"], "provision.made");
    assert_eq!(records[0]["inquirer_org"], ORG_A);
    assert_eq!(records[0]["provider_org"], ORG_B);
    assert_eq!(
        records[0]["requested_at"]
            .as_str()
            .map(|s| s[..19].to_string()),
        first["requested_at"].as_str().map(|s| s[..19].to_string()),
        "the first inquiry's record"
    );
    let text = answer.to_string();
    assert!(!text.contains(ADDRESSEE), "never the addressee");
    // The attachment, as uploaded.
    let attachments = answer["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["file_name"], "setsumei.pdf");
    assert_eq!(attachments[0]["media_type"], "application/pdf");
    assert_eq!(attachments[0]["content_base64"], "JVBERi0xLjQga29rdWhv");

    // The answer is itself recorded in B's log, once.
    poll(30, "the answer's record", || async {
        let e = events(&stack, &staff_b).await;
        if e.iter().filter(|e| *e == "selfinfo.answered").count() == 1 {
            Ok(())
        } else {
            Err(json!(e))
        }
    })
    .await;

    // 自己情報提供不可フラグ: the next request is refused with its reason code.
    let (status, body) = stack
        .call(
            Method::PUT,
            &token_b,
            &format!("/v1/flags/{ADDRESSEE}"),
            Some(flags(true, true)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refused = ask_on_portal(&stack, ORG_B).await;
    let answer = &refused["answer"];
    assert_eq!(answer["status"], "refused", "{refused}");
    assert_eq!(answer["reason_code"], "self-info-prohibited");
    assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(answer["items"].as_array().unwrap().is_empty());
    assert!(answer["records"].as_array().unwrap().is_empty());
    assert!(answer["attachments"].as_array().unwrap().is_empty());
    let final_events = poll(30, "the refusal's record", || async {
        let e = events(&stack, &staff_b).await;
        if e.contains(&"selfinfo.refused".to_string()) {
            Ok(e)
        } else {
            Err(json!(e))
        }
    })
    .await;
    assert_eq!(
        final_events,
        [
            "provision.made",
            "provision.made",
            "selfinfo.answered",
            "selfinfo.refused"
        ]
    );
    // B's staff see both requests answered, by ids and state only.
    let (_, list) = stack
        .call(Method::GET, &staff_b, "/v1/selfinfo/requests", None)
        .await;
    let requests = list["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{list}");
    assert!(requests.iter().all(|r| r["state"] == "answered"));
    assert!(!list.to_string().contains(ADDRESSEE));

    // Nothing was dead-lettered on the way.
    let (dead, _) = stack.metric_total("chukan_mq_dead_lettered_total").await;
    assert_eq!(dead, 0.0);

    // The requests' codes and answers and the provision records are sealed at rest in B's
    // schemas; the resident's numbers never appear in the clear. (Attachments are the
    // organisation's own explanatory documents per item, the same for every resident — not
    // personal data — and are kept as uploaded.)
    let tables = crate::assert_nothing_in_the_clear(
        &stack,
        &["selfinfo", "audit", "provision"],
        ORG_B,
        &[(ADDRESSEE, "addressee"), (RESIDENT, "resident-record code")],
    )
    .await;
    assert!(tables >= 6);
}
