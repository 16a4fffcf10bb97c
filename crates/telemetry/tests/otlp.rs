#![allow(clippy::unwrap_used, clippy::expect_used)]
//! OTLP/HTTP export reaches a collector, from inside an actix (current-thread) runtime.
//! Its own test binary: `init` installs the process-wide subscriber.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::mpsc,
    time::Duration,
};

use chukan_config::TelemetrySettings;

/// A one-request collector on a plain thread, so a blocked runtime cannot stall it.
fn fake_collector() -> (u16, mpsc::Receiver<(String, String, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let (mut content_type, mut length) = (String::new(), 0usize);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-type" => content_type = value.trim().to_owned(),
                "content-length" => length = value.trim().parse().unwrap(),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        tx.send((request_line, content_type, body.len())).unwrap();
    });
    (port, rx)
}

#[actix_rt::test]
async fn spans_are_exported_when_an_endpoint_is_set() {
    let (port, received) = fake_collector();
    let settings = TelemetrySettings {
        log_format: chukan_config::LogFormat::Json,
        log_level: "info".into(),
        otlp_endpoint: format!("http://127.0.0.1:{port}"),
    };
    let guard = chukan_telemetry::init("otlp-test", &settings).unwrap();
    // A second call is harmless.
    drop(chukan_telemetry::init("otlp-test", &settings).unwrap());

    let span = tracing::info_span!("exported_work");
    let traceparent = span.in_scope(chukan_telemetry::current_traceparent);
    assert!(traceparent.is_some());
    drop(span);
    // Shutting down flushes the batch.
    drop(guard);

    let (request_line, content_type, body_len) =
        received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        request_line.starts_with("POST /v1/traces "),
        "{request_line}"
    );
    assert_eq!(content_type, "application/x-protobuf");
    assert!(body_len > 0);
}
