//! 副本: upload a registration list and follow it through the batch, today's quota and
//! upload slots, the batch runs and what they carried over, the replica counts, reconciliation
//! files, and bulk deletion behind a confirmation step.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use crate::{
    Console,
    form::Posted,
    pages::Failure,
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

use super::shared::{self, encode_component, form_problem, grouped, optional};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/replicas", web::get().to(show))
        .route("/replicas/uploads", web::post().to(upload))
        .route("/replicas/uploads/{id}", web::get().to(follow_upload))
        .route("/replicas/counts", web::get().to(counts))
        .route("/replicas/reconciliations", web::post().to(reconcile))
        .route(
            "/replicas/reconciliations/{id}",
            web::get().to(follow_reconciliation),
        )
        .route(
            "/replicas/reconciliations/{id}/file",
            web::get().to(reconciliation_file),
        )
        .route("/replicas/bulk-deletions", web::post().to(bulk_delete));
}

/// Largest registration list the console passes on. The console holds the whole file in
/// memory before sending it, so very large lists belong to the business system's own
/// upload through the API, which streams.
const LIST_LIMIT: usize = 100 * 1024 * 1024;

/// Rejections shown per page of an upload's result.
const REJECTIONS_PAGE: usize = 500;

#[derive(Deserialize)]
struct Caps {
    records: i64,
    bytes: i64,
}

#[derive(Deserialize)]
struct Quota {
    day: String,
    quota: Caps,
    used_records: i64,
    used_bytes: i64,
    remaining: Caps,
}

impl Quota {
    fn records_percent(&self) -> i64 {
        percent(self.used_records, self.quota.records)
    }
    fn bytes_percent(&self) -> i64 {
        percent(self.used_bytes, self.quota.bytes)
    }
}

#[derive(Deserialize)]
struct Slot {
    day: String,
    start: String,
    end: String,
}

impl Slot {
    fn day_label(&self) -> &str {
        match self.day.as_str() {
            "mon" => "月曜日",
            "tue" => "火曜日",
            "wed" => "水曜日",
            "thu" => "木曜日",
            "fri" => "金曜日",
            "sat" => "土曜日",
            "sun" => "日曜日",
            other => other,
        }
    }
}

#[derive(Deserialize)]
struct Slots {
    group: Option<String>,
    next_slot: Option<String>,
    slot_items: Vec<String>,
    slots: Vec<Slot>,
}

impl Slots {
    fn next(&self) -> String {
        self.next_slot
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct BatchRun {
    job: String,
    state: String,
    processed: i64,
    total: i64,
    carried: i64,
    rejected: i64,
    started_at: String,
    updated_at: String,
    summary: String,
}

impl BatchRun {
    fn job_label(&self) -> &str {
        match self.job.as_str() {
            "replica-uploads" => "副本登録",
            "reconciliations" => "突合用ファイル作成",
            other => other,
        }
    }
    fn state_label(&self) -> &'static str {
        match self.state.as_str() {
            "running" => "処理中",
            "done" => "完了",
            "failed" => "異常終了",
            _ => "不明",
        }
    }
    fn started(&self) -> String {
        view::jst_text(&self.started_at)
    }
    fn updated(&self) -> String {
        view::jst_text(&self.updated_at)
    }
}

/// One upload's result report (`UploadReport`).
#[derive(Deserialize)]
struct Upload {
    id: String,
    source: String,
    file_name: Option<String>,
    state: String,
    bytes: i64,
    entries: i64,
    precheck_rejected: i64,
    registered: i64,
    overwritten: i64,
    deleted: i64,
    carried: i64,
    rejected: i64,
    carried_nights: i32,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl Upload {
    fn state_label(&self) -> &'static str {
        match self.state.as_str() {
            "queued" => "処理待ち",
            "processing" => "処理中",
            "carried" => "繰越（次の夜間に処理）",
            "done" => "完了",
            _ => "不明",
        }
    }
    fn source_label(&self) -> &'static str {
        if self.source == "rest" {
            "日次更新 (REST)"
        } else {
            "ファイル"
        }
    }
    /// Still moving on its own, so worth polling (carried waits for the next night).
    fn moving(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "processing")
    }
    fn handled(&self) -> i64 {
        self.registered + self.overwritten + self.deleted + self.rejected
    }
    fn percent(&self) -> i64 {
        if self.state == "done" {
            100
        } else {
            percent(self.handled(), self.entries)
        }
    }
    fn created(&self) -> String {
        view::jst_text(&self.created_at)
    }
    fn started(&self) -> String {
        self.started_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }
    fn finished(&self) -> String {
        self.finished_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }
    fn size(&self) -> String {
        grouped(self.bytes)
    }
}

#[derive(Deserialize)]
struct Rejection {
    ordinal: i64,
    record_id: String,
    code: String,
    detail: String,
    action: String,
}

#[derive(Deserialize)]
struct Count {
    info_code: String,
    major_version: String,
    dataset: String,
    replicas: i64,
}

#[derive(Deserialize)]
struct Reconciliation {
    id: String,
    info_code: String,
    dataset: Option<String>,
    major_version: Option<String>,
    state: String,
    records: i64,
    created_at: String,
    ready_at: Option<String>,
}

impl Reconciliation {
    fn ready(&self) -> bool {
        self.state == "ready"
    }
    fn created(&self) -> String {
        view::jst_text(&self.created_at)
    }
    fn ready_time(&self) -> String {
        self.ready_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct UploadAccepted {
    upload_id: String,
}

#[derive(Deserialize)]
struct Deleted {
    deleted: i64,
}

/// `part` of `whole` in whole percent, 0 when there is no whole.
fn percent(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        0
    } else {
        (part.saturating_mul(100) / whole).clamp(0, 100)
    }
}

// ---- 副本登録: upload, quota, slots, batch runs, uploads ----

#[derive(Template)]
#[template(path = "replicas.html")]
struct ReplicasPage {
    layout: Layout,
    quota: Quota,
    slots: Slots,
    batches: Vec<BatchRun>,
    uploads: Vec<Upload>,
    errors: Errors,
}

impl ReplicasPage {
    fn carried_total(&self) -> i64 {
        self.uploads
            .iter()
            .filter(|u| u.state == "carried")
            .map(|u| u.carried)
            .sum()
    }
}

async fn show(console: web::Data<Console>, staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Replicas)?;
    overview(&console, &staff, Errors::default()).await
}

/// The registration screen, with `errors` of a refused upload above and beside its form.
async fn overview(
    console: &Console,
    staff: &Staff,
    errors: Errors,
) -> Result<HttpResponse, Failure> {
    let (quota, slots, batches, uploads) = futures_util::join!(
        console.api.get::<Quota>(staff, "/v1/replica-quota"),
        console.api.get::<Slots>(staff, "/v1/replica-upload-slots"),
        console
            .api
            .get::<Vec<BatchRun>>(staff, "/v1/batches?limit=20"),
        console
            .api
            .get::<Vec<Upload>>(staff, "/v1/replica-uploads?limit=50"),
    );
    let page = ReplicasPage {
        layout: Layout::new(staff, Screen::Replicas, "副本の登録"),
        quota: quota?,
        slots: slots?,
        batches: batches?,
        uploads: uploads?,
        errors,
    };
    view::page(staff, &page)
}

async fn upload(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Replicas)?;
    let parts = shared::read_multipart(&req, &staff, payload, LIST_LIMIT).await?;
    if parts.too_large {
        let problem = shared::too_large("file", "副本登録リスト", LIST_LIMIT);
        return overview(&console, &staff, Errors::from_problem(problem, &["file"])).await;
    }
    let Some(file) = parts.file("file") else {
        let problem = shared::missing_file("file", "副本登録リスト（XML）");
        return overview(&console, &staff, Errors::from_problem(problem, &["file"])).await;
    };
    let path = format!(
        "/v1/replica-uploads?file_name={}",
        encode_component(&file.file_name)
    );
    let sent = console
        .api
        .upload::<UploadAccepted>(
            &staff,
            reqwest::Method::POST,
            &path,
            "application/xml",
            file.body.clone(),
        )
        .await;
    match sent {
        Ok(a) => Ok(view::see_other(
            &staff,
            &format!("/replicas/uploads/{}", a.upload_id),
        )),
        Err(e) => {
            let errors = Errors::from_problem(form_problem(e)?, &["file"]);
            overview(&console, &staff, errors).await
        }
    }
}

// ---- one upload's progress and rejections ----

#[derive(Template)]
#[template(path = "replica_upload.html")]
struct UploadPage {
    layout: Layout,
    u: Upload,
    rejections: Vec<Rejection>,
    next_after: Option<i64>,
}

/// Only the status part, for htmx's polling while the upload is being processed.
#[derive(Template)]
#[template(path = "replica_upload.html", block = "status")]
struct UploadStatus {
    u: Upload,
    rejections: Vec<Rejection>,
    next_after: Option<i64>,
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: Option<i64>,
}

async fn follow_upload(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
    query: web::Query<After>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Replicas)?;
    let id = id.into_inner();
    let u: Upload = console
        .api
        .get(&staff, &format!("/v1/replica-uploads/{id}"))
        .await?;
    let rejections = rejections_of(&console, &staff, &u, query.after.unwrap_or(0)).await?;
    let next_after = (rejections.len() == REJECTIONS_PAGE)
        .then(|| rejections.last().map(|r| r.ordinal))
        .flatten();
    if view::is_htmx(&req) {
        let status = UploadStatus {
            u,
            rejections,
            next_after,
        };
        return view::page(&staff, &status);
    }
    let page = UploadPage {
        layout: Layout::new(&staff, Screen::Replicas, "副本登録の処理結果"),
        u,
        rejections,
        next_after,
    };
    view::page(&staff, &page)
}

/// The refused entries after `after`, asked for only when there are any.
async fn rejections_of(
    console: &Console,
    staff: &Staff,
    u: &Upload,
    after: i64,
) -> Result<Vec<Rejection>, Failure> {
    if u.rejected == 0 && u.precheck_rejected == 0 {
        return Ok(Vec::new());
    }
    let path = format!(
        "/v1/replica-uploads/{}/rejections?after={after}&limit={REJECTIONS_PAGE}",
        u.id
    );
    Ok(console.api.get(staff, &path).await?)
}

// ---- 件数・突合用ファイル・一括削除 ----

#[derive(Deserialize, Serialize, Default, Clone)]
struct ReconciliationForm {
    #[serde(default)]
    info_code: String,
    #[serde(default)]
    major_version: String,
    #[serde(default)]
    dataset: String,
}

#[derive(Deserialize, Serialize, Default, Clone)]
struct DeletionForm {
    #[serde(default)]
    info_code: String,
    #[serde(default)]
    major_version: String,
    #[serde(default)]
    dataset: String,
    /// `yes` only from the confirmation page: the first post merely asks.
    #[serde(default, skip_serializing)]
    confirm: String,
}

const KIND_FIELDS: &[&str] = &["info_code", "major_version", "dataset"];

#[derive(Template)]
#[template(path = "replica_counts.html")]
struct CountsPage {
    layout: Layout,
    counts: Vec<Count>,
    deleted: Option<i64>,
    rec: ReconciliationForm,
    rec_errors: Errors,
    del: DeletionForm,
    del_errors: Errors,
}

impl CountsPage {
    fn total(&self) -> i64 {
        self.counts.iter().map(|c| c.replicas).sum()
    }
}

#[derive(Deserialize)]
struct CountsQuery {
    #[serde(default)]
    deleted: Option<i64>,
}

async fn counts(
    console: web::Data<Console>,
    staff: Staff,
    query: web::Query<CountsQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Replicas)?;
    let mut page = counts_page(&console, &staff).await?;
    page.deleted = query.deleted;
    view::page(&staff, &page)
}

async fn counts_page(console: &Console, staff: &Staff) -> Result<CountsPage, Failure> {
    let counts: Vec<Count> = console.api.get(staff, "/v1/replica-counts").await?;
    Ok(CountsPage {
        layout: Layout::new(staff, Screen::Replicas, "副本の件数・突合・一括削除"),
        counts,
        deleted: None,
        rec: ReconciliationForm::default(),
        rec_errors: Errors::default(),
        del: DeletionForm::default(),
        del_errors: Errors::default(),
    })
}

async fn reconcile(
    console: web::Data<Console>,
    posted: Posted<ReconciliationForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Replicas)?;
    let body = serde_json::json!({
        "info_code": form.info_code.trim(),
        "major_version": optional(&form.major_version),
        "dataset": optional(&form.dataset),
    });
    match console
        .api
        .post::<Reconciliation>(&staff, "/v1/reconciliations", &body)
        .await
    {
        Ok(r) => Ok(view::see_other(
            &staff,
            &format!("/replicas/reconciliations/{}", r.id),
        )),
        Err(e) => {
            let problem = form_problem(e)?;
            let mut page = counts_page(&console, &staff).await?;
            page.rec = form;
            page.rec_errors = Errors::from_problem(problem, KIND_FIELDS);
            view::page(&staff, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "replica_reconciliation.html")]
struct ReconciliationPage {
    layout: Layout,
    r: Reconciliation,
}

async fn follow_reconciliation(
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Replicas)?;
    let r: Reconciliation = console
        .api
        .get(&staff, &format!("/v1/reconciliations/{}", id.into_inner()))
        .await?;
    let page = ReconciliationPage {
        layout: Layout::new(&staff, Screen::Replicas, "突合用ファイル"),
        r,
    };
    view::page(&staff, &page)
}

async fn reconciliation_file(
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Replicas)?;
    let path = format!("/v1/reconciliations/{}/file", id.into_inner());
    let file = console.api.download(&staff, &path).await?;
    Ok(shared::pass_on(&staff, file))
}

#[derive(Template)]
#[template(path = "replica_delete_confirm.html")]
struct ConfirmDeletionPage {
    layout: Layout,
    del: DeletionForm,
    /// Replicas of that kind now, from the counts (what the deletion would remove).
    matching: i64,
}

async fn bulk_delete(
    console: web::Data<Console>,
    posted: Posted<DeletionForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Replicas)?;
    let form = DeletionForm {
        info_code: form.info_code.trim().to_string(),
        major_version: form.major_version.trim().to_string(),
        dataset: form.dataset.trim().to_string(),
        confirm: form.confirm,
    };
    if form.confirm != "yes" {
        return confirm_deletion(&console, staff, form).await;
    }
    match console
        .api
        .post::<Deleted>(&staff, "/v1/replica-bulk-deletions", &form)
        .await
    {
        Ok(d) => Ok(view::see_other(
            &staff,
            &format!("/replicas/counts?deleted={}", d.deleted),
        )),
        Err(e) => {
            let problem = form_problem(e)?;
            let mut page = counts_page(&console, &staff).await?;
            page.del = form;
            page.del_errors = Errors::from_problem(problem, KIND_FIELDS);
            view::page(&staff, &page)
        }
    }
}

/// The first post only restates what would be deleted; nothing is deleted yet.
async fn confirm_deletion(
    console: &Console,
    staff: Staff,
    del: DeletionForm,
) -> Result<HttpResponse, Failure> {
    let counts: Vec<Count> = console.api.get(&staff, "/v1/replica-counts").await?;
    let matching = counts
        .iter()
        .filter(|c| {
            c.info_code == del.info_code
                && c.major_version == del.major_version
                && c.dataset == del.dataset
        })
        .map(|c| c.replicas)
        .sum();
    let page = ConfirmDeletionPage {
        layout: Layout::new(&staff, Screen::Replicas, "副本の一括削除の確認"),
        del,
        matching,
    };
    view::page(&staff, &page)
}
