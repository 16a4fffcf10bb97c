//! The simulator's own metrics, in the default Prometheus registry and served on its listener
//! at `GET /metrics` (it is a test and demo peer with no operations port of its own). Labels
//! are fixed words, never anything from a message.

use std::sync::LazyLock;

use actix_web::{HttpResponse, http::header};
use prometheus::{Encoder as _, IntCounterVec, Opts, TextEncoder};

/// Which registered door a delivery went to (ADR 0006).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `endpoint_url`: the relay of the organisation's cell in its home region.
    Primary,
    /// `standby_endpoint_url`: the relay slot of its cell in the other region.
    Standby,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Primary => "primary",
            Door::Standby => "standby",
        }
    }
}

static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    // Constant name and labels: this cannot fail.
    #[allow(clippy::expect_used)]
    let vec = IntCounterVec::new(
        Opts::new(
            "chukan_nws_sim_deliveries_total",
            "Delivery sends by door (primary, standby) and result (delivered, duplicate, \
             misdirected, unanswered, refused).",
        ),
        &["door", "result"],
    )
    .expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(vec.clone()));
    vec
});

/// Counts one send to `door` that ended in `result`.
pub fn count_delivery(door: Door, result: &str) {
    DELIVERIES.with_label_values(&[door.as_str(), result]).inc();
}

/// The current value of `chukan_nws_sim_deliveries_total{door,result}` (tests, diagnostics).
pub fn deliveries(door: Door, result: &str) -> u64 {
    DELIVERIES.with_label_values(&[door.as_str(), result]).get()
}

/// `GET /metrics`: the default registry in Prometheus' text format.
pub async fn serve() -> HttpResponse {
    LazyLock::force(&DELIVERIES);
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&prometheus::gather(), &mut body) {
        Ok(()) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, encoder.format_type()))
            .body(body),
        Err(error) => {
            tracing::error!(%error, "metrics could not be encoded");
            HttpResponse::InternalServerError().finish()
        }
    }
}
