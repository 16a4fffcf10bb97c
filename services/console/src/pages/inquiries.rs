//! 情報照会: the inquiries of the organisation and their results, confirming answered ones in
//! bulk (enhancement #4), a new inquiry whose item choice follows the chosen procedure's row of
//! 別表第二 (enhancement #10), and bulk inquiry files with their per-line errors and result file.
//!
//! The resident's number is entered only in a POST body; URLs carry ids, 処理通番 and codes.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::shared::{form_problem, with_query};
use crate::{
    Console,
    api::{ApiError, Problem},
    form::Posted,
    pages::Failure,
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The fixed paths come before `/inquiries/{id}`, which would refuse them as no uuid.
    cfg.route("/inquiries", web::get().to(list))
        .route("/inquiries", web::post().to(create))
        .route("/inquiries/new", web::get().to(new))
        .route("/inquiries/new/items", web::get().to(items))
        .route("/inquiries/confirmations", web::post().to(confirm))
        .route("/inquiries/batches", web::get().to(batch_form))
        .route("/inquiries/batches", web::post().to(upload))
        .route("/inquiries/batches/{id}", web::get().to(batch))
        .route("/inquiries/batches/{id}/results", web::get().to(results))
        .route("/inquiries/{id}", web::get().to(show));
}

/// A problem the console itself states (nothing was sent to the API).
fn own_problem(detail: &str, action: &str) -> Problem {
    Problem {
        status: 400,
        detail: detail.into(),
        action: action.into(),
        ..Problem::default()
    }
}

fn time_or_dash(t: &Option<String>) -> String {
    t.as_deref()
        .map(view::jst_text)
        .unwrap_or_else(|| "—".into())
}

/// The state of an inquiry in words (the colour only repeats it).
fn status_word(status: &str) -> &'static str {
    match status {
        "sent" => "回答待ち",
        "provided" => "提供あり",
        "refused" => "提供されず",
        "not-permitted" => "照会不可（別表第二）",
        "unknown-code" => "符号不明",
        "unknown-provider" => "提供者不明",
        "expired" => "期限切れ",
        _ => "不明な状態",
    }
}

const STATUSES: [&str; 7] = [
    "sent",
    "provided",
    "refused",
    "not-permitted",
    "unknown-code",
    "unknown-provider",
    "expired",
];

// ---- the list and bulk confirmation ---------------------------------------------------------

#[derive(Deserialize, Clone)]
struct Record {
    dataset: String,
    major_version: String,
    payload_xml: String,
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default)]
    valid_to: Option<String>,
}

#[derive(Deserialize, Clone)]
struct Inquiry {
    id: String,
    serial_no: String,
    branch_no: i32,
    status: String,
    affair_code: String,
    procedure_code: String,
    info_code: String,
    provider_org: String,
    inquirer_non_disclosure: bool,
    provider_non_disclosure: bool,
    manual: bool,
    late: bool,
    record_count: i32,
    requested_at: String,
    expires_at: String,
    #[serde(default)]
    provided_at: Option<String>,
    #[serde(default)]
    result_at: Option<String>,
    #[serde(default)]
    confirmed_at: Option<String>,
    #[serde(default)]
    permit_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    reason_code: Option<String>,
    #[serde(default)]
    batch_id: Option<String>,
    #[serde(default)]
    records: Option<Vec<Record>>,
}

impl Inquiry {
    fn status_word(&self) -> &'static str {
        status_word(&self.status)
    }
    /// Still waiting for the NWS: the page keeps asking.
    fn pending(&self) -> bool {
        self.status == "sent"
    }
    /// A result came and nobody confirmed it yet: it may be confirmed.
    fn confirmable(&self) -> bool {
        self.result_at.is_some() && self.confirmed_at.is_none()
    }
    fn requested(&self) -> String {
        view::jst_text(&self.requested_at)
    }
    fn expires(&self) -> String {
        view::jst_text(&self.expires_at)
    }
    fn provided(&self) -> String {
        time_or_dash(&self.provided_at)
    }
    fn answered(&self) -> String {
        time_or_dash(&self.result_at)
    }
    fn confirmed(&self) -> String {
        time_or_dash(&self.confirmed_at)
    }
}

#[derive(Deserialize)]
struct InquiryPage {
    items: Vec<Inquiry>,
    #[serde(default)]
    next_after: Option<String>,
}

/// The list's filters, and what a confirmation just did (counts only).
#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    confirmed: String,
    #[serde(default)]
    serial_no: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    done: Option<i64>,
    #[serde(default)]
    already: Option<i64>,
    #[serde(default)]
    unanswered: Option<i64>,
    #[serde(default)]
    missing: Option<i64>,
    #[serde(default)]
    none: Option<String>,
}

impl ListQuery {
    /// The filters as the API takes them; values it does not know are dropped, not sent.
    fn filters(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if STATUSES.contains(&self.status.as_str()) {
            q.push(("status", self.status.clone()));
        }
        if matches!(self.confirmed.as_str(), "true" | "false") {
            q.push(("confirmed", self.confirmed.clone()));
        }
        let serial = self.serial_no.trim();
        if !serial.is_empty() {
            q.push(("serial_no", serial.to_string()));
        }
        q
    }

    fn outcome(&self) -> Option<Outcome> {
        Some(Outcome {
            confirmed: self.done?,
            already_confirmed: self.already.unwrap_or(0),
            not_answered: self.unanswered.unwrap_or(0),
            not_found: self.missing.unwrap_or(0),
        })
    }
}

/// What a confirmation did (the API's answer, and the list's notice after it).
#[derive(Deserialize)]
struct Outcome {
    confirmed: i64,
    already_confirmed: i64,
    not_answered: i64,
    not_found: i64,
}

struct StatusOption {
    value: &'static str,
    label: &'static str,
}

fn status_options() -> Vec<StatusOption> {
    STATUSES
        .iter()
        .map(|s| StatusOption {
            value: s,
            label: status_word(s),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "inquiries.html")]
struct ListPage {
    layout: Layout,
    status: String,
    confirmed: String,
    serial_no: String,
    statuses: Vec<StatusOption>,
    items: Vec<Inquiry>,
    next_href: Option<String>,
    outcome: Option<Outcome>,
    nothing_chosen: bool,
    errors: Errors,
}

async fn list(
    console: web::Data<Console>,
    staff: Staff,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    let q = query.into_inner();
    let mut api_query = q.filters();
    if Uuid::parse_str(&q.after).is_ok() {
        api_query.push(("after", q.after.clone()));
    }
    let page: InquiryPage = console
        .api
        .get(&staff, &with_query("/v1/inquiries", &api_query))
        .await?;
    let next_href = page.next_after.as_ref().map(|after| {
        let mut pairs = q.filters();
        pairs.push(("after", after.clone()));
        with_query("/inquiries", &pairs)
    });
    let page = ListPage {
        layout: Layout::new(&staff, Screen::Inquiries, "情報照会"),
        statuses: status_options(),
        items: page.items,
        next_href,
        outcome: q.outcome(),
        nothing_chosen: q.none.is_some(),
        errors: Errors::default(),
        status: q.status,
        confirmed: q.confirmed,
        serial_no: q.serial_no,
    };
    view::page(&staff, &page)
}

/// Where a confirmation came from, to go back there (only the console's own pages).
#[derive(Deserialize, Default)]
struct ConfirmForm {
    #[serde(default)]
    serial_no: String,
    #[serde(default)]
    back: String,
}

#[derive(Serialize)]
struct ConfirmBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    ids: Option<Vec<Uuid>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial_no: Option<String>,
}

/// `inquiry:{uuid}` or `batch:{uuid}` back to that page; anything else is the list.
fn back_to(back: &str) -> Option<String> {
    let (kind, id) = back.split_once(':')?;
    let id = Uuid::parse_str(id).ok()?;
    match kind {
        "inquiry" => Some(format!("/inquiries/{id}")),
        "batch" => Some(format!("/inquiries/batches/{id}")),
        _ => None,
    }
}

fn confirm_body(form: &ConfirmForm, pairs: &[(String, String)]) -> Option<ConfirmBody> {
    let serial = form.serial_no.trim();
    if !serial.is_empty() {
        return Some(ConfirmBody {
            ids: None,
            serial_no: Some(serial.to_string()),
        });
    }
    let ids: Vec<Uuid> = pairs
        .iter()
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, v)| Uuid::parse_str(v).ok())
        .collect();
    (!ids.is_empty()).then_some(ConfirmBody {
        ids: Some(ids),
        serial_no: None,
    })
}

async fn confirm(
    console: web::Data<Console>,
    posted: Posted<ConfirmForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, pairs } = posted;
    view::require(&staff, Screen::Inquiries)?;
    let back = back_to(&form.back);
    let Some(body) = confirm_body(&form, &pairs) else {
        return Ok(view::see_other(
            &staff,
            back.as_deref().unwrap_or("/inquiries?none=1"),
        ));
    };
    match console
        .api
        .post::<Outcome>(&staff, "/v1/inquiry-confirmations", &body)
        .await
    {
        Ok(o) => {
            let to = back.unwrap_or_else(|| {
                with_query(
                    "/inquiries",
                    &[
                        ("done", o.confirmed.to_string()),
                        ("already", o.already_confirmed.to_string()),
                        ("unanswered", o.not_answered.to_string()),
                        ("missing", o.not_found.to_string()),
                    ],
                )
            });
            Ok(view::see_other(&staff, &to))
        }
        Err(e) => {
            let problem = form_problem(e)?;
            confirm_refused(&console, staff, problem).await
        }
    }
}

/// The unfiltered list with why the confirmation was refused above it.
async fn confirm_refused(
    console: &Console,
    staff: Staff,
    problem: Problem,
) -> Result<HttpResponse, Failure> {
    let page: InquiryPage = console.api.get(&staff, "/v1/inquiries").await?;
    let list = ListPage {
        layout: Layout::new(&staff, Screen::Inquiries, "情報照会"),
        status: String::new(),
        confirmed: String::new(),
        serial_no: String::new(),
        statuses: status_options(),
        next_href: page
            .next_after
            .map(|a| with_query("/inquiries", &[("after", a)])),
        items: page.items,
        outcome: None,
        nothing_chosen: false,
        errors: Errors::from_problem(problem, &[]),
    };
    view::page(&staff, &list)
}

// ---- one inquiry -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "inquiry.html")]
struct DetailPage {
    layout: Layout,
    i: Inquiry,
}

/// Only the state and result, for htmx's polling while the answer is awaited.
#[derive(Template)]
#[template(path = "inquiry.html", block = "status")]
struct DetailStatus {
    layout: Layout,
    i: Inquiry,
}

async fn show(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    let i: Inquiry = console
        .api
        .get(&staff, &format!("/v1/inquiries/{id}"))
        .await?;
    let layout = Layout::new(&staff, Screen::Inquiries, "情報照会の状態と結果");
    if view::is_htmx(&req) {
        return view::page(&staff, &DetailStatus { layout, i });
    }
    view::page(&staff, &DetailPage { layout, i })
}

// ---- a new inquiry ---------------------------------------------------------------------------

#[derive(Deserialize, Clone, Default)]
struct Named {
    code: String,
    name: String,
}

#[derive(Deserialize, Clone, Default)]
struct Procedure {
    code: String,
    name: String,
    affair: Named,
    items: Vec<Named>,
}

#[derive(Deserialize)]
struct ProcedureList {
    procedures: Vec<Procedure>,
}

/// 別表第二 from the API, or why it is not at hand (the form then takes codes as text).
enum Table {
    Known(Vec<Procedure>),
    Unknown(Problem),
}

impl Table {
    async fn load(console: &Console, staff: &Staff) -> Result<Table, Failure> {
        match console
            .api
            .get::<ProcedureList>(staff, "/v1/procedures")
            .await
        {
            Ok(l) => Ok(Table::Known(l.procedures)),
            Err(ApiError::Problem(p)) if p.status == 401 => Err(ApiError::Problem(p).into()),
            // The API's own words when the NWS is out of reach (procedures-unavailable).
            Err(ApiError::Problem(p)) if p.status == 503 => Ok(Table::Unknown(*p)),
            Err(e) => {
                tracing::warn!(error = ?e, "procedures not available");
                Ok(Table::Unknown(own_problem(
                    "事務手続の一覧（別表第二）を取得できませんでした。",
                    "コードを直接入力してください。",
                )))
            }
        }
    }

    fn find(&self, code: &str) -> Option<&Procedure> {
        match self {
            Table::Known(list) => list.iter().find(|p| p.code == code),
            Table::Unknown(_) => None,
        }
    }
}

/// The procedures of one affair, for an `<optgroup>`.
struct Group {
    affair: Named,
    procedures: Vec<Procedure>,
}

fn groups(list: &[Procedure]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for p in list {
        match groups.iter_mut().find(|g| g.affair.code == p.affair.code) {
            Some(g) => g.procedures.push(p.clone()),
            None => groups.push(Group {
                affair: p.affair.clone(),
                procedures: vec![p.clone()],
            }),
        }
    }
    groups
}

#[derive(Deserialize, Serialize, Default, Clone)]
struct InquiryForm {
    #[serde(default)]
    affair_code: String,
    #[serde(default)]
    procedure_code: String,
    #[serde(default)]
    info_code: String,
    #[serde(default)]
    integrated_addressee_number: String,
    #[serde(default)]
    provider_org: String,
    /// `as_of` (時点) or `period` (期間).
    #[serde(default)]
    condition: String,
    #[serde(default)]
    as_of: String,
    #[serde(default)]
    period_from: String,
    #[serde(default)]
    period_to: String,
    #[serde(default)]
    year_kind: String,
}

impl InquiryForm {
    fn is_period(&self) -> bool {
        self.condition == "period"
    }
}

/// The info item choice of the chosen procedure (the htmx fragment).
#[derive(Default)]
struct Choice {
    procedure: Option<Procedure>,
    info_code: String,
}

#[derive(Template)]
#[template(path = "inquiry_new.html")]
struct NewPage {
    layout: Layout,
    form: InquiryForm,
    errors: Errors,
    groups: Vec<Group>,
    /// Why the procedures are not offered as a list, if they are not.
    table_problem: Option<Problem>,
    choice: Choice,
}

#[derive(Template)]
#[template(path = "inquiry_new.html", block = "items")]
struct ItemsFragment {
    choice: Choice,
    errors: Errors,
}

const INQUIRY_FIELDS: &[&str] = &[
    "affair_code",
    "procedure_code",
    "info_code",
    "integrated_addressee_number",
    "provider_org",
    "as_of",
    "period",
    "year_kind",
];

fn new_page(staff: &Staff, table: Table, form: InquiryForm, errors: Errors) -> NewPage {
    let choice = Choice {
        procedure: table.find(&form.procedure_code).cloned(),
        info_code: form.info_code.clone(),
    };
    let (groups, table_problem) = match table {
        Table::Known(list) => (groups(&list), None),
        Table::Unknown(p) => (Vec::new(), Some(p)),
    };
    NewPage {
        layout: Layout::new(staff, Screen::Inquiries, "情報照会の登録"),
        form,
        errors,
        groups,
        table_problem,
        choice,
    }
}

async fn new(console: web::Data<Console>, staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    let table = Table::load(&console, &staff).await?;
    let form = InquiryForm {
        condition: "as_of".into(),
        ..InquiryForm::default()
    };
    view::page(&staff, &new_page(&staff, table, form, Errors::default()))
}

#[derive(Deserialize)]
struct ItemsQuery {
    #[serde(default)]
    procedure_code: String,
}

/// The items the chosen procedure may ask (htmx swaps them under the procedure select).
async fn items(
    console: web::Data<Console>,
    staff: Staff,
    query: web::Query<ItemsQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    let table = Table::load(&console, &staff).await?;
    let fragment = ItemsFragment {
        choice: Choice {
            procedure: table.find(&query.procedure_code).cloned(),
            info_code: String::new(),
        },
        errors: Errors::default(),
    };
    view::page(&staff, &fragment)
}

#[derive(Serialize)]
struct Period {
    from: String,
    to: String,
}

#[derive(Serialize)]
struct InquiryBody {
    affair_code: String,
    procedure_code: String,
    info_code: String,
    integrated_addressee_number: String,
    provider_org: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    year_kind: Option<String>,
}

/// The API's body; the affair is the chosen procedure's own when the table is known.
fn inquiry_body(form: &InquiryForm, table: &Table) -> InquiryBody {
    let t = |s: &str| s.trim().to_string();
    let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let affair = table
        .find(form.procedure_code.trim())
        .map(|p| p.affair.code.clone())
        .unwrap_or_else(|| t(&form.affair_code));
    let (as_of, period) = if form.is_period() {
        let period = Period {
            from: t(&form.period_from),
            to: t(&form.period_to),
        };
        (None, Some(period))
    } else {
        (some(&form.as_of), None)
    };
    InquiryBody {
        affair_code: affair,
        procedure_code: t(&form.procedure_code),
        info_code: t(&form.info_code),
        integrated_addressee_number: t(&form.integrated_addressee_number),
        provider_org: t(&form.provider_org),
        as_of,
        period,
        year_kind: some(&form.year_kind),
    }
}

#[derive(Deserialize)]
struct Accepted {
    id: String,
}

async fn create(
    console: web::Data<Console>,
    posted: Posted<InquiryForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Inquiries)?;
    let table = Table::load(&console, &staff).await?;
    let body = inquiry_body(&form, &table);
    match console
        .api
        .post::<Accepted>(&staff, "/v1/inquiries", &body)
        .await
    {
        Ok(a) => Ok(view::see_other(&staff, &format!("/inquiries/{}", a.id))),
        Err(e) => {
            let mut problem = form_problem(e)?;
            // A 422 no-code concerns the resident entered, though the API names no field.
            if problem.code == "no-code" {
                problem.field = Some("integrated_addressee_number".into());
            }
            let errors = Errors::from_problem(problem, INQUIRY_FIELDS);
            view::page(&staff, &new_page(&staff, table, form, errors))
        }
    }
}

// ---- bulk inquiry files ----------------------------------------------------------------------

/// Largest upload: the API's 100,000 lines of 222 bytes, and room for the multipart frame.
const UPLOAD_LIMIT: usize = 24 * 1024 * 1024;

#[derive(Template)]
#[template(path = "inquiry_batches.html")]
struct UploadPage {
    layout: Layout,
    errors: Errors,
}

fn upload_page(staff: &Staff, errors: Errors) -> Result<HttpResponse, Failure> {
    let page = UploadPage {
        layout: Layout::new(staff, Screen::Inquiries, "一括照会ファイルの登録"),
        errors,
    };
    view::page(staff, &page)
}

async fn batch_form(staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    upload_page(&staff, Errors::default())
}

#[derive(Deserialize)]
struct BatchAccepted {
    batch_id: String,
}

fn too_large() -> Problem {
    own_problem(
        "ファイルが大きすぎます（10万行まで）。",
        "ファイルを分割して登録してください。",
    )
}

async fn upload(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    let parts = super::shared::read_multipart(&req, &staff, payload, UPLOAD_LIMIT).await?;
    if parts.too_large {
        return upload_page(&staff, Errors::from_problem(too_large(), &[]));
    }
    let Some(file) = parts.file("file") else {
        let p = own_problem(
            "一括照会ファイルが選ばれていません。",
            "ファイルを選んでから登録してください。",
        );
        return upload_page(&staff, Errors::from_problem(p, &[]));
    };
    match console
        .api
        .upload::<BatchAccepted>(
            &staff,
            reqwest::Method::POST,
            "/v1/inquiry-batches",
            "application/octet-stream",
            file.body.clone(),
        )
        .await
    {
        Ok(b) => Ok(view::see_other(
            &staff,
            &format!("/inquiries/batches/{}", b.batch_id),
        )),
        Err(e) => upload_page(&staff, Errors::from_problem(form_problem(e)?, &[])),
    }
}

#[derive(Deserialize)]
struct Batch {
    batch_id: String,
    serial_no: String,
    lines: i32,
    accepted: i32,
    rejected: i32,
    created_at: String,
    #[serde(default)]
    dispatched_at: Option<String>,
    waiting: i64,
    by_status: BTreeMap<String, i64>,
    confirmed: i64,
}

struct Count {
    word: &'static str,
    status: String,
    n: i64,
}

impl Batch {
    /// Lines not yet sent, or sent and not yet answered: the page keeps asking.
    fn in_progress(&self) -> bool {
        self.waiting > 0 || self.by_status.get("sent").is_some_and(|n| *n > 0)
    }
    fn counts(&self) -> Vec<Count> {
        self.by_status
            .iter()
            .map(|(s, n)| Count {
                word: status_word(s),
                status: s.clone(),
                n: *n,
            })
            .collect()
    }
    fn created(&self) -> String {
        view::jst_text(&self.created_at)
    }
    fn dispatched(&self) -> String {
        time_or_dash(&self.dispatched_at)
    }
}

#[derive(Deserialize)]
struct LineError {
    line: i32,
    field: String,
    code: String,
    detail: String,
}

#[derive(Deserialize)]
struct LineErrorPage {
    items: Vec<LineError>,
    #[serde(default)]
    next_after_line: Option<i32>,
}

#[derive(Deserialize)]
struct ErrorsQuery {
    #[serde(default)]
    after_line: Option<i32>,
}

#[derive(Template)]
#[template(path = "inquiry_batch.html")]
struct BatchPage {
    layout: Layout,
    b: Batch,
    errors: Vec<LineError>,
    /// The line the shown errors start after (0: from the first).
    after_line: i32,
    next_after_line: Option<i32>,
}

/// Only the progress counts, for htmx's polling while lines are on their way.
#[derive(Template)]
#[template(path = "inquiry_batch.html", block = "progress")]
struct BatchProgress {
    b: Batch,
}

/// Line errors shown on one page of the batch view.
const ERRORS_PER_PAGE: i32 = 200;

async fn batch(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<Uuid>,
    query: web::Query<ErrorsQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    let b: Batch = console
        .api
        .get(&staff, &format!("/v1/inquiry-batches/{id}"))
        .await?;
    if view::is_htmx(&req) {
        return view::page(&staff, &BatchProgress { b });
    }
    let after_line = query.after_line.unwrap_or(0).max(0);
    let errors: LineErrorPage = console
        .api
        .get(
            &staff,
            &format!(
                "/v1/inquiry-batches/{id}/errors?after_line={after_line}&limit={ERRORS_PER_PAGE}"
            ),
        )
        .await?;
    let page = BatchPage {
        layout: Layout::new(&staff, Screen::Inquiries, "一括照会の状況"),
        b,
        errors: errors.items,
        after_line,
        next_after_line: errors.next_after_line,
    };
    view::page(&staff, &page)
}

/// The result file, passed through as the API serves it (CSV, as an attachment).
async fn results(
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Inquiries)?;
    let file = console
        .api
        .download(&staff, &format!("/v1/inquiry-batches/{id}/results"))
        .await?;
    Ok(super::shared::pass_on(&staff, file))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_confirmation_goes_back_only_to_the_consoles_own_pages() {
        let id = "0190d6d4-8d0c-7aa1-9a7e-1c2b3d4e5f60";
        assert_eq!(
            back_to(&format!("inquiry:{id}")),
            Some(format!("/inquiries/{id}"))
        );
        assert_eq!(
            back_to(&format!("batch:{id}")),
            Some(format!("/inquiries/batches/{id}"))
        );
        assert_eq!(back_to("inquiry://evil.example/"), None);
        assert_eq!(back_to("https://evil.example"), None);
    }

    #[test]
    fn the_affair_follows_the_chosen_procedure_and_one_condition_is_sent() {
        let table = Table::Known(vec![Procedure {
            code: "JT00000000000001".into(),
            affair: Named {
                code: "JM00000000000009".into(),
                name: "事務".into(),
            },
            ..Procedure::default()
        }]);
        let form = InquiryForm {
            procedure_code: "JT00000000000001".into(),
            affair_code: "JM00000000000001".into(),
            condition: "period".into(),
            as_of: "2026-04-01".into(),
            period_from: "2025-04-01".into(),
            period_to: "2026-03-31".into(),
            ..InquiryForm::default()
        };
        let body = serde_json::to_value(inquiry_body(&form, &table)).unwrap();
        assert_eq!(body["affair_code"], "JM00000000000009");
        assert!(body.get("as_of").is_none());
        assert_eq!(body["period"]["from"], "2025-04-01");
        assert!(body.get("year_kind").is_none());
    }
}
