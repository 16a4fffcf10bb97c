//! REST routes of the notice service (business staff and business systems), and their
//! OpenAPI description ([`ApiDoc`]).

use std::collections::HashSet;

use actix_web::{HttpResponse, http::header, web};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::Duration;
use chukan_auth::Caller;
use chukan_core::{Problem, edge, ids::AddresseeNo, problem::ProtectedRouteProblems};
use chukan_crypto::TenantKeys;
use chukan_db::OrProblem as _;
use chukan_proto::{Message, NoticeContent};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::{
    NoticeService,
    dispatch::{Dispatch, dispatch},
    domain::{
        AttachmentInput, AttachmentView, CheckState, CheckedNotice, MAX_CHECK_NOTICES,
        MAX_SCHEDULE_DAYS, NOTICE_JSON_LIMIT, Notice, NoticeAccepted, NoticeBody, NoticeInput,
        NoticePage, NoticeQuery, NoticeStatus, ReplyChoice, StatusCheck, StatusCheckAccepted,
        StatusCheckBody, StatusCheckInput, aad, content_of,
    },
    metrics, outgoing, store,
};

/// The notice service's part of `/openapi.json`.
// The deprecated list form is still described, marked deprecated, for one release.
#[allow(deprecated)]
#[derive(OpenApi)]
#[openapi(
    paths(
        create_notice,
        search_notices,
        get_notice,
        list_notices,
        create_status_check,
        get_status_check
    ),
    components(schemas(
        NoticeInput,
        NoticeBody,
        NoticeQuery,
        AttachmentInput,
        NoticeAccepted,
        Notice,
        NoticeStatus,
        AttachmentView,
        NoticePage,
        StatusCheckInput,
        StatusCheckBody,
        ReplyChoice,
        StatusCheckAccepted,
        StatusCheck,
        CheckState,
        CheckedNotice,
        Problem
    )),
    tags((
        name = "notice",
        description = "お知らせ (notice): 住民のマイナポータルへ情報提供ネットワークシステム経由でお知らせ（本文・添付ファイル・回答選択肢）を送り、状況確認要求で既読・回答の状況を受け取ります。"
    ))
)]
pub struct ApiDoc;

// Who may call what is each operation's `security` (enforced by chukan-auth's gate):
// notices are business work, for staff at the console and business systems.

// The deprecated list form (the addressee in the query) is still served for one release.
#[allow(deprecated)]
pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<NoticeService>) {
    cfg.app_data(state)
        .service(
            web::resource("/v1/notices")
                // Attachments travel base64 in the JSON: this route alone takes bodies above
                // the server-wide limit.
                .app_data(chukan_core::problem::json_config(NOTICE_JSON_LIMIT))
                .route(web::post().to(create_notice))
                .route(web::get().to(list_notices)),
        )
        .service(edge::resource("/v1/notices/search").route(web::post().to(search_notices)))
        .route("/v1/notices/{id}", web::get().to(get_notice))
        .route(
            "/v1/notice-status-checks",
            web::post().to(create_status_check),
        )
        .route(
            "/v1/notice-status-checks/{id}",
            web::get().to(get_status_check),
        );
}

/// The tenant's keys, fetched before any transaction opens: a key row created now must
/// survive a refusal below.
async fn keys_of(
    state: &NoticeService,
    client: &chukan_db::PooledClient,
    tenant: &str,
) -> Result<std::sync::Arc<TenantKeys>, Problem> {
    state
        .vault
        .keys(&***client, tenant)
        .await
        .or_problem("keys")
}

fn refused(problem: Problem) -> Problem {
    metrics::request(&problem.code);
    problem
}

fn no_code_problem(addressee: &str) -> Problem {
    Problem::no_code(
        addressee,
        "符号取得（POST /v1/codes/acquisitions）で符号を取得してからお知らせを送信してください。",
    )
}

/// Opens a sealed text column; a failure is a defect (wrong key or a moved blob), a 500.
fn open_text(keys: &TenantKeys, sealed: &[u8], aad: &[u8]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&keys.decrypt(sealed, aad)?).into_owned())
}

/// `POST /v1/notices` → 202: the notice is on its way (or waits for its deliver_at).
#[utoipa::path(
    post,
    path = "/v1/notices",
    tag = "notice",
    operation_id = "createNotice",
    summary = "お知らせの送信 (send a notice)",
    description = "住民（団体内統合宛名番号）のマイナポータルへお知らせを送ります。件名は100文字、本文は4000文字まで、添付ファイルは5個・合計512KiB（base64で送信）まで、回答選択肢は10個（各50文字）までです。\
deliver_at を指定するとその日時に送信します（366日先まで）。受け付けると、お知らせ・NWSへの送信要求・監査記録を1トランザクションで登録して 202 を返します。符号が未取得の住民には送れません (422)。",
    request_body(content = NoticeBody, content_type = "application/json"),
    responses(
        (status = 202, description = "受け付けました", body = NoticeAccepted,
            headers(("Location" = String, description = "/v1/notices/{id}"))),
        (status = 400, description = "項目の形式が不正です (invalid-field, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "添付ファイル又は本文が大きすぎます (attachments-too-large, payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "符号が未取得です (no-code)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn create_notice(
    caller: Caller,
    state: web::Data<NoticeService>,
    body: web::Json<NoticeInput>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant().to_owned();
    let input = body.into_inner();
    let content = content_of(&input).map_err(|r| {
        let title = if r.status == 413 {
            "Attachments too large"
        } else {
            "Invalid field"
        };
        refused(Problem::new(
            r.status,
            r.code,
            title,
            r.detail,
            "お知らせの内容を制限内に収めて再度送信してください。",
        ))
    })?;
    let now = state.clock.now();
    if input
        .deliver_at
        .is_some_and(|t| t > now + Duration::days(MAX_SCHEDULE_DAYS))
    {
        return Err(refused(Problem::invalid(
            "配信日時（deliver_at）は366日先までで指定してください。",
            "配信日時を確認して再度送信してください。",
        )));
    }
    // A deliver_at already past means at once.
    let scheduled = input.deliver_at.filter(|t| *t > now);
    let addressee = input.addressee.as_str();

    let mut client = state.db.get().await.or_problem("pool")?;
    let keys = keys_of(&state, &client, &tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .or_problem("begin")?;
    let bidx = keys.blind_index(addressee);
    let Some(code_enc) = store::code_of(&tx, &bidx).await.or_problem("code")? else {
        return Err(refused(no_code_problem(addressee)));
    };

    let id = Uuid::now_v7();
    let row = id.as_bytes();
    let attachment_bytes: usize = content.attachments.iter().map(|a| a.content.len()).sum();
    let addressee_enc = keys.encrypt(addressee.as_bytes(), &aad(&tenant, "addressee", row));
    let title_enc = keys.encrypt(content.title.as_bytes(), &aad(&tenant, "title", row));
    let content_enc = keys.encrypt(&content.encode_to_vec(), &aad(&tenant, "content", row));
    store::insert_notice(
        &tx,
        &store::NewNotice {
            tenant: &tenant,
            id,
            bidx: &bidx,
            addressee_enc: &addressee_enc,
            title_enc: &title_enc,
            content_enc: &content_enc,
            attachment_count: i32::try_from(content.attachments.len()).unwrap_or(i32::MAX),
            attachment_bytes: i32::try_from(attachment_bytes).unwrap_or(i32::MAX),
            reply_choice_count: i32::try_from(content.reply_choices.len()).unwrap_or(i32::MAX),
            accepted_at: now,
            deliver_at: input.deliver_at,
        },
    )
    .await
    .or_problem("insert")?;
    match scheduled {
        Some(at) => {
            store::schedule(&tx, id, &tenant, at)
                .await
                .or_problem("schedule")?;
            tx.commit().await.or_problem("commit")?;
            state.scheduled.notify_one();
            metrics::request("scheduled");
        }
        None => {
            let code = open_text(&keys, &code_enc, &aad(&tenant, "code", &bidx))
                .or_problem("code seal")?;
            dispatch(
                &tx,
                Dispatch {
                    tenant: &tenant,
                    notice_id: id,
                    code: &code,
                    addressee,
                    content,
                    accepted_at: now,
                    now,
                },
            )
            .await
            .or_problem("dispatch")?;
            tx.commit().await.or_problem("commit")?;
            state.outbox.wake();
            metrics::request("accepted");
            metrics::dispatched("immediate");
        }
    }
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/notices/{id}")))
        .json(NoticeAccepted {
            notice_id: id,
            state: NoticeStatus::Accepted,
            accepted_at: now,
            deliver_at: input.deliver_at,
        }))
}

/// The API view of a row; `content` (the opened NoticeContent) only in the single view.
fn view(
    keys: &TenantKeys,
    tenant: &str,
    n: store::NoticeRow,
    content: Option<NoticeContent>,
) -> anyhow::Result<Notice> {
    let row = n.id.as_bytes();
    let addressee = open_text(keys, &n.addressee_enc, &aad(tenant, "addressee", row))?;
    let title = open_text(keys, &n.title_enc, &aad(tenant, "title", row))?;
    let reply_choice = n
        .reply_enc
        .as_deref()
        .map(|sealed| open_text(keys, sealed, &aad(tenant, "reply", row)))
        .transpose()?;
    let (body, attachments, reply_choices) = match content {
        Some(c) => (
            Some(c.body),
            Some(
                c.attachments
                    .into_iter()
                    .map(|a| AttachmentView {
                        size_bytes: a.content.len(),
                        content_base64: STANDARD.encode(&a.content),
                        file_name: a.file_name,
                        media_type: a.media_type,
                    })
                    .collect(),
            ),
            Some(c.reply_choices),
        ),
        None => (None, None, None),
    };
    Ok(Notice {
        notice_id: n.id,
        state: n.state,
        addressee_masked: chukan_core::ids::masked_addressee(&addressee),
        title,
        body,
        attachments,
        attachment_count: n.attachment_count,
        reply_choices_count: n.reply_choice_count,
        reply_choices,
        accepted_at: n.accepted_at,
        deliver_at: n.deliver_at,
        dispatched_at: n.dispatched_at,
        read_at: n.read_at,
        reply_choice,
        replied_at: n.replied_at,
        reason_code: n.reason_code,
        status_at: n.status_at,
    })
}

/// `GET /v1/notices/{id}` → the notice with its text, attachments and the resident's reply.
#[utoipa::path(
    get,
    path = "/v1/notices/{id}",
    tag = "notice",
    operation_id = "getNotice",
    summary = "お知らせの状態と内容 (a notice)",
    description = "お知らせの状態（accepted / sent / delivered / read / replied / undeliverable）、件名・本文・添付ファイル・回答選択肢、既読日時、住民の回答と回答日時を返します。\
宛名番号は下4桁以外を伏せて返します。状態は最後に受け取った状況確認結果の時点のものです。他団体のお知らせは見えません (404)。",
    params(("id" = Uuid, Path, description = "お知らせの id")),
    responses(
        (status = 200, description = "お知らせ", body = Notice),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "お知らせが見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_notice(
    caller: Caller,
    state: web::Data<NoticeService>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let id = id.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let keys = keys_of(&state, &client, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let Some(mut row) = store::notice(&tx, id).await.or_problem("select")? else {
        return Err(Problem::not_found("お知らせ"));
    };
    tx.commit().await.or_problem("commit")?;
    let content = match row.content_enc.take() {
        Some(sealed) => Some(
            keys.decrypt(&sealed, &aad(tenant, "content", id.as_bytes()))
                .map_err(anyhow::Error::from)
                .and_then(|plain| Ok(NoticeContent::decode(plain.as_slice())?))
                .or_problem("content")?,
        ),
        None => None,
    };
    let notice = view(&keys, tenant, row, content).or_problem("view")?;
    Ok(HttpResponse::Ok().json(notice))
}

/// `GET /v1/notices` → a page of notices (title and state, without body or attachments).
#[utoipa::path(
    get,
    path = "/v1/notices",
    tag = "notice",
    operation_id = "listNotices",
    summary = "お知らせの一覧 (deprecated: POST /v1/notices/search)",
    description = "非推奨: addressee（宛名番号）がURLに載り、プロキシやアクセスログに記録されます。POST /v1/notices/search を使ってください。次のリリースで削除します。",
    params(NoticeQuery),
    responses(
        (status = 200, description = "お知らせの一覧", body = NoticePage),
        (status = 400, description = "クエリの形式が不正です (invalid-query, invalid-field)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[deprecated = "the addressee travels in the URL: use POST /v1/notices/search"]
async fn list_notices(
    caller: Caller,
    state: web::Data<NoticeService>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, Problem> {
    list(&caller, &state, query.into_inner()).await
}

/// `POST /v1/notices/search` → a page of notices (title and state, without body or
/// attachments).
#[utoipa::path(
    post,
    path = "/v1/notices/search",
    tag = "notice",
    operation_id = "searchNotices",
    summary = "お知らせの一覧 (search notices)",
    description = "住民（addressee）・状態で絞り込んだお知らせの一覧を受付順に返します（本文・添付ファイルは含みません）。次のページは `next_after` を `after` に指定します。\
条件は本文で送ります（URLに個人の番号を載せないため）。",
    request_body(content = NoticeQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "お知らせの一覧", body = NoticePage),
        (status = 400, description = "項目の形式が不正です (invalid-field, malformed-json, invalid-character)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn search_notices(
    caller: Caller,
    state: web::Data<NoticeService>,
    body: web::Json<NoticeQuery>,
) -> Result<HttpResponse, Problem> {
    list(&caller, &state, body.into_inner()).await
}

async fn list(
    caller: &Caller,
    state: &NoticeService,
    q: NoticeQuery,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    if let Some(s) = q.state.as_deref()
        && NoticeStatus::parse(s).is_none()
    {
        return Err(Problem::invalid(
            "state は accepted, sent, delivered, read, replied, undeliverable のいずれかです。",
            "state の値を確認してください。",
        ));
    }
    let addressee = q
        .addressee
        .as_deref()
        .map(AddresseeNo::parse)
        .transpose()
        .map_err(|e| Problem::invalid_field(&e))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let mut client = state.db.get().await.or_problem("pool")?;
    let keys = keys_of(state, &client, tenant).await?;
    let bidx = addressee.map(|a| keys.blind_index(a.as_str()));
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let rows = store::list(&tx, bidx.as_deref(), q.state.as_deref(), q.after, limit)
        .await
        .or_problem("list")?;
    tx.commit().await.or_problem("commit")?;
    let full = rows.len() as i64 == limit;
    let items = rows
        .into_iter()
        .map(|r| view(&keys, tenant, r, None))
        .collect::<anyhow::Result<Vec<_>>>()
        .or_problem("view")?;
    let next_after = full.then(|| items.last().map(|n| n.notice_id)).flatten();
    Ok(HttpResponse::Ok().json(NoticePage { items, next_after }))
}

/// `POST /v1/notice-status-checks` → 202: a 状況確認要求 is on its way to the NWS.
#[utoipa::path(
    post,
    path = "/v1/notice-status-checks",
    tag = "notice",
    operation_id = "createNoticeStatusCheck",
    summary = "状況確認要求 (ask the NWS how far notices got)",
    description = "指定したお知らせ（notice_ids, 1000件まで）又は未完了の全お知らせ（all_pending: 送信済みで回答・配信不能になっていないもの、古い順に1000件まで）について、\
配信・既読・回答の状況を NWS に問い合わせます。結果は届き次第お知らせの状態に反映され、GET /v1/notice-status-checks/{id} で確認できます。",
    request_body(content = StatusCheckBody, content_type = "application/json"),
    responses(
        (status = 202, description = "受け付けました", body = StatusCheckAccepted,
            headers(("Location" = String, description = "/v1/notice-status-checks/{id}"))),
        (status = 400, description = "項目の形式が不正です (invalid-field)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "指定されたお知らせがありません (not-found)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "未送信のお知らせが含まれる、又は確認するお知らせがありません (notice-not-sent, nothing-to-check)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn create_status_check(
    caller: Caller,
    state: web::Data<NoticeService>,
    body: web::Json<StatusCheckInput>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant().to_owned();
    let input = body.into_inner();
    let refuse = |p: Problem| {
        metrics::check(&p.code);
        p
    };
    let named = match (input.notice_ids, input.all_pending.unwrap_or(false)) {
        (Some(ids), false) if !ids.is_empty() && ids.len() <= MAX_CHECK_NOTICES => {
            let mut seen = HashSet::new();
            Some(
                ids.into_iter()
                    .filter(|id| seen.insert(*id))
                    .collect::<Vec<_>>(),
            )
        }
        (None, true) => None,
        _ => {
            return Err(refuse(Problem::invalid(
                "notice_ids（1〜1000件）か all_pending: true のどちらか一方だけを指定してください。",
                "確認するお知らせの指定を見直して再度送信してください。",
            )));
        }
    };
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .or_problem("begin")?;
    let ids = match named {
        Some(ids) => {
            let known = store::known_notices(&tx, &ids).await.or_problem("known")?;
            if known.len() != ids.len() {
                return Err(refuse(Problem::not_found("お知らせ")));
            }
            if known.iter().any(|(_, dispatched)| !dispatched) {
                return Err(refuse(Problem::new(
                    422,
                    "notice-not-sent",
                    "Notice not sent yet",
                    "まだ送信されていない（配信日時前の）お知らせが含まれています。",
                    "配信日時を過ぎてから状況確認を行ってください。",
                )));
            }
            ids
        }
        None => {
            let ids = store::open_notices(&tx, MAX_CHECK_NOTICES as i64)
                .await
                .or_problem("open")?;
            if ids.is_empty() {
                return Err(refuse(Problem::new(
                    422,
                    "nothing-to-check",
                    "Nothing to check",
                    "状況確認が必要なお知らせ（送信済みで未回答のもの）はありません。",
                    "お知らせの一覧（GET /v1/notices）で状態を確認してください。",
                )));
            }
            ids
        }
    };
    let check_id = Uuid::now_v7();
    let now = state.clock.now();
    let request = outgoing::status_check(&tenant, check_id, &ids);
    let (inserted, queued) = futures_util::join!(
        store::insert_check(&tx, &tenant, check_id, &ids, now),
        chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &request),
    );
    inserted.or_problem("insert check")?;
    queued.or_problem("outbox")?;
    tx.commit().await.or_problem("commit")?;
    state.outbox.wake();
    metrics::check("sent");
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/v1/notice-status-checks/{check_id}"),
        ))
        .json(StatusCheckAccepted {
            check_id,
            notice_count: ids.len(),
            requested_at: now,
        }))
}

/// `GET /v1/notice-status-checks/{id}` → whether it was answered, and its notices' states.
#[utoipa::path(
    get,
    path = "/v1/notice-status-checks/{id}",
    tag = "notice",
    operation_id = "getNoticeStatusCheck",
    summary = "状況確認要求の結果 (a status check)",
    description = "状況確認要求が回答済みか（pending / answered）と、対象のお知らせそれぞれの現在の状態・既読日時・回答・回答日時を返します。",
    params(("id" = Uuid, Path, description = "状況確認要求の id")),
    responses(
        (status = 200, description = "状況確認要求", body = StatusCheck),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "状況確認要求が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_status_check(
    caller: Caller,
    state: web::Data<NoticeService>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let id = id.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let keys = keys_of(&state, &client, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let Some(check) = store::check(&tx, id).await.or_problem("check")? else {
        return Err(Problem::not_found("状況確認要求"));
    };
    let rows = store::checked(&tx, &check.notice_ids)
        .await
        .or_problem("checked")?;
    tx.commit().await.or_problem("commit")?;
    let notices = rows
        .into_iter()
        .map(|n| {
            let reply_choice = n
                .reply_enc
                .as_deref()
                .map(|s| open_text(&keys, s, &aad(tenant, "reply", n.id.as_bytes())))
                .transpose()?;
            Ok(CheckedNotice {
                notice_id: n.id,
                state: n.state,
                read_at: n.read_at,
                reply_choice,
                replied_at: n.replied_at,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .or_problem("reply seal")?;
    Ok(HttpResponse::Ok().json(StatusCheck {
        check_id: id,
        state: if check.answered_at.is_some() {
            CheckState::Answered
        } else {
            CheckState::Pending
        },
        requested_at: check.requested_at,
        answered_at: check.answered_at,
        reported: check.reported,
        notices,
    }))
}
