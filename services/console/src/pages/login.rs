//! ログイン and ログアウト. The password goes to the API's password grant; its lockout and
//! validity refusals are shown in the API's own words.
//!
//! The login form has no session yet, so it is guarded by a double-submit secret: a random
//! value in a short-lived `__Host-` cookie that must come back in the form. A page on
//! another site can neither read nor set it, so it cannot sign a browser into its own account.

use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    http::header,
    web,
};
use askama::Template;
use base64::Engine as _;
use rand::RngCore as _;
use serde::Deserialize;

use crate::{
    Console,
    api::{ApiError, Problem},
    form::Posted,
    pages::Failure,
    session::Sealer,
};

const PRELOGIN: &str = "__Host-chukan-login";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(show))
        .route("/login", web::post().to(submit))
        .route("/logout", web::post().to(logout));
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    secret: String,
    tenant: String,
    username: String,
    ended: bool,
    logged_out: bool,
    problem: Option<Problem>,
}

#[derive(Deserialize)]
struct Shown {
    #[serde(default)]
    ended: Option<String>,
    #[serde(default)]
    out: Option<String>,
}

fn prelogin_cookie(secret: String) -> Cookie<'static> {
    Cookie::build(PRELOGIN, secret)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::minutes(30))
        .finish()
}

fn render(page: LoginPage, status: actix_web::http::StatusCode) -> Result<HttpResponse, Failure> {
    let html = page.render().map_err(|e| Failure::internal("render", e))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .cookie(prelogin_cookie(page.secret))
        .body(html))
}

fn fresh_secret() -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn show(query: web::Query<Shown>) -> Result<HttpResponse, Failure> {
    render(
        LoginPage {
            secret: fresh_secret(),
            tenant: String::new(),
            username: String::new(),
            ended: query.ended.is_some(),
            logged_out: query.out.is_some(),
            problem: None,
        },
        actix_web::http::StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn submit(
    req: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<Credentials>,
) -> Result<HttpResponse, Failure> {
    let form = form.into_inner();
    let expected = req.cookie(PRELOGIN).map(|c| c.value().to_string());
    if expected
        .as_deref()
        .is_none_or(|e| e.is_empty() || e != form.secret)
    {
        return Err(Failure::Csrf);
    }
    let again = |problem: Problem| LoginPage {
        secret: fresh_secret(),
        tenant: form.tenant.clone(),
        username: form.username.clone(),
        ended: false,
        logged_out: false,
        problem: Some(problem),
    };
    // The browser's address, as the ingress in front of the console gave it.
    let source = chukan_core::edge::client_address(&req, console.address_header.as_ref());
    match console
        .api
        .login(
            form.tenant.trim(),
            form.username.trim(),
            &form.password,
            &source,
        )
        .await
    {
        Ok(issued) => {
            let now = chrono::Utc::now().timestamp();
            let staff = console.sessions.start(
                issued.access_token,
                form.username.trim(),
                issued.expires_in,
                now,
            )?;
            let mut gone = prelogin_cookie(String::new());
            gone.set_max_age(CookieDuration::ZERO);
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/"))
                .cookie(staff.renewed)
                .cookie(gone)
                .finish())
        }
        // The API's words for a wrong password, a lock or an ended validity.
        Err(ApiError::Problem(p)) if (400..500).contains(&p.status) => {
            let status = actix_web::http::StatusCode::from_u16(p.status)
                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
            render(again(*p), status)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct Nothing {}

/// Ends the session in the browser. (The token itself lapses at its expiry, at most
/// `auth.token_ttl_secs` later; the console no longer holds it.)
async fn logout(_: Posted<Nothing>) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login?out=1"))
        .cookie(Sealer::removal())
        .finish()
}
