//! What every page shares: the frame (who is signed in, the menu their roles allow, the
//! CSRF secret for forms), rendering with the renewed session cookie, Japan time, and
//! problems placed next to the field they concern.

use actix_web::{HttpResponse, http::header};
use askama::Template;
use chrono::{DateTime, Utc};

use crate::{api::Problem, pages::Failure, session::Staff};

/// The screens of the menu.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Screen {
    Home,
    Codes,
    Inquiries,
    Provisions,
    Flags,
    Replicas,
    Notices,
    Selfinfo,
    Records,
    Statistics,
    Users,
    Departments,
}

const BUSINESS: &str = "business_staff";
const ADMIN: &str = "system_admin";

impl Screen {
    const MENU: [Screen; 12] = [
        Screen::Home,
        Screen::Codes,
        Screen::Inquiries,
        Screen::Provisions,
        Screen::Flags,
        Screen::Replicas,
        Screen::Notices,
        Screen::Selfinfo,
        Screen::Records,
        Screen::Statistics,
        Screen::Users,
        Screen::Departments,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Screen::Home => "ホーム",
            Screen::Codes => "符号取得",
            Screen::Inquiries => "情報照会",
            Screen::Provisions => "情報提供",
            Screen::Flags => "フラグ",
            Screen::Replicas => "副本",
            Screen::Notices => "お知らせ",
            Screen::Selfinfo => "自己情報",
            Screen::Records => "情報提供等記録",
            Screen::Statistics => "統計",
            Screen::Users => "利用者管理",
            Screen::Departments => "部署管理",
        }
    }

    pub fn href(self) -> &'static str {
        match self {
            Screen::Home => "/",
            Screen::Codes => "/codes",
            Screen::Inquiries => "/inquiries",
            Screen::Provisions => "/provisions",
            Screen::Flags => "/flags",
            Screen::Replicas => "/replicas",
            Screen::Notices => "/notices",
            Screen::Selfinfo => "/selfinfo",
            Screen::Records => "/records",
            Screen::Statistics => "/statistics",
            Screen::Users => "/users",
            Screen::Departments => "/departments",
        }
    }

    /// Whether the staff member's roles may use the screen at all (the API decides each call;
    /// a screen nobody of these roles may use is not offered).
    pub fn allowed(self, staff: &Staff) -> bool {
        let (business, admin) = (staff.has_role(BUSINESS), staff.has_role(ADMIN));
        match self {
            Screen::Home => true,
            Screen::Codes
            | Screen::Inquiries
            | Screen::Provisions
            | Screen::Flags
            | Screen::Notices
            | Screen::Selfinfo => business,
            Screen::Replicas | Screen::Records | Screen::Statistics => business || admin,
            Screen::Users | Screen::Departments => admin,
        }
    }
}

pub struct Nav {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The frame around every signed-in page.
pub struct Layout {
    pub title: String,
    pub csrf: String,
    pub tenant: String,
    pub user: String,
    pub nav: Vec<Nav>,
    /// When the session ends at the latest, Japan time.
    pub ends_at: String,
}

impl Layout {
    pub fn new(staff: &Staff, screen: Screen, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            csrf: staff.csrf().to_string(),
            tenant: staff.tenant().to_string(),
            user: staff.login().to_string(),
            nav: Screen::MENU
                .iter()
                .filter(|s| s.allowed(staff))
                .map(|s| Nav {
                    href: s.href(),
                    label: s.label(),
                    current: *s == screen,
                })
                .collect(),
            ends_at: DateTime::from_timestamp(staff.expires(), 0)
                .map(|t| jst_time(&t))
                .unwrap_or_default(),
        }
    }
}

/// Refuses a screen the staff member's roles do not include, as the API would.
pub fn require(staff: &Staff, screen: Screen) -> Result<(), Failure> {
    if screen.allowed(staff) {
        Ok(())
    } else {
        Err(Failure::Forbidden)
    }
}

/// A rendered page with the session cookie renewed.
pub fn page(staff: &Staff, template: &impl Template) -> Result<HttpResponse, Failure> {
    let html = template
        .render()
        .map_err(|e| Failure::internal("render", e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .cookie(staff.renewed.clone())
        .body(html))
}

/// After a successful form: see the result at `to` (POST → redirect → GET). For an htmx
/// request the redirect is htmx's own header, so the whole page moves.
pub fn see_other(staff: &Staff, to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .cookie(staff.renewed.clone())
        .finish()
}

/// Whether htmx asked (for a fragment, not a whole page).
pub fn is_htmx(req: &actix_web::HttpRequest) -> bool {
    req.headers().contains_key("hx-request")
}

/// `2026-12-06 13:05:09` in Japan time.
pub fn jst(t: &DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `13:05` in Japan time.
pub fn jst_time(t: &DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%H:%M")
        .to_string()
}

/// An RFC 3339 time from the API in Japan time (unparseable text shown as it came).
pub fn jst_text(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| jst(&t.with_timezone(&Utc)))
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// The API's problems for one form: each next to its field, the rest above the form.
#[derive(Default)]
pub struct Errors {
    pub general: Vec<Problem>,
    fields: Vec<(String, Problem)>,
}

impl Errors {
    /// Places `problem` beside the form's field of that name, if the form has one.
    pub fn from_problem(problem: Problem, form_fields: &[&str]) -> Errors {
        let mut errors = Errors::default();
        match problem.field.clone() {
            Some(f) if form_fields.contains(&f.as_str()) => errors.fields.push((f, problem)),
            _ => errors.general.push(problem),
        }
        errors
    }

    pub fn on(&self, field: &str) -> Option<&Problem> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, p)| p)
    }

    pub fn is_empty(&self) -> bool {
        self.general.is_empty() && self.fields.is_empty()
    }
}
