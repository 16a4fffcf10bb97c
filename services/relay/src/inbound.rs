//! Inbound (NWS → bus): the listener the NWS delivers signed envelopes to.
//!
//! An envelope is accepted only if it is from the NWS, signed with a key we trust, fresh,
//! addressed to an organisation homed in this cell (else 421 `not-homed-here`, nothing
//! stored), and its message id is new. Acceptance is one transaction:
//! the id into `relay.received` and an [`NwsInbound`] into the outbox.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::Server, web};
use chukan_core::{Clock, Problem, edge, ids::OrgCode};
use chukan_crypto::Verifiers;
use chukan_mq::{OutgoingMessage, outbox::OutboxHandle};
use chukan_proto::{Envelope, Message as _, NwsInbound, inbound_routing_key, signing_bytes};
use tracing::Instrument as _;

use crate::{SCHEMA, metrics, outbound::NWS, store};

/// Largest envelope accepted.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

pub struct InboundState {
    pub pool: chukan_db::Pool,
    pub verifiers: Verifiers,
    pub clock: Arc<dyn Clock>,
    pub max_clock_skew_ms: i64,
    pub outbox: OutboxHandle,
    /// Which organisations this cell holds: a delivery for another is refused (ADR 0006).
    pub homed: Arc<chukan_runtime::homed::HomedTenants>,
}

/// The inbound listener with its one route, over HTTPS when `tls` is given.
pub fn server(
    state: InboundState,
    listener: TcpListener,
    tls: Option<chukan_tls::server::ServerConfig>,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(edge::screen))
            .wrap(edge::security_headers())
            .wrap(actix_web::middleware::from_fn(chukan_telemetry::boundary))
            .app_data(web::Data::new(edge::KnownRoutes::new([(
                "/nws/v1/messages",
                actix_web::http::Method::POST,
            )])))
            .app_data(state.clone())
            .route("/nws/v1/messages", web::post().to(receive))
            .default_service(web::to(edge::unmatched))
    })
    // Only the NWS calls here; two workers keep up with its deliveries.
    .workers(2)
    // The binary stops this listener with the other intake, not on actix's own signal.
    .disable_signals();
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// A refusal: counted by its problem code and logged without personal data.
fn refuse(status: u16, code: &'static str, title: &str, detail: &str, action: &str) -> Problem {
    metrics::INBOUND_REFUSED.with_label_values(&[code]).inc();
    Problem::new(status, code, title, detail, action)
}

/// A message that could not be stored: counted here, logged once by the request boundary
/// (503 when the database did not answer, so the NWS redelivers later).
fn not_stored(error: impl Into<anyhow::Error>) -> Problem {
    let problem = chukan_db::problem_of("inbound", error.into());
    metrics::INBOUND_REFUSED
        .with_label_values(&[&problem.code])
        .inc();
    problem
}

/// `POST /nws/v1/messages`.
async fn receive(
    state: web::Data<InboundState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let body = edge::read_capped(&req, payload, MAX_ENVELOPE_BYTES)
        .await
        .map_err(|refusal| match refusal {
            edge::BodyRefusal::TooLarge => refuse(
                413,
                "payload-too-large",
                "Payload too large",
                "メッセージが大きすぎます。",
                "メッセージを小さくして再度送信してください。",
            ),
            edge::BodyRefusal::BrokeOff => refuse(
                400,
                "malformed-envelope",
                "Malformed envelope",
                "メッセージ本文を受信できませんでした。",
                "再度送信してください。",
            ),
        })?;
    let env = Envelope::decode(body.as_slice()).map_err(|_| {
        refuse(
            400,
            "malformed-envelope",
            "Malformed envelope",
            "メッセージを解釈できません。",
            "protobufのEnvelopeとして送信してください。",
        )
    })?;
    if env.sender != NWS {
        return Err(refuse(
            403,
            "unknown-sender",
            "Unknown sender",
            "送信元が情報提供ネットワークシステムではありません。",
            "送信元を確認してください。",
        ));
    }
    if let Err(err) = state
        .verifiers
        .verify(&env.kid, &signing_bytes(&env), &env.signature)
    {
        let problem = Problem::from(err);
        metrics::INBOUND_REFUSED
            .with_label_values(&[problem.code.as_ref()])
            .inc();
        tracing::warn!(code = %problem.code, "inbound NWS message refused");
        return Err(problem);
    }
    // The receive span is made only now, and parented before it is first entered: only a
    // verified envelope's trace context is trusted to parent our spans, and OpenTelemetry
    // fixes a span's parent when the span starts (a parent set on an entered span is
    // ignored, which once split every exchange into a trace per side of the NWS).
    let span = tracing::info_span!(
        "relay.inbound",
        kind = env.kind.as_str(),
        nws_message_id = env.message_id.as_str(),
        recipient = tracing::field::Empty,
    );
    if !env.traceparent.is_empty() {
        chukan_telemetry::set_parent_from_traceparent(&span, &env.traceparent);
    }
    accept(&state, env).instrument(span).await
}

/// The verified envelope, checked further and stored for its recipient (inside the receive
/// span).
async fn accept(state: &InboundState, env: Envelope) -> Result<HttpResponse, Problem> {
    let span = tracing::Span::current();
    let now_ms = state.clock.now().timestamp_millis();
    if (now_ms - env.timestamp_ms).abs() > state.max_clock_skew_ms {
        return Err(refuse(
            400,
            "stale-message",
            "Stale message",
            "メッセージの送信時刻が許容範囲外です。",
            "時刻同期を確認し、新しいメッセージとして送信してください。",
        ));
    }
    let recipient = OrgCode::parse(&env.recipient).map_err(|_| {
        refuse(
            400,
            "invalid-recipient",
            "Invalid recipient",
            "宛先の機関コードが16桁の数字ではありません。",
            "宛先の機関コードを確認して再度送信してください。",
        )
    })?;
    span.record("recipient", recipient.as_str());
    if env.kind.is_empty() || env.message_id.is_empty() {
        return Err(refuse(
            400,
            "malformed-envelope",
            "Malformed envelope",
            "メッセージIDまたはメッセージ種別がありません。",
            "メッセージIDと種別を指定して再度送信してください。",
        ));
    }
    // Before anything is stored: the NWS keeps the message and tries the organisation's
    // other door (its standby_endpoint_url), so a refusal here loses nothing and a later
    // retry cannot duplicate it (ADR 0006, "The NWS knows both doors").
    if !state.homed.is_homed(recipient.as_str()).await {
        return Err(refuse(
            421,
            "not-homed-here",
            "Misdirected request",
            "宛先の団体はこのセル（リージョン）に所属していません。",
            "宛先の団体のもう一方の受信口（standby_endpoint_url）へ配信してください。",
        ));
    }

    let routing_key = inbound_routing_key(&env.kind);
    let inbound = NwsInbound {
        kind: env.kind.clone(),
        recipient_org: recipient.as_str().to_owned(),
        correlation_id: env.correlation_id.clone(),
        body: env.body,
        nws_message_id: env.message_id.clone(),
    };
    let message = OutgoingMessage::new(recipient.as_str(), routing_key, inbound.encode_to_vec());

    let mut client = state.pool.get().await.map_err(not_stored)?;
    let tx = client.transaction().await.map_err(not_stored)?;
    // Claim and outbox row in one pipelined round trip; a replay rolls both back.
    let (fresh, queued) = futures_util::join!(
        store::claim_message(&tx, &env.message_id, &env.sender, &env.kind, &recipient),
        chukan_mq::outbox::enqueue(&tx, SCHEMA, &message),
    );
    if !fresh.map_err(not_stored)? {
        return Err(refuse(
            409,
            "replayed",
            "Replayed message",
            "このメッセージIDは受信済みです。",
            "再送の場合は対応不要です。",
        ));
    }
    queued.map_err(not_stored)?;
    tx.commit().await.map_err(not_stored)?;
    state.outbox.wake();
    metrics::INBOUND_ACCEPTED.inc();
    tracing::info!("inbound NWS message accepted");
    Ok(HttpResponse::Accepted().finish())
}
