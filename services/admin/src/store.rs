//! Admin's SQL: one function per query, schema-qualified, prepared once per connection.
//!
//! `users` and `system_clients` have row-level security: call these inside a
//! [`chukan_db::tenant_tx`] or they see no rows. `tenants` is the platform registry and
//! has none.

use chrono::{DateTime, NaiveDate, Utc};
use chukan_db::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{
    AdminValidity, ClientRecord, LoginRecord, NewTenant, SystemClient, Tenant, User,
};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// Inserts a tenant unless its org code exists; true if it was created.
pub async fn insert_tenant(tx: &Transaction<'_>, t: &NewTenant) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO admin.tenants (org_code, name, kind, population, home_region, upload_group)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (org_code) DO NOTHING",
        )
        .await?;
    let group = t.upload_group.map(|g| g.to_string());
    let n = tx
        .execute(
            &stmt,
            &[
                &t.org_code.as_str(),
                &t.name,
                &t.kind.as_str(),
                &t.population,
                &t.home_region,
                &group,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The tenant with this org code.
pub async fn tenant(tx: &Transaction<'_>, org_code: &str) -> Result<Option<Tenant>> {
    let stmt = tx
        .prepare_cached(
            "SELECT org_code, name, kind, population, home_region, upload_group::text, created_at
             FROM admin.tenants WHERE org_code = $1",
        )
        .await?;
    let row = tx.query_opt(&stmt, &[&org_code]).await?;
    Ok(row.map(|r| Tenant {
        org_code: r.get(0),
        name: r.get(1),
        kind: r.get(2),
        population: r.get(3),
        home_region: r.get(4),
        upload_group: r.get(5),
        created_at: r.get(6),
    }))
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
) -> Result<SystemClient> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO admin.system_clients (tenant_id, client_id, name, secret_hash)
             VALUES ($1, $2, $3, $4)
             RETURNING client_id, name, roles, created_at, disabled_at",
        )
        .await?;
    let r = tx
        .query_one(&stmt, &[&tenant, &client_id, &name, &secret_hash])
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
            "SELECT secret_hash, roles, disabled_at IS NOT NULL
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
        }))
}
