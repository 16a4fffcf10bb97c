//! PostgreSQL pool, per-service migrations and tenant-scoped (row-level security) transactions.
//!
//! Services connect as the application role (no superuser, no BYPASSRLS) and open every
//! tenant transaction with [`tenant_tx`], so the `tenant_wall` policies see the tenant.
//! Migrations run as the owner through [`migrate`].
//!
//! Every connection follows `database.tls_mode` ([`PgTls`]): with `verify-full` it is TLS or
//! nothing, the server's certificate checked up to `database.ca_file` and against the URL's
//! host, as libpq's `sslmode=verify-full`.

use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use chukan_config::{DatabaseSettings, TlsMode};
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
mod failure;
mod pool_metrics;
mod text_enum;

pub use deadpool_postgres::{Object as PooledClient, Pool, Transaction};
pub use failure::{OrProblem, is_unavailable, problem_of};
pub use pool_metrics::observe_pool;
use secrecy::ExposeSecret as _;
use tokio_postgres::{Client, Config, NoTls, config::SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

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

/// How connections to PostgreSQL are secured: `database.tls_mode` with its CA and client
/// certificate, read once and shared by every connection a process makes.
#[derive(Clone)]
pub struct PgTls(Option<MakeRustlsConnect>);

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "PgTls(verify-full)",
            None => "PgTls(disable)",
        })
    }
}

impl PgTls {
    /// From `database.tls_mode`, `ca_file`, `client_cert_file` and `client_key_file`; a file
    /// that cannot be used is an error naming its key.
    pub fn from_settings(settings: &DatabaseSettings) -> anyhow::Result<PgTls> {
        match settings.tls_mode {
            TlsMode::Disable => Ok(PgTls::disabled()),
            TlsMode::VerifyFull => {
                let config = chukan_tls::client::client_config(
                    &chukan_tls::client::ClientTls::database(settings),
                )?;
                Ok(PgTls(Some(MakeRustlsConnect::new(config))))
            }
        }
    }

    /// Plaintext (`tls_mode = "disable"`).
    pub fn disabled() -> PgTls {
        PgTls(None)
    }

    /// With TLS configured, the connection is TLS or nothing, whatever the URL's `sslmode`
    /// says: tokio-postgres's default (`prefer`) would fall back to plaintext when the
    /// server offers no TLS, which is exactly what verify-full must refuse.
    fn apply(&self, config: &mut Config) {
        if self.0.is_some() {
            config.ssl_mode(SslMode::Require);
        }
    }

    /// One connection (migrations, CLI work outside the pool), its I/O driven by a task of
    /// its own. `purpose` names the connection in errors and logs.
    pub async fn connect(&self, config: &Config, purpose: &'static str) -> anyhow::Result<Client> {
        let mut config = config.clone();
        self.apply(&mut config);
        let context = || format!("connecting to PostgreSQL ({purpose})");
        let client = match &self.0 {
            None => {
                let (client, connection) = config.connect(NoTls).await.with_context(context)?;
                spawn_connection(connection, purpose);
                client
            }
            Some(tls) => {
                let (client, connection) =
                    config.connect(tls.clone()).await.with_context(context)?;
                spawn_connection(connection, purpose);
                client
            }
        };
        Ok(client)
    }
}

fn spawn_connection<F>(connection: F, purpose: &'static str)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, purpose, "PostgreSQL connection ended with an error");
        }
    });
}

/// Pool connecting as the application role to the database named in `database.url`, with
/// `database.tls_mode`.
pub fn app_pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut config = parse_url(&settings.url)?;
    config
        .user(&settings.app_user)
        .password(settings.app_password.expose_secret());
    build_pool(
        config,
        &PgTls::from_settings(settings)?,
        settings.pool_max_size,
        settings.pool_wait_timeout,
    )
}

/// Pool connecting with an explicit URL and TLS (nws-sim's own database).
pub fn pool_with_tls(url: &str, tls: &PgTls, max_size: usize) -> anyhow::Result<Pool> {
    build_pool(parse_url(url)?, tls, max_size, Duration::from_secs(30))
}

/// Plaintext pool with an explicit URL, for tests and tools against a local server. What the
/// binary connects with goes through [`app_pool`], [`pool_with_tls`] or [`migrate`], which
/// follow `database.tls_mode`.
pub fn pool_from_url(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    pool_with_tls(url, &PgTls::disabled(), max_size)
}

fn parse_url(url: &str) -> anyhow::Result<Config> {
    // The URL may carry a password, so it never goes into the error message.
    Config::from_str(url).context("database url is not a valid PostgreSQL connection string")
}

fn build_pool(
    mut config: Config,
    tls: &PgTls,
    max_size: usize,
    wait: Duration,
) -> anyhow::Result<Pool> {
    tls.apply(&mut config);
    // Fast recycling: a broken connection surfaces on use and is dropped by the pool.
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &tls.0 {
        None => Manager::from_config(config, NoTls, manager_config),
        Some(tls) => Manager::from_config(config, tls.clone(), manager_config),
    };
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
///
/// The same statement takes the organisation's maintenance hold in shared mode
/// ([`TENANT_HOLD_KEY_SQL`]): `chukan backup restore-org` takes it exclusively, so while an
/// organisation is being restored its new transactions wait for the restore to commit, the
/// ones already running finish first, and other organisations never wait.
async fn set_tenant(tx: &Transaction<'_>, tenant: &str) -> Result<(), tokio_postgres::Error> {
    // Prepared once per pooled connection: an unprepared statement would cost a Parse/Describe
    // round trip on every transaction of every service.
    let statement = tx
        .prepare_cached(
            "SELECT set_config('chukan.tenant', $1, true), \
                    pg_advisory_xact_lock_shared(hashtextextended('chukan.tenant.' || $1, 0))",
        )
        .await?;
    send_ahead(tx.execute(&statement, &[&tenant]));
    Ok(())
}

/// The key of an organisation's maintenance hold, as SQL over its code in `$1`: shared by
/// every tenant transaction, exclusive (`pg_advisory_xact_lock`) while it is being restored.
pub const TENANT_HOLD_KEY_SQL: &str = "hashtextextended('chukan.tenant.' || $1, 0)";

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
    // Published outbox rows kept for `amqp.outbox_replay_window_secs`, so a failover can move
    // them back into the outbox when the lost broker may still have held them (ADR 0006).
    // Granted to the app role by the schema-wide grant after the migrations.
    InfraMigration {
        version: 4,
        name: "outbox_sent",
        sql: "CREATE TABLE outbox_sent (
                id uuid PRIMARY KEY,
                tenant_id text NOT NULL,
                exchange text NOT NULL DEFAULT '',
                routing_key text NOT NULL,
                headers jsonb NOT NULL DEFAULT '{}',
                body bytea NOT NULL,
                created_at timestamptz NOT NULL,
                attempts int NOT NULL DEFAULT 0,
                sent_at timestamptz NOT NULL DEFAULT now()
              );
              CREATE INDEX outbox_sent_sent_at_idx ON outbox_sent (sent_at);",
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

/// Creates the database and app role if missing, then migrates every schema in `sets` and
/// grants the app role what it needs. Running it again is a no-op.
pub async fn migrate(settings: &DatabaseSettings, sets: &[Migrations]) -> anyhow::Result<()> {
    let owner = parse_url(&settings.url)?;
    let dbname = owner
        .get_dbname()
        .context("database.url names no database")?
        .to_owned();
    let tls = PgTls::from_settings(settings)?;
    prepare_cluster(&owner, &tls, &dbname, settings).await?;

    let mut client = tls.connect(&owner, "migrations, as the owner").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&DATABASE_LOCK_KEY])
        .await?;
    let result = match migrate_schemas(&mut client, &settings.app_user, sets).await {
        Ok(()) => grant_sync_guard(&client, &settings.app_user).await,
        failed => failed,
    };
    // Closing the session would release the lock too; unlocking keeps the intent visible.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&DATABASE_LOCK_KEY])
        .await;
    result
}

/// Database and role: cluster-wide, so done under a lock held in the `postgres` database.
async fn prepare_cluster(
    owner: &Config,
    tls: &PgTls,
    dbname: &str,
    settings: &DatabaseSettings,
) -> anyhow::Result<()> {
    let mut admin_config = owner.clone();
    admin_config.dbname("postgres");
    let admin = tls
        .connect(&admin_config, "migrations, as the owner, database postgres")
        .await?;
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
        let password = quote_literal(settings.app_password.expose_secret());
        // (rolsuper, rolbypassrls) of the application role if it exists, and whether the
        // owner is a superuser.
        let existing = admin
            .query_opt(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&settings.app_user],
            )
            .await?
            .map(|row| (row.get::<_, bool>(0), row.get::<_, bool>(1)));
        let owner_is_superuser: bool = admin
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?
            .get(0);
        let statement = match existing {
            None => format!(
                "CREATE ROLE {role} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {password}"
            ),
            // Only a superuser may even name SUPERUSER or BYPASSRLS in ALTER ROLE, and a
            // production owner is not one (CloudNativePG's managed owner has CREATEROLE
            // only). So the two attributes that would open the tenant wall are checked, and
            // repaired only where the owner can; the rest is re-asserted on every run.
            Some((superuser, bypassrls)) if superuser || bypassrls => {
                anyhow::ensure!(
                    owner_is_superuser,
                    "the application role {} is a superuser or bypasses row-level security; \
                     a superuser must remove that (ALTER ROLE … NOSUPERUSER NOBYPASSRLS) \
                     before chukan may use it",
                    settings.app_user
                );
                format!(
                    "ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {password}"
                )
            }
            Some(_) => {
                format!("ALTER ROLE {role} WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD {password}")
            }
        };
        admin
            .batch_execute(&statement)
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

/// What the app role needs for the once-per-cell `region.sync-guard` (ADR 0006): to read
/// the standby's positions and others' waits, to set `synchronous_standby_names`, and to
/// reload. Granted only when the owner is a superuser (nothing less may); otherwise what is
/// missing is named in a warning. Each is checked first, and re-checked after a failure,
/// because these are cluster-wide catalogues that migrations of other databases may be
/// granting at the same moment ("tuple concurrently updated").
async fn grant_sync_guard(client: &Client, app_user: &str) -> anyhow::Result<()> {
    let role = quote_ident(app_user);
    let grants = [
        (
            "SELECT pg_has_role($1, 'pg_monitor', 'MEMBER')",
            format!("GRANT pg_monitor TO {role}"),
        ),
        (
            "SELECT has_parameter_privilege($1, 'synchronous_standby_names', 'ALTER SYSTEM')",
            format!("GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names TO {role}"),
        ),
        (
            "SELECT has_function_privilege($1, 'pg_reload_conf()', 'EXECUTE')",
            format!("GRANT EXECUTE ON FUNCTION pg_reload_conf() TO {role}"),
        ),
    ];
    let owner_is_superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    let mut missing = Vec::new();
    for (held, grant) in &grants {
        let has = || async {
            anyhow::Ok(
                client
                    .query_one(*held, &[&app_user])
                    .await?
                    .get::<_, bool>(0),
            )
        };
        if has().await? {
            continue;
        }
        if !owner_is_superuser {
            missing.push(grant.as_str());
            continue;
        }
        if let Err(e) = client.batch_execute(grant).await
            && !has().await?
        {
            return Err(e).with_context(|| format!("{grant} (for region.sync-guard)"));
        }
    }
    if !missing.is_empty() {
        tracing::warn!(
            grants = %missing.join("; "),
            "the migration owner is not a superuser, so the app role lacks what the \
             region.sync-guard needs (replication lag, synchronous commit): a superuser must run these"
        );
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
