//! The NWS link (データ送受信, F7): signs and sends outbound messages, verifies and publishes
//! inbound ones.
//!
//! - Outbound: consumes `nws.out` (queue `relay.nws-out`), wraps each [`chukan_proto::NwsOutbound`]
//!   in a signed [`chukan_proto::Envelope`] and POSTs it to `{relay.nws_url}/v1/messages`.
//!   Transient failures are retried through the bus's retry queues; a refusal is dead-lettered.
//!   Outside data send/receive hours (DOMAIN §7) messages are held in `relay.held` and the
//!   `relay-releaser` worker sends them paced once the calendar is open and the NWS is ready
//!   (see [`hold`]).
//! - Inbound: its own listener (`relay.inbound_host:inbound_port`) with
//!   `POST /nws/v1/messages`; a verified, fresh, new envelope becomes an
//!   [`chukan_proto::NwsInbound`] on `nws.in.<domain>` through the `relay` outbox.

pub mod hold;
pub mod inbound;
pub mod link;
pub mod metrics;
pub mod outbound;
mod store;

use std::{net::TcpListener, sync::Arc};

use anyhow::Context as _;
use chukan_crypto::{Signer, Verifiers};
use chukan_mq::QueueSpec;
use chukan_runtime::{Context, Parts, StopStage, Worker};
use secrecy::ExposeSecret as _;

/// The relay's schema: platform-level tables only (no personal data, no tenant wall).
pub const SCHEMA: &str = "relay";
/// The queue relay consumes outbound messages from.
pub const OUTBOUND_QUEUE: &str = "relay.nws-out";

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// The outbound queue's spec: `relay.nws-out` bound to `nws.out`.
pub fn outbound_queue() -> QueueSpec {
    QueueSpec::new(OUTBOUND_QUEUE, &[chukan_proto::NWS_OUT])
}

/// Starts relay's workers (inbound listener, outbound consumer, outbox relay). Must run
/// inside an actix system (the consumer and outbox are actors).
pub async fn start(ctx: &Context) -> anyhow::Result<Parts> {
    start_with_port(ctx).await.map(|(parts, _)| parts)
}

/// As [`start`], also returning the port the inbound listener is bound to.
pub async fn start_with_port(ctx: &Context) -> anyhow::Result<(Parts, u16)> {
    let settings = &ctx.settings.relay;
    let signer =
        Signer::from_seed_base64(&settings.signing_kid, settings.signing_key.expose_secret())
            .context("setting relay.signing_key")?;
    let verifiers = Verifiers::parse_entries(&settings.nws_public_keys)
        .context("setting relay.nws_public_keys")?;
    if settings.nws_public_keys.is_empty() {
        tracing::warn!("relay.nws_public_keys is empty: every inbound NWS message will be refused");
    }
    let gate = Arc::new(hold::Gate::new(
        ctx.db.clone(),
        chukan_crypto::Vault::new(ctx.kek.clone(), SCHEMA),
        ctx.calendar.clone(),
        ctx.clock.clone(),
        ctx.settings.calendar.enforce_service_hours,
    ));
    let nws_http = outbound::nws_client(settings).context("building the NWS HTTP client")?;
    let outbox = chukan_mq::outbox::start(
        ctx.db.clone(),
        SCHEMA,
        ctx.bus.clone(),
        ctx.settings.amqp.outbox_poll,
    );
    let link = link::LinkHealth::new(ctx.db.clone(), outbox.clone(), ctx.clock.clone());
    let sender = outbound::NwsSender::new(
        &settings.nws_url,
        nws_http.clone(),
        signer,
        ctx.clock.clone(),
        gate.clone(),
        link,
    )
    .context("building the NWS HTTP client")?;
    let releaser = hold::Releaser {
        pool: ctx.db.clone(),
        gate,
        sender: sender.inner(),
        ready_url: format!("{}/v1/ready", settings.nws_url.trim_end_matches('/')),
        http: nws_http,
        per_second: settings.release_per_second,
        readiness_poll: settings.readiness_poll,
    };

    let listener = TcpListener::bind((settings.inbound_host.as_str(), settings.inbound_port))
        .with_context(|| {
            format!(
                "binding the relay inbound listener to {}:{}",
                settings.inbound_host, settings.inbound_port
            )
        })?;
    let port = listener.local_addr()?.port();
    // HTTPS with the NWS's client certificate required when configured (ARCHITECTURE §3);
    // the envelope signatures are checked all the same.
    let tls = chukan_tls::server::server_config(&chukan_tls::server::ServerFiles::relay_inbound(
        settings,
    ))?;
    let server = inbound::server(
        inbound::InboundState {
            pool: ctx.db.clone(),
            verifiers,
            clock: ctx.clock.clone(),
            max_clock_skew_ms: settings.max_clock_skew_secs.saturating_mul(1000),
            outbox: outbox.clone(),
            homed: ctx.homed.clone(),
        },
        listener,
        tls,
    )?;
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);
    let inbound_worker = Worker {
        name: "relay-inbound".to_owned(),
        stage: StopStage::Intake,
        finished: Box::pin(async move {
            server_task
                .await
                .context("relay inbound listener task")?
                .context("relay inbound listener")
        }),
        stop: Box::new(move || Box::pin(async move { server_handle.stop(true).await })),
    };

    let spec = outbound_queue();
    ctx.bus
        .declare_queue(&spec)
        .await
        .context("declaring the relay outbound queue")?;
    // Prefetch bounds the handlers running at once, i.e. the sends in flight.
    let prefetch = u16::try_from(settings.send_concurrency).unwrap_or(u16::MAX);
    let consumer = chukan_mq::consumer::start(&ctx.bus, &spec, "relay", prefetch, Arc::new(sender));
    tracing::info!(inbound_port = port, "relay started");

    Ok((
        Parts {
            name: "relay",
            routes: None,
            // The NWS endpoint is on its own listener, not the public API: nothing to document.
            openapi: None,
            workers: vec![
                inbound_worker,
                consumer.into_worker("relay-outbound"),
                // Once per cell (ADR 0005): the release pace is the cell's.
                releaser.once_per_cell(ctx),
                outbox.into_worker("relay-outbox"),
            ],
        },
        port,
    ))
}
