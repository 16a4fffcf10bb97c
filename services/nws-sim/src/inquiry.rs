//! 情報照会 (inquiry) routing (DOMAIN §6): the network checks an `inquiry.request` against
//! 別表第二, converts the resident's code to the provider's, issues a signed provision permit
//! (情報提供許可証) and forwards a `provision.request` to the provider; the provider's
//! `provision.answer` comes back to the inquirer as an `inquiry.result`, exactly once.
//!
//! Each message is one transaction: the replay claim, the look-ups, the permit and the owed
//! delivery, in two pipelined round trips; a replay rolls everything back.

use chrono::{DateTime, Duration, Utc};
use chukan_core::Problem;
use chukan_db::OrProblem as _;
use chukan_proto::{
    Envelope, InquiryRequest, InquiryResult, Message as _, ProvisionAnswer, ProvisionPermit,
    ProvisionRequest, REQUEST_VALIDITY_MS, SignedPermit, permit_signing_bytes,
};
use uuid::Uuid;

use crate::{
    api::{SimState, malformed_body, refused, replayed},
    store::{self, PermitRow},
};

/// Why an inquiry is answered without being forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotPermitted,
    UnknownProvider,
    UnknownCode,
}

impl Refusal {
    fn status(self) -> &'static str {
        match self {
            Refusal::NotPermitted => "not-permitted",
            Refusal::UnknownProvider => "unknown-provider",
            Refusal::UnknownCode => "unknown-code",
        }
    }

    /// The Japanese reason; for 別表第二 the published message with the item's name.
    fn reason(self, state: &SimState, request: &InquiryRequest) -> String {
        match self {
            Refusal::NotPermitted => {
                let name = state
                    .beppyo2
                    .item_name(&request.info_code)
                    .unwrap_or(&request.info_code);
                format!("指定された特定個人情報名「{name}」の照会は許可されていません。")
            }
            Refusal::UnknownProvider => {
                "指定された提供者機関は情報提供ネットワークシステムに登録されていません。"
                    .to_owned()
            }
            Refusal::UnknownCode => {
                "照会対象者の機関別符号は情報提供ネットワークシステムに登録されていません。符号を取得してから照会してください。"
                    .to_owned()
            }
        }
    }
}

/// `inquiry.request` from `env.sender`.
pub(crate) async fn accept_request(
    state: &SimState,
    client: &mut deadpool_postgres::Object,
    env: &Envelope,
) -> Result<(), Problem> {
    let request = InquiryRequest::decode(env.body.as_slice()).map_err(|_| malformed_body())?;
    let permitted = state.beppyo2.permits(
        &request.affair_code,
        &request.procedure_code,
        &request.info_code,
    );
    let tx = client.transaction().await.or_problem("nws-sim")?;
    // First round trip: the claim and both look-ups (cheap index probes, asked even for a
    // refused pair so the round trip count never depends on the answer).
    let (claimed, provider_known, person) = futures_util::join!(
        store::claim_message(&tx, &env.message_id, &env.sender, &env.kind),
        store::organisation_exists(&tx, &request.provider_org),
        store::person_of_code(&tx, &env.sender, &request.inquirer_code),
    );
    if !claimed.or_problem("nws-sim")? {
        return Err(replayed());
    }
    let provider_known = provider_known.or_problem("nws-sim")?;
    let person = person.or_problem("nws-sim")?;

    let refusal = if !permitted {
        Some(Refusal::NotPermitted)
    } else if !provider_known {
        Some(Refusal::UnknownProvider)
    } else if person.is_none() {
        Some(Refusal::UnknownCode)
    } else {
        None
    };
    let (Some(person), None) = (person, refusal) else {
        let refusal = refusal.unwrap_or(Refusal::UnknownCode);
        let result = InquiryResult {
            status: refusal.status().to_owned(),
            reason_code: refusal.status().to_owned(),
            reason: refusal.reason(state, &request),
            ..Default::default()
        };
        let reply = state.reply(
            env,
            &env.sender,
            "inquiry.result",
            &env.correlation_id,
            result.encode_to_vec(),
        );
        store::insert_delivery(&tx, Uuid::now_v7(), &env.sender, &reply)
            .await
            .or_problem("nws-sim")?;
        tx.commit().await.or_problem("nws-sim")?;
        tracing::info!(
            status = refusal.status(),
            "inquiry answered without a permit"
        );
        return Ok(());
    };

    // 符号変換 as /v1/codes/convert does: the provider's code for the same person.
    let provider_code = state.secret.code_for(&request.provider_org, &person);
    let issued_at = state.clock.now();
    let expires_at = issued_at + Duration::milliseconds(REQUEST_VALIDITY_MS);
    let permit_id = Uuid::now_v7();
    let permit = ProvisionPermit {
        permit_id: permit_id.to_string(),
        inquirer_org: env.sender.clone(),
        provider_org: request.provider_org.clone(),
        affair_code: request.affair_code.clone(),
        procedure_code: request.procedure_code.clone(),
        info_code: request.info_code.clone(),
        provider_code: provider_code.clone(),
        issued_at_ms: issued_at.timestamp_millis(),
        expires_at_ms: expires_at.timestamp_millis(),
        serial_no: request.serial_no.clone(),
        branch_no: request.branch_no,
    }
    .encode_to_vec();
    let signature = state.signer.sign(&permit_signing_bytes(&permit)).to_vec();
    let forward = ProvisionRequest {
        permit: Some(SignedPermit {
            permit,
            kid: state.signer.kid().to_owned(),
            signature,
        }),
        condition: request.condition.clone(),
        inquirer_non_disclosure: request.inquirer_non_disclosure,
        requested_at_ms: request.requested_at_ms,
    };
    let envelope = state.reply(
        env,
        &request.provider_org,
        "provision.request",
        &permit_id.to_string(),
        forward.encode_to_vec(),
    );
    let row = PermitRow {
        permit_id,
        inquirer_org: env.sender.clone(),
        inquiry_id: env.correlation_id.clone(),
        provider_org: request.provider_org.clone(),
        info_code: request.info_code.clone(),
        issued_at,
        expires_at,
    };
    // Second round trip: the provider's code, the permit and the forward.
    let (recorded, stored, queued) = futures_util::join!(
        store::record_code(&tx, &request.provider_org, &provider_code, &person),
        store::insert_permit(&tx, &row),
        store::insert_delivery(&tx, Uuid::now_v7(), &request.provider_org, &envelope),
    );
    recorded.or_problem("nws-sim")?;
    stored.or_problem("nws-sim")?;
    queued.or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    tracing::info!(%permit_id, "provision permit issued");
    Ok(())
}

/// `provision.answer` from `env.sender`, the permit's provider.
pub(crate) async fn accept_answer(
    state: &SimState,
    client: &mut deadpool_postgres::Object,
    env: &Envelope,
) -> Result<(), Problem> {
    let answer = ProvisionAnswer::decode(env.body.as_slice()).map_err(|_| malformed_body())?;
    let unknown_permit = || {
        refused(
            400,
            "unknown-permit",
            "Unknown permit",
            "指定された情報提供許可証は発行されていません。",
            "相関ID（許可証ID）を確認してください。",
        )
    };
    let permit_id = Uuid::parse_str(&env.correlation_id).map_err(|_| unknown_permit())?;
    if !answer.permit_id.is_empty() && answer.permit_id != env.correlation_id {
        return Err(refused(
            400,
            "permit-mismatch",
            "Permit mismatch",
            "本文の許可証IDと相関IDが一致しません。",
            "相関IDに許可証IDを指定して再度送信してください。",
        ));
    }
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let (claimed, permit) = futures_util::join!(
        store::claim_message(&tx, &env.message_id, &env.sender, &env.kind),
        store::permit_for_answer(&tx, permit_id),
    );
    if !claimed.or_problem("nws-sim")? {
        return Err(replayed());
    }
    let Some(permit) = permit.or_problem("nws-sim")? else {
        return Err(unknown_permit());
    };
    if permit.provider_org != env.sender {
        return Err(refused(
            403,
            "not-provider",
            "Not the provider",
            "送信元の機関はこの情報提供許可証の提供者ではありません。",
            "許可証の提供者機関から送信してください。",
        ));
    }
    if permit.answered {
        // Answered exactly once: a second answer (a provider's retry with a new message id)
        // is taken so the provider stops retrying, and forwarded to nobody.
        tx.commit().await.or_problem("nws-sim")?;
        tracing::info!(%permit_id, "answer for an answered permit accepted; nothing forwarded");
        return Ok(());
    }
    let result = InquiryResult {
        status: answer.status,
        permit_id: permit_id.to_string(),
        records: answer.records,
        reason_code: answer.reason_code,
        reason: answer.reason,
        provider_non_disclosure: answer.provider_non_disclosure,
        manual: answer.manual,
        provided_at_ms: answer.provided_at_ms,
    };
    let reply = state.reply(
        env,
        &permit.inquirer_org,
        "inquiry.result",
        &permit.inquiry_id,
        result.encode_to_vec(),
    );
    let now: DateTime<Utc> = state.clock.now();
    let (marked, queued) = futures_util::join!(
        store::mark_permit_answered(&tx, permit_id, now),
        store::insert_delivery(&tx, Uuid::now_v7(), &permit.inquirer_org, &reply),
    );
    marked.or_problem("nws-sim")?;
    queued.or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    tracing::info!(%permit_id, "provision answer forwarded to the inquirer");
    Ok(())
}
