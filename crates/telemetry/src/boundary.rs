//! The request boundary, outermost on every chukan listener: one span per request and the one
//! place a request's failure is logged.
//!
//! - The span `http.request` carries the method, the route *pattern* (never the path: paths
//!   hold ids), the status, the tenant (recorded by the auth gate) and the support id. A
//!   caller's W3C `traceparent` makes it part of the caller's trace.
//! - Every problem+json answer, whoever wrote it (a handler, an extractor, the edge's screen,
//!   the auth gate), gets `support_id`: the request's trace id, or a random id when the span
//!   is not recorded at the configured log level. The same id is on the log line, so the help
//!   desk finds the request from what the caller shows them, without any personal data.
//! - The log line: 5xx at `error` with the cause kept on the problem ([`chukan_core::Cause`]),
//!   503 with a cause at `warn`, 4xx at `info` with its code. Handlers do not log their own
//!   failures.

use actix_web::{
    Error,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
};
use chukan_core::{Cause, problem::PROBLEM_JSON};
use opentelemetry::trace::TraceContextExt as _;
use tracing::{Instrument as _, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The largest problem body the boundary rewrites; problems are a few hundred bytes.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// Middleware for `App::wrap(from_fn(boundary))`, wrapped last so it is outermost.
pub async fn boundary(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http.request",
        http.method = %crate::http_metrics::method_label(req.method()),
        http.route = %route,
        http.status = Empty,
        tenant = Empty,
        support_id = Empty,
    );
    if let Some(parent) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        crate::set_parent_from_traceparent(&span, parent);
    }
    // The trace id names the request on every log line inside its span. When the span is not
    // recorded (a quieter log level) there is no trace id and nothing to put it on, so an id
    // is only made up if a problem is answered.
    let trace_id = trace_id(&span);
    if let Some(id) = &trace_id {
        span.record("support_id", id.as_str());
    }

    let res = next.call(req).instrument(span.clone()).await?;
    let status = res.status();
    span.record("http.status", status.as_u16());
    let cause = res.response().extensions().get::<Cause>().cloned();
    if !is_problem(&res) {
        return Ok(res.map_into_boxed_body());
    }

    let support_id = trace_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let bytes = match actix_web::body::to_bytes_limited(body, MAX_PROBLEM_BYTES).await {
        Ok(Ok(bytes)) => bytes,
        // Not readable or larger than any problem: leave it to the client as an empty 5xx
        // body would be worse; say so in the log.
        _ => {
            span.in_scope(|| tracing::error!(%support_id, "problem body could not be read"));
            return Ok(ServiceResponse::new(req, head.set_body(BoxBody::new(()))));
        }
    };
    let mut problem: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(fields)) => serde_json::Value::Object(fields),
        _ => {
            return Ok(ServiceResponse::new(
                req,
                head.set_body(BoxBody::new(bytes)),
            ));
        }
    };
    problem["support_id"] = serde_json::Value::String(support_id.clone());
    let code = problem["code"].as_str().unwrap_or("").to_owned();
    span.in_scope(|| log_once(status.as_u16(), &code, &support_id, cause.as_ref()));
    let body = serde_json::to_vec(&problem).map_err(actix_web::error::ErrorInternalServerError)?;
    Ok(ServiceResponse::new(req, head.set_body(BoxBody::new(body))))
}

fn is_problem<B>(res: &ServiceResponse<B>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// The trace id of the request's span; None when the span is not recorded.
fn trace_id(span: &tracing::Span) -> Option<String> {
    let trace_id = span.context().span().span_context().trace_id();
    (trace_id != opentelemetry::trace::TraceId::INVALID).then(|| trace_id.to_string())
}

fn log_once(status: u16, code: &str, support_id: &str, cause: Option<&Cause>) {
    match cause {
        Some(cause) if cause.unavailable => tracing::warn!(
            status, code, support_id, step = cause.context, error = %format!("{:#}", cause.error),
            "request failed: a dependency did not answer"
        ),
        Some(cause) => tracing::error!(
            status, code, support_id, step = cause.context, error = %format!("{:#}", cause.error),
            "request failed"
        ),
        None if status >= 500 => tracing::error!(status, code, support_id, "request failed"),
        None => tracing::info!(status, code, support_id, "request refused"),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, body::to_bytes, middleware::from_fn, test, web};
    use chukan_core::Problem;

    use super::*;

    async fn fails() -> Result<HttpResponse, Problem> {
        Err(Problem::internal_because(
            "search",
            anyhow::anyhow!("relation missing"),
        ))
    }

    async fn refuses() -> Result<HttpResponse, Problem> {
        Err(Problem::not_found("記録"))
    }

    async fn answers() -> HttpResponse {
        HttpResponse::Ok().json(serde_json::json!({"ok": true}))
    }

    #[actix_web::test]
    async fn every_problem_carries_a_support_id_and_nothing_of_its_cause() {
        crate::init_for_tests();
        let app = test::init_service(
            App::new()
                .wrap(from_fn(boundary))
                .route("/fails", web::get().to(fails))
                .route("/refuses/{id}", web::get().to(refuses))
                .route("/answers", web::get().to(answers)),
        )
        .await;
        let mut ids = Vec::new();
        for (path, status) in [("/fails", 500), ("/refuses/2071345678", 404)] {
            let res =
                test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(res.headers().get("content-type").unwrap(), PROBLEM_JSON);
            let bytes = to_bytes(res.into_body()).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let id = body["support_id"].as_str().expect("support id").to_owned();
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("relation missing") && !text.contains("2071345678"),
                "{text}"
            );
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1], "each request its own id");

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/answers").to_request()).await;
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ok": true}),
            "other answers untouched"
        );
    }

    #[actix_web::test]
    async fn a_callers_trace_is_continued_and_named_as_the_support_id() {
        crate::init_for_tests();
        let app = test::init_service(
            App::new()
                .wrap(from_fn(boundary))
                .route("/refuses/{id}", web::get().to(refuses)),
        )
        .await;
        let req = test::TestRequest::get()
            .uri("/refuses/1")
            .insert_header((
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ))
            .to_request();
        let res = test::call_service(&app, req).await;
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["support_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
