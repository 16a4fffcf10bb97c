//! Admin's SQL: one function per query, schema-qualified, prepared once per connection.
//!
//! `users`, `system_clients` and `batch_runs` have row-level security: call these inside a
//! [`chukan_db::tenant_tx`] or they see no rows. `tenants` is the platform registry and
//! has none.

use chrono::{DateTime, NaiveDate, Utc};
use chukan_db::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{
    AdminValidity, BatchReport, BatchRun, ClientRecord, LoginRecord, NewTenant, SystemClient,
    Tenant, TenantUpdate, User,
};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// Columns of [`Tenant`], in the order [`tenant_from_row`] reads them.
const TENANT_COLUMNS: &str = "org_code, name, kind, population, home_region, upload_group::text,
     immediate_replica_processing, revision, created_at";

fn tenant_from_row(r: &Row) -> Tenant {
    Tenant {
        org_code: r.get(0),
        name: r.get(1),
        kind: r.get(2),
        population: r.get(3),
        home_region: r.get(4),
        upload_group: r.get(5),
        immediate_replica_processing: r.get(6),
        revision: r.get(7),
        created_at: r.get(8),
    }
}

/// Inserts a tenant unless its org code exists; the new tenant, or None if it existed.
pub async fn insert_tenant(tx: &Transaction<'_>, t: &NewTenant) -> Result<Option<Tenant>> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO admin.tenants (org_code, name, kind, population, home_region, upload_group,
                                        immediate_replica_processing)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (org_code) DO NOTHING
             RETURNING {TENANT_COLUMNS}"
        ))
        .await?;
    let group = t.upload_group.map(|g| g.to_string());
    let row = tx
        .query_opt(
            &stmt,
            &[
                &t.org_code.as_str(),
                &t.name,
                &t.kind,
                &t.population,
                &t.home_region,
                &group,
                &t.immediate_replica_processing,
            ],
        )
        .await?;
    Ok(row.as_ref().map(tenant_from_row))
}

/// The tenant with this org code.
pub async fn tenant(tx: &Transaction<'_>, org_code: &str) -> Result<Option<Tenant>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {TENANT_COLUMNS} FROM admin.tenants WHERE org_code = $1"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&org_code])
        .await?
        .as_ref()
        .map(tenant_from_row))
}

/// Applies `change` and bumps the revision (in one statement, so concurrent changes each
/// get their own revision); the tenant as it is now, or None if it is not registered.
pub async fn update_tenant(
    tx: &Transaction<'_>,
    org_code: &str,
    change: &TenantUpdate,
) -> Result<Option<Tenant>> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE admin.tenants SET
                 kind = COALESCE($2, kind),
                 population = COALESCE($3, population),
                 upload_group = CASE WHEN $4 THEN $5 ELSE upload_group END,
                 immediate_replica_processing = COALESCE($6, immediate_replica_processing),
                 revision = revision + 1
             WHERE org_code = $1
             RETURNING {TENANT_COLUMNS}"
        ))
        .await?;
    let set_group = change.upload_group.is_some();
    let group = change.upload_group.flatten().map(|g| g.to_string());
    Ok(tx
        .query_opt(
            &stmt,
            &[
                &org_code,
                &change.kind,
                &change.population,
                &set_group,
                &group,
                &change.immediate_replica_processing,
            ],
        )
        .await?
        .as_ref()
        .map(tenant_from_row))
}

/// Stores a progress report unless the run already has a newer one. At the same
/// `updated_at`, a finished state beats `running` and more processed records beat fewer,
/// so two reports from one millisecond still settle on the later one.
/// True if the row was written.
pub async fn upsert_batch_run(tx: &Transaction<'_>, report: &BatchReport) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO admin.batch_runs AS b (tenant_id, run_id, job, state, processed, total,
                                                carried, rejected, started_at, updated_at, summary)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (tenant_id, run_id) DO UPDATE SET
                 job = EXCLUDED.job, state = EXCLUDED.state, processed = EXCLUDED.processed,
                 total = EXCLUDED.total, carried = EXCLUDED.carried,
                 rejected = EXCLUDED.rejected, started_at = EXCLUDED.started_at,
                 updated_at = EXCLUDED.updated_at, summary = EXCLUDED.summary
             WHERE b.updated_at < EXCLUDED.updated_at
                OR (b.updated_at = EXCLUDED.updated_at
                    AND ((b.state = 'running' AND EXCLUDED.state <> 'running')
                         OR (b.state = EXCLUDED.state AND b.processed < EXCLUDED.processed)))",
        )
        .await?;
    let r = &report.run;
    let n = tx
        .execute(
            &stmt,
            &[
                &report.tenant,
                &r.run_id,
                &r.job,
                &r.state,
                &r.processed,
                &r.total,
                &r.carried,
                &r.rejected,
                &r.started_at,
                &r.updated_at,
                &r.summary,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The tenant's batch runs, newest first, optionally of one job.
pub async fn batch_runs(
    tx: &Transaction<'_>,
    job: Option<&str>,
    limit: i64,
) -> Result<Vec<BatchRun>> {
    let stmt = tx
        .prepare_cached(
            "SELECT run_id, job, state, processed, total, carried, rejected, started_at,
                    updated_at, summary
             FROM admin.batch_runs
             WHERE $1::text IS NULL OR job = $1
             ORDER BY started_at DESC, run_id DESC
             LIMIT $2",
        )
        .await?;
    Ok(tx
        .query(&stmt, &[&job, &limit])
        .await?
        .iter()
        .map(|r| BatchRun {
            run_id: r.get(0),
            job: r.get(1),
            state: r.get(2),
            processed: r.get(3),
            total: r.get(4),
            carried: r.get(5),
            rejected: r.get(6),
            started_at: r.get(7),
            updated_at: r.get(8),
            summary: r.get(9),
        })
        .collect())
}

/// Columns of [`User`], in the order [`user_from_row`] reads them.
const USER_COLUMNS: &str = "id, login_id, display_name, roles, department, valid_from, valid_to,
     failed_logins, locked_at, created_at, locked_until";

/// The user as stored; `locked` is settled by [`User::as_of`] with the caller's clock.
fn user_from_row(r: &Row) -> User {
    let locked_until: Option<DateTime<Utc>> = r.get(10);
    User {
        id: r.get(0),
        login_id: r.get(1),
        display_name: r.get(2),
        roles: r.get(3),
        department: r.get(4),
        valid_from: r.get(5),
        valid_to: r.get(6),
        failed_logins: r.get(7),
        locked: locked_until.is_some(),
        locked_at: r.get(8),
        locked_until,
        created_at: r.get(9),
    }
}

/// A user to insert (password already hashed).
pub struct UserRow<'a> {
    pub tenant: &'a str,
    pub id: Uuid,
    pub login_id: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub roles: &'a [String],
    pub department: Option<&'a str>,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

/// Inserts a user unless the login id is taken in the tenant; the new user, or None.
pub async fn insert_user(tx: &Transaction<'_>, u: &UserRow<'_>) -> Result<Option<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO admin.users (tenant_id, id, login_id, display_name, password_hash,
                                      roles, department, valid_from, valid_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, login_id) DO NOTHING
             RETURNING {USER_COLUMNS}"
        ))
        .await?;
    let row = tx
        .query_opt(
            &stmt,
            &[
                &u.tenant,
                &u.id,
                &u.login_id,
                &u.display_name,
                &u.password_hash,
                &u.roles,
                &u.department,
                &u.valid_from,
                &u.valid_to,
            ],
        )
        .await?;
    Ok(row.as_ref().map(user_from_row))
}

/// The id of the user with this login id.
pub async fn user_id_by_login(tx: &Transaction<'_>, login_id: &str) -> Result<Option<Uuid>> {
    let stmt = tx
        .prepare_cached("SELECT id FROM admin.users WHERE login_id = $1")
        .await?;
    Ok(tx.query_opt(&stmt, &[&login_id]).await?.map(|r| r.get(0)))
}

/// Every user of the tenant, by login id.
pub async fn users(tx: &Transaction<'_>) -> Result<Vec<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM admin.users ORDER BY login_id"
        ))
        .await?;
    Ok(tx
        .query(&stmt, &[])
        .await?
        .iter()
        .map(user_from_row)
        .collect())
}

/// One user of the tenant.
pub async fn user(tx: &Transaction<'_>, id: Uuid) -> Result<Option<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM admin.users WHERE id = $1"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(user_from_row))
}

/// What login needs about a user, by login id.
pub async fn login_record(tx: &Transaction<'_>, login_id: &str) -> Result<Option<LoginRecord>> {
    let stmt = tx
        .prepare_cached(
            "SELECT id, password_hash, roles, department, valid_from, valid_to
             FROM admin.users WHERE login_id = $1",
        )
        .await?;
    let row = tx.query_opt(&stmt, &[&login_id]).await?;
    Ok(row.map(|r| LoginRecord {
        id: r.get(0),
        password_hash: r.get(1),
        roles: r.get(2),
        department: r.get(3),
        valid_from: r.get(4),
        valid_to: r.get(5),
    }))
}

/// The account's lock and what is known of one source, before its password is checked.
pub async fn login_standing(
    tx: &Transaction<'_>,
    user: Uuid,
    source: &str,
) -> Result<crate::lockout::Standing> {
    let stmt = tx
        .prepare_cached(
            "SELECT u.locked_until, s.delayed_until, s.last_success_at
             FROM admin.users u
             LEFT JOIN admin.login_sources s ON s.user_id = u.id AND s.source = $2
             WHERE u.id = $1",
        )
        .await?;
    let row = tx.query_opt(&stmt, &[&user, &source]).await?;
    Ok(row
        .map(|r| crate::lockout::Standing {
            locked_until: r.get(0),
            delayed_until: r.get(1),
            last_success_at: r.get(2),
        })
        .unwrap_or_default())
}

/// Counts a failure of `source` for the account: the source's own count (and its delay, once
/// past `max_failed`) and the account's, which locks the account once it reaches
/// `max_failed`. A lock that has expired is forgotten first. One UPDATE takes each row's lock,
/// so concurrent failures each count. Returns the lock's end if this failure took it.
pub async fn record_failed_login(
    tx: &Transaction<'_>,
    tenant: &str,
    user: Uuid,
    source: &str,
    policy: &crate::lockout::LoginPolicy,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let count_source = tx
        .prepare_cached(
            "INSERT INTO admin.login_sources (tenant_id, user_id, source, failures, last_failure_at)
             VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (tenant_id, user_id, source) DO UPDATE
                SET failures = admin.login_sources.failures + 1, last_failure_at = $4
             RETURNING failures",
        )
        .await?;
    let failures: i32 = tx
        .query_one(&count_source, &[&tenant, &user, &source, &now])
        .await?
        .get(0);
    if let Some(delay) = policy.delay_after(failures) {
        let set_delay = tx
            .prepare_cached(
                "UPDATE admin.login_sources SET delayed_until = $3
                 WHERE user_id = $1 AND source = $2",
            )
            .await?;
        tx.execute(&set_delay, &[&user, &source, &(now + delay)])
            .await?;
    }
    // The account row, locked: concurrent failures count one after the other.
    let read = tx
        .prepare_cached(
            "SELECT failed_logins, locked_until FROM admin.users WHERE id = $1 FOR UPDATE",
        )
        .await?;
    let Some(row) = tx.query_opt(&read, &[&user]).await? else {
        return Ok(None);
    };
    let (failed, locked_until): (i32, Option<DateTime<Utc>>) = (row.get(0), row.get(1));
    let (failed, locked_until, newly_locked) =
        crate::lockout::after_failure(policy, failed, locked_until, now);
    let write = tx
        .prepare_cached(
            "UPDATE admin.users
             SET failed_logins = $2, locked_until = $3,
                 locked_at = CASE WHEN $4 THEN $5 ELSE locked_at END
             WHERE id = $1",
        )
        .await?;
    tx.execute(
        &write,
        &[&user, &failed, &locked_until, &newly_locked, &now],
    )
    .await?;
    let newly_locked = locked_until.filter(|_| newly_locked);
    if newly_locked.is_some() {
        insert_account_event(tx, tenant, user, "locked", "login-failures", "", now).await?;
    }
    Ok(newly_locked)
}

/// A good password from `source`: the source's failures and delay are cleared and it is
/// remembered as trusted; the account's count is reset unless it is locked. Returns the
/// account's lock end if it is still locked (the caller decides whether the source may pass).
pub async fn record_successful_login(
    tx: &Transaction<'_>,
    tenant: &str,
    user: Uuid,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let account = tx
        .prepare_cached(
            "UPDATE admin.users
             SET failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until > $2
                                      THEN failed_logins ELSE 0 END,
                 locked_until = CASE WHEN locked_until IS NOT NULL AND locked_until > $2
                                     THEN locked_until END
             WHERE id = $1
             RETURNING locked_until",
        )
        .await?;
    let locked_until: Option<DateTime<Utc>> = tx
        .query_opt(&account, &[&user, &now])
        .await?
        .and_then(|r| r.get(0));
    let trust = tx
        .prepare_cached(
            "INSERT INTO admin.login_sources (tenant_id, user_id, source, last_success_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, user_id, source) DO UPDATE
                SET failures = 0, delayed_until = NULL, last_success_at = $4",
        )
        .await?;
    tx.execute(&trust, &[&tenant, &user, &source, &now]).await?;
    Ok(locked_until)
}

/// Records who locked or unlocked an account and why.
pub async fn insert_account_event(
    tx: &Transaction<'_>,
    tenant: &str,
    user: Uuid,
    event: &str,
    actor: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO admin.account_events (tenant_id, id, user_id, event, actor, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant,
            &Uuid::now_v7(),
            &user,
            &event,
            &actor,
            &reason,
            &at,
        ],
    )
    .await?;
    Ok(())
}

/// The lock and unlock trail of one account in the order it was written (ids are UUIDv7):
/// `(event, actor, reason, at)`.
pub async fn account_events(
    tx: &Transaction<'_>,
    user: Uuid,
) -> Result<Vec<(String, String, String, DateTime<Utc>)>> {
    let stmt = tx
        .prepare_cached(
            "SELECT event, actor, reason, at FROM admin.account_events
             WHERE user_id = $1 ORDER BY id",
        )
        .await?;
    Ok(tx
        .query(&stmt, &[&user])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Clears the lock, the failure count and every source's delay, and records who did it and
/// why; the user, or None if not in this tenant.
pub async fn unlock_user(
    tx: &Transaction<'_>,
    tenant: &str,
    id: Uuid,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE admin.users SET failed_logins = 0, locked_at = NULL, locked_until = NULL
             WHERE id = $1
             RETURNING {USER_COLUMNS}"
        ))
        .await?;
    let Some(user) = tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(user_from_row)
    else {
        return Ok(None);
    };
    let sources = tx
        .prepare_cached(
            "UPDATE admin.login_sources SET failures = 0, delayed_until = NULL WHERE user_id = $1",
        )
        .await?;
    tx.execute(&sources, &[&id]).await?;
    insert_account_event(tx, tenant, id, "unlocked", actor, reason, now).await?;
    Ok(Some(user))
}

/// One user, locked for update (validity changes).
pub async fn user_for_update(tx: &Transaction<'_>, id: Uuid) -> Result<Option<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM admin.users WHERE id = $1 FOR UPDATE"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(user_from_row))
}

/// Every administrator of the tenant, locked: two concurrent changes to administrators'
/// validity are serialised, so they cannot together go below the minimum.
pub async fn administrators_for_update(tx: &Transaction<'_>) -> Result<Vec<AdminValidity>> {
    let stmt = tx
        .prepare_cached(
            "SELECT id, valid_from, valid_to FROM admin.users
             WHERE 'system_admin' = ANY (roles)
             ORDER BY id
             FOR UPDATE",
        )
        .await?;
    Ok(tx
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| AdminValidity {
            id: r.get(0),
            valid_from: r.get(1),
            valid_to: r.get(2),
        })
        .collect())
}

/// Sets the last valid day of a user.
pub async fn set_valid_to(
    tx: &Transaction<'_>,
    id: Uuid,
    valid_to: NaiveDate,
) -> Result<Option<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE admin.users SET valid_to = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&id, &valid_to])
        .await?
        .as_ref()
        .map(user_from_row))
}

/// Replaces the roles of a user; the user, or None if not in this tenant.
pub async fn set_roles(tx: &Transaction<'_>, id: Uuid, roles: &[String]) -> Result<Option<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE admin.users SET roles = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&id, &roles])
        .await?
        .as_ref()
        .map(user_from_row))
}

/// Inserts a system client.
pub async fn insert_client(
    tx: &Transaction<'_>,
    tenant: &str,
    client_id: &str,
    name: &str,
    secret_hash: &[u8],
    department: Option<&str>,
) -> Result<SystemClient> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO admin.system_clients (tenant_id, client_id, name, secret_hash, department)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING client_id, name, roles, created_at, disabled_at",
        )
        .await?;
    let r = tx
        .query_one(
            &stmt,
            &[&tenant, &client_id, &name, &secret_hash, &department],
        )
        .await?;
    Ok(client_from_row(&r))
}

fn client_from_row(r: &Row) -> SystemClient {
    SystemClient {
        client_id: r.get(0),
        name: r.get(1),
        roles: r.get(2),
        created_at: r.get(3),
        disabled_at: r.get(4),
    }
}

/// Every system client of the tenant, oldest first.
pub async fn clients(tx: &Transaction<'_>) -> Result<Vec<SystemClient>> {
    let stmt = tx
        .prepare_cached(
            "SELECT client_id, name, roles, created_at, disabled_at
             FROM admin.system_clients ORDER BY created_at, client_id",
        )
        .await?;
    Ok(tx
        .query(&stmt, &[])
        .await?
        .iter()
        .map(client_from_row)
        .collect())
}

/// What client-credentials login needs about a client.
pub async fn client_record(tx: &Transaction<'_>, client_id: &str) -> Result<Option<ClientRecord>> {
    let stmt = tx
        .prepare_cached(
            "SELECT secret_hash, roles, disabled_at IS NOT NULL, department
             FROM admin.system_clients WHERE client_id = $1",
        )
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&client_id])
        .await?
        .map(|r| ClientRecord {
            secret_hash: r.get(0),
            roles: r.get(1),
            disabled: r.get(2),
            department: r.get(3),
        }))
}

/// Prefix of every platform client id: the realm is known from the id alone.
pub const PLATFORM_CLIENT_PREFIX: &str = "platform.";

pub async fn insert_platform_client(
    client: &impl deadpool_postgres::GenericClient,
    client_id: &str,
    name: &str,
    secret_hash: &[u8],
) -> Result<()> {
    client
        .execute(
            "INSERT INTO admin.platform_clients (client_id, name, secret_hash) VALUES ($1, $2, $3)",
            &[&client_id, &name, &secret_hash],
        )
        .await?;
    Ok(())
}

/// A platform client's secret hash, if it exists and is not disabled.
pub async fn platform_client_secret(
    client: &impl deadpool_postgres::GenericClient,
    client_id: &str,
) -> Result<Option<Vec<u8>>> {
    Ok(client
        .query_opt(
            "SELECT secret_hash FROM admin.platform_clients
             WHERE client_id = $1 AND disabled_at IS NULL",
            &[&client_id],
        )
        .await?
        .map(|r| r.get(0)))
}
