//! The HTTP edge every chukan listener shares: what is refused before any handler runs, the
//! headers every response carries, and the answer for a known path with an unknown method.
//!
//! - [`screen`]: a NUL character (U+0000) in the path, the query, a header or a JSON string is
//!   refused with 400 `invalid-character`. PostgreSQL text cannot hold it, XML forbids it, and
//!   no field of ours means anything by it; refused here once, nothing behind can half-apply
//!   it. Binary bodies (attachments, protobuf envelopes) and text files (their parsers check
//!   their own fields) pass untouched.
//! - [`security_headers`]: `nosniff`, no framing, no referrer, a sandboxing CSP and `no-store`
//!   unless a handler set its own (a download sets its `Content-Disposition` and type).
//! - [`KnownRoutes`] + [`unmatched`]: the default service; a path the API has, asked with a
//!   method it does not take, is 405 with `Allow`, not 404.

use std::pin::Pin;

use actix_web::{
    Error, HttpMessage as _, HttpRequest, HttpResponse, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{Method, header},
    middleware::{DefaultHeaders, Next},
    web,
};
use futures_util::{Stream, StreamExt as _};

/// Why a request body could not be read whole (see [`read_capped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Larger than the route takes (announced by `Content-Length`, or found while reading).
    TooLarge,
    /// The client stopped sending before the end.
    BrokeOff,
}

/// The one capped body reader of every raw-body route (files, attachments, envelopes): an
/// announced oversize body is refused before any of it is read, and reading stops at `cap`
/// bytes. Each route words its own 413 and 400 from the [`BodyRefusal`].
pub async fn read_capped(
    req: &HttpRequest,
    mut payload: web::Payload,
    cap: usize,
) -> Result<Vec<u8>, BodyRefusal> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > cap) {
        return Err(BodyRefusal::TooLarge);
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyRefusal::BrokeOff)?;
        if body.len() + chunk.len() > cap {
            return Err(BodyRefusal::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A request body as actix streams it.
type BodyStream = Pin<Box<dyn Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>>;

use crate::Problem;

/// Where a NUL character was found (named in the answer, never the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NulPlace {
    Path,
    Query,
    Header,
    Body,
}

impl NulPlace {
    fn ja(self) -> &'static str {
        match self {
            NulPlace::Path => "URLのパス",
            NulPlace::Query => "クエリパラメータ",
            NulPlace::Header => "リクエストヘッダ",
            NulPlace::Body => "リクエスト本文（JSON）",
        }
    }
}

/// 400 for a NUL character in a text input.
pub fn nul_problem(place: NulPlace) -> Problem {
    Problem::new(
        400,
        "invalid-character",
        "Invalid character",
        format!(
            "{}に使用できない文字（NUL, U+0000）が含まれています。",
            place.ja()
        ),
        "U+0000 を取り除いて再度送信してください。",
    )
}

/// A percent-encoded NUL (`%00`) in a path or query string, or a raw one.
fn has_encoded_nul(s: &str) -> bool {
    s.contains("%00") || s.contains('\0')
}

fn nul_in_head(req: &ServiceRequest) -> Option<NulPlace> {
    if has_encoded_nul(req.uri().path()) {
        return Some(NulPlace::Path);
    }
    if has_encoded_nul(req.query_string()) {
        return Some(NulPlace::Query);
    }
    req.headers()
        .iter()
        .any(|(_, v)| v.as_bytes().contains(&0))
        .then_some(NulPlace::Header)
}

fn is_json(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

/// Finds a NUL inside JSON strings (the escape `\u0000`) or anywhere as a raw byte, fed
/// chunk by chunk as the body arrives.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonNulScanner {
    state: ScanState,
}

#[derive(Debug, Default, Clone, Copy)]
enum ScanState {
    #[default]
    Outside,
    InString,
    Escape,
    /// Inside `\uXXXX`: digits seen and the value so far.
    Unicode(u8, u32),
}

impl JsonNulScanner {
    /// True once a NUL has been seen in `chunk` (or an earlier one).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            if b == 0 {
                return true;
            }
            self.state = match (self.state, b) {
                (ScanState::Outside, b'"') => ScanState::InString,
                (ScanState::Outside, _) => ScanState::Outside,
                (ScanState::InString, b'"') => ScanState::Outside,
                (ScanState::InString, b'\\') => ScanState::Escape,
                (ScanState::InString, _) => ScanState::InString,
                (ScanState::Escape, b'u') => ScanState::Unicode(0, 0),
                (ScanState::Escape, _) => ScanState::InString,
                (ScanState::Unicode(n, v), b) => match (b as char).to_digit(16) {
                    Some(d) if n == 3 => {
                        if v * 16 + d == 0 {
                            return true;
                        }
                        ScanState::InString
                    }
                    Some(d) => ScanState::Unicode(n + 1, v * 16 + d),
                    // Not an escape the parser accepts: it will refuse the body itself.
                    None => ScanState::InString,
                },
            };
        }
        false
    }
}

/// Largest JSON body the screen buffers; a longer one passes through unread, and the JSON
/// extractor refuses it for its size (413).
#[derive(Debug, Clone, Copy)]
pub struct ScreenLimit(pub usize);

/// Refuses a NUL character in the path, the query, a header or a JSON body (see the module
/// comment). Registered with `ScreenLimit` as app data; without it, JSON bodies up to 1 MiB.
pub async fn screen(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let refuse = |req: ServiceRequest, place| {
        let res = nul_problem(place).error_response();
        Ok(req.into_response(res).map_into_right_body())
    };
    if let Some(place) = nul_in_head(&req) {
        return refuse(req, place);
    }
    if is_json(&req) {
        let limit = req
            .app_data::<web::Data<ScreenLimit>>()
            .map_or(1 << 20, |l| l.0);
        let mut payload = req.take_payload();
        let mut scanner = JsonNulScanner::default();
        let mut read = web::BytesMut::new();
        let mut nul = false;
        while read.len() <= limit {
            match payload.next().await {
                Some(Ok(chunk)) => {
                    nul |= scanner.feed(&chunk);
                    read.extend_from_slice(&chunk);
                    if nul {
                        break;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        if nul {
            return refuse(req, NulPlace::Body);
        }
        // What was read goes back in front of what was not.
        let head = futures_util::stream::once(async move { Ok(read.freeze()) });
        let rest: Payload = payload;
        req.set_payload(Payload::from(Box::pin(head.chain(rest)) as BodyStream));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Headers every response carries unless its handler set its own.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        // The API serves data, never pages: nothing in a response may run, load or frame.
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; sandbox",
        ))
        .add(("Cross-Origin-Resource-Policy", "same-origin"))
        // Answers carry tenants' data: no shared cache keeps them.
        .add((header::CACHE_CONTROL, "no-store"))
}

/// The address a request comes from: the last value of `header` (what a trusted ingress in
/// front added), else the TCP peer; at most 64 characters. The login lockout counts per
/// address, and the console forwards the browser's in the same header.
pub fn client_address(req: &HttpRequest, header: Option<&header::HeaderName>) -> String {
    let from_header = header.and_then(|h| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    });
    let address = match from_header {
        Some(a) => a.to_owned(),
        None => req
            .peer_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string()),
    };
    address.chars().take(64).collect()
}

/// `Content-Disposition` for a stored file served back: always `attachment` (a browser saves
/// it, never renders it from the API's origin), with an ASCII fallback name and the exact
/// name as RFC 5987 `filename*` (UTF-8, percent-encoded).
pub fn attachment_disposition(file_name: &str) -> header::HeaderValue {
    let fallback: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(file_name.len() * 3);
    for b in file_name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let value = format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}");
    header::HeaderValue::from_str(&value)
        .unwrap_or_else(|_| header::HeaderValue::from_static("attachment"))
}

/// One path template: literal segments and `{param}` segments, with what each method needs.
#[derive(Debug, Clone)]
struct Template {
    segments: Vec<Option<String>>,
    /// Each method the path takes, with the roles its operation names (the bearer scheme's
    /// scopes in the document; None: the operation names none).
    methods: Vec<(Method, Option<Vec<String>>)>,
}

impl Template {
    fn parse(path: &str) -> Vec<Option<String>> {
        path.trim_matches('/')
            .split('/')
            .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
            .collect()
    }

    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(t, s)| t.as_deref().is_none_or(|t| t == *s))
    }

    fn params(&self) -> usize {
        self.segments.iter().filter(|s| s.is_none()).count()
    }
}

/// The paths a listener serves, the methods each takes and the roles each operation is open
/// to, from the OpenAPI document: the one place the API says who may call what. Registered
/// as app data for [`unmatched`] (405) and for the authorisation gate (`chukan-auth`).
#[derive(Debug, Clone, Default)]
pub struct KnownRoutes {
    templates: Vec<Template>,
}

/// The name of the bearer scheme whose scopes list an operation's roles (OpenAPI 3.1 lets
/// the scopes of a non-OAuth scheme be "role names which are required for the execution").
pub const BEARER_SCHEME: &str = "bearer";

impl KnownRoutes {
    /// From `(path template, method)` pairs, e.g. `("/v1/users/{id}", Method::GET)`.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a str, Method)>) -> Self {
        let mut known = KnownRoutes::default();
        known.extend(routes);
        known
    }

    /// Adds routes that are not in the OpenAPI document (the document itself).
    pub fn extend<'a>(&mut self, routes: impl IntoIterator<Item = (&'a str, Method)>) {
        for (path, method) in routes {
            self.add(path, method, None);
        }
    }

    fn add(&mut self, path: &str, method: Method, roles: Option<Vec<String>>) {
        let segments = Template::parse(path);
        let i = match self.templates.iter().position(|t| t.segments == segments) {
            Some(i) => i,
            None => {
                self.templates.push(Template {
                    segments,
                    methods: Vec::new(),
                });
                self.templates.len() - 1
            }
        };
        let methods = &mut self.templates[i].methods;
        if !methods.iter().any(|(m, _)| *m == method) {
            methods.push((method, roles));
        }
    }

    /// Every operation of a (serialised) OpenAPI document, with the roles its bearer
    /// requirement names.
    pub fn from_openapi_json(doc: &serde_json::Value) -> Self {
        let mut known = KnownRoutes::default();
        let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) else {
            return known;
        };
        for (path, item) in paths {
            for (name, method) in [
                ("get", Method::GET),
                ("put", Method::PUT),
                ("post", Method::POST),
                ("delete", Method::DELETE),
                ("options", Method::OPTIONS),
                ("head", Method::HEAD),
                ("patch", Method::PATCH),
                ("trace", Method::TRACE),
            ] {
                if let Some(op) = item.get(name) {
                    known.add(path, method, operation_roles(op));
                }
            }
        }
        known
    }

    /// The templates a concrete path matches, those with the fewest parameters only (a
    /// literal segment wins: `/v1/records/tree-head` is not `/v1/records/{id}`).
    fn best(&self, path: &str) -> Vec<&Template> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let found: Vec<&Template> = self
            .templates
            .iter()
            .filter(|t| t.matches(&segments))
            .collect();
        let fewest = found.iter().map(|t| t.params()).min();
        found
            .into_iter()
            .filter(|t| Some(t.params()) == fewest)
            .collect()
    }

    /// The methods a concrete path takes, if the API has it.
    pub fn allowed(&self, path: &str) -> Option<Vec<Method>> {
        let best = self.best(path);
        if best.is_empty() {
            return None;
        }
        let mut methods: Vec<Method> = best
            .iter()
            .flat_map(|t| t.methods.iter().map(|(m, _)| m.clone()))
            .collect();
        methods.sort_by_key(|m| m.to_string());
        methods.dedup();
        Some(methods)
    }

    /// The roles an operation is open to (None: it names none, e.g. a public route, or the
    /// API has no such operation).
    pub fn roles(&self, method: &Method, path: &str) -> Option<&[String]> {
        self.best(path)
            .into_iter()
            .flat_map(|t| t.methods.iter())
            .find(|(m, _)| m == method)
            .and_then(|(_, roles)| roles.as_deref())
    }
}

/// The scopes of an operation's `bearer` security requirement.
fn operation_roles(op: &serde_json::Value) -> Option<Vec<String>> {
    op.get("security")?
        .as_array()?
        .iter()
        .find_map(|req| req.get(BEARER_SCHEME))
        .and_then(|scopes| scopes.as_array())
        .map(|scopes| {
            scopes
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
}

/// A resource for a literal path that sits beside a parameter route of the same depth
/// (`/v1/codes/acquisitions` beside `/v1/codes/{addressee}`): another method on it answers
/// 405 here instead of falling through to the parameter route.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(unmatched))
}

/// The default service: 405 with `Allow` for a known path asked with another method, else
/// 404 `no-such-route`; both problem+json.
pub async fn unmatched(req: HttpRequest) -> HttpResponse {
    let allowed = req
        .app_data::<web::Data<KnownRoutes>>()
        .and_then(|k| k.allowed(req.path()));
    match allowed {
        Some(methods) if !methods.contains(req.method()) => {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut res = Problem::new(
                405,
                "method-not-allowed",
                "Method not allowed",
                format!(
                    "このURLは {} メソッドに対応していません。",
                    req.method().as_str()
                ),
                format!("{allow} で呼び出してください（API仕様: /openapi.json）。"),
            )
            .error_response();
            if let Ok(v) = header::HeaderValue::from_str(&allow) {
                res.headers_mut().insert(header::ALLOW, v);
            }
            res
        }
        _ => crate::problem::no_such_route().error_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actix_web::{App, body::to_bytes, middleware::from_fn, test as atest};

    #[test]
    fn the_scanner_finds_escaped_and_raw_nul_only_inside_strings_and_across_chunks() {
        let found = |parts: &[&[u8]]| {
            let mut s = JsonNulScanner::default();
            parts.iter().any(|p| s.feed(p))
        };
        assert!(found(&[br#"{"a":"x\u0000y"}"#]));
        assert!(found(&[br#"{"a":"x\u00"#, br#"00y"}"#]));
        assert!(found(&[br#"{"\u0000":1}"#]));
        assert!(found(&[b"{\"a\":\"x\0\"}"]));
        // An escaped backslash followed by the text u0000 is not a NUL.
        assert!(!found(&[br#"{"a":"\\u0000"}"#]));
        assert!(!found(&[br#"{"a":"\u0001","b":"\u1000"}"#]));
        assert!(!found(&[br#"{"a":"u0000"}"#]));
    }

    #[test]
    fn a_download_is_an_attachment_with_its_exact_name_encoded() {
        let v = attachment_disposition("案内 \"1\".pdf");
        assert_eq!(
            v.to_str().unwrap(),
            "attachment; filename=\"__ _1_.pdf\"; filename*=UTF-8''%E6%A1%88%E5%86%85%20%221%22.pdf"
        );
        assert_eq!(
            attachment_disposition("a.csv").to_str().unwrap(),
            "attachment; filename=\"a.csv\"; filename*=UTF-8''a.csv"
        );
    }

    #[test]
    fn known_routes_prefer_literal_segments_and_list_every_method() {
        let k = KnownRoutes::new([
            ("/v1/records", Method::GET),
            ("/v1/records/tree-head", Method::GET),
            ("/v1/records/{id}", Method::GET),
            ("/v1/records/{id}", Method::DELETE),
            ("/v1/users", Method::POST),
            ("/v1/users", Method::GET),
        ]);
        assert_eq!(k.allowed("/v1/users").unwrap(), [Method::GET, Method::POST]);
        assert_eq!(k.allowed("/v1/records/tree-head").unwrap(), [Method::GET]);
        assert_eq!(
            k.allowed("/v1/records/abc").unwrap(),
            [Method::DELETE, Method::GET]
        );
        assert!(k.allowed("/v1/nothing").is_none());
        assert!(k.allowed("/v1/records/a/b").is_none());
    }

    async fn ok(body: Option<web::Json<serde_json::Value>>) -> HttpResponse {
        HttpResponse::Ok().json(body.map(|b| b.into_inner()))
    }

    #[actix_web::test]
    async fn nul_is_refused_at_the_edge_and_everything_else_passes_with_the_headers() {
        let app = atest::init_service(
            App::new()
                .wrap(from_fn(screen))
                .wrap(security_headers())
                .app_data(web::Data::new(KnownRoutes::new([("/x", Method::POST)])))
                .route("/x", web::post().to(ok))
                .default_service(web::to(unmatched)),
        )
        .await;
        let cases: [(atest::TestRequest, u16); 6] = [
            (atest::TestRequest::post().uri("/x?job=a%00b"), 400),
            (atest::TestRequest::post().uri("/x%00"), 400),
            (
                atest::TestRequest::post()
                    .uri("/x")
                    .insert_header(("content-type", "application/json"))
                    .set_payload(r#"{"job":"a\u0000b"}"#),
                400,
            ),
            (
                atest::TestRequest::post()
                    .uri("/x")
                    .insert_header(("content-type", "application/json"))
                    .set_payload(r#"{"job":"a\\u0000b","n":"\u3042"}"#),
                200,
            ),
            (atest::TestRequest::get().uri("/x"), 405),
            (atest::TestRequest::get().uri("/y"), 404),
        ];
        for (req, status) in cases {
            let res = atest::call_service(&app, req.to_request()).await;
            assert_eq!(res.status().as_u16(), status);
            let h = res.headers();
            assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
            assert!(h.get("content-security-policy").is_some());
            if status == 405 {
                assert_eq!(h.get("allow").unwrap(), "POST");
            }
            if status != 200 {
                assert_eq!(h.get("content-type").unwrap(), "application/problem+json");
            }
            let body = to_bytes(res.into_body()).await.unwrap();
            if status == 400 {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(json["code"], "invalid-character");
            }
        }
    }
}
