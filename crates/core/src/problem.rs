//! RFC 9457 problem+json errors: a stable `code`, an English `title`, a Japanese `detail`
//! and an `action` telling the caller what to do next (enhancement #12).
//!
//! A `Problem` never carries personal data or internal causes: those go to the log.

use std::{borrow::Cow, sync::Arc};

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{StatusCode, header},
    web,
};
use serde::Serialize;

/// Base of the `type` URI; `type` is `{base}{code}`.
pub const TYPE_BASE: &str = "https://chukan.dev/problems/";

/// Media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// エラー応答 (error response): RFC 9457 problem details with a stable `code`, a Japanese
/// `detail` and the `action` to take next.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://chukan.dev/problems/forbidden",
    "title": "Forbidden",
    "status": 403,
    "code": "forbidden",
    "detail": "この操作を行う権限がありません。",
    "action": "必要な権限をシステム管理者に依頼してください。"
}))]
pub struct Problem {
    /// `https://chukan.dev/problems/{code}`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short English summary, the same for every occurrence of a `code`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Stable, machine-readable; clients switch on this, never on the text.
    pub code: Cow<'static, str>,
    /// 日本語の説明 (Japanese explanation of what happened).
    pub detail: String,
    /// 次にすべきこと (what to do next).
    pub action: String,
    /// Seconds after which a retry may succeed (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// When the refused call can be made again, RFC 3339 (e.g. next opening time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_at: Option<String>,
    /// The request member the problem concerns (`integrated_addressee_number`, …), when it
    /// is one field: a form shows the detail next to that field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 問い合わせ番号 (support id): the request's trace id, also in the server's log of the
    /// request, so the help desk can find what happened without any personal data. Set by
    /// the request boundary on every problem answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_id: Option<String>,
    /// Why a 5xx happened, for the log line the request boundary writes; never serialised.
    #[serde(skip)]
    pub cause: Option<Cause>,
}

/// The internal cause of a failure: which step failed and the error chain. It travels with
/// the [`Problem`] to the request boundary, which logs it once inside the request's span;
/// it is never part of the answer.
#[derive(Clone)]
pub struct Cause {
    /// The step that failed (`"keys"`, `"search"`, …): stable text, no values.
    pub context: &'static str,
    pub error: Arc<anyhow::Error>,
    /// True when a dependency (database, bus) did not answer: logged as a warning, 503.
    pub unavailable: bool,
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:#}", self.context, self.error)
    }
}

// Two problems are the same answer whatever their causes were.
impl PartialEq for Cause {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Cause {}

impl Problem {
    pub fn new(
        status: u16,
        code: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Self {
            type_uri: format!("{TYPE_BASE}{code}"),
            title: title.into(),
            status,
            code: Cow::Borrowed(code),
            detail: detail.into(),
            action: action.into(),
            retry_after: None,
            available_at: None,
            field: None,
            support_id: None,
            cause: None,
        }
    }

    /// 400 `invalid-field` with what is wrong and what to send instead.
    pub fn invalid(detail: impl Into<String>, action: impl Into<String>) -> Self {
        Self::new(400, "invalid-field", "Invalid field", detail, action)
    }

    /// 500 for `error`, which the request boundary logs (with `context`) and never shows.
    pub fn internal_because(context: &'static str, error: impl Into<anyhow::Error>) -> Self {
        Self::internal().with_cause(context, error.into(), false)
    }

    /// 503 (with `Retry-After`) for a dependency that did not answer; `error` is logged.
    pub fn unavailable_because(context: &'static str, error: impl Into<anyhow::Error>) -> Self {
        Self::unavailable().with_cause(context, error.into(), true)
    }

    fn with_cause(
        mut self,
        context: &'static str,
        error: anyhow::Error,
        unavailable: bool,
    ) -> Self {
        self.cause = Some(Cause {
            context,
            error: Arc::new(error),
            unavailable,
        });
        self
    }

    pub fn with_retry_after(mut self, secs: u64, available_at: Option<String>) -> Self {
        self.retry_after = Some(secs);
        self.available_at = available_at;
        self
    }

    /// 400 for a value that failed to parse.
    pub fn invalid_field(err: &crate::ids::InvalidId) -> Self {
        Self::new(
            400,
            "invalid-field",
            "Invalid field",
            err.detail_ja(),
            format!("{} の値を確認して再度送信してください。", err.field),
        )
        .for_field(err.field)
    }

    /// Names the request member the problem concerns.
    pub fn for_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422 `no-code`, in the published wording 「指定された団体内統合宛名番号「…」は符号が未取得です。」
    /// with the number masked to its last four digits; `action` says what to do after
    /// acquiring the code.
    pub fn no_code(addressee: &str, action: impl Into<String>) -> Self {
        Self::new(
            422,
            "no-code",
            "No code held for the resident",
            no_code_detail(addressee),
            action,
        )
    }

    pub fn not_found(what_ja: &str) -> Self {
        Self::new(
            404,
            "not-found",
            "Not found",
            format!("指定された{what_ja}は見つかりません。"),
            "識別子を確認してください。他団体のデータは参照できません。",
        )
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            401,
            "unauthenticated",
            "Unauthenticated",
            "認証トークンがないか、無効です。",
            "/v1/auth/token で新しいトークンを取得してください。",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            403,
            "forbidden",
            "Forbidden",
            "この操作を行う権限がありません。",
            "必要な権限をシステム管理者に依頼してください。",
        )
    }

    /// 500 with nothing of the cause; the caller logs the cause with the request's trace id.
    pub fn internal() -> Self {
        Self::new(
            500,
            "internal-error",
            "Internal error",
            "サーバ内部でエラーが発生しました。",
            "時間をおいて再度実行してください。解決しない場合は運用窓口に連絡してください（個人情報は送らないでください）。",
        )
    }

    /// 503 while a dependency (database, bus) does not answer.
    pub fn unavailable() -> Self {
        Self::new(
            503,
            "service-unavailable",
            "Service unavailable",
            "一時的にサービスを利用できません。",
            "しばらく待ってから再度実行してください。",
        )
        .with_retry_after(5, None)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code, self.status)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == 401 {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        let mut res = res.json(self);
        // The boundary finds the cause here whichever error type carried the problem.
        if let Some(cause) = &self.cause {
            res.extensions_mut().insert(cause.clone());
        }
        res
    }
}

/// The problem answers every authenticated route can give (401, 500, 503), documented once
/// and listed in each route's `responses(...)` beside its own.
pub struct ProtectedRouteProblems;

impl utoipa::IntoResponses for ProtectedRouteProblems {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::openapi::{
            ContentBuilder, Ref, RefOr, ResponseBuilder, ResponsesBuilder, schema::Schema,
        };
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(RefOr::<Schema>::Ref(Ref::from_schema_name("Problem"))))
                        .build(),
                )
                .build()
        };
        ResponsesBuilder::new()
            .response("401", problem("認証トークンがないか無効です (unauthenticated)"))
            .response("500", problem("サーバ内部エラー (internal-error)"))
            .response(
                "503",
                problem(
                    "サービス時間外、又は一時的に利用できません (outside-service-hours, service-unavailable); `Retry-After` 付き",
                ),
            )
            .build()
            .into()
    }
}

/// JSON extractor settings: size limit and problem+json for bodies that do not parse.
/// Serde's message is not echoed: it can quote the offending value.
/// The published wording for a resident without a code, the number masked.
pub fn no_code_detail(addressee: &str) -> String {
    format!(
        "指定された団体内統合宛名番号「{}」は符号が未取得です。",
        crate::ids::masked_addressee(addressee)
    )
}

pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit_bytes)
        .error_handler(|err, _req: &HttpRequest| json_problem(&err).into())
}

fn json_problem(err: &JsonPayloadError) -> Problem {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            Problem::new(
                413,
                "payload-too-large",
                "Payload too large",
                "リクエスト本文が大きすぎます。",
                "本文を小さくするか、一括処理はファイル連携の機能を使ってください。",
            )
        }
        JsonPayloadError::ContentType => Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "Content-Type が application/json ではありません。",
            "Content-Type: application/json を指定して送信してください。",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            // A field failed its domain parse (wrong digit count…): say which field if serde
            // names it, never the value.
            let msg = e.to_string();
            let field = crate::problem::field_hint(&msg);
            let problem = Problem::new(
                400,
                "invalid-field",
                "Invalid field",
                match &field {
                    Some(f) => format!("項目「{f}」の値が不正です。"),
                    None => "リクエスト本文の項目の値が不正です。".to_string(),
                },
                "API仕様（/openapi.json）で項目の形式を確認して再度送信してください。",
            );
            match field {
                Some(f) => problem.for_field(f),
                None => problem,
            }
        }
        _ => Problem::new(
            400,
            "malformed-json",
            "Malformed JSON",
            "リクエスト本文をJSONとして解釈できません。",
            "JSONの構文を確認して再度送信してください。",
        ),
    }
}

/// Pulls the field name out of serde's "unknown/missing/duplicate field `x`" and our
/// "x: reason" messages. Serde's other messages quote the *value* between back-quotes
/// ("invalid type: integer `207134`…"): never taken, or a mistyped resident's number would be
/// echoed back.
fn field_hint(msg: &str) -> Option<String> {
    for lead in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(start) = msg.find(lead) {
            let rest = &msg[start + lead.len()..];
            return rest.find('`').map(|end| rest[..end].to_string());
        }
    }
    if msg.contains('`') {
        return None;
    }
    // InvalidId's Display is "field: reason".
    let head = msg.split(':').next()?;
    head.chars()
        .all(|c| c.is_ascii_lowercase() || c == '_')
        .then(|| head.to_string())
}

/// Path extractor settings: a malformed id in the path is a 400, not a 404 or a panic.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, _req| {
        Problem::new(
            400,
            "invalid-path",
            "Invalid path parameter",
            "URLに含まれる識別子の形式が不正です。",
            "識別子を確認して再度送信してください。",
        )
        .into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        let problem = Problem::new(
            400,
            "invalid-query",
            "Invalid query parameter",
            "クエリパラメータの形式が不正です。",
            "API仕様（/openapi.json）で形式を確認して再度送信してください。",
        );
        // Name the parameter when serde does (never its value), for a form to mark it.
        match field_hint(&err.to_string()) {
            Some(f) => problem.for_field(f),
            None => problem,
        }
        .into()
    })
}

/// 404 for a URL the API does not have.
pub fn no_such_route() -> Problem {
    Problem::new(
        404,
        "no-such-route",
        "No such route",
        "指定されたURLは存在しません。",
        "API仕様（/openapi.json）でURLを確認してください。",
    )
}

/// The default service of a listener without an OpenAPI document: unknown routes answer
/// problem+json too (the API server uses [`crate::edge::unmatched`], which also answers 405).
pub async fn not_found_route() -> Result<HttpResponse, Problem> {
    Err(no_such_route())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, body::to_bytes, test};

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        org: crate::ids::OrgCode,
    }

    async fn echo(_b: web::Json<Body>) -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn problem_renders_as_problem_json_with_retry_after() {
        let p = Problem::unavailable();
        let res = p.error_response();
        assert_eq!(res.status(), 503);
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        assert_eq!(res.headers().get("retry-after").unwrap(), "5");
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["code"], "service-unavailable");
        assert_eq!(
            body["type"],
            "https://chukan.dev/problems/service-unavailable"
        );
        assert!(body["action"].as_str().unwrap().contains("再度"));
    }

    #[actix_web::test]
    async fn json_errors_become_problems_without_echoing_values() {
        let app = test::init_service(
            App::new()
                .app_data(json_config(64))
                .route("/", web::post().to(echo)),
        )
        .await;
        let cases: [(&str, u16, &str); 5] = [
            ("{not json", 400, "malformed-json"),
            ("{\"org\":\"98765\"}", 400, "invalid-field"),
            // A number where a string is expected: serde quotes the value; it is not echoed.
            ("{\"org\":98765}", 400, "invalid-field"),
            ("{\"org\":\"0123456789012345\",\"x98765\":1}", 200, ""),
            (
                "{\"org\":\"0123456789012345\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
                413,
                "payload-too-large",
            ),
        ];
        for (body, status, code) in cases {
            let req = test::TestRequest::post()
                .uri("/")
                .insert_header(("content-type", "application/json"))
                .set_payload(body)
                .to_request();
            let res = test::call_service(&app, req).await;
            assert_eq!(res.status().as_u16(), status, "{body}");
            if status == 200 {
                continue;
            }
            let bytes = to_bytes(res.into_body()).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["code"], code);
            assert!(!String::from_utf8_lossy(&bytes).contains("98765"));
        }
    }
}
