//! お知らせ (notices, F12) at the network and the resident portal (マイナポータル) simulator.
//!
//! `notice.send` from an organisation: the network maps the organisation's code to the
//! person and puts the notice in that person's portal inbox; a code that names nobody is
//! answered at once with `notice.status` undeliverable. `notice.status-check`: the network
//! answers with `notice.status` giving each notice's state (delivered, read, replied,
//! undeliverable, unknown), read time and reply. A test resident, identified by their
//! 住民票コード (whose keyed person id is all the network keeps), reads and replies through
//! `/v1/portal/residents/{rrc}/notices`.
//!
//! Each message is one transaction: the replay claim, the inbox row or look-up and the owed
//! answer; a replay rolls everything back. SQL lives here: the portal's tables are its own.

use actix_web::{HttpResponse, web};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use chukan_core::{
    Problem,
    ids::{InvalidId, ResidentRecordCode},
};
use chukan_db::OrProblem as _;
use chukan_proto::{
    Envelope, Message as _, NoticeContent, NoticeSend, NoticeState, NoticeStatusCheck,
    NoticeStatusReport,
};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    api::{SimState, malformed_body, replayed},
    store,
};

/// Notices one status check may name.
const MAX_CHECK_NOTICES: usize = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/portal/residents/{rrc}/notices",
        web::get().to(list_notices),
    )
    .route(
        "/v1/portal/residents/{rrc}/notices/{notice_id}/read",
        web::post().to(mark_read),
    )
    .route(
        "/v1/portal/residents/{rrc}/notices/{notice_id}/reply",
        web::post().to(reply),
    );
}

fn millis(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(0, |t| t.timestamp_millis())
}

/// `notice.send` from `env.sender`.
pub(crate) async fn accept_send(
    state: &SimState,
    client: &mut deadpool_postgres::Object,
    env: &Envelope,
) -> Result<(), Problem> {
    let send = NoticeSend::decode(env.body.as_slice()).map_err(|_| malformed_body())?;
    let Some(content) = send.content.filter(|_| !env.correlation_id.is_empty()) else {
        return Err(malformed_body());
    };
    let now = state.clock.now();
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let (claimed, person) = futures_util::join!(
        store::claim_message(&tx, &env.message_id, &env.sender, &env.kind),
        store::person_of_code(&tx, &env.sender, &send.code),
    );
    if !claimed.or_problem("nws-sim")? {
        return Err(replayed());
    }
    let person = person.or_problem("nws-sim")?;
    let undeliverable = person.is_none().then_some("unknown-code");
    // A second notice.send for the same notice id (a new message) delivers nothing new.
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO portal_notices (org_code, notice_id, person_id, content, reply_choices,
                                         undeliverable, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .await
        .or_problem("nws-sim")?,
        &[
            &env.sender,
            &env.correlation_id,
            &person,
            &person.as_ref().map(|_| content.encode_to_vec()),
            &content.reply_choices,
            &undeliverable,
            &now,
        ],
    )
    .await
    .or_problem("nws-sim")?;
    if let Some(reason_code) = undeliverable {
        let report = NoticeStatusReport {
            check_id: String::new(),
            notices: vec![NoticeState {
                notice_id: env.correlation_id.clone(),
                state: "undeliverable".into(),
                reason_code: reason_code.into(),
                ..Default::default()
            }],
            reported_at_ms: now.timestamp_millis(),
        };
        let answer = state.reply(
            env,
            &env.sender,
            "notice.status",
            &env.correlation_id,
            report.encode_to_vec(),
        );
        store::insert_delivery(&tx, Uuid::now_v7(), &env.sender, &answer)
            .await
            .or_problem("nws-sim")?;
    }
    tx.commit().await.or_problem("nws-sim")?;
    tracing::info!(
        delivered = person.is_some(),
        "notice received for the portal"
    );
    Ok(())
}

/// The state a notice row shows.
fn state_of(undeliverable: bool, read: bool, replied: bool) -> &'static str {
    match (undeliverable, replied, read) {
        (true, ..) => "undeliverable",
        (_, true, _) => "replied",
        (_, _, true) => "read",
        _ => "delivered",
    }
}

/// `notice.status-check` from `env.sender`: answered with `notice.status`.
pub(crate) async fn accept_status_check(
    state: &SimState,
    client: &mut deadpool_postgres::Object,
    env: &Envelope,
) -> Result<(), Problem> {
    let check = NoticeStatusCheck::decode(env.body.as_slice()).map_err(|_| malformed_body())?;
    if check.notice_ids.len() > MAX_CHECK_NOTICES {
        return Err(malformed_body());
    }
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let lookup = async {
        let stmt = tx
            .prepare_cached(
                "SELECT notice_id, undeliverable, read_at, reply_choice, replied_at
                 FROM portal_notices WHERE org_code = $1 AND notice_id = ANY($2)",
            )
            .await?;
        tx.query(&stmt, &[&env.sender, &check.notice_ids]).await
    };
    let (claimed, rows) = futures_util::join!(
        store::claim_message(&tx, &env.message_id, &env.sender, &env.kind),
        lookup,
    );
    if !claimed.or_problem("nws-sim")? {
        return Err(replayed());
    }
    let rows = rows.or_problem("nws-sim")?;
    let notices = check
        .notice_ids
        .iter()
        .map(|id| {
            match rows.iter().find(|r| r.get::<_, String>(0) == *id) {
                Some(r) => {
                    let undeliverable: Option<String> = r.get(1);
                    let read_at: Option<DateTime<Utc>> = r.get(2);
                    let reply_choice: Option<String> = r.get(3);
                    let replied_at: Option<DateTime<Utc>> = r.get(4);
                    NoticeState {
                        notice_id: id.clone(),
                        state: state_of(
                            undeliverable.is_some(),
                            read_at.is_some(),
                            replied_at.is_some(),
                        )
                        .into(),
                        read_at_ms: millis(read_at),
                        reply_choice: reply_choice.unwrap_or_default(),
                        replied_at_ms: millis(replied_at),
                        reason_code: undeliverable.unwrap_or_default(),
                    }
                }
                // Never sent here by this organisation (or another's id).
                None => NoticeState {
                    notice_id: id.clone(),
                    state: "unknown".into(),
                    ..Default::default()
                },
            }
        })
        .collect();
    let report = NoticeStatusReport {
        check_id: env.correlation_id.clone(),
        notices,
        reported_at_ms: state.clock.now().timestamp_millis(),
    };
    let answer = state.reply(
        env,
        &env.sender,
        "notice.status",
        &env.correlation_id,
        report.encode_to_vec(),
    );
    store::insert_delivery(&tx, Uuid::now_v7(), &env.sender, &answer)
        .await
        .or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    Ok(())
}

// ---- the portal, as a resident sees it ----

/// The resident's person id; a malformed 住民票コード becomes a 400 that does not echo it.
fn person_of(state: &SimState, rrc: &str) -> Result<Vec<u8>, InvalidId> {
    ResidentRecordCode::parse(rrc).map(|rrc| state.secret.person_id(&rrc))
}

#[derive(Debug, Serialize)]
struct PortalAttachment {
    file_name: String,
    media_type: String,
    size_bytes: usize,
    content_base64: String,
}

#[derive(Debug, Serialize)]
struct PortalNotice {
    notice_id: String,
    /// The sending organisation.
    org_code: String,
    org_name: String,
    state: &'static str,
    title: String,
    body: String,
    attachments: Vec<PortalAttachment>,
    reply_choices: Vec<String>,
    received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_choice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replied_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct PortalInbox {
    items: Vec<PortalNotice>,
}

/// `GET /v1/portal/residents/{rrc}/notices`: the resident's inbox, oldest first.
async fn list_notices(
    state: web::Data<SimState>,
    rrc: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let person = person_of(&state, &rrc).map_err(|e| Problem::invalid_field(&e))?;
    let client = state.pool.get().await.or_problem("nws-sim")?;
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT n.notice_id, n.org_code, o.name, n.content, n.received_at, n.read_at,
                            n.reply_choice, n.replied_at
                     FROM portal_notices n JOIN organisations o USING (org_code)
                     WHERE n.person_id = $1 ORDER BY n.received_at, n.notice_id",
                )
                .await
                .or_problem("nws-sim")?,
            &[&person],
        )
        .await
        .or_problem("nws-sim")?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let sealed: Option<Vec<u8>> = r.get(3);
        let content =
            NoticeContent::decode(sealed.unwrap_or_default().as_slice()).or_problem("nws-sim")?;
        let read_at: Option<DateTime<Utc>> = r.get(5);
        let replied_at: Option<DateTime<Utc>> = r.get(7);
        items.push(PortalNotice {
            notice_id: r.get(0),
            org_code: r.get(1),
            org_name: r.get(2),
            state: state_of(false, read_at.is_some(), replied_at.is_some()),
            title: content.title,
            body: content.body,
            attachments: content
                .attachments
                .into_iter()
                .map(|a| PortalAttachment {
                    size_bytes: a.content.len(),
                    content_base64: STANDARD.encode(&a.content),
                    file_name: a.file_name,
                    media_type: a.media_type,
                })
                .collect(),
            reply_choices: content.reply_choices,
            received_at: r.get(4),
            read_at,
            reply_choice: r.get(6),
            replied_at,
        });
    }
    Ok(HttpResponse::Ok().json(PortalInbox { items }))
}

#[derive(Debug, Serialize)]
struct PortalState {
    notice_id: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_choice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replied_at: Option<DateTime<Utc>>,
}

fn no_such_notice() -> Problem {
    Problem::not_found("お知らせ")
}

/// `POST /v1/portal/residents/{rrc}/notices/{notice_id}/read`: 既読 (idempotent).
async fn mark_read(
    state: web::Data<SimState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (rrc, notice_id) = path.into_inner();
    let person = person_of(&state, &rrc).map_err(|e| Problem::invalid_field(&e))?;
    let client = state.pool.get().await.or_problem("nws-sim")?;
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "UPDATE portal_notices SET read_at = coalesce(read_at, $3)
                     WHERE person_id = $1 AND notice_id = $2
                     RETURNING read_at, reply_choice, replied_at",
                )
                .await
                .or_problem("nws-sim")?,
            &[&person, &notice_id, &state.clock.now()],
        )
        .await
        .or_problem("nws-sim")?
        .ok_or_else(no_such_notice)?;
    let replied_at: Option<DateTime<Utc>> = row.get(2);
    Ok(HttpResponse::Ok().json(PortalState {
        notice_id,
        state: state_of(false, true, replied_at.is_some()),
        read_at: row.get(0),
        reply_choice: row.get(1),
        replied_at,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyInput {
    choice: String,
}

/// `POST /v1/portal/residents/{rrc}/notices/{notice_id}/reply`: 回答, once, with one of the
/// notice's reply choices; replying also marks the notice read.
async fn reply(
    state: web::Data<SimState>,
    path: web::Path<(String, String)>,
    body: web::Json<ReplyInput>,
) -> Result<HttpResponse, Problem> {
    let (rrc, notice_id) = path.into_inner();
    let person = person_of(&state, &rrc).map_err(|e| Problem::invalid_field(&e))?;
    let mut client = state.pool.get().await.or_problem("nws-sim")?;
    let tx = client.transaction().await.or_problem("nws-sim")?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT reply_choices, replied_at IS NOT NULL FROM portal_notices
                 WHERE person_id = $1 AND notice_id = $2 FOR UPDATE",
            )
            .await
            .or_problem("nws-sim")?,
            &[&person, &notice_id],
        )
        .await
        .or_problem("nws-sim")?
        .ok_or_else(no_such_notice)?;
    let choices: Vec<String> = row.get(0);
    let answered: bool = row.get(1);
    if answered {
        return Err(Problem::new(
            409,
            "already-replied",
            "Already replied",
            "このお知らせには回答済みです。",
            "回答は1回だけできます。",
        ));
    }
    if !choices.contains(&body.choice) {
        return Err(Problem::new(
            422,
            "invalid-choice",
            "Not one of the reply choices",
            "回答はお知らせの回答選択肢から選んでください。",
            "お知らせの reply_choices のいずれかを指定して再度送信してください。",
        ));
    }
    let now = state.clock.now();
    let updated = tx
        .query_one(
            &tx.prepare_cached(
                "UPDATE portal_notices
                 SET reply_choice = $3, replied_at = $4, read_at = coalesce(read_at, $4)
                 WHERE person_id = $1 AND notice_id = $2 RETURNING read_at",
            )
            .await
            .or_problem("nws-sim")?,
            &[&person, &notice_id, &body.choice, &now],
        )
        .await
        .or_problem("nws-sim")?;
    tx.commit().await.or_problem("nws-sim")?;
    Ok(HttpResponse::Ok().json(PortalState {
        notice_id,
        state: "replied",
        read_at: updated.get(0),
        reply_choice: Some(body.into_inner().choice),
        replied_at: Some(now),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_shows_its_furthest_state() {
        assert_eq!(state_of(false, false, false), "delivered");
        assert_eq!(state_of(false, true, false), "read");
        assert_eq!(state_of(false, true, true), "replied");
        assert_eq!(state_of(true, false, false), "undeliverable");
    }
}
