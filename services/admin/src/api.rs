//! Admin's REST API: login (`/v1/auth/token`), JWKS, the caller's tenant, users and
//! system clients. Errors are problem+json with Japanese details and a next action.
//!
//! Routes are mounted under admin-owned prefixes (`/v1/auth`, `/v1/tenants`, `/v1/users`,
//! `/v1/clients`), never a bare `/v1` scope: actix sends everything under a matching scope
//! to it, which would hide the other services' `/v1/...` routes in the one server.

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
    web,
};
use chrono::NaiveDate;
use chukan_auth::{Caller, Role};
use chukan_core::{Problem, ids::OrgCode};
use chukan_db::Transaction;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AdminState,
    domain::{self, SystemClient},
    passwords, store,
};

/// Mounts admin's routes and state on the shared server.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AdminState>) {
    cfg.app_data(state)
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .service(
            web::scope("/v1/auth")
                .route("/token", web::post().to(token))
                .route("/jwks", web::get().to(jwks)),
        )
        .service(web::scope("/v1/tenants").route("/self", web::get().to(tenant_self)))
        .service(
            web::scope("/v1/users")
                .route("", web::post().to(create_user))
                .route("", web::get().to(list_users))
                .route("/{id}", web::get().to(get_user))
                .route("/{id}/unlock", web::post().to(unlock_user))
                .route("/{id}/valid-to", web::post().to(set_valid_to)),
        )
        .service(
            web::scope("/v1/clients")
                .route("", web::post().to(create_client))
                .route("", web::get().to(list_clients)),
        );
}

/// Every way an admin call can fail; each maps to one problem+json `code`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid client credentials")]
    InvalidClient,
    #[error("account locked")]
    AccountLocked,
    #[error("account outside its validity period")]
    AccountNotValid,
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("invalid field {field}")]
    InvalidField {
        field: &'static str,
        detail_ja: &'static str,
    },
    #[error("weak password")]
    WeakPassword(#[from] passwords::WeakPassword),
    #[error("invalid roles")]
    InvalidRoles,
    #[error("duplicate login id")]
    DuplicateLoginId,
    #[error("retroactive change")]
    RetroactiveChange,
    #[error("validity period ends before it starts")]
    InvalidPeriod,
    #[error("too few administrators would remain")]
    TooFewAdministrators,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A refusal decided elsewhere (e.g. the role check); boxed to keep the error small.
    #[error("{0}")]
    Refused(Box<Problem>),
    #[error("database unavailable: {0}")]
    Unavailable(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("database statement"))
    }
}

impl From<Problem> for AdminError {
    fn from(p: Problem) -> Self {
        Self::Refused(Box::new(p))
    }
}

impl AdminError {
    pub fn problem(&self) -> Problem {
        match self {
            Self::InvalidCredentials => Problem::new(
                401,
                "invalid-credentials",
                "Invalid credentials",
                "団体コード、ユーザーID又はパスワードが正しくありません。",
                "入力内容を確認して再度ログインしてください。繰り返し失敗するとアカウントがロックされます。",
            ),
            Self::InvalidClient => Problem::new(
                401,
                "invalid-client",
                "Invalid client credentials",
                "クライアントID又はクライアントシークレットが正しくありません。",
                "登録時に発行されたクライアントIDとシークレットを確認してください。紛失した場合はシステム管理者に再発行を依頼してください。",
            ),
            Self::AccountLocked => Problem::new(
                423,
                "account-locked",
                "Account locked",
                "アカウントがロックされています。",
                "システム管理者にロック解除を依頼してください。",
            ),
            Self::AccountNotValid => Problem::new(
                401,
                "account-not-valid",
                "Account not valid",
                "アカウントの有効期間外のため、ログインできません。",
                "有効期間の設定をシステム管理者に確認してください。",
            ),
            Self::UnsupportedGrantType => Problem::new(
                400,
                "unsupported-grant-type",
                "Unsupported grant type",
                "grant_type は \"password\" 又は \"client_credentials\" を指定してください。",
                "grant_type を確認して再度送信してください。",
            ),
            Self::MissingField(field) => Problem::new(
                400,
                "missing-field",
                "Missing field",
                format!("項目「{field}」が指定されていません。"),
                "必要な項目を指定して再度送信してください。",
            ),
            Self::InvalidField { field, detail_ja } => Problem::new(
                400,
                "invalid-field",
                "Invalid field",
                *detail_ja,
                format!("項目「{field}」の値を確認して再度送信してください。"),
            ),
            Self::WeakPassword(why) => Problem::new(
                400,
                "weak-password",
                "Weak password",
                why.to_string(),
                "12文字以上のパスワード（推測されにくい長い文を推奨）を指定してください。",
            ),
            Self::InvalidRoles => Problem::new(
                400,
                "invalid-roles",
                "Invalid roles",
                "利用者の権限は system_admin 又は business_staff を1つ以上指定してください。",
                "roles を確認して再度送信してください。",
            ),
            Self::DuplicateLoginId => Problem::new(
                409,
                "duplicate-login-id",
                "Duplicate login id",
                "このユーザーIDは既に登録されています。",
                "別のユーザーIDを指定してください。",
            ),
            Self::RetroactiveChange => Problem::new(
                400,
                "retroactive-change",
                "Retroactive change",
                "過去の日付に遡る変更（又は既に終了した有効期間の変更）はできません。",
                "本日以降の日付を指定してください。",
            ),
            Self::InvalidPeriod => Problem::new(
                400,
                "invalid-period",
                "Invalid validity period",
                "有効期間の終了日が開始日より前です。",
                "開始日以降の終了日を指定してください。",
            ),
            Self::TooFewAdministrators => Problem::new(
                409,
                "too-few-administrators",
                "Too few administrators",
                "この変更を行うと、有効なシステム管理者が2名未満になります。",
                "先に別のシステム管理者を登録してから、再度実行してください。",
            ),
            Self::NotFound(what_ja) => Problem::not_found(what_ja),
            Self::Refused(p) => (**p).clone(),
            Self::Unavailable(_) => Problem::unavailable(),
            Self::Internal(_) => Problem::internal(),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.problem().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            // The cause stays in the log (it never holds a password: none reaches SQL).
            Self::Internal(e) => tracing::error!(error = ?e, "admin request failed"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "database pool unavailable"),
            _ => {}
        }
        self.problem().error_response()
    }
}

type ApiResult = Result<HttpResponse, AdminError>;

// ---------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------

/// `POST /v1/auth/token`. Fields are optional here so a missing one gets a clear 400
/// naming it; no `Debug`, so the password can never be logged by accident.
#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    tenant: Option<String>,
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

fn required(value: Option<String>, field: &'static str) -> Result<String, AdminError> {
    value.ok_or(AdminError::MissingField(field))
}

#[tracing::instrument(skip_all, fields(grant_type = %body.grant_type))]
async fn token(state: web::Data<AdminState>, body: web::Json<TokenRequest>) -> ApiResult {
    let body = body.into_inner();
    let issued = match body.grant_type.as_str() {
        "password" => {
            let tenant = required(body.tenant, "tenant")?;
            let username = required(body.username, "username")?;
            let password = required(body.password, "password")?;
            password_grant(&state, &tenant, &username, password).await?
        }
        "client_credentials" => {
            let client_id = required(body.client_id, "client_id")?;
            let secret = required(body.client_secret, "client_secret")?;
            client_credentials_grant(&state, &client_id, &secret).await?
        }
        _ => return Err(AdminError::UnsupportedGrantType),
    };
    Ok(HttpResponse::Ok()
        // RFC 6749 §5.1: token responses must not be cached.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
        }))
}

/// Staff login. Unknown tenant, unknown user and wrong password all give the same answer,
/// after the same argon2 work, so neither the text nor the timing tells which it was.
async fn password_grant(
    state: &AdminState,
    tenant: &str,
    username: &str,
    password: String,
) -> Result<chukan_auth::IssuedToken, AdminError> {
    let Ok(tenant) = OrgCode::parse(tenant) else {
        passwords::verify_blocking(password, None).await;
        return Err(AdminError::InvalidCredentials);
    };
    if password.len() > passwords::MAX_PASSWORD_BYTES {
        return Err(AdminError::InvalidCredentials);
    }
    // Short transactions only: the connection goes back to the pool while argon2 runs.
    let record = {
        let mut client = state.db.get().await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
        let record = store::login_record(&tx, username).await?;
        tx.commit().await?;
        record
    };
    let Some(record) = record else {
        passwords::verify_blocking(password, None).await;
        return Err(AdminError::InvalidCredentials);
    };
    // A locked account is refused before the password is looked at: answering differently
    // for a right and a wrong password would let a guesser go on after the lock.
    if record.locked {
        return Err(AdminError::AccountLocked);
    }
    let good = passwords::verify_blocking(password, Some(record.password_hash.clone())).await;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    if !good {
        let now = state.clock.now();
        let locked =
            store::record_failed_login(&tx, record.id, state.max_failed_logins, now).await?;
        tx.commit().await?;
        if locked {
            tracing::warn!(tenant = %tenant, user = %record.id, "account locked after failed logins");
        }
        return Err(AdminError::InvalidCredentials);
    }
    if !record.valid_on(domain::japan_today(state.clock.as_ref())) {
        return Err(AdminError::AccountNotValid);
    }
    // A concurrent wrong password may have locked the account since we read it.
    if !store::record_successful_login(&tx, record.id).await? {
        return Err(AdminError::AccountLocked);
    }
    tx.commit().await?;
    let roles: Vec<Role> = record
        .roles
        .iter()
        .filter_map(|r| domain::role_from_name(r))
        .collect();
    let issued = state
        .issuer
        .issue(
            &record.id.to_string(),
            tenant.as_str(),
            &roles,
            record.department.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("issuing a token: {e}"))?;
    tracing::info!(tenant = %tenant, user = %record.id, "user logged in");
    Ok(issued)
}

/// System-client login: `client_id` is `<org code>.<hex>`, so the tenant is known before
/// the (row-level-security scoped) look-up.
async fn client_credentials_grant(
    state: &AdminState,
    client_id: &str,
    secret: &str,
) -> Result<chukan_auth::IssuedToken, AdminError> {
    let tenant = client_id
        .split_once('.')
        .and_then(|(org, _)| OrgCode::parse(org).ok())
        .ok_or(AdminError::InvalidClient)?;
    let record = {
        let mut client = state.db.get().await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
        let record = store::client_record(&tx, client_id).await?;
        tx.commit().await?;
        record
    };
    let presented = passwords::client_secret_hash(secret);
    let record = record
        .filter(|r| !r.disabled && passwords::constant_time_eq(&r.secret_hash, &presented))
        .ok_or(AdminError::InvalidClient)?;
    let roles: Vec<Role> = record
        .roles
        .iter()
        .filter_map(|r| domain::role_from_name(r))
        .collect();
    let issued = state
        .issuer
        .issue(client_id, tenant.as_str(), &roles, None)
        .map_err(|e| anyhow::anyhow!("issuing a token: {e}"))?;
    tracing::info!(tenant = %tenant, client = client_id, "system client logged in");
    Ok(issued)
}

/// `GET /v1/auth/jwks` and `GET /.well-known/jwks.json`: admin's public signing keys.
async fn jwks(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.issuer.jwks())
}

// ---------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------

/// `GET /v1/tenants/self`: the caller's own tenant.
#[tracing::instrument(skip_all)]
async fn tenant_self(state: web::Data<AdminState>, caller: Caller) -> ApiResult {
    let tenant = caller.tenant().to_string();
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant).await?;
    let found = store::tenant(&tx, &tenant).await?;
    tx.commit().await?;
    let found = found.ok_or(AdminError::NotFound("団体"))?;
    Ok(HttpResponse::Ok().json(found))
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

/// Stored role names of a staff user: at least one, only staff roles, no duplicates.
pub fn user_roles(roles: &[Role]) -> Result<Vec<String>, AdminError> {
    let mut names: Vec<String> = Vec::new();
    for role in roles {
        if !matches!(role, Role::SystemAdmin | Role::BusinessStaff) {
            return Err(AdminError::InvalidRoles);
        }
        let name = domain::role_name(*role).to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(AdminError::InvalidRoles);
    }
    Ok(names)
}

/// `POST /v1/users`. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    login_id: String,
    display_name: String,
    password: String,
    /// Role names; parsed here so an unknown one gets a clear `invalid-roles`.
    roles: Vec<String>,
    department: Option<String>,
    valid_from: Option<NaiveDate>,
    valid_to: Option<NaiveDate>,
}

fn check_department(department: Option<&str>) -> Result<(), AdminError> {
    match department {
        Some(d) if d.trim().is_empty() || d.chars().count() > 100 => {
            Err(AdminError::InvalidField {
                field: "department",
                detail_ja: "所属は1文字以上100文字以内で指定してください。",
            })
        }
        _ => Ok(()),
    }
}

#[tracing::instrument(skip_all)]
async fn create_user(
    state: web::Data<AdminState>,
    caller: Caller,
    body: web::Json<CreateUserRequest>,
) -> ApiResult {
    caller.require_any(&[Role::SystemAdmin])?;
    let tenant = caller.tenant().to_string();
    let req = body.into_inner();

    domain::check_login_id(&req.login_id).map_err(|detail_ja| AdminError::InvalidField {
        field: "login_id",
        detail_ja,
    })?;
    domain::check_display_name(&req.display_name).map_err(|detail_ja| {
        AdminError::InvalidField {
            field: "display_name",
            detail_ja,
        }
    })?;
    passwords::check_policy(&req.password)?;
    let roles: Vec<Role> = req
        .roles
        .iter()
        .map(|r| domain::role_from_name(r).ok_or(AdminError::InvalidRoles))
        .collect::<Result<_, _>>()?;
    let roles = user_roles(&roles)?;
    check_department(req.department.as_deref())?;

    let today = domain::japan_today(state.clock.as_ref());
    let valid_from = req.valid_from.unwrap_or(today);
    if valid_from < today || req.valid_to.is_some_and(|to| to < today) {
        return Err(AdminError::RetroactiveChange);
    }
    if req.valid_to.is_some_and(|to| to < valid_from) {
        return Err(AdminError::InvalidPeriod);
    }

    let password_hash = passwords::hash_blocking(req.password).await?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant).await?;
    let row = store::UserRow {
        tenant: &tenant,
        id: Uuid::now_v7(),
        login_id: &req.login_id,
        display_name: &req.display_name,
        password_hash: &password_hash,
        roles: &roles,
        department: req.department.as_deref(),
        valid_from,
        valid_to: req.valid_to,
    };
    let user = store::insert_user(&tx, &row)
        .await?
        .ok_or(AdminError::DuplicateLoginId)?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, user = %user.id, by = %caller.0.sub, "user created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/users/{}", user.id)))
        .json(user))
}

#[tracing::instrument(skip_all)]
async fn list_users(state: web::Data<AdminState>, caller: Caller) -> ApiResult {
    caller.require_any(&[Role::SystemAdmin])?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let users = store::users(&tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(users))
}

/// `GET /v1/users/{id}`: administrators see every user of their tenant, anyone sees self.
#[tracing::instrument(skip_all)]
async fn get_user(state: web::Data<AdminState>, caller: Caller, id: web::Path<Uuid>) -> ApiResult {
    let id = id.into_inner();
    if caller.0.sub != id.to_string() {
        caller.require_any(&[Role::SystemAdmin])?;
    }
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let user = store::user(&tx, id).await?;
    tx.commit().await?;
    let user = user.ok_or(AdminError::NotFound("利用者"))?;
    Ok(HttpResponse::Ok().json(user))
}

/// `POST /v1/users/{id}/unlock`: clears a lockout and the failure count.
#[tracing::instrument(skip_all)]
async fn unlock_user(
    state: web::Data<AdminState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult {
    caller.require_any(&[Role::SystemAdmin])?;
    let id = id.into_inner();
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    // Another tenant's user is invisible under row-level security: a plain 404.
    let user = store::unlock_user(&tx, id)
        .await?
        .ok_or(AdminError::NotFound("利用者"))?;
    tx.commit().await?;
    tracing::info!(tenant = %caller.tenant(), user = %id, by = %caller.0.sub, "user unlocked");
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidToRequest {
    /// Last valid day (inclusive), Japan date.
    valid_to: NaiveDate,
}

/// `POST /v1/users/{id}/valid-to`: ends (or moves the end of) a user's validity. No
/// retroactive edits; never below two valid administrators.
#[tracing::instrument(skip_all)]
async fn set_valid_to(
    state: web::Data<AdminState>,
    caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<ValidToRequest>,
) -> ApiResult {
    caller.require_any(&[Role::SystemAdmin])?;
    let id = id.into_inner();
    let valid_to = body.valid_to;
    let today = domain::japan_today(state.clock.as_ref());
    if valid_to < today {
        return Err(AdminError::RetroactiveChange);
    }
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    // Administrators first, always in id order, then the target: one lock order for every
    // caller, so concurrent changes serialise instead of deadlocking.
    let admins = store::administrators_for_update(&tx).await?;
    let user = store::user_for_update(&tx, id)
        .await?
        .ok_or(AdminError::NotFound("利用者"))?;
    if user.valid_to.is_some_and(|to| to < today) {
        // Its validity already ended: reopening it would rewrite the past.
        return Err(AdminError::RetroactiveChange);
    }
    if valid_to < user.valid_from {
        return Err(AdminError::InvalidPeriod);
    }
    let shortens = user.valid_to.is_none_or(|to| valid_to < to);
    let is_admin = user.roles.iter().any(|r| r == "system_admin");
    if is_admin && shortens && domain::too_few_administrators_after(&admins, id, valid_to) {
        return Err(AdminError::TooFewAdministrators);
    }
    let updated = store::set_valid_to(&tx, id, valid_to)
        .await?
        .ok_or(AdminError::NotFound("利用者"))?;
    tx.commit().await?;
    tracing::info!(tenant = %caller.tenant(), user = %id, by = %caller.0.sub, %valid_to, "user validity changed");
    Ok(HttpResponse::Ok().json(updated))
}

// ---------------------------------------------------------------------------------------
// System clients
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    name: String,
}

#[derive(Serialize)]
struct CreatedClient {
    #[serde(flatten)]
    client: SystemClient,
    /// Shown once; only its hash is kept.
    client_secret: String,
}

/// Generates an id and a secret and stores the client; returns it and the secret.
pub async fn insert_new_client(
    tx: &Transaction<'_>,
    tenant: &OrgCode,
    name: &str,
) -> Result<(SystemClient, String), tokio_postgres::Error> {
    let client_id = format!("{}.{}", tenant.as_str(), passwords::new_client_suffix());
    let secret = passwords::new_client_secret();
    let hash = passwords::client_secret_hash(&secret);
    let created = store::insert_client(tx, tenant.as_str(), &client_id, name, &hash).await?;
    Ok((created, secret))
}

#[tracing::instrument(skip_all)]
async fn create_client(
    state: web::Data<AdminState>,
    caller: Caller,
    body: web::Json<CreateClientRequest>,
) -> ApiResult {
    caller.require_any(&[Role::SystemAdmin])?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AdminError::InvalidField {
            field: "name",
            detail_ja: "クライアント名は1文字以上100文字以内で指定してください。",
        });
    }
    let tenant = OrgCode::parse(caller.tenant())
        .map_err(|e| anyhow::anyhow!("token carries an invalid tenant: {e}"))?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let (created, secret) = insert_new_client(&tx, &tenant, name).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, client = %created.client_id, by = %caller.0.sub, "system client created");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedClient {
            client: created,
            client_secret: secret,
        }))
}

#[tracing::instrument(skip_all)]
async fn list_clients(state: web::Data<AdminState>, caller: Caller) -> ApiResult {
    caller.require_any(&[Role::SystemAdmin])?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let clients = store::clients(&tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(clients))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_roles_are_checked_and_deduplicated() {
        assert_eq!(
            user_roles(&[Role::SystemAdmin, Role::SystemAdmin, Role::BusinessStaff]).unwrap(),
            vec!["system_admin".to_string(), "business_staff".to_string()]
        );
        assert!(matches!(user_roles(&[]), Err(AdminError::InvalidRoles)));
        assert!(matches!(
            user_roles(&[Role::SystemClient]),
            Err(AdminError::InvalidRoles)
        ));
    }

    #[test]
    fn credential_failures_share_one_text_and_never_name_the_cause() {
        let p = AdminError::InvalidCredentials.problem();
        assert_eq!(p.status, 401);
        assert_eq!(p.code, "invalid-credentials");
        assert_eq!(
            p.detail,
            "団体コード、ユーザーID又はパスワードが正しくありません。"
        );
        let locked = AdminError::AccountLocked.problem();
        assert_eq!(locked.status, 423);
        assert_eq!(
            locked.action,
            "システム管理者にロック解除を依頼してください。"
        );
        let internal = AdminError::Internal(anyhow::anyhow!("secret cause")).problem();
        assert!(!internal.detail.contains("secret cause"));
    }
}
