//! The simulator's HTTP API: organisation registry, its public key, the message intake and
//! code conversion. Errors are problem+json.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use chukan_core::{
    Clock, Problem, edge,
    ids::{OrgCode, ResidentRecordCode},
};
use chukan_crypto::{Signer, Verifiers};
use chukan_db::OrProblem as _;
use chukan_proto::{CodeAcquireRequest, CodeAcquireResult, Envelope, Message as _, signing_bytes};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    codes::CodeSecret,
    store::{self, Organisation, OrganisationKey},
};

/// Largest envelope accepted.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// Largest accepted difference between a message's timestamp and the network's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 300_000;
/// What the network calls itself in `sender` / `recipient`.
pub const NWS: &str = "NWS";

pub struct SimState {
    pub pool: deadpool_postgres::Pool,
    pub signer: Signer,
    pub secret: CodeSecret,
    /// Wakes the delivery worker after a delivery is committed.
    pub wake: Arc<Notify>,
    pub clock: Arc<dyn Clock>,
    /// Refusals injected by tests (`/v1/faults`).
    pub faults: crate::faults::Faults,
    /// 別表第二: which procedure may ask for which item.
    pub beppyo2: Arc<crate::beppyo2::Beppyo2>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/organizations", web::post().to(register_organisation))
        .route(
            "/v1/organizations/{org_code}",
            web::get().to(get_organisation),
        )
        .route("/v1/keys", web::get().to(keys))
        .route("/v1/messages", web::post().to(receive_message))
        .route("/v1/codes/convert", web::post().to(convert_code))
        .route("/v1/faults", web::post().to(crate::faults::inject))
        .route("/v1/faults", web::get().to(crate::faults::show))
        .route("/v1/faults", web::delete().to(crate::faults::clear))
        .route(
            "/v1/faults/not-ready",
            web::post().to(crate::faults::set_not_ready),
        )
        .route(
            "/v1/faults/not-ready",
            web::delete().to(crate::faults::clear_not_ready),
        )
        .route("/v1/ready", web::get().to(crate::faults::ready))
        .route("/v1/beppyo2", web::get().to(beppyo2))
        .route("/metrics", web::get().to(crate::metrics::serve));
    crate::portal_notice::routes(cfg);
    crate::portal_selfinfo::routes(cfg);
}

/// Logs the cause (never sent to the caller) and answers 500.
pub(crate) fn refused(
    status: u16,
    code: &'static str,
    title: &str,
    detail: &str,
    action: &str,
) -> Problem {
    tracing::info!(code, "message refused");
    Problem::new(status, code, title, detail, action)
}

#[derive(Debug, Deserialize)]
struct RegisterOrganisation {
    org_code: OrgCode,
    name: String,
    endpoint_url: String,
    /// Optional; empty or absent = no standby door.
    #[serde(default)]
    standby_endpoint_url: Option<String>,
    keys: Vec<OrganisationKey>,
}

/// Deliveries go to `{url}/nws/v1/messages`: only an http(s) URL can take them. The problem
/// naming `field` when `url` is not one.
fn endpoint_url_problem(field: &str, url: &str) -> Option<Problem> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return None;
    }
    Some(Problem::new(
        400,
        "invalid-field",
        "Invalid field",
        format!("項目「{field}」は http:// または https:// で始まるURLで指定してください。"),
        "URLを確認して再度送信してください。",
    ))
}

async fn register_organisation(
    state: web::Data<SimState>,
    body: web::Json<RegisterOrganisation>,
) -> Result<HttpResponse, Problem> {
    let body = body.into_inner();
    if let Some(problem) = endpoint_url_problem("endpoint_url", &body.endpoint_url) {
        return Err(problem);
    }
    let standby_endpoint_url = body
        .standby_endpoint_url
        .filter(|url| !url.trim().is_empty());
    if let Some(problem) = standby_endpoint_url
        .as_deref()
        .and_then(|url| endpoint_url_problem("standby_endpoint_url", url))
    {
        return Err(problem);
    }
    let mut check = Verifiers::default();
    for key in &body.keys {
        if key.kid.trim().is_empty() || check.add_base64(&key.kid, &key.public_key).is_err() {
            return Err(Problem::new(
                400,
                "invalid-key",
                "Invalid key",
                "公開鍵はEd25519の公開鍵（32バイト）をbase64で、鍵IDとともに指定してください。",
                "鍵IDと公開鍵を確認して再度送信してください。",
            ));
        }
    }
    let org = Organisation {
        org_code: body.org_code.as_str().to_owned(),
        name: body.name,
        endpoint_url: body.endpoint_url,
        standby_endpoint_url,
        keys: body.keys,
    };
    let mut client = state.pool.get().await.or_problem("nws-sim")?;
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let inserted = store::upsert_organisation(&tx, &org)
        .await
        .or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    tracing::info!(org_code = %org.org_code, inserted, "organisation registered");
    Ok(if inserted {
        HttpResponse::Created().json(&org)
    } else {
        HttpResponse::Ok().json(&org)
    })
}

async fn get_organisation(
    state: web::Data<SimState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let client = state.pool.get().await.or_problem("nws-sim")?;
    match store::organisation(&client, &path)
        .await
        .or_problem("nws-sim")?
    {
        Some(org) => Ok(HttpResponse::Ok().json(org)),
        None => Err(Problem::not_found("機関")),
    }
}

#[derive(Debug, Serialize)]
struct KeySet {
    keys: Vec<OrganisationKey>,
}

async fn keys(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(KeySet {
        keys: vec![OrganisationKey {
            kid: state.signer.kid().to_owned(),
            public_key: state.signer.public_key_base64(),
        }],
    })
}

/// `GET /v1/beppyo2`: the 別表第二 table (procedures with their affair and allowed items, with
/// names), for the console to show which item each procedure is for (enhancement #10).
async fn beppyo2(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.beppyo2.as_ref())
}

/// Reads an envelope whole, up to `limit` bytes (problem+json 413 beyond it).
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, Problem> {
    edge::read_capped(req, payload, limit)
        .await
        .map_err(|refusal| match refusal {
            edge::BodyRefusal::TooLarge => Problem::new(
                413,
                "payload-too-large",
                "Payload too large",
                "メッセージが大きすぎます。",
                "メッセージを小さくして再度送信してください。",
            ),
            edge::BodyRefusal::BrokeOff => Problem::new(
                400,
                "malformed-envelope",
                "Malformed envelope",
                "メッセージ本文を受信できませんでした。",
                "再度送信してください。",
            ),
        })
}

#[derive(Debug, Serialize)]
struct Accepted {
    message_id: String,
}

/// `POST /v1/messages`: a signed envelope from an organisation's relay.
#[tracing::instrument(skip_all, fields(sender, kind, message_id))]
async fn receive_message(
    state: web::Data<SimState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let body = read_body(&req, payload, MAX_ENVELOPE_BYTES).await?;
    let env = Envelope::decode(body.as_slice()).map_err(|_| {
        refused(
            400,
            "malformed-envelope",
            "Malformed envelope",
            "メッセージを解釈できません。",
            "protobufのEnvelopeとして送信してください。",
        )
    })?;
    if let Some(status) = state.faults.take(&env.message_id) {
        return Err(crate::faults::refusal(status));
    }
    let span = tracing::Span::current();
    span.record("sender", env.sender.as_str());
    span.record("kind", env.kind.as_str());
    span.record("message_id", env.message_id.as_str());

    let mut client = state.pool.get().await.or_problem("nws-sim")?;
    // Both look-ups in one pipelined round trip.
    let (exists, keys) = futures_util::join!(
        store::organisation_exists(&client, &env.sender),
        store::organisation_keys(&client, &env.sender),
    );
    if !exists.or_problem("nws-sim")? {
        return Err(refused(
            403,
            "unknown-sender",
            "Unknown sender",
            "送信元の機関は登録されていません。",
            "機関の登録内容を確認してください。",
        ));
    }
    let keys = keys.or_problem("nws-sim")?;
    let mut verifiers = Verifiers::default();
    for key in keys.iter().filter(|k| k.kid == env.kid) {
        verifiers
            .add_base64(&key.kid, &key.public_key)
            .or_problem("nws-sim")?;
    }
    if let Err(err) = verifiers.verify(&env.kid, &signing_bytes(&env), &env.signature) {
        let problem = Problem::from(err);
        tracing::info!(code = %problem.code, "message refused");
        return Err(problem);
    }
    let now_ms = state.clock.now().timestamp_millis();
    if (now_ms - env.timestamp_ms).abs() > MAX_CLOCK_SKEW_MS {
        return Err(refused(
            400,
            "stale-message",
            "Stale message",
            "メッセージの送信時刻が許容範囲外です。",
            "時刻同期を確認し、新しいメッセージとして送信してください。",
        ));
    }
    if env.recipient != NWS {
        return Err(refused(
            400,
            "wrong-recipient",
            "Wrong recipient",
            "宛先が情報提供ネットワークシステムではありません。",
            "宛先を「NWS」として送信してください。",
        ));
    }
    match env.kind.as_str() {
        "code.acquire" => acquire_code(&state, &mut client, &env).await?,
        // 情報照会要求 / 情報提供 (DOMAIN §6).
        "inquiry.request" => crate::inquiry::accept_request(&state, &mut client, &env).await?,
        "provision.answer" => crate::inquiry::accept_answer(&state, &mut client, &env).await?,
        // お知らせ (F12) and its 状況確認要求.
        "notice.send" => crate::portal_notice::accept_send(&state, &mut client, &env).await?,
        "notice.status-check" => {
            crate::portal_notice::accept_status_check(&state, &mut client, &env).await?
        }
        // 自己情報提供 (F11): the organisation's answer for the portal.
        "selfinfo.answer" => {
            crate::portal_selfinfo::accept_answer(&state, &mut client, &env).await?
        }
        _ => {
            return Err(refused(
                400,
                "unknown-kind",
                "Unknown kind",
                "メッセージ種別に対応していません。",
                "メッセージ種別を確認してください。",
            ));
        }
    }
    state.wake.notify_one();
    tracing::info!("message accepted");
    Ok(HttpResponse::Accepted().json(Accepted {
        message_id: env.message_id,
    }))
}

pub(crate) fn malformed_body() -> Problem {
    refused(
        400,
        "malformed-body",
        "Malformed body",
        "メッセージ本文を解釈できません。",
        "メッセージ種別に対応した本文を送信してください。",
    )
}

pub(crate) fn replayed() -> Problem {
    refused(
        409,
        "replayed",
        "Replayed message",
        "このメッセージIDは受信済みです。",
        "再送の場合は対応不要です。新しい要求は新しいメッセージIDで送信してください。",
    )
}

/// 符号取得: the answer, the code and the replay claim in one transaction.
async fn acquire_code(
    state: &SimState,
    client: &mut deadpool_postgres::Object,
    env: &Envelope,
) -> Result<(), Problem> {
    let answer = code_answer(state, env).ok_or_else(malformed_body)?;
    let reply = state.reply(
        env,
        &env.sender,
        answer.kind,
        &env.correlation_id,
        answer.body,
    );
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let record = async {
        match &answer.code {
            Some((code, person_id)) => store::record_code(&tx, &env.sender, code, person_id).await,
            None => Ok(()),
        }
    };
    // The replay claim, the code and the owed delivery go out in one pipelined round trip;
    // a replay rolls all three back.
    let (claimed, recorded, queued) = futures_util::join!(
        store::claim_message(&tx, &env.message_id, &env.sender, &env.kind),
        record,
        store::insert_delivery(&tx, uuid::Uuid::now_v7(), &env.sender, &reply),
    );
    if !claimed.or_problem("nws-sim")? {
        return Err(replayed());
    }
    recorded.or_problem("nws-sim")?;
    queued.or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    Ok(())
}

/// What the network answers a message with: a kind, a body and any code to record.
struct Answer {
    kind: &'static str,
    body: Vec<u8>,
    /// (code, person_id) to store for the sender.
    code: Option<(String, Vec<u8>)>,
}

/// 符号取得: derive the sender's code for the resident. The resident-record code is used for
/// the derivation only and kept nowhere. `None` when the body is not a CodeAcquireRequest.
fn code_answer(state: &SimState, env: &Envelope) -> Option<Answer> {
    let request = CodeAcquireRequest::decode(env.body.as_slice()).ok()?;
    Some(
        match ResidentRecordCode::parse(&request.resident_record_code) {
            Ok(rrc) => {
                let person_id = state.secret.person_id(&rrc);
                let code = state.secret.code_for(&env.sender, &person_id);
                Answer {
                    kind: "code.acquired",
                    body: CodeAcquireResult {
                        ok: true,
                        code: code.clone(),
                        reason_code: String::new(),
                        reason: String::new(),
                    }
                    .encode_to_vec(),
                    code: Some((code, person_id)),
                }
            }
            Err(_) => Answer {
                kind: "code.acquired",
                body: CodeAcquireResult {
                    ok: false,
                    code: String::new(),
                    reason_code: "invalid-resident-record-code".to_owned(),
                    reason: "住民票コードは11桁の数字で指定してください。".to_owned(),
                }
                .encode_to_vec(),
                code: None,
            },
        },
    )
}

impl SimState {
    /// Puts the network's kid and signature on an envelope.
    pub fn sign(&self, mut env: Envelope) -> Envelope {
        env.kid = self.signer.kid().to_owned();
        env.signature = self.signer.sign(&signing_bytes(&env)).to_vec();
        env
    }

    /// A signed envelope from the network to `recipient`, encoded, answering `to` (whose trace
    /// context it carries on).
    pub fn reply(
        &self,
        to: &Envelope,
        recipient: &str,
        kind: &str,
        correlation_id: &str,
        body: Vec<u8>,
    ) -> Vec<u8> {
        self.sign(Envelope {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            sender: NWS.to_owned(),
            recipient: recipient.to_owned(),
            timestamp_ms: self.clock.now().timestamp_millis(),
            correlation_id: correlation_id.to_owned(),
            body,
            traceparent: to.traceparent.clone(),
            kid: String::new(),
            signature: Vec::new(),
        })
        .encode_to_vec()
    }
}

#[derive(Debug, Deserialize)]
struct ConvertCode {
    from_org: OrgCode,
    code: String,
    to_org: OrgCode,
}

#[derive(Debug, Serialize)]
struct ConvertedCode {
    code: String,
}

/// 符号変換: the same person's code at another organisation.
async fn convert_code(
    state: web::Data<SimState>,
    body: web::Json<ConvertCode>,
) -> Result<HttpResponse, Problem> {
    let mut client = state.pool.get().await.or_problem("nws-sim")?;
    if !store::organisation_exists(&client, body.to_org.as_str())
        .await
        .or_problem("nws-sim")?
    {
        return Err(Problem::not_found("変換先の機関"));
    }
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let Some(person_id) = store::person_of_code(&tx, body.from_org.as_str(), &body.code)
        .await
        .or_problem("nws-sim")?
    else {
        return Err(Problem::not_found("符号"));
    };
    let code = state.secret.code_for(body.to_org.as_str(), &person_id);
    store::record_code(&tx, body.to_org.as_str(), &code, &person_id)
        .await
        .or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    Ok(HttpResponse::Ok().json(ConvertedCode { code }))
}
