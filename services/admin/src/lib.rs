//! Tenants, users, departments, system clients, login and JWKS.
//!
//! admin is where every token comes from: staff log in with their tenant's 機関コード
//! (organisation code), user id and password; system clients with client credentials. It
//! owns the platform's tenant registry and enforces lockout, validity periods and the
//! two-administrator rule (DOMAIN §8).
//!
//! Every change to a tenant's settings is announced as `tenant.changed` (through admin's
//! outbox, in the change's transaction); progress reports of other services' batches arrive
//! on `batch.progress` and are shown at `GET /v1/batches` (F10 バッチ状況).
//!
//! Entry points: [`migrations`], [`start`] and [`batch_queue`] for the binary;
//! [`create_tenant`], [`update_tenant`], [`create_user`] and [`create_client`] for the
//! operator CLI (`chukan admin …`).

use std::sync::Arc;

use actix_web::web;
use anyhow::Context as _;
use chukan_auth::TokenIssuer;
use chukan_core::{Clock, SystemClock, ids::OrgCode};
use chukan_mq::{OutgoingMessage, QueueSpec};
use chukan_proto::Message as _;
use utoipa::OpenApi as _;
use uuid::Uuid;

pub mod actors;
pub mod api;
pub mod calendar;
pub mod departments;
pub mod domain;
pub mod lockout;
pub mod metrics;
pub mod passwords;
pub mod status;
pub mod store;

pub use domain::{NewTenant, NewUser, Tenant, TenantKind, TenantUpdate};

/// The schema admin owns.
pub const SCHEMA: &str = "admin";

/// Routing key of an organisation's settings as they are now (`chukan_proto::TenantChanged`).
pub const TENANT_CHANGED: &str = "tenant.changed";

/// Routing key of batch progress reports (`chukan_proto::BatchProgress`).
pub const BATCH_PROGRESS: &str = "batch.progress";

/// The queue batch progress reports arrive on.
pub fn batch_queue() -> QueueSpec {
    QueueSpec::new("admin.batches", &[BATCH_PROGRESS])
}

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Admin's migrations (run by `chukan migrate` and the test harness).
pub fn migrations() -> chukan_db::Migrations {
    chukan_db::Migrations {
        schema: SCHEMA,
        runner: embedded::migrations::runner,
    }
}

/// What admin's handlers share.
pub struct AdminState {
    pub db: chukan_db::Pool,
    pub issuer: TokenIssuer,
    pub clock: Arc<dyn Clock>,
    /// Lockout and throttling of staff logins (`auth.*`).
    pub login_policy: lockout::LoginPolicy,
    /// Planned outages from this process's settings (`calendar.planned_outages`), shown
    /// beside those announced at runtime.
    pub configured_outages: Vec<chrono::NaiveDate>,
    /// This process's calendar (settings and announced outages), which `/v1/status` reads.
    pub calendar: Arc<chukan_core::ServiceCalendar>,
    /// Keeps `/v1/status`, open to anyone, from being flooded.
    pub status_rate: status::RateLimit,
}

/// Admin's part of the OpenAPI document (merged by the server at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::ApiDoc::openapi()
}

/// Builds admin's state and routes, and starts its workers: the outbox relay (which also
/// publishes what the operator CLI wrote, found by polling) and the batch status consumer.
pub async fn start(ctx: &chukan_runtime::Context) -> anyhow::Result<chukan_runtime::Parts> {
    let issuer = TokenIssuer::from_settings(&ctx.settings.auth).context("settings auth.*")?;
    let login_policy = lockout::LoginPolicy::from_settings(&ctx.settings.auth)?;
    let configured_outages =
        chukan_core::ServiceCalendar::from_strings(&ctx.settings.calendar.planned_outages)?
            .planned_outages();
    let state = web::Data::new(AdminState {
        db: ctx.db.clone(),
        issuer,
        clock: ctx.clock.clone(),
        login_policy,
        configured_outages,
        calendar: ctx.calendar.clone(),
        status_rate: status::RateLimit::default(),
    });
    let routes: chukan_runtime::Routes = Arc::new(move |cfg| api::configure(cfg, state.clone()));
    let outbox = chukan_mq::outbox::start(
        ctx.db.clone(),
        SCHEMA,
        ctx.bus.clone(),
        ctx.settings.amqp.outbox_poll,
    );
    let queue = batch_queue();
    ctx.bus
        .declare_queue(&queue)
        .await
        .context("declaring admin's batch queue")?;
    let batches = chukan_mq::consumer::start(
        &ctx.bus,
        &queue,
        "admin",
        ctx.settings.amqp.prefetch,
        Arc::new(actors::batch_progress::BatchStatus::new(ctx.db.clone())),
    );
    let calendar_queue = calendar_rpc_queue();
    ctx.bus
        .declare_queue(&calendar_queue)
        .await
        .context("declaring admin's calendar queue")?;
    let calendar = chukan_mq::rpc::serve(
        &ctx.bus,
        &calendar_queue,
        "admin",
        ctx.settings.amqp.prefetch,
        calendar::rpc_handler(ctx.db.clone()),
    );
    let components_queue = status_queue();
    ctx.bus
        .declare_queue(&components_queue)
        .await
        .context("declaring admin's status queue")?;
    let components = chukan_mq::consumer::start(
        &ctx.bus,
        &components_queue,
        "admin",
        ctx.settings.amqp.prefetch,
        Arc::new(status::ComponentReports::new(ctx.db.clone())),
    );
    // Once per cell (ADR 0005): replicas a moment apart around an hour's turn would each
    // publish their own view of it, a flap; the lease holder alone watches.
    let watcher = {
        let (db, calendar, clock, outbox) = (
            ctx.db.clone(),
            ctx.calendar.clone(),
            ctx.clock.clone(),
            outbox.clone(),
        );
        chukan_runtime::lease::once_per_cell(
            ctx,
            "admin.status",
            chukan_runtime::StopStage::Intake,
            move || {
                status::watch(
                    db.clone(),
                    calendar.clone(),
                    clock.clone(),
                    outbox.clone(),
                    std::time::Duration::from_secs(15),
                )
            },
        )
    };
    // Once per cell (ADR 0006): one process owns the primary's synchronous_standby_names;
    // admin runs in every cell, as the guard must.
    let sync_guard = chukan_runtime::replication::start(ctx);
    Ok(chukan_runtime::Parts {
        name: "admin",
        routes: Some(routes),
        workers: vec![
            batches.into_worker("admin.batches"),
            calendar.into_worker("admin.calendar-rpc"),
            components.into_worker("admin.status-components"),
            watcher,
            sync_guard,
            outbox.into_worker("admin.outbox"),
        ],
        openapi: Some(openapi()),
    })
}

/// Components' health reports (`status.component`) for the operating status.
pub fn status_queue() -> QueueSpec {
    QueueSpec::new("admin.status-components", &[chukan_proto::STATUS_COMPONENT])
}

/// Where processes ask admin for the current calendar (`admin.calendar-rpc`).
pub fn calendar_rpc_queue() -> QueueSpec {
    QueueSpec::new(chukan_proto::CALENDAR_RPC, &[])
}

/// Writes the `tenant.changed` announcement of `tenant` to admin's outbox (in `tx`).
async fn announce(tx: &chukan_db::Transaction<'_>, tenant: &Tenant) -> anyhow::Result<()> {
    let msg = OutgoingMessage::new(
        tenant.org_code.as_str(),
        TENANT_CHANGED,
        tenant.changed_event().encode_to_vec(),
    );
    chukan_mq::outbox::enqueue(tx, SCHEMA, &msg)
        .await
        .context("writing tenant.changed to the outbox")
}

/// Registers a tenant and announces it (`tenant.changed`, revision 1) in the same
/// transaction; `Ok(false)` if its org code was already registered (idempotent: nothing is
/// changed or announced).
///
/// The announcement waits in admin's outbox until a running admin's relay publishes it.
pub async fn create_tenant(pool: &chukan_db::Pool, t: &NewTenant) -> anyhow::Result<bool> {
    t.validate().map_err(|e| anyhow::anyhow!(e))?;
    let mut client = pool.get().await.context("database connection")?;
    // The registry has no row-level security, but a tenant-scoped transaction costs nothing
    // and keeps one way of opening transactions.
    let tx = chukan_db::tenant_tx(&mut client, t.org_code.as_str()).await?;
    let created = store::insert_tenant(&tx, t)
        .await
        .context("inserting the tenant")?;
    if let Some(tenant) = &created {
        announce(&tx, tenant).await?;
    }
    tx.commit().await?;
    Ok(created.is_some())
}

/// Changes a tenant's settings, bumps its revision and announces the result
/// (`tenant.changed`), all in one transaction; returns the tenant as it is now.
///
/// An empty change still bumps the revision and announces the current settings, which
/// re-sends them to consumers that missed them (e.g. tenants registered before a
/// consumer existed).
pub async fn update_tenant(
    pool: &chukan_db::Pool,
    org: &OrgCode,
    change: &TenantUpdate,
) -> anyhow::Result<Tenant> {
    change.validate().map_err(|e| anyhow::anyhow!(e))?;
    let mut client = pool.get().await.context("database connection")?;
    let tx = chukan_db::tenant_tx(&mut client, org.as_str()).await?;
    let tenant = store::update_tenant(&tx, org.as_str(), change)
        .await
        .context("updating the tenant")?
        .with_context(|| {
            format!(
                "tenant {} is not registered (register it with `chukan admin create-tenant`)",
                org.as_str()
            )
        })?;
    announce(&tx, &tenant).await?;
    tx.commit().await?;
    Ok(tenant)
}

/// Creates a user in `tenant`; if the login id exists, returns its id and changes nothing
/// (the password is not reset), so seeding can be re-run.
pub async fn create_user(
    pool: &chukan_db::Pool,
    tenant: &OrgCode,
    u: &NewUser,
) -> anyhow::Result<Uuid> {
    domain::check_login_id(&u.login_id).map_err(anyhow::Error::msg)?;
    domain::check_display_name(&u.display_name).map_err(anyhow::Error::msg)?;
    passwords::check_policy(&u.password)?;
    let roles = api::user_roles(&u.roles).map_err(|_| {
        anyhow::anyhow!("a user needs at least one role of system_admin or business_staff")
    })?;

    let mut client = pool.get().await.context("database connection")?;
    {
        let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
        let existing = store::user_id_by_login(&tx, &u.login_id).await?;
        tx.commit().await?;
        if let Some(id) = existing {
            return Ok(id);
        }
    }
    let password_hash = passwords::hash_blocking(u.password.clone()).await?;
    let today = domain::japan_today(&SystemClock);
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let row = store::UserRow {
        tenant: tenant.as_str(),
        id: Uuid::now_v7(),
        login_id: &u.login_id,
        display_name: &u.display_name,
        password_hash: &password_hash,
        roles: &roles,
        department: u.department.as_deref(),
        valid_from: today,
        valid_to: None,
    };
    let id = match store::insert_user(&tx, &row)
        .await
        .context("inserting the user (is the tenant registered?)")?
    {
        Some(user) => user.id,
        // Created concurrently between the look-up and the insert.
        None => store::user_id_by_login(&tx, &u.login_id)
            .await?
            .context("user vanished after a conflicting insert")?,
    };
    tx.commit().await?;
    Ok(id)
}

/// Creates a system client in `tenant`; returns its id and its secret (shown only now).
pub async fn create_client(
    pool: &chukan_db::Pool,
    tenant: &OrgCode,
    name: &str,
    department: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        anyhow::bail!("a client name needs 1 to 100 characters");
    }
    if let Some(department) = department {
        departments::check_code(department).map_err(|e| anyhow::anyhow!(e.problem().detail))?;
    }
    let mut client = pool.get().await.context("database connection")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let (created, secret) = api::insert_new_client(&tx, tenant, name, department)
        .await
        .context("inserting the client (is the tenant registered?)")?;
    tx.commit().await?;
    Ok((created.client_id, secret))
}

/// Creates a platform client (the platform realm: J-LIS, the ministry); returns its id and
/// its secret (shown only now). Its tokens carry no tenant and the platform role alone.
pub async fn create_platform_client(
    pool: &chukan_db::Pool,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        anyhow::bail!("a client name needs 1 to 100 characters, none of them control characters");
    }
    let client_id = format!(
        "{}{}",
        store::PLATFORM_CLIENT_PREFIX,
        passwords::new_client_suffix()
    );
    let secret = passwords::new_client_secret();
    let client = pool.get().await.context("database connection")?;
    store::insert_platform_client(
        &client,
        &client_id,
        name,
        &passwords::client_secret_hash(&secret),
    )
    .await?;
    Ok((client_id, secret))
}

/// A platform operator's unlock of a staff account (the tenant may have no administrator able
/// to log in): clears the lock and every source's delay and records the operator and the
/// reason in the account's trail (`admin.account_events`). Returns the user's id.
pub async fn unlock_user_as_operator(
    pool: &chukan_db::Pool,
    tenant: &OrgCode,
    login_id: &str,
    operator: &str,
    reason: &str,
) -> anyhow::Result<Uuid> {
    let operator = operator.trim();
    let reason = reason.trim();
    if operator.is_empty() || operator.chars().count() > 64 {
        anyhow::bail!("--operator needs the operator's name or id (1 to 64 characters)");
    }
    if reason.is_empty() || reason.chars().count() > 500 {
        anyhow::bail!("--reason needs why the account is unlocked (1 to 500 characters)");
    }
    let mut client = pool.get().await.context("database connection")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let id = store::user_id_by_login(&tx, login_id)
        .await?
        .with_context(|| format!("no user {login_id:?} in tenant {tenant}"))?;
    store::unlock_user(
        &tx,
        tenant.as_str(),
        id,
        &format!("operator:{operator}"),
        reason,
        SystemClock.now(),
    )
    .await?;
    tx.commit().await?;
    metrics::account_unlocked("operator");
    tracing::warn!(tenant = %tenant, user = %id, operator, "account unlocked by a platform operator");
    Ok(id)
}

/// Creates or replaces a department (部署) and announces it (`department.changed`) in the
/// same transaction: the operator CLI's way to what `PUT /v1/departments/{code}` does.
pub async fn put_department(
    pool: &chukan_db::Pool,
    tenant: &OrgCode,
    code: &str,
    request: &departments::DepartmentRequest,
) -> anyhow::Result<departments::Department> {
    let problem = |e: api::AdminError| anyhow::anyhow!(e.problem().detail);
    departments::check_code(code).map_err(problem)?;
    let clock = chukan_core::SystemClock;
    let today = domain::japan_today(&clock);
    let new = departments::check_request(request, today).map_err(problem)?;
    let mut client = pool.get().await.context("database connection")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let department = departments::put(&tx, tenant, code, &new, "cli", clock.now(), today)
        .await
        .context("saving the department (is the tenant registered?)")?;
    tx.commit().await?;
    Ok(department)
}
