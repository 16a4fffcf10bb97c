//! 符号取得: ask for a resident's code, follow the request, and see whether a code is held.
//! The resident's numbers travel only in form bodies, never in a URL.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::shared::form_problem;
use crate::{
    Console,
    form::Posted,
    pages::Failure,
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/codes", web::get().to(show))
        .route("/codes/acquisitions", web::post().to(request))
        .route("/codes/acquisitions/{id}", web::get().to(follow))
        .route("/codes/holdings", web::post().to(holding));
}

#[derive(Deserialize, Serialize, Default, Clone)]
struct AcquisitionForm {
    #[serde(default)]
    integrated_addressee_number: String,
    #[serde(default)]
    resident_record_code: String,
}

#[derive(Deserialize, Serialize, Default, Clone)]
struct HoldingForm {
    #[serde(default)]
    integrated_addressee_number: String,
}

#[derive(Deserialize)]
struct Accepted {
    id: String,
}

#[derive(Deserialize)]
struct Holding {
    held: bool,
    obtained_at: Option<String>,
}

#[derive(Deserialize)]
struct Acquisition {
    id: String,
    status: String,
    created_at: String,
    completed_at: Option<String>,
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "codes.html")]
struct CodesPage {
    layout: Layout,
    acquisition: AcquisitionForm,
    acquisition_errors: Errors,
    holding: HoldingForm,
    holding_errors: Errors,
    /// The answer to a holding query: held, and since when (Japan time).
    held: Option<(bool, String)>,
}

impl CodesPage {
    fn new(staff: &Staff) -> CodesPage {
        CodesPage {
            layout: Layout::new(staff, Screen::Codes, "符号取得"),
            acquisition: AcquisitionForm::default(),
            acquisition_errors: Errors::default(),
            holding: HoldingForm::default(),
            holding_errors: Errors::default(),
            held: None,
        }
    }
}

const ACQUISITION_FIELDS: &[&str] = &["integrated_addressee_number", "resident_record_code"];

async fn show(staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Codes)?;
    view::page(&staff, &CodesPage::new(&staff))
}

async fn request(
    console: web::Data<Console>,
    posted: Posted<AcquisitionForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Codes)?;
    let body = AcquisitionForm {
        integrated_addressee_number: form.integrated_addressee_number.trim().to_string(),
        resident_record_code: form.resident_record_code.trim().to_string(),
    };
    match console
        .api
        .post::<Accepted>(&staff, "/v1/codes/acquisitions", &body)
        .await
    {
        Ok(a) => Ok(view::see_other(
            &staff,
            &format!("/codes/acquisitions/{}", a.id),
        )),
        Err(e) => {
            let problem = form_problem(e)?;
            let mut page = CodesPage::new(&staff);
            // The resident record code is not shown again: it is sent once, never kept.
            page.acquisition.integrated_addressee_number = body.integrated_addressee_number;
            page.acquisition_errors = Errors::from_problem(problem, ACQUISITION_FIELDS);
            view::page(&staff, &page)
        }
    }
}

async fn holding(
    console: web::Data<Console>,
    posted: Posted<HoldingForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Codes)?;
    let body = HoldingForm {
        integrated_addressee_number: form.integrated_addressee_number.trim().to_string(),
    };
    let answer = console
        .api
        .post::<Holding>(&staff, "/v1/codes/holdings/query", &body)
        .await;
    let mut page = CodesPage::new(&staff);
    page.holding = body;
    match answer {
        Ok(h) => {
            page.held = Some((
                h.held,
                h.obtained_at
                    .as_deref()
                    .map(view::jst_text)
                    .unwrap_or_default(),
            ));
        }
        Err(e) => {
            page.holding_errors =
                Errors::from_problem(form_problem(e)?, &["integrated_addressee_number"]);
        }
    }
    view::page(&staff, &page)
}

#[derive(Template)]
#[template(path = "acquisition.html")]
struct AcquisitionPage {
    layout: Layout,
    a: Acquisition,
    created_at: String,
    completed_at: String,
}

/// Only the status part, for htmx's polling while the request is pending.
#[derive(Template)]
#[template(path = "acquisition.html", block = "status")]
struct AcquisitionStatus {
    a: Acquisition,
    created_at: String,
    completed_at: String,
}

async fn follow(
    req: actix_web::HttpRequest,
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Codes)?;
    let a: Acquisition = console
        .api
        .get(&staff, &format!("/v1/codes/acquisitions/{id}"))
        .await?;
    let created_at = view::jst_text(&a.created_at);
    let completed_at = a
        .completed_at
        .as_deref()
        .map(view::jst_text)
        .unwrap_or_default();
    if view::is_htmx(&req) {
        return view::page(
            &staff,
            &AcquisitionStatus {
                a,
                created_at,
                completed_at,
            },
        );
    }
    let page = AcquisitionPage {
        layout: Layout::new(&staff, Screen::Codes, "符号取得要求の状態"),
        a,
        created_at,
        completed_at,
    };
    view::page(&staff, &page)
}
