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
                &t.kind.as_str(),
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
    let kind = change.kind.map(|k| k.as_str());
    let set_group = change.upload_group.is_some();
    let group = change.upload_group.flatten().map(|g| g.to_string());
    Ok(tx
        .query_opt(
            &stmt,
            &[
                &org_code,
                &kind,
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
     failed_logins, locked_at, created_at";

fn user_from_row(r: &Row) -> User {
    let locked_at: Option<DateTime<Utc>> = r.get(8);
    User {
        id: r.get(0),
        login_id: r.get(1),
        display_name: r.get(2),
        roles: r.get(3),
        department: r.get(4),
        valid_from: r.get(5),
        valid_to: r.get(6),
        failed_logins: r.get(7),
        locked: locked_at.is_some(),
        locked_at,
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
            "SELECT id, password_hash, roles, department, valid_from, valid_to,
                    locked_at IS NOT NULL
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
        locked: r.get(6),
    }))
}

/// Counts a failed login and locks the account when the count reaches `max_failed`.
/// One UPDATE takes the row lock, so concurrent failures each count. Returns whether the
/// account is now locked.
pub async fn record_failed_login(
    tx: &Transaction<'_>,
    id: Uuid,
    max_failed: i32,
    now: DateTime<Utc>,
) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE admin.users
             SET failed_logins = failed_logins + 1,
                 locked_at = CASE WHEN locked_at IS NULL AND failed_logins + 1 >= $2
                                  THEN $3 ELSE locked_at END
             WHERE id = $1
             RETURNING locked_at IS NOT NULL",
        )
        .await?;
    let row = tx.query_opt(&stmt, &[&id, &max_failed, &now]).await?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Resets the failure count after a good password, unless a concurrent failure locked the
/// account in the meantime; false means it is locked.
pub async fn record_successful_login(tx: &Transaction<'_>, id: Uuid) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE admin.users SET failed_logins = 0
             WHERE id = $1 AND locked_at IS NULL",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&id]).await? == 1)
}

/// Clears the lock and the failure count; the user, or None if not in this tenant.
pub async fn unlock_user(tx: &Transaction<'_>, id: Uuid) -> Result<Option<User>> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE admin.users SET failed_logins = 0, locked_at = NULL
             WHERE id = $1
             RETURNING {USER_COLUMNS}"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(user_from_row))
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
