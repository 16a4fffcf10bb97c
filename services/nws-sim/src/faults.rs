//! Fault injection: the simulator can be told to refuse the next messages with a chosen
//! status, so tests exercise relay's handling of a failing network against the real peer
//! instead of a stand-in. Development and tests only, like the simulator itself.
//!
//! Besides refusals, the simulator can be told it is "not ready" (`POST /v1/faults/not-ready`):
//! `GET /v1/ready` then answers 503, as the real peer does in the morning before its servers
//! are up. Messages are still processed, so a test can tell whether a sender checked first.

use std::sync::Mutex;

use actix_web::{HttpResponse, web};
use chukan_core::Problem;
use serde::{Deserialize, Serialize};

use crate::api::SimState;

/// Answer the next `count` messages with `status` instead of processing them.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub status: u16,
    pub count: u32,
}

#[derive(Debug, Default)]
pub struct Faults(Mutex<FaultState>);

/// The injected fault still active, and the message ids it refused (so a test can check
/// that a sender retries with the same id).
#[derive(Debug, Default, Clone, Serialize)]
pub struct FaultState {
    pub active: Option<Fault>,
    pub refused: Vec<String>,
    /// `GET /v1/ready` answers 503 while set.
    pub not_ready: bool,
}

impl Faults {
    /// Takes one injected refusal for `message_id`, if any is left.
    pub fn take(&self, message_id: &str) -> Option<u16> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let fault = state.active.as_mut()?;
        let status = fault.status;
        fault.count = fault.count.saturating_sub(1);
        if fault.count == 0 {
            state.active = None;
        }
        state.refused.push(message_id.to_owned());
        Some(status)
    }

    fn set(&self, fault: Option<Fault>) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.active = fault.filter(|f| f.count > 0);
        if fault.is_none() {
            state.refused.clear();
            state.not_ready = false;
        }
    }

    fn set_ready(&self, ready: bool) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).not_ready = !ready;
    }

    pub fn is_ready(&self) -> bool {
        !self.0.lock().unwrap_or_else(|p| p.into_inner()).not_ready
    }

    fn snapshot(&self) -> FaultState {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The refusal sent for an injected fault.
pub fn refusal(status: u16) -> Problem {
    Problem::new(
        status,
        "injected-fault",
        "Injected fault",
        "試験用に設定された障害により受信を拒否しました。",
        "障害設定（/v1/faults）を解除するか、再送してください。",
    )
}

/// `POST /v1/faults` {status, count}: refuse the next `count` messages with `status`.
pub async fn inject(
    state: web::Data<SimState>,
    body: web::Json<Fault>,
) -> Result<HttpResponse, Problem> {
    if !(400..=599).contains(&body.status) {
        return Err(Problem::new(
            400,
            "invalid-field",
            "Invalid field",
            "status は400〜599で指定してください。",
            "status を確認して再度送信してください。",
        ));
    }
    state.faults.set(Some(*body));
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/faults`: the active fault and the message ids refused so far.
pub async fn show(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.faults.snapshot())
}

/// `POST /v1/faults/not-ready`: `GET /v1/ready` answers 503 until cleared.
pub async fn set_not_ready(state: web::Data<SimState>) -> HttpResponse {
    state.faults.set_ready(false);
    HttpResponse::NoContent().finish()
}

/// `DELETE /v1/faults/not-ready`: `GET /v1/ready` answers 200 again.
pub async fn clear_not_ready(state: web::Data<SimState>) -> HttpResponse {
    state.faults.set_ready(true);
    HttpResponse::NoContent().finish()
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
}

/// `GET /v1/ready`: 200 `{"ready":true}`, or 503 problem+json (code `not-ready`) while the
/// not-ready fault is set. Relay checks this before releasing what it held overnight.
pub async fn ready(state: web::Data<SimState>) -> Result<HttpResponse, Problem> {
    if state.faults.is_ready() {
        Ok(HttpResponse::Ok().json(Readiness { ready: true }))
    } else {
        Err(Problem::new(
            503,
            "not-ready",
            "Not ready",
            "情報提供ネットワークシステムは受信の準備ができていません。",
            "しばらく待ってから再度確認してください。",
        ))
    }
}

/// `DELETE /v1/faults`: process messages normally again (and forget the refusals and the
/// not-ready fault).
pub async fn clear(state: web::Data<SimState>) -> HttpResponse {
    state.faults.set(None);
    HttpResponse::NoContent().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_used_up_after_its_count() {
        let faults = Faults::default();
        faults.set(Some(Fault {
            status: 503,
            count: 2,
        }));
        assert_eq!(faults.take("m1"), Some(503));
        assert_eq!(faults.take("m1"), Some(503));
        assert_eq!(faults.take("m1"), None);
        assert_eq!(faults.snapshot().refused, vec!["m1", "m1"]);
        faults.set(Some(Fault {
            status: 401,
            count: 0,
        }));
        assert_eq!(faults.take("m2"), None);
        faults.set(None);
        assert!(faults.snapshot().refused.is_empty());
        assert!(faults.is_ready());
        faults.set_ready(false);
        assert!(!faults.is_ready());
        faults.set(None);
        assert!(faults.is_ready());
    }
}
