//! PostgreSQL pool, per-service migrations and tenant-scoped (row-level security) transactions.
//!
//! Services connect as the application role (no superuser, no BYPASSRLS) and open every
//! tenant transaction with [`tenant_tx`], so the `tenant_wall` policies see the tenant.
//! Migrations run as the owner through [`migrate`].

use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use chukan_config::DatabaseSettings;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
mod failure;
mod pool_metrics;
mod text_enum;

pub use deadpool_postgres::{Object as PooledClient, Pool, Transaction};
pub use failure::{OrProblem, is_unavailable, problem_of};
pub use pool_metrics::observe_pool;
use secrecy::ExposeSecret as _;
use tokio_postgres::{Client, Config, NoTls};

/// What [`text_enum!`] expands to, reachable from the crates that use it.
#[doc(hidden)]
pub mod __private {
    pub use tokio_postgres::types::{
        FromSql, IsNull, ToSql, Type, private::BytesMut, to_sql_checked,
    };
}

/// History table of the infrastructure migrations, one per service schema.
pub const INFRA_HISTORY_TABLE: &str = "chukan_infra_history";
/// History table of a service's own (refinery) migrations, one per service schema.
pub const SERVICE_HISTORY_TABLE: &str = "refinery_schema_history";

/// Advisory-lock key (in the `postgres` database) serialising cluster-wide work: roles are
/// shared by every database, and concurrent `ALTER ROLE` fails with "tuple concurrently updated".
const CLUSTER_LOCK_KEY: i64 = 0x6368_756b_616e_0001;
/// Advisory-lock key (in the target database) so two processes never migrate it at once.
const DATABASE_LOCK_KEY: i64 = 0x6368_756b_616e_0002;

/// Pool connecting as the application role to the database named in `database.url`.
pub fn app_pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut config = parse_url(&settings.url)?;
    config
        .user(&settings.app_user)
        .password(settings.app_password.expose_secret());
    build_pool(config, settings.pool_max_size, settings.pool_wait_timeout)
}

/// Pool connecting with an explicit URL (nws-sim's own database, tests).
pub fn pool_from_url(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    build_pool(parse_url(url)?, max_size, Duration::from_secs(30))
}

fn parse_url(url: &str) -> anyhow::Result<Config> {
    // The URL may carry a password, so it never goes into the error message.
    Config::from_str(url).context("database url is not a valid PostgreSQL connection string")
}

fn build_pool(config: Config, max_size: usize, wait: Duration) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config,
        NoTls,
        // Fast recycling: a broken connection surfaces on use and is dropped by the pool.
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        // Bounded waits so an exhausted pool or a dead server is an error, not a hang.
        .wait_timeout(Some(wait))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .context("building the database pool")
}

/// Opens a transaction scoped to `tenant` (row-level security): `BEGIN`, then the tenant
/// setting, which travels to the server ahead of the caller's first statement instead of
/// costing a round trip of its own (see [`set_tenant`]).
///
/// The setting is transaction-local, so a pooled connection never carries a tenant into the
/// next borrower.
pub async fn tenant_tx<'a>(
    client: &'a mut PooledClient,
    tenant: &str,
) -> Result<Transaction<'a>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    set_tenant(&tx, tenant).await?;
    Ok(tx)
}

/// What a snapshot transaction may do besides reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// Reads only (`READ ONLY`): a check such as `chukan audit verify`.
    ReadOnly,
    /// Reads one picture and writes what it makes of it (a reconciliation file's chunks).
    ReadThenWrite,
}

/// As [`tenant_tx`], for reading a large part of a tenant's data as one consistent picture:
/// `REPEATABLE READ` (the snapshot is taken at the first statement), `READ ONLY` unless
/// asked otherwise.
pub async fn tenant_snapshot_tx<'a>(
    client: &'a mut PooledClient,
    tenant: &str,
    access: Snapshot,
) -> Result<Transaction<'a>, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(access == Snapshot::ReadOnly)
        .start()
        .await?;
    set_tenant(&tx, tenant).await?;
    Ok(tx)
}

/// Opens a read-only transaction for a platform route (the platform realm: J-LIS, the
/// ministry): the schemas that hold aggregates only (statistics) have a `platform_read`
/// policy that shows every organisation's rows to it. Read-only, so it can change nothing;
/// no tenant is set, so every `tenant_wall` table stays empty to it.
pub async fn platform_tx(
    client: &mut PooledClient,
) -> Result<Transaction<'_>, tokio_postgres::Error> {
    let tx = client.build_transaction().read_only(true).start().await?;
    tx.execute("SELECT set_config('chukan.platform', 'on', true)", &[])
        .await?;
    Ok(tx)
}

/// The one statement that sets the tenant the `tenant_wall` policies see; no other code
/// writes it.
///
/// It is sent, not awaited: its request is queued on the connection, so it reaches the
/// server before (and in the same flush as) the caller's first statement, saving a round
/// trip on every tenant transaction. PostgreSQL runs a connection's statements in order, so
/// either it applied or the transaction is aborted and every later statement in it fails:
/// no statement can ever run under a missing tenant. (tokio-postgres queues a request on the
/// first poll of its future and reads past answers nobody waits for, as its own
/// `Transaction` does for the `ROLLBACK` it sends on drop.)
async fn set_tenant(tx: &Transaction<'_>, tenant: &str) -> Result<(), tokio_postgres::Error> {
    // Prepared once per pooled connection: an unprepared statement would cost a Parse/Describe
    // round trip on every transaction of every service.
    let statement = tx
        .prepare_cached("SELECT set_config('chukan.tenant', $1, true)")
        .await?;
    send_ahead(tx.execute(&statement, &[&tenant]));
    Ok(())
}

/// Polls a statement's future once, which queues its request on the connection, and drops
/// it: the answer is read and discarded by the connection.
fn send_ahead<F: std::future::Future>(statement: F) {
    let mut statement = std::pin::pin!(statement);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // Ready only if the connection is already closed: the next statement then fails too.
    let _ = statement.as_mut().poll(&mut cx);
}

/// A service's migrations: its schema and its refinery runner (from `embed_migrations!`).
#[derive(Clone, Copy)]
pub struct Migrations {
    pub schema: &'static str,
    pub runner: fn() -> refinery::Runner,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrations")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// One infrastructure migration; its SQL is unqualified and lands in the schema on the
/// search_path, so the same statements serve every service schema.
struct InfraMigration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const INFRA_MIGRATIONS: &[InfraMigration] = &[
    InfraMigration {
        version: 1,
        name: "outbox",
        sql: "CREATE TABLE outbox (
                id uuid PRIMARY KEY,
                tenant_id text NOT NULL,
                exchange text NOT NULL DEFAULT '',
                routing_key text NOT NULL,
                headers jsonb NOT NULL DEFAULT '{}',
                body bytea NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                attempts int NOT NULL DEFAULT 0
              );
              CREATE INDEX outbox_created_at_idx ON outbox (created_at);",
    },
    InfraMigration {
        version: 2,
        name: "inbox",
        sql: "CREATE TABLE inbox (
                consumer text NOT NULL,
                message_id uuid NOT NULL,
                processed_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (consumer, message_id)
              );",
    },
    InfraMigration {
        version: 3,
        name: "tenant_keys",
        sql: "CREATE TABLE tenant_keys (
                tenant_id text PRIMARY KEY,
                kid text NOT NULL,
                wrapped_data_key bytea NOT NULL,
                wrapped_index_key bytea NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
              );",
    },
];

/// Quotes an SQL identifier (schema, role, database names cannot be bind parameters).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (`CREATE ROLE … PASSWORD` takes no bind parameters).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn connect(config: &Config) -> anyhow::Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("connecting to PostgreSQL as the owner")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection ended with an error");
        }
    });
    Ok(client)
}

/// Creates the database and app role if missing, then migrates every schema in `sets` and
/// grants the app role what it needs. Running it again is a no-op.
pub async fn migrate(settings: &DatabaseSettings, sets: &[Migrations]) -> anyhow::Result<()> {
    let owner = parse_url(&settings.url)?;
    let dbname = owner
        .get_dbname()
        .context("database.url names no database")?
        .to_owned();
    prepare_cluster(&owner, &dbname, settings).await?;

    let mut client = connect(&owner).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&DATABASE_LOCK_KEY])
        .await?;
    let result = migrate_schemas(&mut client, &settings.app_user, sets).await;
    // Closing the session would release the lock too; unlocking keeps the intent visible.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&DATABASE_LOCK_KEY])
        .await;
    result
}

/// Database and role: cluster-wide, so done under a lock held in the `postgres` database.
async fn prepare_cluster(
    owner: &Config,
    dbname: &str,
    settings: &DatabaseSettings,
) -> anyhow::Result<()> {
    let mut admin_config = owner.clone();
    admin_config.dbname("postgres");
    let admin = connect(&admin_config).await?;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&CLUSTER_LOCK_KEY])
        .await?;
    let result = async {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
            .await?
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(dbname)))
                .await
                .with_context(|| format!("creating database {dbname}"))?;
        }
        let role = quote_ident(&settings.app_user);
        let role_exists = admin
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&settings.app_user],
            )
            .await?
            .is_some();
        let verb = if role_exists { "ALTER" } else { "CREATE" };
        // Re-asserting the attributes on every run repairs a role someone widened by hand.
        admin
            .batch_execute(&format!(
                "{verb} ROLE {role} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}",
                quote_literal(settings.app_password.expose_secret())
            ))
            .await
            .context("creating the application role")?;
        anyhow::Ok(())
    }
    .await;
    let _ = admin
        .execute("SELECT pg_advisory_unlock($1)", &[&CLUSTER_LOCK_KEY])
        .await;
    result
}

async fn migrate_schemas(
    client: &mut Client,
    app_user: &str,
    sets: &[Migrations],
) -> anyhow::Result<()> {
    let role = quote_ident(app_user);
    for set in sets {
        let schema = quote_ident(set.schema);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ))
            .await
            .with_context(|| format!("creating schema {}", set.schema))?;
        run_infra(client, set.schema).await?;

        let mut runner = (set.runner)();
        runner.set_migration_table_name(SERVICE_HISTORY_TABLE);
        runner
            .run_async(client)
            .await
            .with_context(|| format!("running the migrations of schema {}", set.schema))?;

        client
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA {schema} TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
                 RESET search_path"
            ))
            .await
            .with_context(|| format!("granting schema {} to the app role", set.schema))?;
        tracing::info!(schema = set.schema, "schema migrated");
    }
    Ok(())
}

/// Applies the infrastructure migrations not yet recorded in `{schema}.chukan_infra_history`.
/// Expects the search_path to point at the schema.
async fn run_infra(client: &mut Client, schema: &str) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {INFRA_HISTORY_TABLE} (
                version int PRIMARY KEY,
                name text NOT NULL,
                applied_on timestamptz NOT NULL DEFAULT now()
             )"
        ))
        .await?;
    for migration in INFRA_MIGRATIONS {
        let tx = client.transaction().await?;
        let applied = tx
            .query_opt(
                &format!("SELECT 1 FROM {INFRA_HISTORY_TABLE} WHERE version = $1"),
                &[&migration.version],
            )
            .await?
            .is_some();
        if !applied {
            tx.batch_execute(migration.sql).await.with_context(|| {
                format!(
                    "infrastructure migration V{}__{} in schema {schema}",
                    migration.version, migration.name
                )
            })?;
            tx.execute(
                &format!("INSERT INTO {INFRA_HISTORY_TABLE} (version, name) VALUES ($1, $2)"),
                &[&migration.version, &migration.name],
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Readiness probe: `SELECT 1` within two seconds.
pub async fn ping(pool: &Pool) -> bool {
    let probe = async {
        let client = pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("code"), "\"code\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn infra_versions_are_increasing() {
        let versions: Vec<i32> = INFRA_MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
    }
}
