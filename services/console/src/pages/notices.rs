//! お知らせ: write a notice to a resident (with reply choices and attachments), list and
//! search the notices, see one with its state and the resident's reply, and ask the NWS how
//! far notices got (状況確認要求). The resident's number travels only in form bodies: the
//! search is a POST, never a query string.

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{
        self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
    },
    web,
};
use askama::Template;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{
    Console,
    api::Problem,
    form::Posted,
    pages::Failure,
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

use super::shared::{self, encode_component, form_problem, grouped};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/notices", web::get().to(list))
        .route("/notices", web::post().to(send))
        .route("/notices/new", web::get().to(compose))
        .route("/notices/search", web::post().to(search))
        .route("/notices/status-checks", web::post().to(check))
        .route("/notices/status-checks/{id}", web::get().to(follow_check))
        .route("/notices/{id}", web::get().to(notice))
        .route("/notices/{id}/attachments/{n}", web::get().to(attachment));
}

/// Attachments of one notice together, decoded (the API's limit).
const ATTACHMENTS_LIMIT: usize = 512 * 1024;

/// Notices per page of the list.
const PAGE_SIZE: u32 = 50;

/// The states a notice passes through, as the API names them and as staff read them.
const STATES: [(&str, &str); 6] = [
    ("accepted", "受付済み"),
    ("sent", "送信済み"),
    ("delivered", "配信済み"),
    ("read", "既読"),
    ("replied", "回答あり"),
    ("undeliverable", "配信不能"),
];

fn state_label(state: &str) -> &'static str {
    STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map(|(_, label)| *label)
        .unwrap_or("不明")
}

fn time(t: &Option<String>) -> String {
    t.as_deref().map(view::jst_text).unwrap_or_default()
}

#[derive(Deserialize)]
struct NoticeList {
    items: Vec<Notice>,
    next_after: Option<String>,
}

#[derive(Deserialize)]
struct AttachmentView {
    file_name: String,
    media_type: String,
    size_bytes: i64,
    content_base64: String,
}

#[derive(Deserialize)]
struct Notice {
    notice_id: String,
    state: String,
    addressee_masked: String,
    title: String,
    attachment_count: i32,
    reply_choices_count: i32,
    accepted_at: String,
    deliver_at: Option<String>,
    dispatched_at: Option<String>,
    read_at: Option<String>,
    replied_at: Option<String>,
    status_at: Option<String>,
    reply_choice: Option<String>,
    reason_code: Option<String>,
    body: Option<String>,
    reply_choices: Option<Vec<String>>,
    attachments: Option<Vec<AttachmentView>>,
}

impl Notice {
    fn state_label(&self) -> &'static str {
        state_label(&self.state)
    }
    fn accepted(&self) -> String {
        view::jst_text(&self.accepted_at)
    }
    fn deliver(&self) -> String {
        time(&self.deliver_at)
    }
    fn dispatched(&self) -> String {
        time(&self.dispatched_at)
    }
    fn read(&self) -> String {
        time(&self.read_at)
    }
    fn replied(&self) -> String {
        time(&self.replied_at)
    }
    fn status_time(&self) -> String {
        time(&self.status_at)
    }
}

impl AttachmentView {
    fn size(&self) -> String {
        grouped(self.size_bytes)
    }
}

// ---- 一覧と検索 ----

/// The list's filters. Only from a form body: a GET query cannot carry `addressee`.
#[derive(Deserialize, Serialize, Default, Clone)]
struct SearchForm {
    #[serde(default)]
    addressee: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    after: String,
}

/// The list's address parameters: never a resident's number.
#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    after: String,
}

#[derive(Template)]
#[template(path = "notices.html")]
struct ListPage {
    layout: Layout,
    search: SearchForm,
    items: Vec<Notice>,
    next_after: Option<String>,
    errors: Errors,
    check_errors: Errors,
}

impl ListPage {
    fn states(&self) -> &'static [(&'static str, &'static str)] {
        &STATES
    }
    /// The next page's address when the search has no resident's number in it.
    fn next_href(&self, after: &str) -> String {
        format!(
            "/notices?state={}&after={}",
            encode_component(&self.search.state),
            encode_component(after)
        )
    }
}

const SEARCH_FIELDS: &[&str] = &["addressee", "state", "after"];

/// The API names the resident's number `integrated_addressee_number`; these forms call it
/// `addressee`, so its problems are placed beside that field.
fn on_addressee(mut problem: Problem) -> Problem {
    if problem.field.as_deref() == Some("integrated_addressee_number") {
        problem.field = Some("addressee".into());
    }
    problem
}

fn blank_to_null(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

async fn list(
    console: web::Data<Console>,
    staff: Staff,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Notices)?;
    let ListQuery { state, after } = query.into_inner();
    let search = SearchForm {
        addressee: String::new(),
        state,
        after,
    };
    let page = list_page(&console, &staff, search, Errors::default()).await?;
    view::page(&staff, &page)
}

async fn search(
    console: web::Data<Console>,
    posted: Posted<SearchForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Notices)?;
    let page = list_page(&console, &staff, form, Errors::default()).await?;
    view::page(&staff, &page)
}

/// The list for `search`; a refused search shows its problem beside the filters.
async fn list_page(
    console: &Console,
    staff: &Staff,
    search: SearchForm,
    check_errors: Errors,
) -> Result<ListPage, Failure> {
    let body = serde_json::json!({
        "addressee": blank_to_null(&search.addressee),
        "state": blank_to_null(&search.state),
        "after": blank_to_null(&search.after),
        "limit": PAGE_SIZE,
    });
    let found = console
        .api
        .post::<NoticeList>(staff, "/v1/notices/search", &body)
        .await;
    let mut page = ListPage {
        layout: Layout::new(staff, Screen::Notices, "お知らせ一覧"),
        search,
        items: Vec::new(),
        next_after: None,
        errors: Errors::default(),
        check_errors,
    };
    match found {
        Ok(l) => {
            page.items = l.items;
            page.next_after = l.next_after;
        }
        Err(e) => page.errors = Errors::from_problem(on_addressee(form_problem(e)?), SEARCH_FIELDS),
    }
    Ok(page)
}

// ---- 作成と送信 ----

#[derive(Default)]
struct ComposeForm {
    addressee: String,
    title: String,
    body: String,
    /// One choice a line.
    reply_choices: String,
    /// `datetime-local`, Japan time.
    deliver_at: String,
}

#[derive(Template)]
#[template(path = "notice_new.html")]
struct ComposePage {
    layout: Layout,
    form: ComposeForm,
    errors: Errors,
}

const COMPOSE_FIELDS: &[&str] = &[
    "addressee",
    "title",
    "body",
    "reply_choices",
    "deliver_at",
    "attachments",
];

#[derive(Serialize)]
struct AttachmentInput {
    file_name: String,
    media_type: String,
    content_base64: String,
}

#[derive(Serialize)]
struct NoticeBody {
    addressee: String,
    title: String,
    body: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reply_choices: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<AttachmentInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deliver_at: Option<String>,
}

#[derive(Deserialize)]
struct NoticeAccepted {
    notice_id: String,
}

async fn compose(staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Notices)?;
    let page = ComposePage {
        layout: Layout::new(&staff, Screen::Notices, "お知らせの作成"),
        form: ComposeForm::default(),
        errors: Errors::default(),
    };
    view::page(&staff, &page)
}

fn refused_compose(
    staff: &Staff,
    form: ComposeForm,
    problem: Problem,
) -> Result<HttpResponse, Failure> {
    let page = ComposePage {
        layout: Layout::new(staff, Screen::Notices, "お知らせの作成"),
        form,
        errors: Errors::from_problem(on_addressee(problem), COMPOSE_FIELDS),
    };
    view::page(staff, &page)
}

/// A `datetime-local` value read as Japan time, in RFC 3339 for the API.
fn deliver_at(local: &str) -> Option<String> {
    let t = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    t.and_local_timezone(chrono_tz::Asia::Tokyo)
        .single()
        .map(|t| t.to_rfc3339())
}

fn bad_deliver_at() -> Problem {
    Problem {
        status: 400,
        code: "invalid-field".into(),
        detail: "配信日時を読み取れません。".into(),
        action: "日付と時刻を指定し直してください。".into(),
        field: Some("deliver_at".into()),
        support_id: None,
    }
}

async fn send(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Notices)?;
    let parts = shared::read_multipart(&req, &staff, payload, ATTACHMENTS_LIMIT).await?;
    let form = ComposeForm {
        addressee: parts.text("addressee"),
        title: parts.text("title"),
        body: parts.text("body"),
        reply_choices: parts.text("reply_choices"),
        deliver_at: parts.text("deliver_at"),
    };
    if parts.too_large {
        let problem = shared::too_large("attachments", "添付ファイル", ATTACHMENTS_LIMIT);
        return refused_compose(&staff, form, problem);
    }
    let when = match form.deliver_at.as_str() {
        "" => None,
        local => match deliver_at(local) {
            Some(t) => Some(t),
            None => return refused_compose(&staff, form, bad_deliver_at()),
        },
    };
    let body = NoticeBody {
        addressee: form.addressee.clone(),
        title: form.title.clone(),
        body: form.body.clone(),
        reply_choices: form
            .reply_choices
            .lines()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        attachments: parts
            .files
            .iter()
            .filter(|f| f.field == "attachments")
            .map(|f| AttachmentInput {
                file_name: f.file_name.clone(),
                media_type: f.content_type.clone(),
                content_base64: base64::engine::general_purpose::STANDARD.encode(&f.body),
            })
            .collect(),
        deliver_at: when,
    };
    match console
        .api
        .post::<NoticeAccepted>(&staff, "/v1/notices", &body)
        .await
    {
        Ok(a) => Ok(view::see_other(
            &staff,
            &format!("/notices/{}", a.notice_id),
        )),
        Err(e) => refused_compose(&staff, form, form_problem(e)?),
    }
}

// ---- 1件のお知らせ ----

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage {
    layout: Layout,
    n: Notice,
}

async fn notice(
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Notices)?;
    let n: Notice = console
        .api
        .get(&staff, &format!("/v1/notices/{}", id.into_inner()))
        .await?;
    let page = NoticePage {
        layout: Layout::new(&staff, Screen::Notices, "お知らせ"),
        n,
    };
    view::page(&staff, &page)
}

/// One attachment of a notice, as a download (never shown inline: it came from outside the
/// console and is not the console's to render).
async fn attachment(
    console: web::Data<Console>,
    staff: Staff,
    path: web::Path<(uuid::Uuid, usize)>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Notices)?;
    let (id, n) = path.into_inner();
    let notice: Notice = console
        .api
        .get(&staff, &format!("/v1/notices/{id}"))
        .await?;
    let file = notice
        .attachments
        .unwrap_or_default()
        .into_iter()
        .nth(n)
        .ok_or(Failure::NotFound)?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(&file.content_base64)
        .map_err(|e| Failure::internal("attachment", e))?;
    let disposition = ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".into()),
            language_tag: None,
            value: file.file_name.into_bytes(),
        })],
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, file.media_type))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(disposition)
        .cookie(staff.renewed.clone())
        .body(body))
}

// ---- 状況確認要求 ----

#[derive(Deserialize)]
struct CheckForm {
    /// `yes` from the "every open notice" button.
    #[serde(default)]
    all_pending: String,
}

#[derive(Deserialize)]
struct CheckAccepted {
    check_id: String,
}

fn nothing_chosen() -> Problem {
    Problem {
        status: 422,
        code: "nothing-to-check".into(),
        detail: "状況を確認するお知らせが選ばれていません。".into(),
        action: "一覧でお知らせを選ぶか、「未完了のすべてを確認」を押してください。".into(),
        field: None,
        support_id: None,
    }
}

async fn check(
    console: web::Data<Console>,
    posted: Posted<CheckForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, pairs } = posted;
    view::require(&staff, Screen::Notices)?;
    // Check boxes repeat the name, so the ids come from every pair sent.
    let ids: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "notice_ids")
        .map(|(_, v)| v.as_str())
        .collect();
    let body = if form.all_pending == "yes" {
        serde_json::json!({ "all_pending": true })
    } else if ids.is_empty() {
        return refused_check(&console, &staff, nothing_chosen()).await;
    } else {
        serde_json::json!({ "notice_ids": ids })
    };
    match console
        .api
        .post::<CheckAccepted>(&staff, "/v1/notice-status-checks", &body)
        .await
    {
        Ok(a) => Ok(view::see_other(
            &staff,
            &format!("/notices/status-checks/{}", a.check_id),
        )),
        Err(e) => refused_check(&console, &staff, form_problem(e)?).await,
    }
}

/// The list again, the refusal of the check above it.
async fn refused_check(
    console: &Console,
    staff: &Staff,
    problem: Problem,
) -> Result<HttpResponse, Failure> {
    let errors = Errors::from_problem(problem, &[]);
    let page = list_page(console, staff, SearchForm::default(), errors).await?;
    view::page(staff, &page)
}

#[derive(Deserialize)]
struct CheckedNotice {
    notice_id: String,
    state: String,
    read_at: Option<String>,
    replied_at: Option<String>,
    reply_choice: Option<String>,
}

impl CheckedNotice {
    fn state_label(&self) -> &'static str {
        state_label(&self.state)
    }
    fn read(&self) -> String {
        time(&self.read_at)
    }
    fn replied(&self) -> String {
        time(&self.replied_at)
    }
}

#[derive(Deserialize)]
struct StatusCheck {
    check_id: String,
    state: String,
    requested_at: String,
    answered_at: Option<String>,
    reported: i32,
    notices: Vec<CheckedNotice>,
}

impl StatusCheck {
    fn pending(&self) -> bool {
        self.state == "pending"
    }
    /// The NWS answers a check whole, so it is 0 % until it has, then 100 %.
    fn percent(&self) -> u8 {
        if self.pending() { 0 } else { 100 }
    }
    fn requested(&self) -> String {
        view::jst_text(&self.requested_at)
    }
    fn answered(&self) -> String {
        time(&self.answered_at)
    }
}

#[derive(Template)]
#[template(path = "notice_check.html")]
struct CheckPage {
    layout: Layout,
    c: StatusCheck,
}

/// Only the status part, for htmx's polling until the NWS answers.
#[derive(Template)]
#[template(path = "notice_check.html", block = "status")]
struct CheckStatus {
    c: StatusCheck,
}

async fn follow_check(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Notices)?;
    let c: StatusCheck = console
        .api
        .get(
            &staff,
            &format!("/v1/notice-status-checks/{}", id.into_inner()),
        )
        .await?;
    if view::is_htmx(&req) {
        return view::page(&staff, &CheckStatus { c });
    }
    let page = CheckPage {
        layout: Layout::new(&staff, Screen::Notices, "状況確認要求"),
        c,
    };
    view::page(&staff, &page)
}
