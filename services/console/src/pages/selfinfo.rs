//! 自己情報: the files attached to every self-information answer of an item (list, upload,
//! download, delete), and the residents' self-information requests as staff may see them
//! (ids, state and counts; never the resident or the answer).

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

use super::shared::{self, encode_component, form_problem, grouped};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/selfinfo", web::get().to(show))
        .route("/selfinfo/attachments", web::post().to(upload))
        .route("/selfinfo/attachments/delete", web::post().to(delete))
        .route(
            "/selfinfo/attachments/{info_code}/{file_name}",
            web::get().to(download),
        )
        .route("/selfinfo/requests", web::get().to(requests))
        .route("/selfinfo/requests/{id}", web::get().to(request));
}

/// Largest attachment (`selfinfo.max_attachment_bytes`): the NWS carries an answer in one
/// envelope of at most 1 MiB.
const ATTACHMENT_LIMIT: usize = 512 * 1024;

const UPLOAD_FIELDS: &[&str] = &["info_code", "file_name", "file"];

#[derive(Deserialize)]
struct FileList {
    attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
struct Attachment {
    info_code: String,
    file_name: String,
    media_type: String,
    size_bytes: i64,
    uploaded_at: String,
    uploaded_by: String,
}

impl Attachment {
    /// The console's download address (the names are of an item's file, not of a person).
    fn href(&self) -> String {
        format!(
            "/selfinfo/attachments/{}/{}",
            encode_component(&self.info_code),
            encode_component(&self.file_name)
        )
    }
    fn uploaded(&self) -> String {
        view::jst_text(&self.uploaded_at)
    }
    fn size(&self) -> String {
        grouped(self.size_bytes)
    }
}

/// What the upload form shows again after a refusal (the file itself must be chosen again).
#[derive(Default)]
struct UploadForm {
    info_code: String,
    file_name: String,
}

#[derive(Template)]
#[template(path = "selfinfo.html")]
struct AttachmentsPage {
    layout: Layout,
    attachments: Vec<Attachment>,
    form: UploadForm,
    errors: Errors,
    delete_errors: Errors,
}

async fn show(console: web::Data<Console>, staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Selfinfo)?;
    let page = attachments_page(&console, &staff).await?;
    view::page(&staff, &page)
}

async fn attachments_page(console: &Console, staff: &Staff) -> Result<AttachmentsPage, Failure> {
    let list: FileList = console.api.get(staff, "/v1/selfinfo/attachments").await?;
    Ok(AttachmentsPage {
        layout: Layout::new(staff, Screen::Selfinfo, "自己情報提供の添付ファイル"),
        attachments: list.attachments,
        form: UploadForm::default(),
        errors: Errors::default(),
        delete_errors: Errors::default(),
    })
}

async fn upload(
    req: HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Selfinfo)?;
    let parts = shared::read_multipart(&req, &staff, payload, ATTACHMENT_LIMIT).await?;
    let form = UploadForm {
        info_code: parts.text("info_code"),
        file_name: parts.text("file_name"),
    };
    if parts.too_large {
        let problem = shared::too_large("file", "添付ファイル", ATTACHMENT_LIMIT);
        return refused_upload(&console, &staff, form, problem).await;
    }
    let Some(file) = parts.file("file") else {
        let problem = shared::missing_file("file", "添付ファイル");
        return refused_upload(&console, &staff, form, problem).await;
    };
    // The name to register: the one typed, else the chosen file's own.
    let name = if form.file_name.is_empty() {
        file.file_name.clone()
    } else {
        form.file_name.clone()
    };
    let path = format!(
        "/v1/selfinfo/attachments/{}/{}",
        encode_component(&form.info_code),
        encode_component(&name)
    );
    let sent = console
        .api
        .upload::<serde_json::Value>(
            &staff,
            reqwest::Method::PUT,
            &path,
            &file.content_type,
            file.body.clone(),
        )
        .await;
    match sent {
        Ok(_) => Ok(view::see_other(&staff, "/selfinfo")),
        Err(e) => refused_upload(&console, &staff, form, form_problem(e)?).await,
    }
}

async fn refused_upload(
    console: &Console,
    staff: &Staff,
    form: UploadForm,
    problem: crate::api::Problem,
) -> Result<HttpResponse, Failure> {
    let mut page = attachments_page(console, staff).await?;
    page.form = form;
    page.errors = Errors::from_problem(problem, UPLOAD_FIELDS);
    view::page(staff, &page)
}

#[derive(Deserialize, Serialize)]
struct DeleteForm {
    #[serde(default)]
    info_code: String,
    #[serde(default)]
    file_name: String,
}

async fn delete(
    console: web::Data<Console>,
    posted: Posted<DeleteForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Selfinfo)?;
    let path = format!(
        "/v1/selfinfo/attachments/{}/{}",
        encode_component(&form.info_code),
        encode_component(&form.file_name)
    );
    // The API answers 204 (read as null) and takes the empty JSON body without complaint.
    let sent = console
        .api
        .send::<serde_json::Value>(&staff, reqwest::Method::DELETE, &path, &())
        .await;
    match sent {
        Ok(_) => Ok(view::see_other(&staff, "/selfinfo")),
        Err(e) => {
            let problem = form_problem(e)?;
            let mut page = attachments_page(&console, &staff).await?;
            page.delete_errors = Errors::from_problem(problem, &[]);
            view::page(&staff, &page)
        }
    }
}

async fn download(
    console: web::Data<Console>,
    staff: Staff,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Selfinfo)?;
    let (info_code, file_name) = path.into_inner();
    let api_path = format!(
        "/v1/selfinfo/attachments/{}/{}",
        encode_component(&info_code),
        encode_component(&file_name)
    );
    let file = console.api.download(&staff, &api_path).await?;
    Ok(shared::pass_on(&staff, file))
}

// ---- 自己情報提供要求 ----

#[derive(Deserialize)]
struct RequestList {
    requests: Vec<SelfInfoRequest>,
}

#[derive(Deserialize)]
struct SelfInfoRequest {
    id: String,
    request_id: String,
    state: String,
    status: Option<String>,
    reason_code: Option<String>,
    reason: Option<String>,
    info_codes: Vec<String>,
    item_count: i32,
    record_count: i32,
    attachment_count: i32,
    attempts: i32,
    requested_at: Option<String>,
    received_at: String,
    answered_at: Option<String>,
}

impl SelfInfoRequest {
    fn state_label(&self) -> &'static str {
        match (self.state.as_str(), self.status.as_deref()) {
            ("answered", Some("refused")) => "回答済み（提供不可）",
            ("answered", _) => "回答済み",
            ("received", _) => "受付済み（回答準備中）",
            _ => "不明",
        }
    }
    /// The class that colours the state (the word says it too).
    fn state_class(&self) -> &'static str {
        match (self.state.as_str(), self.status.as_deref()) {
            ("answered", Some("refused")) => "refused",
            ("answered", _) => "done",
            _ => "pending",
        }
    }
    fn items(&self) -> String {
        if self.info_codes.is_empty() {
            "すべて".into()
        } else {
            self.info_codes.join("、")
        }
    }
    fn requested(&self) -> String {
        self.requested_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }
    fn received(&self) -> String {
        view::jst_text(&self.received_at)
    }
    fn answered(&self) -> String {
        self.answered_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "selfinfo_requests.html")]
struct RequestsPage {
    layout: Layout,
    requests: Vec<SelfInfoRequest>,
    state: String,
}

#[derive(Deserialize)]
struct RequestsQuery {
    #[serde(default)]
    state: String,
}

async fn requests(
    console: web::Data<Console>,
    staff: Staff,
    query: web::Query<RequestsQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Selfinfo)?;
    // Only the two states the API knows reach it; anything else lists every request.
    let state = match query.state.as_str() {
        s @ ("received" | "answered") => s.to_string(),
        _ => String::new(),
    };
    let path = if state.is_empty() {
        "/v1/selfinfo/requests?limit=200".to_string()
    } else {
        format!("/v1/selfinfo/requests?limit=200&state={state}")
    };
    let list: RequestList = console.api.get(&staff, &path).await?;
    let page = RequestsPage {
        layout: Layout::new(&staff, Screen::Selfinfo, "自己情報提供要求の一覧"),
        requests: list.requests,
        state,
    };
    view::page(&staff, &page)
}

#[derive(Template)]
#[template(path = "selfinfo_request.html")]
struct RequestPage {
    layout: Layout,
    r: SelfInfoRequest,
}

async fn request(
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Selfinfo)?;
    let r: SelfInfoRequest = console
        .api
        .get(
            &staff,
            &format!("/v1/selfinfo/requests/{}", id.into_inner()),
        )
        .await?;
    let page = RequestPage {
        layout: Layout::new(&staff, Screen::Selfinfo, "自己情報提供要求"),
        r,
    };
    view::page(&staff, &page)
}
