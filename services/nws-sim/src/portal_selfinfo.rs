//! 自己情報提供 (self-information, F11) at the resident portal (マイナポータル) simulator and the
//! network. A test resident, identified by their 住民票コード (whose keyed person id is all the
//! network keeps), asks an organisation for what it holds about them:
//! `POST /v1/portal/residents/{rrc}/selfinfo-requests` → the network finds the person's code at
//! that organisation and delivers a signed `selfinfo.request`; the organisation's
//! `selfinfo.answer` comes back and is kept as delivered; the resident reads it with
//! `GET /v1/portal/residents/{rrc}/selfinfo-requests/{id}`.
//!
//! Each step is one transaction (the request row with its owed delivery; the replay claim with
//! the answer). SQL lives here: the portal's tables are its own.

use actix_web::{HttpResponse, web};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use chukan_core::{
    Problem,
    ids::{InfoCode, OrgCode, ResidentRecordCode},
};
use chukan_db::OrProblem as _;
use chukan_proto::{Envelope, Message as _, SelfInfoAnswer, SelfInfoRequest};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    api::{NWS, SimState, malformed_body, refused, replayed},
    store,
};

/// Most items one request may name.
const MAX_INFO_CODES: usize = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/portal/residents/{rrc}/selfinfo-requests",
        web::post().to(create_request),
    )
    .route(
        "/v1/portal/residents/{rrc}/selfinfo-requests/{id}",
        web::get().to(get_request),
    );
}

/// The keyed person id of a 住民票コード (which is not kept).
// Problem is what every handler answers with; boxing it for this one helper buys nothing.
#[allow(clippy::result_large_err)]
fn person_of(state: &SimState, rrc: &str) -> Result<Vec<u8>, Problem> {
    let rrc = ResidentRecordCode::parse(rrc).map_err(|e| Problem::invalid_field(&e))?;
    Ok(state.secret.person_id(&rrc))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    /// The organisation asked (機関コード).
    org: OrgCode,
    /// Items asked for; absent or empty = everything held.
    #[serde(default)]
    info_codes: Option<Vec<InfoCode>>,
}

#[derive(Debug, Serialize)]
struct Accepted {
    id: Uuid,
    state: &'static str,
}

/// `POST /v1/portal/residents/{rrc}/selfinfo-requests` {org, info_codes?}.
async fn create_request(
    state: web::Data<SimState>,
    rrc: web::Path<String>,
    body: web::Json<NewRequest>,
) -> Result<HttpResponse, Problem> {
    let person = person_of(&state, &rrc)?;
    let body = body.into_inner();
    let org = body.org.as_str().to_owned();
    let mut info_codes: Vec<String> = body
        .info_codes
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    if info_codes.len() > MAX_INFO_CODES {
        return Err(Problem::new(
            400,
            "invalid-field",
            "Invalid field",
            "項目「info_codes」は100件以内で指定してください。",
            "特定個人情報名コードを絞って再度送信してください。",
        ));
    }
    info_codes.sort();
    info_codes.dedup();
    let mut client = state.pool.get().await.or_problem("nws-sim")?;
    let (known, code) = futures_util::join!(
        store::organisation_exists(&client, &org),
        code_of_person(&client, &org, &person),
    );
    if !known.or_problem("nws-sim")? {
        return Err(Problem::not_found("機関"));
    }
    let Some(code) = code.or_problem("nws-sim")? else {
        return Err(refused(
            404,
            "no-code",
            "No code at the organisation",
            "この機関ではご本人の符号が取得されていません。",
            "機関に符号の取得（転入等の手続）が済んでいるか確認してください。",
        ));
    };
    let id = Uuid::now_v7();
    let now = state.clock.now();
    let request = SelfInfoRequest {
        request_id: id.to_string(),
        code,
        info_codes: info_codes.clone(),
        requested_at_ms: now.timestamp_millis(),
    };
    let envelope = state
        .sign(Envelope {
            message_id: Uuid::now_v7().to_string(),
            kind: "selfinfo.request".into(),
            sender: NWS.into(),
            recipient: org.clone(),
            timestamp_ms: now.timestamp_millis(),
            correlation_id: id.to_string(),
            body: request.encode_to_vec(),
            traceparent: String::new(),
            kid: String::new(),
            signature: Vec::new(),
        })
        .encode_to_vec();
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let insert = async {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO portal_selfinfo_requests (id, person_id, org_code, info_codes, state,
                                                       requested_at)
                 VALUES ($1, $2, $3, $4, 'sent', $5)",
            )
            .await?;
        tx.execute(&stmt, &[&id, &person, &org, &info_codes, &now])
            .await
    };
    let (inserted, queued) = futures_util::join!(
        insert,
        store::insert_delivery(&tx, Uuid::now_v7(), &org, &envelope),
    );
    inserted.or_problem("nws-sim")?;
    queued.or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    state.wake.notify_one();
    tracing::info!(%id, "self-information request sent to the organisation");
    Ok(HttpResponse::Accepted()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/v1/portal/residents/{rrc}/selfinfo-requests/{id}"),
        ))
        .json(Accepted { id, state: "sent" }))
}

/// The person's code at `org`, if the network issued one.
async fn code_of_person(
    client: &impl GenericClient,
    org: &str,
    person: &[u8],
) -> Result<Option<String>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached("SELECT code FROM codes WHERE org_code = $1 AND person_id = $2")
        .await?;
    Ok(client
        .query_opt(&stmt, &[&org, &person])
        .await?
        .map(|r| r.get(0)))
}

/// `selfinfo.answer` from `env.sender`: kept for the resident, exactly once.
pub(crate) async fn accept_answer(
    state: &SimState,
    client: &mut deadpool_postgres::Object,
    env: &Envelope,
) -> Result<(), Problem> {
    let answer = SelfInfoAnswer::decode(env.body.as_slice()).map_err(|_| malformed_body())?;
    let unknown = || {
        refused(
            400,
            "unknown-request",
            "Unknown request",
            "指定された自己情報提供要求はこの機関に送られていません。",
            "相関ID（要求ID）を確認してください。",
        )
    };
    let id = Uuid::parse_str(&env.correlation_id).map_err(|_| unknown())?;
    if !answer.request_id.is_empty() && answer.request_id != env.correlation_id {
        return Err(malformed_body());
    }
    let now = state.clock.now();
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let lookup = async {
        let stmt = tx
            .prepare_cached(
                "SELECT state FROM portal_selfinfo_requests WHERE id = $1 AND org_code = $2
                 FOR UPDATE",
            )
            .await?;
        tx.query_opt(&stmt, &[&id, &env.sender]).await
    };
    let (claimed, row) = futures_util::join!(
        store::claim_message(&tx, &env.message_id, &env.sender, &env.kind),
        lookup,
    );
    if !claimed.or_problem("nws-sim")? {
        return Err(replayed());
    }
    let Some(row) = row.or_problem("nws-sim")? else {
        return Err(unknown());
    };
    let current: String = row.get(0);
    if current == "answered" {
        // A second answer (a new message for the same request): the first one stands.
        tx.commit().await.or_problem("nws-sim")?;
        tracing::info!(%id, "second self-information answer accepted; first one kept");
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE portal_selfinfo_requests SET state = 'answered', answer = $2, answered_at = $3
             WHERE id = $1",
        )
        .await
        .or_problem("nws-sim")?;
    tx.execute(&stmt, &[&id, &env.body, &now])
        .await
        .or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    tracing::info!(%id, status = %answer.status, "self-information answer received for the portal");
    Ok(())
}

#[derive(Debug, Serialize)]
struct RecordView {
    dataset: String,
    major_version: String,
    payload_xml: String,
    valid_from: String,
    valid_to: String,
}

#[derive(Debug, Serialize)]
struct ItemView {
    info_code: String,
    records: Vec<RecordView>,
}

#[derive(Debug, Serialize)]
struct ExchangeView {
    event: String,
    inquirer_org: String,
    provider_org: String,
    affair_code: String,
    procedure_code: String,
    info_code: String,
    requested_at: Option<DateTime<Utc>>,
    provided_at: Option<DateTime<Utc>>,
    outcome: String,
}

#[derive(Debug, Serialize)]
struct AttachmentView {
    info_code: String,
    file_name: String,
    media_type: String,
    size_bytes: usize,
    content_base64: String,
}

#[derive(Debug, Serialize)]
struct AnswerView {
    status: String,
    reason_code: String,
    reason: String,
    items: Vec<ItemView>,
    records: Vec<ExchangeView>,
    attachments: Vec<AttachmentView>,
    answered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct RequestView {
    id: Uuid,
    org: String,
    info_codes: Vec<String>,
    /// sent | answered
    state: String,
    requested_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    answer: Option<AnswerView>,
}

fn at(ms: i64) -> Option<DateTime<Utc>> {
    (ms > 0)
        .then(|| DateTime::from_timestamp_millis(ms))
        .flatten()
}

fn answer_view(a: SelfInfoAnswer) -> AnswerView {
    AnswerView {
        status: a.status,
        reason_code: a.reason_code,
        reason: a.reason,
        items: a
            .items
            .into_iter()
            .map(|i| ItemView {
                info_code: i.info_code,
                records: i
                    .records
                    .into_iter()
                    .map(|r| RecordView {
                        dataset: r.dataset,
                        major_version: r.major_version,
                        payload_xml: r.payload_xml,
                        valid_from: r.valid_from,
                        valid_to: r.valid_to,
                    })
                    .collect(),
            })
            .collect(),
        records: a
            .records
            .into_iter()
            .map(|r| ExchangeView {
                event: r.event,
                inquirer_org: r.inquirer_org,
                provider_org: r.provider_org,
                affair_code: r.affair_code,
                procedure_code: r.procedure_code,
                info_code: r.info_code,
                requested_at: at(r.requested_at_ms),
                provided_at: at(r.provided_at_ms),
                outcome: r.outcome,
            })
            .collect(),
        attachments: a
            .attachments
            .into_iter()
            .map(|f| AttachmentView {
                info_code: f.info_code,
                file_name: f.file_name,
                media_type: f.media_type,
                size_bytes: f.content.len(),
                content_base64: STANDARD.encode(&f.content),
            })
            .collect(),
        answered_at: at(a.answered_at_ms),
    }
}

/// `GET /v1/portal/residents/{rrc}/selfinfo-requests/{id}`: the request and, once it came,
/// the answer. Another resident's request is not found.
async fn get_request(
    state: web::Data<SimState>,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, Problem> {
    let (rrc, id) = path.into_inner();
    let person = person_of(&state, &rrc)?;
    let client = state.pool.get().await.or_problem("nws-sim")?;
    let stmt = client
        .prepare_cached(
            "SELECT org_code, info_codes, state, requested_at, answer, answered_at
             FROM portal_selfinfo_requests WHERE id = $1 AND person_id = $2",
        )
        .await
        .or_problem("nws-sim")?;
    let Some(row) = client
        .query_opt(&stmt, &[&id, &person])
        .await
        .or_problem("nws-sim")?
    else {
        return Err(Problem::not_found("自己情報提供要求"));
    };
    let answer: Option<Vec<u8>> = row.get(4);
    let answer = match answer {
        Some(bytes) => Some(answer_view(
            SelfInfoAnswer::decode(bytes.as_slice()).or_problem("nws-sim")?,
        )),
        None => None,
    };
    Ok(HttpResponse::Ok().json(RequestView {
        id,
        org: row.get(0),
        info_codes: row.get(1),
        state: row.get(2),
        requested_at: row.get(3),
        answered_at: row.get(5),
        answer,
    }))
}
