//! The screens, one module each, and what a failed page shows.

mod codes;
mod flags;
pub(crate) mod home;
mod inquiries;
mod login;
mod notices;
mod provisions;
mod records;
mod replicas;
mod selfinfo;
mod shared;
mod statistics;
mod users;

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use askama::Template;

use crate::{
    api::ApiError,
    session::{Ended, Sealer},
};

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    login::routes(cfg);
    home::routes(cfg);
    codes::routes(cfg);
    inquiries::routes(cfg);
    provisions::routes(cfg);
    flags::routes(cfg);
    replicas::routes(cfg);
    notices::routes(cfg);
    selfinfo::routes(cfg);
    records::routes(cfg);
    statistics::routes(cfg);
    users::routes(cfg);
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum Failure {
    /// No session, or it ended: sign in again.
    SignedOut(Ended),
    /// The form's CSRF secret is missing or wrong.
    Csrf,
    /// The form could not be read.
    BadForm,
    /// The screen is not for the staff member's roles.
    Forbidden,
    /// Nothing of that name here (or it is another organisation's).
    NotFound,
    /// The API refused or failed.
    Api(ApiError),
    /// The console itself failed.
    Internal(&'static str, anyhow::Error),
}

impl Failure {
    pub fn internal(context: &'static str, e: impl Into<anyhow::Error>) -> Failure {
        Failure::Internal(context, e.into())
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        match e {
            ApiError::Problem(p) if p.status == 401 => Failure::SignedOut(Ended::Expired),
            ApiError::Problem(p) if p.status == 404 => Failure::NotFound,
            e => Failure::Api(e),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::SignedOut(_) => f.write_str("signed out"),
            Failure::Csrf => f.write_str("csrf"),
            Failure::BadForm => f.write_str("bad form"),
            Failure::Forbidden => f.write_str("forbidden"),
            Failure::NotFound => f.write_str("not found"),
            Failure::Api(ApiError::Problem(p)) => write!(f, "api {} {}", p.status, p.code),
            Failure::Api(ApiError::Unreachable(e)) => write!(f, "api unreachable: {e:#}"),
            Failure::Internal(c, e) => write!(f, "{c}: {e:#}"),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: &'static str,
    detail: String,
    action: String,
    support_id: Option<String>,
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        match self {
            Failure::SignedOut(_) => StatusCode::SEE_OTHER,
            Failure::Csrf | Failure::Forbidden => StatusCode::FORBIDDEN,
            Failure::BadForm => StatusCode::BAD_REQUEST,
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::Api(ApiError::Problem(p)) => {
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Failure::Api(ApiError::Unreachable(_)) => StatusCode::BAD_GATEWAY,
            Failure::Internal(..) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Failure::SignedOut(why) = self {
            let to = match why {
                Ended::Expired => "/login?ended=1",
                Ended::Absent => "/login",
            };
            // htmx follows HX-Redirect with a whole-page load instead of swapping the
            // login page into a fragment.
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, to))
                .insert_header(("HX-Redirect", to))
                .cookie(Sealer::removal())
                .finish();
        }
        match self {
            Failure::Api(ApiError::Unreachable(e)) => {
                tracing::error!(error = %format!("{e:#}"), "the API gave no usable answer");
            }
            Failure::Internal(context, e) => {
                tracing::error!(context, error = %format!("{e:#}"), "console failure");
            }
            _ => {}
        }
        let (title, detail, action, support_id) = match self {
            Failure::Csrf => (
                "要求を受け付けられません",
                "画面の有効期限が切れたか、別の画面から送信されました。".into(),
                "画面を開き直してから、もう一度操作してください。".into(),
                None,
            ),
            Failure::BadForm => (
                "入力を読み取れません",
                "送信された内容を読み取れませんでした。".into(),
                "画面を開き直して入力し直してください。".into(),
                None,
            ),
            Failure::Forbidden => (
                "権限がありません",
                "この画面を使う権限がありません。".into(),
                "必要な権限をシステム管理者に依頼してください。".into(),
                None,
            ),
            Failure::NotFound => (
                "見つかりません",
                "指定されたものは見つかりません。".into(),
                "一覧から選び直してください。".into(),
                None,
            ),
            Failure::Api(ApiError::Problem(p)) => (
                "処理できませんでした",
                p.detail.clone(),
                p.action.clone(),
                p.support_id.clone(),
            ),
            Failure::Api(ApiError::Unreachable(_)) | Failure::Internal(..) => (
                "システムエラー",
                "中間サーバーに接続できないか、処理中に問題が発生しました。".into(),
                "しばらく待ってからもう一度操作してください。続く場合は運用窓口に連絡してください。".into(),
                None,
            ),
            Failure::SignedOut(_) => unreachable_title(),
        };
        let html = ErrorPage {
            title,
            detail,
            action,
            support_id,
        }
        .render()
        .unwrap_or_else(|_| title.to_string());
        HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .body(html)
    }
}

// Signed-out answers return above; this keeps the match total without a panic.
fn unreachable_title() -> (&'static str, String, String, Option<String>) {
    ("ログインしてください", String::new(), String::new(), None)
}

/// Any path the console does not have.
pub async fn not_found() -> Result<HttpResponse, Failure> {
    Err(Failure::NotFound)
}
