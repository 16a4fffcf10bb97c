//! Outbound (nws.out → NWS): signs each [`NwsOutbound`] into an [`Envelope`] and POSTs it.
//!
//! The envelope's message id is the bus message id, stable across retries, so a resend after
//! a lost answer is refused by the NWS as a replay (409), which counts as sent.
//!
//! Outside the hours data send/receive runs (送受信停止, DOMAIN §7), and while a held backlog
//! is still being released, a message is not sent but held durably ([`crate::hold`]); the
//! releaser sends it later with the same code, [`SenderInner::post`].

use std::sync::Arc;

use anyhow::anyhow;
use chukan_core::{Clock, ids::OrgCode};
use chukan_crypto::Signer;
use chukan_mq::{Delivery, HandleError, Handler};
use chukan_proto::{Envelope, Message as _, NwsOutbound, signing_bytes};
use futures_util::future::BoxFuture;

use crate::{hold::Gate, metrics};

/// What the NWS calls itself as a recipient.
pub const NWS: &str = "NWS";

/// The consumer handler sending to the NWS, or holding while the link is stopped.
#[derive(Clone)]
pub struct NwsSender {
    inner: Arc<SenderInner>,
    gate: Arc<Gate>,
}

pub(crate) struct SenderInner {
    http: reqwest::Client,
    messages_url: String,
    signer: Signer,
    clock: Arc<dyn Clock>,
    /// The NWS link's health, told of every send's outcome (none in unit tests of signing).
    link: Option<Arc<crate::link::LinkHealth>>,
}

/// The HTTP client for every call to the NWS (sends, readiness): HTTPS verified against
/// `relay.nws_ca_file`, presenting `relay.nws_client_cert_file` when set, each call bounded
/// by `relay.send_timeout_ms`.
pub fn nws_client(settings: &chukan_config::RelaySettings) -> anyhow::Result<reqwest::Client> {
    let tls = chukan_tls::https::ClientTls::nws(settings);
    Ok(chukan_tls::https::client_builder(&tls)?
        .timeout(settings.send_timeout)
        .build()?)
}

impl NwsSender {
    pub fn new(
        nws_url: &str,
        http: reqwest::Client,
        signer: Signer,
        clock: Arc<dyn Clock>,
        gate: Arc<Gate>,
        link: Arc<crate::link::LinkHealth>,
    ) -> anyhow::Result<NwsSender> {
        Ok(NwsSender {
            inner: Arc::new(SenderInner {
                http,
                messages_url: format!("{}/v1/messages", nws_url.trim_end_matches('/')),
                signer,
                clock,
                link: Some(link),
            }),
            gate,
        })
    }

    /// The sending half, shared with the releaser so held messages go out exactly as live ones.
    pub(crate) fn inner(&self) -> Arc<SenderInner> {
        self.inner.clone()
    }
}

impl Handler for NwsSender {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let inner = self.inner.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            let Some(out) = valid_outbound(&delivery.body) else {
                metrics::SEND_TOTAL.with_label_values(&["malformed"]).inc();
                return Err(HandleError::Reject(anyhow!(
                    "nws.out message is not a valid NwsOutbound (kind and sender organisation code are required)"
                )));
            };
            if gate.should_hold() {
                return gate.hold(&delivery, &out.kind).await;
            }
            inner.send(delivery, out).await
        })
    }
}

/// The message as an [`NwsOutbound`] with a kind and a valid sender organisation, or `None`.
pub(crate) fn valid_outbound(body: &[u8]) -> Option<NwsOutbound> {
    NwsOutbound::decode(body)
        .ok()
        .filter(|out| OrgCode::parse(&out.sender_org).is_ok() && !out.kind.is_empty())
}

/// How one send ended, as counted in `chukan_relay_send_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Sent,
    Duplicate,
    Rejected,
    Retry,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Retry => "retry",
        }
    }

    /// 2xx sent, 409 already there, other 4xx refused for good, anything else transient.
    fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Sent,
            409 => Outcome::Duplicate,
            400..=499 => Outcome::Rejected,
            _ => Outcome::Retry,
        }
    }
}

impl SenderInner {
    /// Builds the signed envelope for `out`, stamped now.
    fn envelope(
        &self,
        message_id: uuid::Uuid,
        traceparent: Option<String>,
        out: NwsOutbound,
    ) -> Envelope {
        let recipient = if out.recipient.is_empty() {
            NWS.to_owned()
        } else {
            out.recipient
        };
        let traceparent = traceparent
            .or_else(chukan_telemetry::current_traceparent)
            .unwrap_or_default();
        let mut env = Envelope {
            message_id: message_id.to_string(),
            kind: out.kind,
            sender: out.sender_org,
            recipient,
            timestamp_ms: self.clock.now().timestamp_millis(),
            correlation_id: out.correlation_id,
            body: out.body,
            traceparent,
            kid: self.signer.kid().to_owned(),
            signature: Vec::new(),
        };
        env.signature = self.signer.sign(&signing_bytes(&env)).to_vec();
        env
    }

    /// Signs `out` as message `message_id` and POSTs it: the outcome (counted in
    /// `chukan_relay_send_total`) and, when not sent, why (status and problem code only).
    pub(crate) async fn post(
        &self,
        message_id: uuid::Uuid,
        traceparent: Option<String>,
        out: NwsOutbound,
    ) -> (Outcome, String) {
        let env = self.envelope(message_id, traceparent, out);
        let timer = metrics::SEND_DURATION.start_timer();
        let response = self
            .http
            .post(&self.messages_url)
            .header("content-type", "application/x-protobuf")
            .body(env.encode_to_vec())
            .send()
            .await;
        timer.observe_duration();

        let (outcome, detail) = match response {
            Ok(res) => {
                let status = res.status().as_u16();
                let outcome = Outcome::of_status(status);
                let detail = if matches!(outcome, Outcome::Sent | Outcome::Duplicate) {
                    String::new()
                } else {
                    // The NWS's problem code says why; its text is not needed in our logs.
                    let code = res
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["code"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("NWS answered {status} {code}")
                };
                (outcome, detail)
            }
            Err(e) if e.is_timeout() => (Outcome::Retry, "NWS send timed out".to_owned()),
            Err(e) if e.is_connect() => (Outcome::Retry, "NWS not reachable".to_owned()),
            Err(_) => (Outcome::Retry, "NWS send failed".to_owned()),
        };
        metrics::SEND_TOTAL
            .with_label_values(&[outcome.label()])
            .inc();
        if let Some(link) = &self.link {
            link.observe(outcome);
        }
        (outcome, detail)
    }

    #[tracing::instrument(skip_all, fields(message_id = %delivery.id, attempt = delivery.attempt, kind, outcome))]
    async fn send(&self, delivery: Delivery, out: NwsOutbound) -> Result<(), HandleError> {
        let span = tracing::Span::current();
        span.record("kind", out.kind.as_str());
        let (outcome, detail) = self.post(delivery.id, delivery.traceparent, out).await;
        span.record("outcome", outcome.label());
        match outcome {
            Outcome::Sent | Outcome::Duplicate => {
                tracing::info!("sent to the NWS");
                Ok(())
            }
            Outcome::Rejected => {
                tracing::error!(%detail, "the NWS refused the message; dead-lettering");
                Err(HandleError::Reject(anyhow!(detail)))
            }
            Outcome::Retry => {
                tracing::warn!(%detail, "send to the NWS failed; will retry");
                Err(HandleError::Retry(anyhow!(detail)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(Outcome::of_status(202), Outcome::Sent);
        assert_eq!(Outcome::of_status(409), Outcome::Duplicate);
        assert_eq!(Outcome::of_status(401), Outcome::Rejected);
        assert_eq!(Outcome::of_status(400), Outcome::Rejected);
        assert_eq!(Outcome::of_status(500), Outcome::Retry);
        assert_eq!(Outcome::of_status(503), Outcome::Retry);
        assert_eq!(Outcome::of_status(302), Outcome::Retry);
    }

    #[test]
    fn envelopes_keep_the_bus_message_id_and_verify() {
        let signer =
            Signer::from_seed_base64("relay-1", &chukan_crypto::generate_key_base64()).unwrap();
        let mut verifiers = chukan_crypto::Verifiers::default();
        verifiers
            .add_base64("relay-1", &signer.public_key_base64())
            .unwrap();
        let inner = SenderInner {
            http: reqwest::Client::new(),
            messages_url: String::new(),
            signer,
            clock: Arc::new(chukan_core::SystemClock),
            link: None,
        };
        let delivery = Delivery {
            id: uuid::Uuid::now_v7(),
            tenant: "0000000000000001".into(),
            routing_key: "nws.out".into(),
            body: Vec::new(),
            attempt: 2,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let env = inner.envelope(
            delivery.id,
            delivery.traceparent.clone(),
            NwsOutbound {
                kind: "code.acquire".into(),
                sender_org: "0000000000000001".into(),
                recipient: String::new(),
                correlation_id: "c-1".into(),
                body: vec![1, 2],
            },
        );
        assert_eq!(env.message_id, delivery.id.to_string());
        assert_eq!(env.recipient, "NWS");
        assert_eq!(env.traceparent, delivery.traceparent.clone().unwrap());
        verifiers
            .verify(&env.kid, &signing_bytes(&env), &env.signature)
            .unwrap();
    }
}
