#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The vault against a real PostgreSQL (127.0.0.1:5432, user postgres, trust).

use chukan_crypto::{Kek, Vault, VaultError, generate_key_base64};
use tokio_postgres::{Client, NoTls};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A fresh database with `vaulttest.tenant_keys` as chukan-db's infrastructure makes it.
async fn fresh_database() -> (String, Client) {
    let name = format!("chukan_crypto_{}", uuid::Uuid::new_v4().simple());
    connect(ADMIN_URL)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let client = connect(&format!("postgres://postgres@127.0.0.1:5432/{name}")).await;
    client
        .batch_execute(
            "CREATE SCHEMA vaulttest;
             CREATE TABLE vaulttest.tenant_keys (
                 tenant_id text PRIMARY KEY,
                 kid text NOT NULL,
                 wrapped_data_key bytea NOT NULL,
                 wrapped_index_key bytea NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await
        .unwrap();
    (name, client)
}

async fn drop_database(name: &str) {
    connect(ADMIN_URL)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn keys_are_generated_once_and_reused() {
    let (db, client) = fresh_database().await;
    let kek = Kek::from_base64(&generate_key_base64()).unwrap();

    let first = Vault::new(kek.clone(), "vaulttest");
    let keys = first.keys(&client, "1310100001").await.unwrap();
    let blob = keys.encrypt(b"resident", b"aad");
    let index = keys.blind_index("resident");
    // Cached: the same Arc comes back.
    let again = first.keys(&client, "1310100001").await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&keys, &again));

    // A second process (a second vault) reads the same row instead of making new keys.
    let second = Vault::new(kek.clone(), "vaulttest");
    let reloaded = second.keys(&client, "1310100001").await.unwrap();
    assert_eq!(reloaded.kid(), keys.kid());
    assert_eq!(reloaded.decrypt(&blob, b"aad").unwrap(), b"resident");
    assert_eq!(reloaded.blind_index("resident"), index);

    let count: i64 = client
        .query_one("SELECT count(*) FROM vaulttest.tenant_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    // Another tenant gets other keys.
    let other = second.keys(&client, "2710000002").await.unwrap();
    assert_ne!(other.kid(), keys.kid());
    assert!(other.decrypt(&blob, b"aad").is_err());
    assert_ne!(other.blind_index("resident"), index);

    drop(client);
    drop_database(&db).await;
}

#[tokio::test]
async fn stored_keys_are_wrapped_and_bound_to_their_tenant() {
    let (db, client) = fresh_database().await;
    let kek = Kek::from_base64(&generate_key_base64()).unwrap();
    let vault = Vault::new(kek.clone(), "vaulttest");
    let a = vault.keys(&client, "tenant-a").await.unwrap();
    vault.keys(&client, "tenant-b").await.unwrap();

    let row = client
        .query_one(
            "SELECT wrapped_data_key, wrapped_index_key FROM vaulttest.tenant_keys \
             WHERE tenant_id = 'tenant-a'",
            &[],
        )
        .await
        .unwrap();
    let wrapped_data: Vec<u8> = row.get(0);
    let wrapped_index: Vec<u8> = row.get(1);
    // nonce(12) + key(32) + tag(16): a wrapped key, not a raw 32-byte one.
    assert_eq!(wrapped_data.len(), 60);
    assert_eq!(wrapped_index.len(), 60);
    assert_ne!(wrapped_data, wrapped_index);
    // The raw index key would reproduce the blind index; the stored bytes must not.
    for window in wrapped_index.windows(32) {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(window).unwrap();
        mac.update(b"x");
        assert_ne!(mac.finalize().into_bytes().to_vec(), a.blind_index("x"));
    }

    // Copy tenant-a's wrapped keys onto tenant-b's row: a fresh vault must refuse them.
    client
        .execute(
            "UPDATE vaulttest.tenant_keys AS b SET kid = a.kid,
                 wrapped_data_key = a.wrapped_data_key, wrapped_index_key = a.wrapped_index_key
             FROM vaulttest.tenant_keys AS a
             WHERE a.tenant_id = 'tenant-a' AND b.tenant_id = 'tenant-b'",
            &[],
        )
        .await
        .unwrap();
    let fresh = Vault::new(kek, "vaulttest");
    assert!(matches!(
        fresh.keys(&client, "tenant-b").await,
        Err(VaultError::Unwrap { .. })
    ));

    // Another KEK cannot open the stored keys either.
    let wrong = Vault::new(
        Kek::from_base64(&generate_key_base64()).unwrap(),
        "vaulttest",
    );
    assert!(matches!(
        wrong.keys(&client, "tenant-a").await,
        Err(VaultError::Unwrap { .. })
    ));

    drop(client);
    drop_database(&db).await;
}

#[tokio::test]
async fn racing_vaults_agree_on_one_key() {
    let (db, client) = fresh_database().await;
    let kek = Kek::from_base64(&generate_key_base64()).unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let (c1, c2) = (connect(&url).await, connect(&url).await);
    let (v1, v2) = (
        Vault::new(kek.clone(), "vaulttest"),
        Vault::new(kek, "vaulttest"),
    );
    let (k1, k2) = tokio::join!(v1.keys(&c1, "racer"), v2.keys(&c2, "racer"));
    assert_eq!(k1.unwrap().kid(), k2.unwrap().kid());

    drop((client, c1, c2));
    drop_database(&db).await;
}
