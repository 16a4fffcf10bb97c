#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `database.tls_mode = "verify-full"` against PostgreSQL clusters of the tests' own (never
//! the shared server): a throw-away CA signs the server's certificate for `localhost`, and
//! the cluster accepts TCP connections over TLS only. Shows that chukan connects with
//! verification (pool, migrations, one-off connections), refuses a server whose certificate
//! does not verify, and that plaintext is refused either way.

use std::{future::Future, time::Duration};

use chukan_config::{DatabaseSettings, Settings};
use chukan_db::{Migrations, PgTls, app_pool, migrate};
use chukan_testkit::{
    pki::TestCa,
    tls_servers::{PgCluster, ServerTls},
};

mod rls {
    refinery::embed_migrations!("tests/rls_migrations");
}

/// Every step is bounded: a refused connection must fail, not hang.
async fn bounded<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), step)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than 60 s"))
}

/// A CA and a cluster serving TLS only, with a certificate for `localhost` signed by it.
async fn tls_cluster(client_ca: bool) -> (TestCa, PgCluster) {
    let ca = TestCa::new("pg").unwrap();
    let server = ca.server("postgres", &["localhost"]).unwrap();
    let ca_file = ca.ca_file();
    let cluster = bounded(
        "starting the TLS cluster",
        PgCluster::start(Some(ServerTls {
            identity: &server,
            client_ca_file: client_ca.then_some(ca_file.as_str()),
        })),
    )
    .await
    .unwrap();
    (ca, cluster)
}

/// The settings a deployment would write, through the real loader and its validation.
fn settings(url: &str, pairs: &[(&str, &str)]) -> DatabaseSettings {
    let mut env = vec![("CHUKAN__DATABASE__URL".to_string(), url.to_string())];
    env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_with(None, env).unwrap().database
}

/// The error and its causes on one line (the TLS reason is a cause several levels down).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Whether this connection is encrypted, as the server sees it.
async fn server_sees_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn verify_full_with_the_ca_connects_migrations_the_pool_and_single_connections() {
    let (ca, cluster) = tls_cluster(false).await;
    let db = settings(
        &cluster.url("localhost", "chukan_tls"),
        &[
            ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
            ("CHUKAN__DATABASE__CA_FILE", &ca.ca_file()),
        ],
    );

    // `chukan migrate`: the owner's connections (database postgres, then the target).
    let sets = [Migrations {
        schema: "rls_test",
        runner: rls::migrations::runner,
    }];
    bounded("migrating over TLS", migrate(&db, &sets))
        .await
        .unwrap();

    // The services' pool, as the application role.
    let pool = app_pool(&db).unwrap();
    let client = bounded("a pooled connection", pool.get()).await.unwrap();
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "chukan_app");
    assert!(server_sees_tls(&client).await);

    // One-off connections (CLI, nws-sim's migrations).
    let owner = bounded(
        "a single connection",
        PgTls::from_settings(&db)
            .unwrap()
            .connect(&db.url.parse().unwrap(), "test"),
    )
    .await
    .unwrap();
    assert!(server_sees_tls(&owner).await);
}

#[tokio::test]
async fn a_server_certificate_that_does_not_verify_is_refused() {
    let (ca, cluster) = tls_cluster(false).await;

    // Signed by a CA chukan was not told to trust.
    let stranger = TestCa::new("stranger").unwrap();
    let db = settings(
        &cluster.url("localhost", "postgres"),
        &[
            ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
            ("CHUKAN__DATABASE__CA_FILE", &stranger.ca_file()),
        ],
    );
    let pool = app_pool(&db).unwrap();
    let error = bounded("an untrusted server", pool.get())
        .await
        .expect_err("a certificate from an unknown CA was accepted");
    let error = chain(&error);
    assert!(error.contains("UnknownIssuer"), "{error}");
    let error = bounded("migrating to an untrusted server", migrate(&db, &[]))
        .await
        .expect_err("migrations trusted an unknown CA");
    assert!(format!("{error:#}").contains("UnknownIssuer"), "{error:#}");

    // The right CA, but dialled by a name the certificate does not carry (it names only
    // `localhost`): verify-full checks the name, not just the chain.
    let db = settings(
        &cluster.url("127.0.0.1", "postgres"),
        &[
            ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
            ("CHUKAN__DATABASE__CA_FILE", &ca.ca_file()),
        ],
    );
    let pool = app_pool(&db).unwrap();
    let error = bounded("a server under another name", pool.get())
        .await
        .expect_err("a certificate for another name was accepted");
    let error = chain(&error);
    assert!(error.contains("not valid for name"), "{error}");
}

#[tokio::test]
async fn plaintext_is_refused_by_a_tls_only_server() {
    let (_ca, cluster) = tls_cluster(false).await;
    let db = settings(&cluster.url("localhost", "postgres"), &[]);
    let pool = app_pool(&db).unwrap();
    let error = bounded("a plaintext connection", pool.get())
        .await
        .expect_err("the TLS-only server took a plaintext connection");
    let error = chain(&error);
    assert!(error.contains("no encryption"), "{error}");
}

#[tokio::test]
async fn verify_full_refuses_a_server_without_tls() {
    let ca = TestCa::new("pg").unwrap();
    let cluster = bounded("starting the plaintext cluster", PgCluster::start(None))
        .await
        .unwrap();
    let url = cluster.url("localhost", "postgres");

    let db = settings(
        &url,
        &[
            ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
            ("CHUKAN__DATABASE__CA_FILE", &ca.ca_file()),
        ],
    );
    let pool = app_pool(&db).unwrap();
    let error = bounded("verify-full against plaintext", pool.get())
        .await
        .expect_err("verify-full fell back to plaintext");
    let error = chain(&error);
    assert!(error.contains("TLS"), "{error}");
    // Even when the URL asks for less: tls_mode decides.
    let lax = settings(
        &format!("{url}?sslmode=disable"),
        &[
            ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
            ("CHUKAN__DATABASE__CA_FILE", &ca.ca_file()),
        ],
    );
    let error = bounded(
        "verify-full against plaintext, sslmode=disable in the URL",
        PgTls::from_settings(&lax)
            .unwrap()
            .connect(&lax.url.parse().unwrap(), "test"),
    )
    .await
    .expect_err("the URL's sslmode overrode tls_mode");
    assert!(format!("{error:#}").contains("TLS"), "{error:#}");

    // The same server is reachable in plaintext: it was TLS that was missing.
    let plain = settings(&url, &[]);
    let client = bounded(
        "a plaintext connection",
        PgTls::from_settings(&plain)
            .unwrap()
            .connect(&plain.url.parse().unwrap(), "test"),
    )
    .await
    .unwrap();
    assert!(!server_sees_tls(&client).await);
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_configured() {
    let (ca, cluster) = tls_cluster(true).await;
    let client_cert = ca.client("chukan-db-client", "chukan").unwrap();
    let url = cluster.url("localhost", "postgres");

    let without = settings(
        &url,
        &[
            ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
            ("CHUKAN__DATABASE__CA_FILE", &ca.ca_file()),
        ],
    );
    let error = bounded(
        "a connection without a client certificate",
        PgTls::from_settings(&without)
            .unwrap()
            .connect(&without.url.parse().unwrap(), "test"),
    )
    .await
    .expect_err("the server asked for a client certificate and went without");
    assert!(format!("{error:#}").contains("certificate"), "{error:#}");

    let with = settings(
        &url,
        &[
            ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
            ("CHUKAN__DATABASE__CA_FILE", &ca.ca_file()),
            ("CHUKAN__DATABASE__CLIENT_CERT_FILE", &client_cert.cert_file),
            ("CHUKAN__DATABASE__CLIENT_KEY_FILE", &client_cert.key_file),
        ],
    );
    let client = bounded(
        "a connection with a client certificate",
        PgTls::from_settings(&with)
            .unwrap()
            .connect(&with.url.parse().unwrap(), "test"),
    )
    .await
    .unwrap();
    assert!(server_sees_tls(&client).await);
}
