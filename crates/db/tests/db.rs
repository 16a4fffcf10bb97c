#![allow(clippy::unwrap_used, clippy::expect_used)]
//! chukan-db against the machine's PostgreSQL: each test migrates its own fresh database.

use chukan_config::{DatabaseSettings, Settings};
use chukan_db::{Migrations, app_pool, migrate, ping, tenant_tx};
use uuid::Uuid;

mod rls {
    refinery::embed_migrations!("tests/rls_migrations");
}

const RLS_SCHEMA: &str = "rls_test";

fn rls_set() -> Migrations {
    Migrations {
        schema: RLS_SCHEMA,
        runner: rls::migrations::runner,
    }
}

/// Settings pointing at a database nobody else uses.
fn fresh_settings() -> (DatabaseSettings, String) {
    let mut settings = Settings::load_with(None, Vec::new()).unwrap().database;
    let dbname = format!("t_{}", Uuid::new_v4().simple());
    settings.url = format!("postgres://postgres@127.0.0.1:5432/{dbname}");
    (settings, dbname)
}

async fn owner(dbname: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("postgres://postgres@127.0.0.1:5432/{dbname}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
}

async fn drop_database(dbname: &str) {
    let admin = owner("postgres").await;
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{dbname}\" WITH (FORCE)"
        ))
        .await;
}

#[tokio::test]
async fn migrate_twice_is_idempotent_and_creates_infrastructure() {
    let (settings, dbname) = fresh_settings();
    migrate(&settings, &[rls_set()]).await.unwrap();
    migrate(&settings, &[rls_set()]).await.unwrap();

    let client = owner(&dbname).await;
    let infra: i64 = client
        .query_one("SELECT count(*) FROM rls_test.chukan_infra_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(infra, 4);
    let service: i64 = client
        .query_one("SELECT count(*) FROM rls_test.refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(service, 1);
    for table in ["outbox", "outbox_sent", "inbox", "tenant_keys", "notes"] {
        let found = client
            .query_opt(
                "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
                &[&RLS_SCHEMA, &table],
            )
            .await
            .unwrap();
        assert!(found.is_some(), "{table} missing");
    }

    let pool = app_pool(&settings).unwrap();
    assert!(ping(&pool).await);
    // The app role can use the infrastructure tables.
    let app = pool.get().await.unwrap();
    app.execute(
        "INSERT INTO rls_test.inbox (consumer, message_id) VALUES ('c', $1)",
        &[&Uuid::now_v7()],
    )
    .await
    .unwrap();
    drop(app);
    pool.close();
    drop_database(&dbname).await;
}

#[tokio::test]
async fn app_role_is_neither_superuser_nor_bypassrls() {
    let (settings, dbname) = fresh_settings();
    migrate(&settings, &[rls_set()]).await.unwrap();
    let pool = app_pool(&settings).unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), settings.app_user);
    assert!(!row.get::<_, bool>(1), "app role must not be superuser");
    assert!(!row.get::<_, bool>(2), "app role must not bypass RLS");
    drop(client);
    pool.close();
    drop_database(&dbname).await;
}

#[tokio::test]
async fn row_level_security_walls_tenants_apart() {
    let (settings, dbname) = fresh_settings();
    migrate(&settings, &[rls_set()]).await.unwrap();
    let pool = app_pool(&settings).unwrap();
    let mut client = pool.get().await.unwrap();

    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    {
        let tx = tenant_tx(&mut client, "A").await.unwrap();
        for id in &ids {
            tx.execute(
                "INSERT INTO rls_test.notes (tenant_id, id, body) VALUES ('A', $1, 'secret')",
                &[id],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    {
        let tx = tenant_tx(&mut client, "A").await.unwrap();
        let seen: i64 = tx
            .query_one("SELECT count(*) FROM rls_test.notes", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 2, "tenant A sees its own rows");
        tx.commit().await.unwrap();
    }

    {
        let tx = tenant_tx(&mut client, "B").await.unwrap();
        let by_id = tx
            .query_opt("SELECT body FROM rls_test.notes WHERE id = $1", &[&ids[0]])
            .await
            .unwrap();
        assert!(by_id.is_none(), "B must not read A's row by id");
        let all: i64 = tx
            .query_one("SELECT count(*) FROM rls_test.notes", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(all, 0);
        let updated = tx
            .execute(
                "UPDATE rls_test.notes SET body = 'stolen' WHERE id = $1",
                &[&ids[0]],
            )
            .await
            .unwrap();
        assert_eq!(updated, 0);
        let deleted = tx
            .execute("DELETE FROM rls_test.notes WHERE id = $1", &[&ids[1]])
            .await
            .unwrap();
        assert_eq!(deleted, 0);
        tx.commit().await.unwrap();
    }

    {
        let tx = tenant_tx(&mut client, "B").await.unwrap();
        let forged = tx
            .execute(
                "INSERT INTO rls_test.notes (tenant_id, id, body) VALUES ('A', $1, 'forged')",
                &[&Uuid::now_v7()],
            )
            .await;
        let error = forged.expect_err("B must not write rows claiming tenant A");
        let db_error = error.as_db_error().expect("a server error");
        assert_eq!(
            db_error.code(),
            &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
        );
        assert!(
            db_error.message().contains("row-level security"),
            "unexpected error: {db_error}"
        );
    }

    // No tenant set: nothing is visible, even in a plain transaction.
    {
        let tx = client.transaction().await.unwrap();
        let all: i64 = tx
            .query_one("SELECT count(*) FROM rls_test.notes", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(all, 0);
        tx.commit().await.unwrap();
    }

    // The wall held and A's rows are untouched.
    let owner_client = owner(&dbname).await;
    let rows = owner_client
        .query(
            "SELECT body FROM rls_test.notes WHERE tenant_id = 'A' AND body = 'secret'",
            &[],
        )
        .await;
    // FORCE applies to the owner too, but a superuser bypasses RLS: so this count is the truth.
    assert_eq!(rows.unwrap().len(), 2);

    drop(client);
    pool.close();
    drop_database(&dbname).await;
}

#[tokio::test]
async fn ping_fails_against_a_missing_database() {
    let pool = chukan_db::pool_from_url(
        &format!(
            "postgres://postgres@127.0.0.1:5432/missing_{}",
            Uuid::new_v4().simple()
        ),
        1,
    )
    .unwrap();
    assert!(!ping(&pool).await);
}

/// CloudNativePG's managed owner is no superuser: CREATEROLE and CREATEDB only. Every
/// `helm upgrade` runs `chukan migrate` as it again, after the application role exists.
#[tokio::test]
async fn an_owner_that_is_no_superuser_migrates_again_and_never_widens_the_app_role() {
    let suffix = Uuid::new_v4().simple().to_string();
    let (owner_role, app_role) = (format!("o_{suffix}"), format!("a_{suffix}"));
    let admin = owner("postgres").await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{owner_role}\" LOGIN CREATEROLE CREATEDB NOSUPERUSER"
        ))
        .await
        .unwrap();
    let (mut settings, dbname) = fresh_settings();
    settings.url = format!("postgres://{owner_role}@127.0.0.1:5432/{dbname}");
    settings.app_user = app_role.clone();

    migrate(&settings, &[rls_set()]).await.unwrap();
    migrate(&settings, &[rls_set()]).await.unwrap();
    let (superuser, bypassrls): (bool, bool) = {
        let row = admin
            .query_one(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&app_role],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(!superuser && !bypassrls);

    // Someone widened the role by hand: the owner cannot repair it, so it refuses to go on
    // rather than run the services behind an open wall.
    admin
        .batch_execute(&format!("ALTER ROLE \"{app_role}\" BYPASSRLS"))
        .await
        .unwrap();
    let refused = migrate(&settings, &[rls_set()]).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("bypasses row-level security"),
        "{refused:#}"
    );

    drop_database(&dbname).await;
    for role in [&app_role, &owner_role] {
        let _ = admin
            .batch_execute(&format!(
                "DROP OWNED BY \"{role}\"; DROP ROLE IF EXISTS \"{role}\""
            ))
            .await;
    }
}
