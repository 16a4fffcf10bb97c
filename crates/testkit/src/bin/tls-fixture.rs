//! `tls-fixture`: a PostgreSQL cluster and a RabbitMQ node serving TLS only, with a
//! throw-away CA, for scripts/check-deploy's TLS drift check (scripts/lib/deploy/drift_tls.py).
//!
//!     tls-fixture [--vhost NAME]
//!
//! Makes a CA, starts both servers on free ports of 127.0.0.1 with a server certificate for
//! `localhost` ([`PgCluster`]: `hostssl` only, plaintext rejected; [`RabbitNode`]: no
//! plaintext listener), creates the vhost NAME (with all permissions for `guest`) and issues
//! the other certificates the chart's TLS settings mount. Then it prints one JSON line:
//!
//!     {"pg_port", "amqp_port", "ca_file", "api_cert_file", "api_key_file",
//!      "relay_inbound_cert_file", "relay_inbound_key_file", "client_cert_file",
//!      "client_key_file"}
//!
//! (every certificate issued by the CA of `ca_file`; the api and relay-inbound ones for
//! `localhost` and `127.0.0.1`, the client one for `nws`), and serves requests on stdin, one
//! per line, each answered with one JSON line:
//!
//!     queues VHOST   ->  {"queues": [names of VHOST's queues]}
//!
//! It stops both servers and removes their files when stdin closes or on SIGTERM / SIGINT.

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use chukan_testkit::{
    pki::TestCa,
    tls_servers::{PgCluster, RabbitNode, ServerTls},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

/// Ten processes with their pools (poolMaxSize), leases and listeners, and the check's psql.
const PG_MAX_CONNECTIONS: u32 = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let vhost = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag, name] if flag == "--vhost" => Some(name.clone()),
        other => bail!("usage: tls-fixture [--vhost NAME] (got {other:?})"),
    };
    // Handlers first: a SIGTERM during the start must still stop what has started.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let ca = TestCa::new("deploycheck")?;
    let server = ca.server("server", &["localhost"])?;
    let api = ca.server("api", &["localhost", "127.0.0.1"])?;
    let relay_inbound = ca.server("relay-inbound", &["localhost", "127.0.0.1"])?;
    let client = ca.client("nws-client", "nws")?;
    let tls = ServerTls {
        identity: &server,
        client_ca_file: None,
    };

    let started = tokio::select! {
        started = async {
            tokio::join!(PgCluster::start_sized(Some(tls), PG_MAX_CONNECTIONS), RabbitNode::start(tls))
        } => started,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    };
    // Each fixture stops on drop, so one that started is stopped even when the other failed.
    let (pg, rabbit) = (
        started.0.context("starting PostgreSQL")?,
        started.1.context("starting RabbitMQ")?,
    );
    if let Some(vhost) = &vhost {
        rabbit.rabbitmqctl(&["add_vhost", vhost])?;
        rabbit.rabbitmqctl(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])?;
    }

    let ready = serde_json::json!({
        "pg_port": pg.port(),
        "amqp_port": rabbit.port(),
        "ca_file": ca.ca_file(),
        "api_cert_file": api.cert_file,
        "api_key_file": api.key_file,
        "relay_inbound_cert_file": relay_inbound.cert_file,
        "relay_inbound_key_file": relay_inbound.key_file,
        "client_cert_file": client.cert_file,
        "client_key_file": client.key_file,
    });
    println!("{ready}");

    // stdin is read on a thread of its own: a read blocked in tokio's blocking pool would keep
    // the runtime (and so the process) alive after a SIGTERM until stdin closed.
    let (tx, mut requests) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = tokio::select! {
            line = requests.recv() => line,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        // None: stdin closed.
        let Some(line) = line else { break };
        let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["queues", vhost] => {
                let out = rabbit.rabbitmqctl(&[
                    "-q",
                    "list_queues",
                    "-p",
                    vhost,
                    "--no-table-headers",
                    "name",
                ])?;
                serde_json::json!({ "queues": out.split_whitespace().collect::<Vec<_>>() })
            }
            _ => serde_json::json!({ "error": format!("unknown request {line:?}") }),
        };
        println!("{answer}");
    }
    // Dropping pg and rabbit stops the servers; the CA's files go with `ca`.
    drop((pg, rabbit));
    Ok(())
}
