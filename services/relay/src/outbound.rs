//! Outbound (nws.out → NWS): signs each [`NwsOutbound`] into an [`Envelope`] and POSTs it.
//!
//! The envelope's message id is the bus message id, stable across retries, so a resend after
//! a lost answer is refused by the NWS as a replay (409), which counts as sent.

use std::{sync::Arc, time::Duration};

use anyhow::anyhow;
use chukan_core::{Clock, ids::OrgCode};
use chukan_crypto::Signer;
use chukan_mq::{Delivery, HandleError, Handler};
use chukan_proto::{Envelope, Message as _, NwsOutbound, signing_bytes};
use futures_util::future::BoxFuture;

use crate::metrics;

/// What the NWS calls itself as a recipient.
pub const NWS: &str = "NWS";

/// The consumer handler sending to the NWS.
#[derive(Clone)]
pub struct NwsSender {
    inner: Arc<SenderInner>,
}

struct SenderInner {
    http: reqwest::Client,
    messages_url: String,
    signer: Signer,
    clock: Arc<dyn Clock>,
}

impl NwsSender {
    pub fn new(
        nws_url: &str,
        timeout: Duration,
        signer: Signer,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<NwsSender> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(NwsSender {
            inner: Arc::new(SenderInner {
                http,
                messages_url: format!("{}/v1/messages", nws_url.trim_end_matches('/')),
                signer,
                clock,
            }),
        })
    }
}

impl Handler for NwsSender {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(delivery).await })
    }
}

/// How one send ended, as counted in `chukan_relay_send_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Duplicate,
    Rejected,
    Retry,
}

impl Outcome {
    fn label(self) -> &'static str {
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
    fn envelope(&self, delivery: &Delivery, out: NwsOutbound) -> Envelope {
        let recipient = if out.recipient.is_empty() {
            NWS.to_owned()
        } else {
            out.recipient
        };
        let traceparent = delivery
            .traceparent
            .clone()
            .or_else(chukan_telemetry::current_traceparent)
            .unwrap_or_default();
        let mut env = Envelope {
            message_id: delivery.id.to_string(),
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

    #[tracing::instrument(skip_all, fields(message_id = %delivery.id, attempt = delivery.attempt, kind, outcome))]
    async fn send(&self, delivery: Delivery) -> Result<(), HandleError> {
        let out = match NwsOutbound::decode(delivery.body.as_slice()) {
            Ok(out) if OrgCode::parse(&out.sender_org).is_ok() && !out.kind.is_empty() => out,
            _ => {
                metrics::SEND_TOTAL.with_label_values(&["malformed"]).inc();
                return Err(HandleError::Reject(anyhow!(
                    "nws.out message is not a valid NwsOutbound (kind and sender organisation code are required)"
                )));
            }
        };
        let span = tracing::Span::current();
        span.record("kind", out.kind.as_str());
        let env = self.envelope(&delivery, out);

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
            &delivery,
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
