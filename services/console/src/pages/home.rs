//! ホーム: the organisation, whether the service and the NWS link are open now and when
//! that changes, and the screens of the staff member's roles.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::{
    Console,
    pages::Failure,
    session::Staff,
    view::{self, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(show));
}

#[derive(Deserialize)]
struct Status {
    state: String,
    message: String,
    next_change_at: String,
    next_opening: String,
}

#[derive(Deserialize)]
struct Tenant {
    org_code: String,
    name: String,
    upload_group: Option<String>,
    immediate_replica_processing: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    tenant: Tenant,
    status: Status,
    next_change_at: String,
    next_opening: String,
}

async fn show(console: web::Data<Console>, staff: Staff) -> Result<HttpResponse, Failure> {
    let (tenant, status) = futures_util::join!(
        console.api.get::<Tenant>(&staff, "/v1/tenants/self"),
        console.api.get::<Status>(&staff, "/v1/status"),
    );
    let (tenant, status) = (tenant?, status?);
    let page = HomePage {
        layout: Layout::new(&staff, Screen::Home, "ホーム"),
        next_change_at: view::jst_text(&status.next_change_at),
        next_opening: view::jst_text(&status.next_opening),
        tenant,
        status,
    };
    view::page(&staff, &page)
}
