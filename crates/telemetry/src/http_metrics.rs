//! RED metrics (rate, errors, duration) of the public API, labelled by route pattern.

use std::{
    future::{Ready, ready},
    rc::Rc,
    sync::LazyLock,
    time::Instant,
};

use actix_web::{
    Error,
    body::MessageBody,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::Method,
};
use futures_util::future::LocalBoxFuture;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

struct RedMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    outside_hours: IntCounterVec,
}

/// Response extension set by the service-hour gate on its 503: the platform is closed by
/// its calendar, not failing. Such answers are counted in
/// `chukan_http_outside_hours_total` and not in `chukan_http_requests_total`, whose 5xx
/// the availability SLO counts: a business system calling at night must not spend the
/// error budget.
#[derive(Clone, Copy, Debug)]
pub struct OutsideServiceHours;

/// Registered once in the default registry, which `/metrics` serves.
static RED: LazyLock<Option<RedMetrics>> = LazyLock::new(|| match register_red() {
    Ok(red) => Some(red),
    Err(err) => {
        tracing::error!(error = %err, "HTTP metrics could not be registered");
        None
    }
});

fn register_red() -> prometheus::Result<RedMetrics> {
    let requests = IntCounterVec::new(
        Opts::new("chukan_http_requests_total", "HTTP requests answered"),
        &["service", "method", "route", "status"],
    )?;
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "chukan_http_request_duration_seconds",
            "Time from request to response head",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
        &["service", "method", "route"],
    )?;
    let outside_hours = IntCounterVec::new(
        Opts::new(
            "chukan_http_outside_hours_total",
            "Requests refused outside service hours (503 outside-service-hours), not counted \
             in chukan_http_requests_total",
        ),
        &["service"],
    )?;
    prometheus::register(Box::new(requests.clone()))?;
    prometheus::register(Box::new(duration.clone()))?;
    prometheus::register(Box::new(outside_hours.clone()))?;
    Ok(RedMetrics {
        requests,
        duration,
        outside_hours,
    })
}

/// Middleware for `App::wrap`: counts and times every request under `service`.
pub fn http_metrics(service: &'static str) -> HttpMetrics {
    HttpMetrics { service }
}

#[derive(Clone, Copy, Debug)]
pub struct HttpMetrics {
    service: &'static str,
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            inner: Rc::new(service),
            service: self.service,
        }))
    }
}

pub struct HttpMetricsService<S> {
    inner: Rc<S>,
    service: &'static str,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        // The pattern, never the path: paths carry ids, which are unbounded and may be personal.
        let route = req
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let method = method_label(req.method());
        let service = self.service;
        let inner = Rc::clone(&self.inner);
        Box::pin(async move {
            let result = inner.call(req).await;
            let (status, closed) = match &result {
                Ok(res) => (
                    res.status(),
                    res.response()
                        .extensions()
                        .contains::<OutsideServiceHours>(),
                ),
                Err(err) => (err.as_response_error().status_code(), false),
            };
            match RED.as_ref() {
                Some(red) if closed => red.outside_hours.with_label_values(&[service]).inc(),
                Some(red) => {
                    red.requests
                        .with_label_values(&[service, method, &route, status.as_str()])
                        .inc();
                    red.duration
                        .with_label_values(&[service, method, &route])
                        .observe(started.elapsed().as_secs_f64());
                }
                None => {}
            }
            result
        })
    }
}

/// Known methods by name; anything else folds into one label so clients cannot mint series.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
