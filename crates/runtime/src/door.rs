//! Any door (ADR 0006): a request for an organisation homed in the other cell is forwarded to
//! that cell's API door, so a caller may use either region's address and gets one answer and
//! one trace.
//!
//! The organisation is the bearer token's `tenant` claim, read without verifying the token
//! (its home cell verifies it; a malformed token names no organisation and is refused here as
//! usual), or, for `POST /v1/auth/token`, the body's `tenant` (password grant) or the org code
//! a system client's id starts with (`<org code>.<hex>`: a client of an organisation not homed
//! here is unknown here). A request with no organisation (the platform realm, the OpenAPI
//! document, JWKS), for an organisation homed here, or already forwarded once
//! ([`FORWARDED_BY`]) is served here.
//!
//! The peer doors (`cells.peer_api_urls`) are tried in order; only a failure to connect moves
//! on to the next one (nothing reached the peer, so nothing can happen twice). Whatever a
//! door answers is handed back as it is. The middleware is installed only when peer doors are
//! configured (see [`Door::from_settings`]).

use std::{
    pin::Pin,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpMessage as _, HttpRequest, HttpResponse, ResponseError as _,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{Method, StatusCode, header},
    middleware::Next,
    web,
};
use anyhow::Context as _;
use base64::Engine as _;
use chukan_config::Settings;
use chukan_core::Problem;
use futures_util::{Stream, StreamExt as _};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

use crate::homed::HomedTenants;

/// Set on a forwarded request (value: the forwarding cell's `region`); a request carrying it
/// is never forwarded again, so two cells that both think an organisation is the other's
/// cannot pass a request back and forth.
pub const FORWARDED_BY: &str = "chukan-forwarded-by";

/// The token endpoint, whose body names the organisation.
const TOKEN_PATH: &str = "/v1/auth/token";

/// Bytes of one bulk inquiry line with its CR LF (`chukan-inquiry`'s `LINE_BYTES_WITH_END`):
/// the bulk file is the largest raw body a route takes, `inquiry.bulk_max_lines` of them.
const BULK_LINE_BYTES: usize = 222;

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), and the ones
/// the door sets itself.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // The peer's own host; the body's length is recomputed from what is sent.
    "host",
    "content-length",
    // Replaced by the door's own (its request span, one trace).
    "traceparent",
    FORWARDED_BY,
];

static FORWARDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    // A constant name and labels: this cannot fail.
    #[allow(clippy::expect_used)]
    let vec = IntCounterVec::new(
        Opts::new(
            "chukan_door_forwarded_total",
            "Requests forwarded to the peer cell's door, by result (ok: a door answered, \
             unreachable: no door could be reached, timeout: cells.forward_timeout_ms passed).",
        ),
        &["result"],
    )
    .expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(vec.clone()));
    vec
});

static FORWARD_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    // A constant name and buckets: this cannot fail.
    #[allow(clippy::expect_used)]
    let histogram = Histogram::with_opts(
        HistogramOpts::new(
            "chukan_door_forward_seconds",
            "Time from forwarding a request until the peer door's answer began (or it failed).",
        )
        .buckets(vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
    )
    .expect("valid metric definition");
    let _ = prometheus::default_registry().register(Box::new(histogram.clone()));
    histogram
});

/// The door's configuration and its HTTP client; app data of the API server.
pub struct Door {
    homed: Arc<HomedTenants>,
    /// Base URLs without a trailing `/`, in the order they are tried.
    peers: Vec<String>,
    http: reqwest::Client,
    region: String,
    deadline: Duration,
    body_cap: usize,
    /// The token endpoint's body is JSON: read only up to the JSON limit, whoever it is for.
    token_body_cap: usize,
}

impl Door {
    /// The door of `settings`, or None when no peer door is configured (one region: nothing
    /// is forwarded and the middleware passes every request through).
    pub fn from_settings(
        settings: &Settings,
        homed: Arc<HomedTenants>,
    ) -> anyhow::Result<Option<Door>> {
        let cells = &settings.cells;
        if cells.peer_api_urls.is_empty() {
            return Ok(None);
        }
        let tls = chukan_tls::https::ClientTls::ca_only("cells.peer_ca_file", &cells.peer_ca_file);
        let http = chukan_tls::https::client_builder(&tls)?
            // A door that does not take the connection soon is treated as down, and the next
            // one is tried within the same deadline.
            .connect_timeout(cells.forward_timeout.min(Duration::from_secs(5)))
            // A redirect is the peer's answer to the caller, not the door's to follow.
            .redirect(reqwest::redirect::Policy::none())
            // Cell to cell is a direct link; a proxy meant for the internet must not carry it.
            .no_proxy()
            .build()
            .context("building the peer door client (cells.*)")?;
        Ok(Some(Door {
            homed,
            peers: cells
                .peer_api_urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            http,
            region: settings.region.clone(),
            deadline: cells.forward_timeout,
            body_cap: largest_body(settings),
            token_body_cap: settings.server.json_limit_bytes,
        }))
    }

    /// Sends the request to the first peer door that takes the connection and hands its
    /// answer back; the problem answer when none could be reached or the deadline passed.
    async fn forward(&self, head: &HttpRequest, body: web::Bytes) -> HttpResponse {
        let started = Instant::now();
        let route = head
            .match_pattern()
            .unwrap_or_else(|| "forwarded".to_owned());
        let method = head.method().as_str().to_owned();
        let outcome =
            tokio::time::timeout(self.deadline, self.try_doors(head, body, started)).await;
        FORWARD_SECONDS.observe(started.elapsed().as_secs_f64());
        // The peer's answer may run out of time in reqwest's own clock (the per-request
        // timeout) a moment before ours: that is the same deadline passing.
        let outcome = match outcome {
            Ok(Err(e)) if ran_out_of_time(&e) => Err(e),
            Ok(result) => Ok(result),
            Err(elapsed) => Err(anyhow::Error::new(elapsed)),
        };
        match outcome {
            Ok(Ok((door, res))) => {
                FORWARDED.with_label_values(&["ok"]).inc();
                tracing::info!(
                    method,
                    route,
                    status = res.status().as_u16(),
                    door,
                    "forwarded to the peer cell"
                );
                self.answer(head, res, started)
            }
            Ok(Err(e)) => {
                FORWARDED.with_label_values(&["unreachable"]).inc();
                tracing::warn!(method, route, error = %format!("{e:#}"), "peer cell not reachable");
                problem_response(unreachable_problem())
            }
            Err(_) => {
                FORWARDED.with_label_values(&["timeout"]).inc();
                tracing::warn!(method, route, "peer cell did not answer in time");
                problem_response(timeout_problem())
            }
        }
    }

    /// The first door's answer, with its index; an error once every door refused the
    /// connection, or when one failed after the request may have reached it.
    async fn try_doors(
        &self,
        head: &HttpRequest,
        body: web::Bytes,
        started: Instant,
    ) -> anyhow::Result<(usize, reqwest::Response)> {
        let method = reqwest::Method::from_bytes(head.method().as_str().as_bytes())
            .context("request method")?;
        let path = head
            .uri()
            .path_and_query()
            .map_or_else(|| head.path().to_owned(), |p| p.as_str().to_owned());
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in forwarded_headers(head.headers()) {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_bytes(value),
            ) {
                headers.append(name, value);
            }
        }
        headers.insert(
            FORWARDED_BY,
            reqwest::header::HeaderValue::from_str(&self.region).context("region")?,
        );
        if let Some(traceparent) = chukan_telemetry::current_traceparent()
            .and_then(|t| reqwest::header::HeaderValue::from_str(&t).ok())
        {
            headers.insert("traceparent", traceparent);
        }
        let mut last = None;
        for (door, base) in self.peers.iter().enumerate() {
            let sent = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .headers(headers.clone())
                .body(body.clone())
                // What is left of the deadline; also bounds the answer's body, which streams
                // after the deadline's check.
                .timeout(self.deadline.saturating_sub(started.elapsed()))
                .send()
                .await;
            // The URL holds the caller's path (ids, perhaps an addressee number): never logged.
            let sent = sent.map_err(reqwest::Error::without_url);
            match sent {
                Ok(res) => return Ok((door, res)),
                // Nothing reached this door: the next one may take it.
                Err(e) if e.is_connect() => {
                    tracing::debug!(door, error = %e, "peer door not reachable");
                    last = Some(e);
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("peer door {door}"))),
            }
        }
        Err(match last {
            Some(e) => anyhow::Error::new(e).context("no peer door reachable"),
            None => anyhow::anyhow!("no peer door configured"),
        })
    }

    /// The peer's answer as the caller gets it: status, headers without the hop-by-hop ones,
    /// and the body (streamed).
    fn answer(&self, head: &HttpRequest, res: reqwest::Response, started: Instant) -> HttpResponse {
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut out = HttpResponse::build(status);
        let listed = connection_listed(
            res.headers()
                .get_all(reqwest::header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        for (name, value) in res.headers() {
            if !is_forwarded(name.as_str(), &listed) {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_str().as_bytes()),
                header::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                out.append_header((name, value));
            }
        }
        let no_body = head.method() == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if no_body {
            return out.finish();
        }
        let deadline = self.deadline.saturating_sub(started.elapsed());
        let stream = res
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.without_url())));
        // The answer's body is bounded by the same deadline as its head.
        let bounded = until_deadline(stream, deadline);
        out.streaming(bounded)
    }
}

/// Whether a forward failed because the door took the request and then the deadline passed
/// (not because no door could be connected to).
fn ran_out_of_time(e: &anyhow::Error) -> bool {
    e.downcast_ref::<reqwest::Error>()
        .is_some_and(|e| e.is_timeout() && !e.is_connect())
}

/// `stream`, ended with an error once `within` has passed.
fn until_deadline(
    stream: impl Stream<Item = Result<web::Bytes, std::io::Error>> + Unpin + 'static,
    within: Duration,
) -> impl Stream<Item = Result<web::Bytes, std::io::Error>> {
    let until = tokio::time::Instant::now() + within;
    futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(until, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "peer answer too slow",
                )),
                None,
            )),
        }
    })
}

/// The largest body any route takes, which is as much as the door buffers to forward: JSON
/// bodies (registration lists over REST), a bulk inquiry file, a self-information attachment.
fn largest_body(settings: &Settings) -> usize {
    [
        settings.server.json_limit_bytes,
        crate::LARGEST_JSON_BODY,
        settings
            .inquiry
            .bulk_max_lines
            .saturating_mul(BULK_LINE_BYTES),
        settings.selfinfo.max_attachment_bytes,
    ]
    .into_iter()
    .max()
    .unwrap_or(crate::LARGEST_JSON_BODY)
}

/// Middleware for `App::wrap(from_fn(door))`, inside the request boundary (its span is the
/// forwarded trace) and outside the auth gate (a peer's token is not valid here). Passes
/// everything through unless a [`Door`] is app data.
pub async fn door<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let Some(door) = req.app_data::<web::Data<Door>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if req.headers().contains_key(FORWARDED_BY) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let mut body = None;
    let org = match bearer_tenant(req.headers()) {
        Some(tenant) => Some(tenant),
        None if req.method() == Method::POST && req.path() == TOKEN_PATH => {
            match take_body(&mut req, door.token_body_cap).await {
                Ok(read) => {
                    let org = token_organisation(&read);
                    put_back(&mut req, read.clone());
                    body = Some(read);
                    org
                }
                Err(problem) => return Ok(refuse(req, problem)),
            }
        }
        None => None,
    };
    let Some(org) = org else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if door.homed.is_homed(&org).await {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let body = match body {
        Some(body) => body,
        None => match take_body(&mut req, door.body_cap).await {
            Ok(body) => body,
            Err(problem) => return Ok(refuse(req, problem)),
        },
    };
    let res = door.forward(req.request(), body).await;
    Ok(req.into_response(res).map_into_right_body())
}

fn refuse<B>(req: ServiceRequest, problem: Problem) -> ServiceResponse<EitherBody<B>> {
    req.into_response(problem_response(problem))
        .map_into_right_body()
}

fn problem_response(problem: Problem) -> HttpResponse {
    problem.error_response()
}

/// The request body, read whole up to `cap` bytes.
async fn take_body(req: &mut ServiceRequest, cap: usize) -> Result<web::Bytes, Problem> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > cap) {
        return Err(too_large_problem(cap));
    }
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::with_capacity(announced.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            Problem::new(
                400,
                "malformed-body",
                "Malformed body",
                "リクエスト本文を最後まで受信できませんでした。",
                "再度送信してください。",
            )
        })?;
        if body.len() + chunk.len() > cap {
            return Err(too_large_problem(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A request body as actix streams it.
type BodyStream = Pin<Box<dyn Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>>;

/// Gives the handlers the body the door has read.
fn put_back(req: &mut ServiceRequest, body: web::Bytes) {
    let stream = futures_util::stream::once(async move { Ok(body) });
    req.set_payload(Payload::from(Box::pin(stream) as BodyStream));
}

/// The `tenant` claim of an `Authorization: Bearer` JWT, not verified (the home cell does).
/// None for anything that is not a JWT with a non-empty string `tenant` (the platform realm
/// has none).
pub fn bearer_tenant(headers: &header::HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut parts = token.trim().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    non_empty(claims.get("tenant")?.as_str()?)
}

/// The organisation a `POST /v1/auth/token` body names: `tenant` of a password grant, or the
/// org code a system client's id begins with (`<org code>.<hex>`; `platform.…` is the
/// platform realm, no organisation).
pub fn token_organisation(body: &[u8]) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    match body.get("grant_type")?.as_str()? {
        "password" => non_empty(body.get("tenant")?.as_str()?),
        "client_credentials" => {
            let (org, _) = body.get("client_id")?.as_str()?.split_once('.')?;
            chukan_core::ids::OrgCode::parse(org)
                .ok()
                .map(|org| org.as_str().to_owned())
        }
        _ => None,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Header names a `Connection` header lists as hop-by-hop for this message.
fn connection_listed<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether a header travels from one side of the door to the other.
fn is_forwarded(name: &str, listed: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    !NOT_FORWARDED.contains(&name.as_str()) && !listed.contains(&name)
}

/// The caller's headers that go on to the peer door.
pub fn forwarded_headers(headers: &header::HeaderMap) -> Vec<(String, &[u8])> {
    let listed = connection_listed(
        headers
            .get_all(header::CONNECTION)
            .filter_map(|v| v.to_str().ok()),
    );
    headers
        .iter()
        .filter(|(name, _)| is_forwarded(name.as_str(), &listed))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes()))
        .collect()
}

fn unreachable_problem() -> Problem {
    Problem::new(
        502,
        "peer-cell-unreachable",
        "Peer cell unreachable",
        "この団体を担当するもう一方のセル（リージョン）に接続できませんでした。",
        "しばらくしてから再度実行してください。解消しない場合はプラットフォーム運用者に連絡してください。",
    )
}

fn timeout_problem() -> Problem {
    Problem::new(
        504,
        "peer-cell-timeout",
        "Peer cell timeout",
        "この団体を担当するもう一方のセル（リージョン）から時間内に応答がありませんでした。",
        "処理状況を確認してから、しばらくして再度実行してください。",
    )
}

fn too_large_problem(cap: usize) -> Problem {
    Problem::new(
        413,
        "payload-too-large",
        "Payload too large",
        format!("この団体を担当するもう一方のセルへ転送できる本文は {cap} バイトまでです。"),
        "団体が所属するセル（リージョン）の API に直接送信してください。",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            enc(br#"{"alg":"EdDSA","typ":"JWT"}"#),
            enc(claims.to_string().as_bytes()),
            enc(b"not-checked-here")
        )
    }

    fn with_auth(value: &str) -> header::HeaderMap {
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn the_tenant_claim_is_read_without_verifying_and_anything_else_names_nobody() {
        let token = jwt(serde_json::json!({"sub": "u", "tenant": "2710000000000002"}));
        assert_eq!(
            bearer_tenant(&with_auth(&format!("Bearer {token}"))).as_deref(),
            Some("2710000000000002")
        );
        assert_eq!(
            bearer_tenant(&with_auth(&format!("bearer {token}"))).as_deref(),
            Some("2710000000000002")
        );
        let platform = jwt(serde_json::json!({"sub": "p", "tenant": ""}));
        for value in [
            format!("Bearer {platform}"),
            format!("Basic {token}"),
            "Bearer not-a-jwt".to_owned(),
            "Bearer a.%%%.c".to_owned(),
            format!("Bearer {token}.extra"),
            format!("Bearer {}", jwt(serde_json::json!({"tenant": 42}))),
        ] {
            assert_eq!(bearer_tenant(&with_auth(&value)), None, "{value}");
        }
        assert_eq!(bearer_tenant(&header::HeaderMap::new()), None);
    }

    #[test]
    fn a_token_request_names_its_organisation_by_tenant_or_client_id() {
        let body = |v: serde_json::Value| v.to_string().into_bytes();
        assert_eq!(
            token_organisation(&body(serde_json::json!({
                "grant_type": "password", "tenant": "2710000000000002",
                "username": "u", "password": "p"
            })))
            .as_deref(),
            Some("2710000000000002")
        );
        assert_eq!(
            token_organisation(&body(serde_json::json!({
                "grant_type": "client_credentials",
                "client_id": "2710000000000002.abcdef", "client_secret": "s"
            })))
            .as_deref(),
            Some("2710000000000002")
        );
        for nobody in [
            serde_json::json!({"grant_type": "client_credentials", "client_id": "platform.abc"}),
            serde_json::json!({"grant_type": "client_credentials", "client_id": "nodot"}),
            serde_json::json!({"grant_type": "password", "tenant": ""}),
            serde_json::json!({"grant_type": "refresh_token", "tenant": "2710000000000002"}),
        ] {
            assert_eq!(token_organisation(&body(nobody.clone())), None, "{nobody}");
        }
        assert_eq!(token_organisation(b"not json"), None);
    }

    #[test]
    fn hop_by_hop_headers_and_the_doors_own_stay_behind() {
        let mut headers = header::HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer x"),
            ("content-type", "application/json"),
            ("accept-language", "ja"),
            ("connection", "keep-alive, X-Private-Hop"),
            ("x-private-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("host", "east.example"),
            ("content-length", "12"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("chukan-forwarded-by", "west"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
        ] {
            headers.append(
                header::HeaderName::from_static(name),
                header::HeaderValue::from_static(value),
            );
        }
        let mut names: Vec<String> = forwarded_headers(&headers)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["accept-language", "authorization", "content-type"],
            "only end-to-end headers pass"
        );
    }

    #[test]
    fn the_buffer_covers_the_largest_body_a_route_takes() {
        let settings = Settings::load_with(None, Vec::<(String, String)>::new()).unwrap();
        let cap = largest_body(&settings);
        assert!(cap >= crate::LARGEST_JSON_BODY);
        assert!(cap >= settings.inquiry.bulk_max_lines * BULK_LINE_BYTES);
        assert!(cap >= settings.selfinfo.max_attachment_bytes);
    }

    /// A database whose admin.tenants holds `homed` (made as the server's superuser).
    async fn tenants_db(homed: &str) -> (chukan_db::Pool, String) {
        let server = std::env::var("CHUKAN_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = format!("t_door_{}", uuid::Uuid::new_v4().simple());
        let admin = chukan_db::pool_from_url(&format!("{server}/postgres"), 1).unwrap();
        admin
            .get()
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let pool = chukan_db::pool_from_url(&format!("{server}/{name}"), 2).unwrap();
        pool.get()
            .await
            .unwrap()
            .batch_execute(&format!(
                "CREATE SCHEMA admin; CREATE TABLE admin.tenants (org_code text PRIMARY KEY);
                 INSERT INTO admin.tenants VALUES ('{homed}')"
            ))
            .await
            .unwrap();
        (pool, name)
    }

    /// A stand-in peer door: `/slow` never answers in time; anything else is echoed back
    /// (what arrived, with a status and a header of the peer's own).
    fn peer() -> String {
        async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            HttpResponse::Created()
                .insert_header(("x-peer", "west"))
                .json(serde_json::json!({
                    "method": req.method().as_str(),
                    "path": req.uri().to_string(),
                    "forwarded_by": header(FORWARDED_BY),
                    "hop": header("x-private-hop"),
                    "authorization": header("authorization"),
                    "traceparent": header("traceparent"),
                    "body": String::from_utf8_lossy(&body),
                }))
        }
        async fn slow() -> HttpResponse {
            tokio::time::sleep(Duration::from_secs(6)).await;
            HttpResponse::Ok().finish()
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new()
                .route("/slow", web::get().to(slow))
                .default_service(web::to(echo))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        format!("http://127.0.0.1:{port}")
    }

    #[actix_web::test]
    async fn foreign_requests_go_to_the_first_door_that_answers_and_come_back_as_they_are() {
        const HOMED: &str = "1310010000000001";
        const FOREIGN: &str = "2710000000000002";
        const CALLER_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peers = format!("http://127.0.0.1:{closed},{}", peer());
        let settings = Settings::load_with(
            None,
            [
                ("CHUKAN__CELLS__PEER_API_URLS", peers.as_str()),
                // Long enough for a loaded machine; /slow answers only after 6 s.
                ("CHUKAN__CELLS__FORWARD_TIMEOUT_MS", "2500"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .unwrap();
        let (pool, db_name) = tenants_db(HOMED).await;
        let homed = Arc::new(HomedTenants::new(pool, Duration::from_secs(5)));
        let door = web::Data::new(Door::from_settings(&settings, homed).unwrap().unwrap());
        chukan_telemetry::init_for_tests();
        let app = actix_web::test::init_service(
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(super::door))
                .wrap(actix_web::middleware::from_fn(chukan_telemetry::boundary))
                .app_data(door)
                .default_service(web::to(|| async { HttpResponse::Ok().body("local") })),
        )
        .await;
        let bearer = |org: &str| format!("Bearer {}", jwt(serde_json::json!({ "tenant": org })));

        // Foreign: past the closed door to the peer; method, path, query, body and the
        // end-to-end headers arrive, the door's mark is added, hop-by-hop ones stay behind.
        let req = actix_web::test::TestRequest::post()
            .uri("/v1/things/42?x=1")
            .insert_header(("authorization", bearer(FOREIGN)))
            .insert_header(("connection", "x-private-hop"))
            .insert_header(("x-private-hop", "1"))
            .insert_header(("traceparent", CALLER_TRACE))
            .set_payload("{\"a\":1}")
            .to_request();
        let res = actix_web::test::call_service(&app, req).await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers().get("x-peer").unwrap(), "west");
        let echoed: serde_json::Value = actix_web::test::read_body_json(res).await;
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["path"], "/v1/things/42?x=1");
        assert_eq!(echoed["forwarded_by"], "east");
        assert_eq!(echoed["hop"], serde_json::Value::Null);
        assert_eq!(echoed["authorization"], bearer(FOREIGN));
        assert_eq!(echoed["body"], "{\"a\":1}");
        // One trace: the peer gets the door's request span, a child in the caller's trace.
        let traceparent = echoed["traceparent"].as_str().unwrap_or_default();
        assert!(
            traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{traceparent}"
        );
        assert_ne!(traceparent, CALLER_TRACE);

        // A password login names its organisation in the body.
        let req = actix_web::test::TestRequest::post()
            .uri(TOKEN_PATH)
            .insert_header(("content-type", "application/json"))
            .set_payload(format!(
                "{{\"grant_type\":\"password\",\"tenant\":\"{FOREIGN}\",\"username\":\"u\",\"password\":\"p\"}}"
            ))
            .to_request();
        let res = actix_web::test::call_service(&app, req).await;
        assert_eq!(res.status(), 201);

        // Homed, or already forwarded, or no organisation at all: served here.
        for req in [
            actix_web::test::TestRequest::get()
                .uri("/v1/x")
                .insert_header(("authorization", bearer(HOMED))),
            actix_web::test::TestRequest::get()
                .uri("/v1/x")
                .insert_header(("authorization", bearer(FOREIGN)))
                .insert_header((FORWARDED_BY, "west")),
            actix_web::test::TestRequest::get().uri("/openapi.json"),
            actix_web::test::TestRequest::post()
                .uri(TOKEN_PATH)
                .set_payload(format!(
                    "{{\"grant_type\":\"password\",\"tenant\":\"{HOMED}\"}}"
                )),
        ] {
            let res = actix_web::test::call_service(&app, req.to_request()).await;
            assert_eq!(res.status(), 200);
            assert_eq!(actix_web::test::read_body(res).await, "local");
        }

        // A door that takes the request but does not answer in time: 504.
        let before = FORWARDED.with_label_values(&["timeout"]).get();
        let req = actix_web::test::TestRequest::get()
            .uri("/slow")
            .insert_header(("authorization", bearer(FOREIGN)))
            .to_request();
        let res = actix_web::test::call_service(&app, req).await;
        assert_eq!(res.status(), 504);
        let problem: serde_json::Value = actix_web::test::read_body_json(res).await;
        assert_eq!(problem["code"], "peer-cell-timeout");
        assert_eq!(FORWARDED.with_label_values(&["timeout"]).get(), before + 1);

        let server = std::env::var("CHUKAN_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        chukan_db::pool_from_url(&format!("{server}/postgres"), 1)
            .unwrap()
            .get()
            .await
            .unwrap()
            .batch_execute(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}
