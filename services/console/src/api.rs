//! The console's one way to data: the public HTTP API, called with the staff member's own
//! token (so every rule the API enforces holds on screen too), carrying the request's
//! trace and the browser's address for the login lockout.

use std::time::Duration;

use actix_web::http::header::HeaderName;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::session::Staff;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Where `POST /v1/auth/token` goes (`console.login_url`, else `base`).
    login_base: String,
    address_header: Option<HeaderName>,
}

/// The API's problem+json answer, as the console shows it.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Problem {
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub action: String,
    /// The request member it concerns, when one field is at fault.
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub support_id: Option<String>,
}

/// Why an API call gave no answer to show.
#[derive(Debug)]
pub enum ApiError {
    /// The API answered with a problem (boxed: it is large, and every page's `Result`
    /// carries this error).
    Problem(Box<Problem>),
    /// The API did not answer, or not with what it documents.
    Unreachable(anyhow::Error),
}

/// A token answer of `POST /v1/auth/token`.
#[derive(Deserialize)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
}

/// A file the API serves (CSV, result files), passed on as it is.
pub struct Download {
    pub content_type: String,
    pub disposition: Option<String>,
    pub body: bytes::Bytes,
}

impl Api {
    /// Calls `console.api_url`, checking an https API's certificate against
    /// `console.api_ca_file`.
    pub fn new(
        settings: &chukan_config::ConsoleSettings,
        address_header: Option<HeaderName>,
    ) -> anyhow::Result<Api> {
        let base = settings.api_url.as_str();
        let tls = chukan_tls::https::ClientTls::console_api(settings);
        let http = chukan_tls::https::client_builder(&tls)?
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let login = match settings.login_url.trim() {
            "" => base,
            url => url,
        };
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            login_base: login.trim_end_matches('/').to_string(),
            address_header,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Whether the API answers at all (the console's readiness). A 429 from the status
    /// route's own rate limit is an answer too: busy staff must not make the console unready.
    pub async fn is_up(&self) -> bool {
        matches!(
            self.http.get(self.url("/v1/status")).send().await,
            Ok(r) if r.status().is_success() || r.status().as_u16() == 429
        )
    }

    /// Password grant; `source` is the browser's address, which the API's lockout counts.
    pub async fn login(
        &self,
        tenant: &str,
        username: &str,
        password: &str,
        source: &str,
    ) -> Result<Issued, ApiError> {
        let token_url = format!("{}/v1/auth/token", self.login_base);
        let mut req = self.http.post(token_url).json(&serde_json::json!({
            "grant_type": "password", "tenant": tenant, "username": username, "password": password,
        }));
        if let Some(h) = &self.address_header {
            req = req.header(h.as_str(), source);
        }
        answer(traced(req).send().await).await
    }

    pub async fn get<T: DeserializeOwned>(&self, staff: &Staff, path: &str) -> Result<T, ApiError> {
        let req = self.http.get(self.url(path)).bearer_auth(staff.token());
        answer(traced(req).send().await).await
    }

    pub async fn send<T: DeserializeOwned>(
        &self,
        staff: &Staff,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ApiError> {
        let req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(staff.token())
            .json(body);
        answer(traced(req).send().await).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        staff: &Staff,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ApiError> {
        self.send(staff, reqwest::Method::POST, path, body).await
    }

    /// A request whose body is not JSON (a file upload), answered with JSON.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        staff: &Staff,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: bytes::Bytes,
    ) -> Result<T, ApiError> {
        let req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(staff.token())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        answer(traced(req).send().await).await
    }

    /// A file the API serves, passed through unchanged.
    pub async fn download(&self, staff: &Staff, path: &str) -> Result<Download, ApiError> {
        let req = self.http.get(self.url(path)).bearer_auth(staff.token());
        let res = traced(req)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.into()))?;
        if !res.status().is_success() {
            return Err(problem_of(res).await);
        }
        let header = |name| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE)
            .unwrap_or_else(|| "application/octet-stream".into());
        let disposition = header(reqwest::header::CONTENT_DISPOSITION);
        let body = res
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(e.into()))?;
        Ok(Download {
            content_type,
            disposition,
            body,
        })
    }
}

/// Continues the request's trace into the API, so a click is one trace.
fn traced(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match chukan_telemetry::current_traceparent() {
        Some(tp) => req.header("traceparent", tp),
        None => req,
    }
}

async fn answer<T: DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, ApiError> {
    let res = sent.map_err(|e| ApiError::Unreachable(e.into()))?;
    if !res.status().is_success() {
        return Err(problem_of(res).await);
    }
    let bytes = res
        .bytes()
        .await
        .map_err(|e| ApiError::Unreachable(e.into()))?;
    // 204 and empty bodies read as JSON null.
    let bytes = if bytes.is_empty() {
        bytes::Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Unreachable(e.into()))
}

async fn problem_of(res: reqwest::Response) -> ApiError {
    let status = res.status().as_u16();
    match res.json::<Problem>().await {
        Ok(mut p) => {
            p.status = status;
            ApiError::Problem(Box::new(p))
        }
        Err(e) => ApiError::Unreachable(anyhow::anyhow!("{status} without problem+json: {e}")),
    }
}
