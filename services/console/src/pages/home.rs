//! ホーム: the organisation, whether the service and the NWS link are open now and when
//! that changes, and the screens of the staff member's roles.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::{
    Console,
    api::ApiError,
    pages::Failure,
    session::Staff,
    view::{self, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(show));
}

#[derive(Deserialize, Clone)]
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

/// How long the console reuses the operating status it fetched: it is the same for every
/// staff member, and `/v1/status` admits only a few requests a second per API process.
const STATUS_FRESH: Duration = Duration::from_secs(5);

/// The last operating status fetched, shared by every request of this console process.
#[derive(Default)]
pub struct StatusCache(Mutex<Option<(Instant, Status)>>);

impl StatusCache {
    async fn get(&self, console: &Console, staff: &Staff) -> Result<Status, ApiError> {
        if let Some((at, status)) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < STATUS_FRESH
        {
            return Ok(status.clone());
        }
        let status: Status = console.api.get(staff, "/v1/status").await?;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), status.clone()));
        Ok(status)
    }
}

async fn show(console: web::Data<Console>, staff: Staff) -> Result<HttpResponse, Failure> {
    let (tenant, status) = futures_util::join!(
        console.api.get::<Tenant>(&staff, "/v1/tenants/self"),
        console.status.get(&console, &staff),
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
