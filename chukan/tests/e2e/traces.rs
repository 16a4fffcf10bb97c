//! W3C trace context end to end: one inquiry round trip between two municipalities is one
//! trace, from the inquirer's HTTP request through the outbox, RabbitMQ, relay, the NWS, the
//! provider's consumer and back to the inquirer's result consumer; and no span carries
//! personal data.
//!
//! Both processes export to an OTLP/HTTP receiver the test owns ([`Collector`]).

use std::{
    collections::BTreeSet,
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
};
use prost::Message as _;

use crate::{
    ADDRESSEE, ORG_A, ORG_B, RESIDENT,
    inquiry::{NHI_AFFAIR, NHI_BENEFIT, answered, inquiry, poll, send, two_municipalities_with},
    stored_code,
};

/// One exported span, flattened to text.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_id: String,
    name: String,
    /// The resource's `service.name`: the process's `--target` (`all`) or `nws-sim`.
    service: String,
    attributes: Vec<(String, String)>,
    /// The span's events (its log lines): name and attributes.
    events: Vec<(String, Vec<(String, String)>)>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The Rust module the span was opened in (`code.module.name`, set by
    /// tracing-opentelemetry), to tell apart spans of the same name (`apply`).
    fn module(&self) -> &str {
        self.attr("code.module.name").unwrap_or("")
    }

    /// Every text the span exports: name, attribute values, event names and their values.
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str())
            .chain(self.attributes.iter().map(|(_, v)| v.as_str()))
            .chain(self.events.iter().flat_map(|(name, attrs)| {
                std::iter::once(name.as_str()).chain(attrs.iter().map(|(_, v)| v.as_str()))
            }))
    }

    fn short(&self) -> String {
        format!("{} [{}] {}", self.name, self.service, self.module())
    }
}

/// An OTLP/HTTP (protobuf) trace receiver on 127.0.0.1: `POST /v1/traces`.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
    handle: ServerHandle,
}

/// An export batch holds up to 512 spans, which can exceed actix's default 256 KiB limit.
const MAX_EXPORT_BYTES: usize = 64 * 1024 * 1024;

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let store = web::Data::new(spans.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(store.clone())
                .app_data(web::PayloadConfig::new(MAX_EXPORT_BYTES))
                .route("/v1/traces", web::post().to(export))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Collector {
            endpoint,
            spans,
            handle,
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn export(
    store: web::Data<Arc<Mutex<Vec<Span>>>>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let protobuf = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-protobuf"));
    if !protobuf {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Span {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_id: hex(&span.parent_span_id),
                name: span.name,
                service: service.clone(),
                attributes: pairs(&span.attributes),
                events: span
                    .events
                    .into_iter()
                    .map(|e| (e.name, pairs(&e.attributes)))
                    .collect(),
            });
        }
    }
    store.lock().unwrap().extend(spans);
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// Any attribute value as text (arrays and maps joined), so a search covers all of it.
fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::BytesValue(b)) => format!("{}|{}", String::from_utf8_lossy(b), hex(b)),
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| text(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Any::KvlistValue(l)) => l
            .values
            .iter()
            .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref())))
            .collect::<Vec<_>>()
            .join(","),
        // Profiling only; not expected in traces.
        Some(Any::StringValueStrindex(i)) => format!("strindex:{i}"),
    }
}

/// One recognisable span of the round trip.
struct Hop {
    what: &'static str,
    is: fn(&Span) -> bool,
}

const REQUEST: Hop = Hop {
    what: "the inquirer's request (http.request POST /v1/inquiries)",
    is: |s| {
        s.name == "http.request"
            && s.attr("http.route") == Some("/v1/inquiries")
            && s.attr("http.method") == Some("POST")
    },
};

/// The round trip in three legs, each a run of spans in one process connected by the outbox
/// and RabbitMQ; the NWS lies between them. A leg's first hop starts it, the others must be in
/// the same trace. (Each leg's queue hop is a `consume` span of chukan-mq, parent of the
/// handler's span.)
const LEGS: [(&str, &[Hop]); 3] = [
    (
        "A: the request to relay's send",
        &[
            REQUEST,
            Hop {
                what: "the inquiry handler (create_inquiry)",
                is: |s| s.name == "create_inquiry",
            },
            Hop {
                what: "relay sending the inquiry to the NWS (send, kind inquiry.request)",
                is: |s| {
                    s.name == "send"
                        && s.module().starts_with("chukan_relay")
                        && s.attr("kind") == Some("inquiry.request")
                },
            },
        ],
    ),
    (
        "B: relay's receipt to relay's send of the answer",
        &[
            Hop {
                what: "relay receiving the permit from the NWS (relay.inbound, provision.request)",
                is: |s| s.name == "relay.inbound" && s.attr("kind") == Some("provision.request"),
            },
            Hop {
                what: "the provider's consumer answering (apply in provision's nws_in)",
                is: |s| s.name == "apply" && s.module().starts_with("chukan_provision"),
            },
            Hop {
                what: "relay sending the answer to the NWS (send, kind provision.answer)",
                is: |s| {
                    s.name == "send"
                        && s.module().starts_with("chukan_relay")
                        && s.attr("kind") == Some("provision.answer")
                },
            },
        ],
    ),
    (
        "A: relay's receipt to the stored result",
        &[
            Hop {
                what: "relay receiving the result from the NWS (relay.inbound, inquiry.result)",
                is: |s| s.name == "relay.inbound" && s.attr("kind") == Some("inquiry.result"),
            },
            Hop {
                what: "the inquirer's result consumer (apply in inquiry's nws_in)",
                is: |s| s.name == "apply" && s.module().starts_with("chukan_inquiry"),
            },
        ],
    ),
];

/// Each leg's trace id once every hop of every leg is in its leg's trace; else what is
/// missing.
fn legs(spans: &[Span]) -> Result<Vec<String>, Vec<String>> {
    let mut traces = Vec::new();
    let mut missing = Vec::new();
    for (leg, hops) in LEGS {
        let Some(first) = spans.iter().find(|s| (hops[0].is)(s)) else {
            missing.push(format!("{leg}: {}", hops[0].what));
            continue;
        };
        for hop in &hops[1..] {
            if !spans
                .iter()
                .any(|s| s.trace_id == first.trace_id && (hop.is)(s))
            {
                missing.push(format!("{leg}: {} (in trace {})", hop.what, first.trace_id));
            }
        }
        traces.push(first.trace_id.clone());
    }
    if missing.is_empty() {
        Ok(traces)
    } else {
        Err(missing)
    }
}

fn describe(trace: &[&Span]) -> String {
    let names: BTreeSet<String> = trace.iter().map(|s| s.short()).collect();
    names.into_iter().collect::<Vec<_>>().join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_inquiry_round_trip_is_one_trace_without_personal_data() {
    let collector = Collector::start();
    let (mut stack, token_a, _) = two_municipalities_with(&[
        (
            "CHUKAN__TELEMETRY__OTLP_ENDPOINT",
            collector.endpoint.as_str(),
        ),
        // The harness runs quietly at `warn`, where the filter drops the info spans too.
        ("CHUKAN__TELEMETRY__LOG_LEVEL", "info"),
        // The SDK's batch interval (default 5 s): spans arrive while the test watches.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let codes = [
        stored_code(&stack, ORG_A).await,
        stored_code(&stack, ORG_B).await,
    ];

    let sent = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28"),
    )
    .await;
    let result = answered(&stack, &token_a, sent["id"].as_str().unwrap()).await;
    assert_eq!(result["status"], "provided", "{result}");

    // Every leg arrives whole: within each process the context crosses HTTP → outbox →
    // RabbitMQ → consumer → database → outbox → relay.
    let legs = poll(
        30,
        "every leg of the round trip, each in one trace",
        || async { legs(&collector.spans()).map_err(|missing| serde_json::json!(missing)) },
    )
    .await;

    // SIGTERM: both processes flush what their exporters still hold.
    assert_eq!(stack.chukan.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(stack.nws_sim.terminate(Duration::from_secs(10)), Some(0));
    let spans = collector.spans();
    collector.stop().await;
    assert!(
        spans.iter().any(|s| s.service == "nws-sim"),
        "nws-sim exports its spans too"
    );

    // No span of either process, in any trace, carries personal data: neither the
    // addressee number, nor the resident-record code, nor either municipality's code.
    let secrets = [
        (ADDRESSEE, "integrated addressee number"),
        (RESIDENT, "resident-record code"),
        (codes[0].as_str(), "ORG_A's code (符号)"),
        (codes[1].as_str(), "ORG_B's code (符号)"),
    ];
    for span in &spans {
        for text in span.texts() {
            for (secret, what) in secrets {
                assert!(
                    !text.contains(secret),
                    "span {} holds the {what}: {text}",
                    span.short()
                );
            }
        }
    }

    // Across the NWS: the signed envelope carries the traceparent both ways (nws-sim copies
    // the inquiry's onto the permit and the answer's onto the result), and relay's inbound
    // listener makes it the parent of what it publishes, so the three legs are one trace.
    let trace_of = |id: &str| -> Vec<&Span> { spans.iter().filter(|s| s.trace_id == id).collect() };
    assert!(
        legs.iter().all(|t| *t == legs[0]),
        "the round trip splits at the NWS into {} traces (each leg's first span must have the \
         envelope's traceparent as parent, set before the span is entered):\n{}",
        legs.iter().collect::<BTreeSet<_>>().len(),
        LEGS.iter()
            .zip(&legs)
            .map(|((leg, _), t)| format!("  {leg}: {t}: {}", describe(&trace_of(t))))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // In one piece: the request is the trace's only root; every other span's parent is in it.
    let trace = trace_of(&legs[0]);
    let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&&Span> = trace
        .iter()
        .filter(|s| !ids.contains(s.parent_id.as_str()))
        .collect();
    assert!(
        matches!(roots.as_slice(), [root] if (REQUEST.is)(root)),
        "roots or dangling parents other than the request: {:?}",
        roots.iter().map(|s| s.short()).collect::<Vec<_>>()
    );
}
