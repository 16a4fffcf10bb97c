//! Admin's REST API: login (`/v1/auth/token`), JWKS, the caller's tenant, users, system
//! clients and batch status. Errors are problem+json with Japanese details and a next action.
//!
//! Routes are mounted under admin-owned prefixes (`/v1/auth`, `/v1/tenants`, `/v1/users`,
//! `/v1/clients`, `/v1/batches`), never a bare `/v1` scope: actix sends everything under a matching scope
//! to it, which would hide the other services' `/v1/...` routes in the one server.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{StatusCode, header},
    web,
};
use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use chukan_auth::{Caller, Role};
use chukan_core::{Problem, ids::OrgCode, problem::ProtectedRouteProblems};
use chukan_db::Transaction;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::{
    AdminState,
    domain::{self, BatchRun, SystemClient, Tenant, User},
    lockout, metrics, passwords, store,
};

/// Admin's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(
        token,
        jwks,
        well_known_jwks,
        tenant_self,
        create_user,
        list_users,
        get_user,
        unlock_user,
        set_valid_to,
        set_roles,
        create_client,
        list_clients,
        list_batches,
        crate::departments::put_department,
        crate::departments::end_department,
        crate::departments::list_departments,
        crate::departments::get_department,
        crate::calendar::get_calendar,
        crate::calendar::put_outage,
        crate::calendar::delete_outage,
        crate::status::get_status
    ),
    components(schemas(
        TokenRequest,
        TokenResponse,
        Jwks,
        Jwk,
        Tenant,
        User,
        CreateUserRequest,
        ValidToRequest,
        RolesRequest,
        TokenBody,
        SystemClient,
        CreateClientRequest,
        CreatedClient,
        BatchRun,
        crate::departments::Department,
        crate::departments::DepartmentPeriod,
        crate::departments::DepartmentRequest,
        crate::departments::DepartmentEnd,
        crate::calendar::PlannedOutage,
        crate::calendar::CalendarView,
        crate::calendar::OutageRequest,
        crate::status::OperatingStatus,
        crate::status::ComponentView,
        OrgCode,
        Problem
    )),
    tags(
        (name = "auth", description = "ログイン (login) とトークン検証用の公開鍵 (JWKS)"),
        (name = "tenants", description = "団体 (情報保有機関, tenants)"),
        (name = "users", description = "利用者 (職員, staff users): 登録、ロック解除、有効期間、権限"),
        (name = "clients", description = "業務システム (system clients): クライアント認証情報の発行"),
        (name = "departments", description = "部署 (departments): 対象外事務手続コード"),
        (name = "batches", description = "バッチ状況 (batch status): 夜間バッチ等の実行状況"),
        (name = "status", description = "稼動状態 (operating status): トークン不要・常時応答"),
        (name = "calendar", description = "計画停止日 (planned outages): プラットフォーム運用者が登録し、全サービスに即時に通知")
    )
)]
pub struct ApiDoc;

/// Mounts admin's routes and state on the shared server.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AdminState>) {
    cfg.app_data(state)
        .route("/.well-known/jwks.json", web::get().to(well_known_jwks))
        .route("/v1/status", web::get().to(crate::status::get_status))
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
                .route("/{id}/valid-to", web::post().to(set_valid_to))
                .route("/{id}/roles", web::put().to(set_roles)),
        )
        .service(
            web::scope("/v1/clients")
                .route("", web::post().to(create_client))
                .route("", web::get().to(list_clients)),
        )
        .service(web::scope("/v1/batches").route("", web::get().to(list_batches)))
        .service(
            web::scope("/v1/calendar")
                .route("", web::get().to(crate::calendar::get_calendar))
                .route(
                    "/outages/{date}",
                    web::put().to(crate::calendar::put_outage),
                )
                .route(
                    "/outages/{date}",
                    web::delete().to(crate::calendar::delete_outage),
                ),
        )
        .service(
            web::scope("/v1/departments")
                .route("", web::get().to(crate::departments::list_departments))
                .route("/{code}", web::get().to(crate::departments::get_department))
                .route("/{code}", web::put().to(crate::departments::put_department))
                .route(
                    "/{code}/valid-to",
                    web::post().to(crate::departments::end_department),
                ),
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
    AccountLocked { until: DateTime<Utc> },
    #[error("login throttled")]
    LoginThrottled {
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    },
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
            Self::AccountLocked { until } => {
                let problem = Problem::new(
                    423,
                    "account-locked",
                    "Account locked",
                    "アカウントがロックされています。",
                    "ロックが解けるのを待つか、システム管理者にロック解除を依頼してください。",
                );
                // A lock from before locks expired has no end worth announcing.
                if until.year() < 9999 {
                    let secs = (*until - Utc::now()).num_seconds().max(1);
                    problem.with_retry_after(secs.unsigned_abs(), Some(until.to_rfc3339()))
                } else {
                    problem
                }
            }
            Self::LoginThrottled { until, now } => Problem::new(
                429,
                "login-throttled",
                "Login throttled",
                "ログインの失敗が続いたため、この端末からのログインを一時的に受け付けていません。",
                "Retry-After の秒数が過ぎてから再度ログインしてください。",
            )
            .with_retry_after(
                (*until - *now).num_seconds().max(1).unsigned_abs(),
                Some(until.to_rfc3339()),
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
            )
            .for_field(*field),
            Self::InvalidField { field, detail_ja } => Problem::new(
                400,
                "invalid-field",
                "Invalid field",
                *detail_ja,
                format!("項目「{field}」の値を確認して再度送信してください。"),
            )
            .for_field(*field),
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
            // The cause travels (as text) with the problem to the request boundary's log line.
            Self::Unavailable(e) => Problem::unavailable_because("pool", anyhow::anyhow!("{e}")),
            Self::Internal(e) if chukan_db::is_unavailable(e) => {
                Problem::unavailable_because("admin", anyhow::anyhow!("{e:#}"))
            }
            Self::Internal(e) => Problem::internal_because("admin", anyhow::anyhow!("{e:#}")),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.problem().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    // Logged once by the request boundary (the cause never holds a password: none reaches SQL).
    fn error_response(&self) -> HttpResponse {
        self.problem().error_response()
    }
}

type ApiResult = Result<HttpResponse, AdminError>;

// ---------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------

/// `POST /v1/auth/token`. Fields are optional here so a missing one gets a clear 400
/// naming it; no `Debug`, so the password can never be logged by accident.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "grant_type": "password",
    "tenant": "1310010000000001",
    "username": "tanaka01",
    "password": "correct horse battery staple"
}))]
pub struct TokenRequest {
    /// `password` (職員のログイン) or `client_credentials` (業務システム).
    #[schema(example = "password")]
    grant_type: String,
    /// 機関コード of the user's tenant (`password`).
    #[schema(value_type = Option<OrgCode>)]
    tenant: Option<String>,
    /// ユーザーID (`password`).
    username: Option<String>,
    /// パスワード (`password`).
    #[schema(format = Password)]
    password: Option<String>,
    /// クライアントID (`client_credentials`).
    client_id: Option<String>,
    /// クライアントシークレット (`client_credentials`).
    #[schema(format = Password)]
    client_secret: Option<String>,
}

chukan_core::body_schema!(
    /// The body of `POST /v1/auth/token`: a staff login (`password`: tenant, username and
    /// password) or a business system's (`client_credentials`: client id and secret).
    TokenBody = "TokenRequest" + serde_json::json!({
        "oneOf": [
            {"type": "object", "required": ["grant_type", "tenant", "username", "password"],
             "properties": {
                "grant_type": {"const": "password"},
                "tenant": {"type": "string"},
                "username": {"type": "string"},
                "password": {"type": "string"}}},
            {"type": "object", "required": ["grant_type", "client_id", "client_secret"],
             "properties": {
                "grant_type": {"const": "client_credentials"},
                "client_id": {"type": "string"},
                "client_secret": {"type": "string"}}}
        ]
    })
);

/// アクセストークン (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
struct TokenResponse {
    /// EdDSA-signed JWT; send as `Authorization: Bearer …`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
}

fn required(value: Option<String>, field: &'static str) -> Result<String, AdminError> {
    value.ok_or(AdminError::MissingField(field))
}

#[utoipa::path(
    post,
    path = "/v1/auth/token",
    tag = "auth",
    operation_id = "issueToken",
    summary = "ログイン (issue an access token)",
    description = "職員は機関コード・ユーザーID・パスワード (`grant_type=password`)、業務システムはクライアントID・シークレット (`grant_type=client_credentials`) でアクセストークン (JWT) を取得します。\
連続して失敗するとアカウントは一定時間ロックされ（最近ログインに成功した端末を除く）、失敗が続く端末からは待ち時間が倍々に延びます。失敗の理由 (団体・利用者・パスワードのどれが誤りか) は応答から分かりません。",
    request_body(content = TokenBody, content_type = "application/json"),
    responses(
        (status = 200, description = "アクセストークン (access token); `Cache-Control: no-store`", body = TokenResponse),
        (status = 400, description = "grant_type 又は必須項目の誤り (unsupported-grant-type, missing-field, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "認証に失敗しました (invalid-credentials, invalid-client, account-not-valid)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "アカウントがロックされています (account-locked); 解除予定時刻まで `Retry-After` 付き", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "この端末からのログイン失敗が続いたため一時的に受け付けません (login-throttled); `Retry-After` 付き", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "サーバ内部エラー (internal-error)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "サービス時間外、又は一時的に利用できません (outside-service-hours, service-unavailable); `Retry-After` 付き", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all, fields(grant_type = %body.grant_type))]
async fn token(
    state: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Json<TokenRequest>,
) -> ApiResult {
    let body = body.into_inner();
    let issued = match body.grant_type.as_str() {
        "password" => {
            let tenant = required(body.tenant, "tenant")?;
            let username = required(body.username, "username")?;
            let password = required(body.password, "password")?;
            let source = state.login_policy.source(&req);
            password_grant(&state, &tenant, &username, password, &source).await?
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
/// after the same argon2 work, so neither the text nor the timing tells which it was. The
/// lockout rules are in [`crate::lockout`].
async fn password_grant(
    state: &AdminState,
    tenant: &str,
    username: &str,
    password: String,
    source: &str,
) -> Result<chukan_auth::IssuedToken, AdminError> {
    let Ok(tenant) = OrgCode::parse(tenant) else {
        passwords::verify_blocking(password, None).await;
        return Err(AdminError::InvalidCredentials);
    };
    if password.len() > passwords::MAX_PASSWORD_BYTES {
        return Err(AdminError::InvalidCredentials);
    }
    let policy = &state.login_policy;
    // Short transactions only: the connection goes back to the pool while argon2 runs.
    let (record, standing) = {
        let mut client = state.db.get().await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
        let record = store::login_record(&tx, username).await?;
        let standing = match &record {
            Some(r) => store::login_standing(&tx, r.id, source).await?,
            None => Default::default(),
        };
        tx.commit().await?;
        (record, standing)
    };
    let Some(record) = record else {
        passwords::verify_blocking(password, None).await;
        return Err(AdminError::InvalidCredentials);
    };
    // A lock or a delay is met before the password is looked at: answering differently for
    // a right and a wrong password would let a guesser go on.
    let now = state.clock.now();
    match standing.refusal(policy, now) {
        Some(lockout::Refusal::Locked { until }) => {
            metrics::login_refused("account-locked");
            return Err(AdminError::AccountLocked { until });
        }
        Some(lockout::Refusal::Throttled { until }) => {
            metrics::login_refused("login-throttled");
            return Err(AdminError::LoginThrottled { until, now });
        }
        None => {}
    }
    let good = passwords::verify_blocking(password, Some(record.password_hash.clone())).await;
    let now = state.clock.now();
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    if !good {
        let locked =
            store::record_failed_login(&tx, tenant.as_str(), record.id, source, policy, now)
                .await?;
        tx.commit().await?;
        metrics::login_refused("invalid-credentials");
        if let Some(until) = locked {
            metrics::account_locked();
            tracing::warn!(tenant = %tenant, user = %record.id, %until, "account locked after failed logins");
        }
        return Err(AdminError::InvalidCredentials);
    }
    if !record.valid_on(domain::japan_today(state.clock.as_ref())) {
        return Err(AdminError::AccountNotValid);
    }
    // A concurrent wrong password may have locked the account since we read it; a trusted
    // source passes a lock all the same.
    let locked_until =
        store::record_successful_login(&tx, tenant.as_str(), record.id, source, now).await?;
    if let Some(until) = locked_until
        && !standing.trusted(policy, now)
    {
        metrics::login_refused("account-locked");
        return Err(AdminError::AccountLocked { until });
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
    if client_id.starts_with(store::PLATFORM_CLIENT_PREFIX) {
        return platform_grant(state, client_id, secret).await;
    }
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
        .issue(
            client_id,
            tenant.as_str(),
            &roles,
            record.department.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("issuing a token: {e}"))?;
    tracing::info!(tenant = %tenant, client = client_id, "system client logged in");
    Ok(issued)
}

/// The platform realm's grant: a token with no tenant and the platform role alone.
async fn platform_grant(
    state: &AdminState,
    client_id: &str,
    secret: &str,
) -> Result<chukan_auth::IssuedToken, AdminError> {
    let stored = {
        let client = state.db.get().await?;
        store::platform_client_secret(&client, client_id).await?
    };
    let presented = passwords::client_secret_hash(secret);
    stored
        .filter(|hash| passwords::constant_time_eq(hash, &presented))
        .ok_or(AdminError::InvalidClient)?;
    let issued = state
        .issuer
        .issue(client_id, "", &[Role::PlatformOperator], None)
        .map_err(|e| anyhow::anyhow!("issuing a token: {e}"))?;
    tracing::info!(client = client_id, "platform client logged in");
    Ok(issued)
}

/// JSON Web Key Set: the shape of [`chukan_auth::TokenIssuer::jwks`], for the document.
#[derive(ToSchema)]
#[allow(dead_code)] // documents a `serde_json::Value` built by the issuer
struct Jwks {
    keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(ToSchema)]
#[allow(dead_code)] // documents a `serde_json::Value` built by the issuer
struct Jwk {
    /// `OKP`.
    #[schema(example = "OKP")]
    kty: String,
    /// `Ed25519`.
    #[schema(example = "Ed25519")]
    crv: String,
    /// The public key, base64url without padding.
    x: String,
    /// Key id; a token's `kid` header names the key that signed it.
    kid: String,
    /// `EdDSA`.
    #[schema(example = "EdDSA")]
    alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    use_: String,
}

/// `GET /v1/auth/jwks`: admin's public signing keys.
#[utoipa::path(
    get,
    path = "/v1/auth/jwks",
    tag = "auth",
    operation_id = "getJwks",
    summary = "署名検証用公開鍵 (JWKS)",
    description = "トークン検証用の公開鍵 (JWKS, RFC 7517/8037)。各サービスはこの鍵で JWT の署名を検証します。サービス時間外でも応答します。",
    responses(
        (status = 200, description = "公開鍵の一覧 (JSON Web Key Set)", body = Jwks),
    ),
)]
async fn jwks(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.issuer.jwks())
}

/// `GET /.well-known/jwks.json`: the same keys at the well-known URL.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    operation_id = "getWellKnownJwks",
    summary = "署名検証用公開鍵 (JWKS, well-known URL)",
    description = "トークン検証用の公開鍵 (JWKS, RFC 7517/8037)。各サービスはこの鍵で JWT の署名を検証します。サービス時間外でも応答します。",
    responses(
        (status = 200, description = "公開鍵の一覧 (JSON Web Key Set)", body = Jwks),
    ),
)]
async fn well_known_jwks(state: web::Data<AdminState>) -> HttpResponse {
    jwks(state).await
}

// ---------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------

/// `GET /v1/tenants/self`: the caller's own tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/self",
    tag = "tenants",
    operation_id = "getOwnTenant",
    summary = "自団体の情報 (the caller's own tenant)",
    description = "呼出し元のトークンの団体 (情報保有機関) の登録内容を返します。どの権限でも参照できます。",
    responses(
        (status = 200, description = "団体 (tenant)", body = Tenant),
        (status = 404, description = "団体が登録されていません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff", "system_client"]))
)]
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

/// `POST /v1/users`: 利用者の登録. No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// ユーザーID: 1–64 characters, no spaces or control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        example = "tanaka01",
        pattern = "^[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]{1,64}$"
    )]
    login_id: String,
    /// 氏名 (display name): 1–100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        example = "田中 一郎",
        pattern = "^(?=.*[^\\s])[^\\u0000-\\u001F\\u007F-\\u009F]{1,100}$"
    )]
    display_name: String,
    /// パスワード: 12–256 characters (a long sentence is best).
    #[schema(format = Password, min_length = 12, max_length = 256)]
    password: String,
    /// Role names: one or more of `system_admin`, `business_staff`.
    #[schema(min_items = 1, inline, value_type = Vec<UserRole>, example = json!(["business_staff"]))]
    roles: Vec<String>,
    /// 所属 (department): 1–100 characters, not blank, no control characters.
    #[schema(pattern = "^(?=.*[^\\s])[^\\u0000-\\u001F\\u007F-\\u009F]{1,100}$")]
    department: Option<String>,
    /// 有効期間の開始日; today (Japan) if omitted, never in the past.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    valid_from: Option<NaiveDate>,
    /// 有効期間の終了日 (inclusive); open-ended if omitted.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    valid_to: Option<NaiveDate>,
}

/// The roles a staff user may hold (a business system is a client, not a user).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    SystemAdmin,
    BusinessStaff,
}

fn check_department(department: Option<&str>) -> Result<(), AdminError> {
    match department {
        Some(d)
            if d.trim().is_empty()
                || d.chars().count() > 100
                || d.chars().any(char::is_control) =>
        {
            Err(AdminError::InvalidField {
                field: "department",
                detail_ja: "所属は制御文字を含まない1文字以上100文字以内で指定してください。",
            })
        }
        _ => Ok(()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    operation_id = "createUser",
    summary = "利用者の登録 (create a staff user)",
    description = "自団体の職員を登録します (システム管理者のみ)。パスワードは12文字以上。有効期間は本日以降で指定します。",
    request_body(content = CreateUserRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "登録しました (created)", body = User,
            headers(("Location" = String, description = "/v1/users/{id}"))),
        (status = 400, description = "項目の誤り (invalid-field, weak-password, invalid-roles, retroactive-change, invalid-period, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "ユーザーIDが既に登録されています (duplicate-login-id)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
async fn create_user(
    state: web::Data<AdminState>,
    caller: Caller,
    body: web::Json<CreateUserRequest>,
) -> ApiResult {
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
        .json(user.as_of(state.clock.now())))
}

#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    operation_id = "listUsers",
    summary = "利用者の一覧 (list staff users)",
    description = "自団体の職員の一覧を返します (システム管理者のみ)。",
    responses(
        (status = 200, description = "利用者の一覧", body = Vec<User>),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
async fn list_users(state: web::Data<AdminState>, caller: Caller) -> ApiResult {
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let users = store::users(&tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(
        users
            .into_iter()
            .map(|u| u.as_of(state.clock.now()))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /v1/users/{id}`: administrators see every user of their tenant, anyone sees self.
#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "users",
    operation_id = "getUser",
    summary = "利用者の参照 (get a staff user)",
    description = "システム管理者は自団体の全職員を、それ以外の職員は自分自身だけを参照できます。",
    params(("id" = Uuid, Path, description = "利用者の id")),
    responses(
        (status = 200, description = "利用者", body = User),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "他の利用者を参照する権限がありません (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "利用者が見つかりません (not-found); 他団体の利用者も 404", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
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
    Ok(HttpResponse::Ok().json(user.as_of(state.clock.now())))
}

/// `POST /v1/users/{id}/unlock`: clears a lockout and the failure count.
#[utoipa::path(
    post,
    path = "/v1/users/{id}/unlock",
    tag = "users",
    operation_id = "unlockUser",
    summary = "ロック解除 (unlock a staff user)",
    description = "ログイン失敗で掛かったロックを解除し、失敗回数を0に戻します (システム管理者のみ)。",
    params(("id" = Uuid, Path, description = "利用者の id")),
    responses(
        (status = 200, description = "ロックを解除した利用者", body = User),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "利用者が見つかりません (not-found); 他団体の利用者も 404", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
async fn unlock_user(
    state: web::Data<AdminState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult {
    let id = id.into_inner();
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    // Another tenant's user is invisible under row-level security: a plain 404.
    let now = state.clock.now();
    let user = store::unlock_user(&tx, caller.tenant(), id, &caller.0.sub, "", now)
        .await?
        .ok_or(AdminError::NotFound("利用者"))?;
    tx.commit().await?;
    metrics::account_unlocked("administrator");
    tracing::info!(tenant = %caller.tenant(), user = %id, by = %caller.0.sub, "user unlocked");
    Ok(HttpResponse::Ok().json(user.as_of(now)))
}

/// 有効期間の終了日の設定.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidToRequest {
    /// Last valid day (inclusive), Japan date.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    valid_to: NaiveDate,
}

/// `POST /v1/users/{id}/valid-to`: ends (or moves the end of) a user's validity. No
/// retroactive edits; never below two valid administrators.
#[utoipa::path(
    post,
    path = "/v1/users/{id}/valid-to",
    tag = "users",
    operation_id = "setUserValidTo",
    summary = "有効期間の終了日の設定 (end a user's validity)",
    description = "職員の有効期間の終了日を設定・変更します (システム管理者のみ)。過去に遡る変更はできず、有効なシステム管理者が2名未満になる変更も拒否します。",
    params(("id" = Uuid, Path, description = "利用者の id")),
    request_body(content = ValidToRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "変更後の利用者", body = User),
        (status = 400, description = "日付の誤り (retroactive-change, invalid-period, invalid-path, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "利用者が見つかりません (not-found); 他団体の利用者も 404", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "有効なシステム管理者が2名未満になります (too-few-administrators)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
async fn set_valid_to(
    state: web::Data<AdminState>,
    caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<ValidToRequest>,
) -> ApiResult {
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
    Ok(HttpResponse::Ok().json(updated.as_of(state.clock.now())))
}

/// 権限の変更.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    /// Role names: one or more of `system_admin`, `business_staff`; they replace the user's
    /// roles.
    #[schema(min_items = 1, inline, value_type = Vec<UserRole>, example = json!(["system_admin", "business_staff"]))]
    roles: Vec<String>,
}

/// `PUT /v1/users/{id}/roles`: replaces a user's roles. Never below two valid
/// administrators; every change is kept in the account's trail.
#[utoipa::path(
    put,
    path = "/v1/users/{id}/roles",
    tag = "users",
    operation_id = "setUserRoles",
    summary = "権限の変更 (change a user's roles)",
    description = "職員の権限を指定した内容に置き換えます (システム管理者のみ)。有効なシステム管理者が2名未満になる変更は拒否します。変更は次回のログインから有効です（発行済みのトークンは有効期限まで元の権限のままです）。",
    params(("id" = Uuid, Path, description = "利用者の id")),
    request_body(content = RolesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "変更後の利用者", body = User),
        (status = 400, description = "権限の誤り (invalid-roles, invalid-path, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "利用者が見つかりません (not-found); 他団体の利用者も 404", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "有効なシステム管理者が2名未満になります (too-few-administrators)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
async fn set_roles(
    state: web::Data<AdminState>,
    caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<RolesRequest>,
) -> ApiResult {
    let id = id.into_inner();
    let roles: Vec<Role> = body
        .roles
        .iter()
        .map(|r| domain::role_from_name(r).ok_or(AdminError::InvalidRoles))
        .collect::<Result<_, _>>()?;
    let roles = user_roles(&roles)?;
    let now = state.clock.now();
    let today = domain::japan_today(state.clock.as_ref());
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    // The lock order of set_valid_to (administrators by id, then the target), so a role
    // change and a validity change cannot together go below the minimum.
    let admins = store::administrators_for_update(&tx).await?;
    let user = store::user_for_update(&tx, id)
        .await?
        .ok_or(AdminError::NotFound("利用者"))?;
    if same_roles(&user.roles, &roles) {
        tx.commit().await?;
        return Ok(HttpResponse::Ok().json(user.as_of(now)));
    }
    let was_admin = user.roles.iter().any(|r| r == "system_admin");
    let stays_admin = roles.iter().any(|r| r == "system_admin");
    if was_admin && !stays_admin && domain::too_few_administrators_without(&admins, id, today) {
        return Err(AdminError::TooFewAdministrators);
    }
    let updated = store::set_roles(&tx, id, &roles)
        .await?
        .ok_or(AdminError::NotFound("利用者"))?;
    let change = format!("{} → {}", user.roles.join(","), roles.join(","));
    store::insert_account_event(
        &tx,
        caller.tenant(),
        id,
        "roles-changed",
        &caller.0.sub,
        &change,
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant = %caller.tenant(), user = %id, by = %caller.0.sub, roles = %roles.join(","), "user roles changed");
    Ok(HttpResponse::Ok().json(updated.as_of(now)))
}

/// The same set of roles, whatever the order.
fn same_roles(stored: &[String], wanted: &[String]) -> bool {
    stored.len() == wanted.len() && wanted.iter().all(|r| stored.contains(r))
}

// ---------------------------------------------------------------------------------------
// System clients
// ---------------------------------------------------------------------------------------

/// 業務システムの登録.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    /// クライアント名: 1–100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        example = "住民記録システム",
        pattern = "^(?=.*[^\\s])[^\\u0000-\\u001F\\u007F-\\u009F]{1,100}$"
    )]
    name: String,
    /// 部署コード the system works for (1–20 characters, no blanks): its tokens carry it, and
    /// inquiries made with them are limited by that department's 対象外事務手続コード.
    #[schema(
        pattern = "^[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]{1,20}$"
    )]
    department: Option<String>,
}

/// A registered system client with its secret (shown this once).
#[derive(Serialize, ToSchema)]
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
    department: Option<&str>,
) -> Result<(SystemClient, String), tokio_postgres::Error> {
    let client_id = format!("{}.{}", tenant.as_str(), passwords::new_client_suffix());
    let secret = passwords::new_client_secret();
    let hash = passwords::client_secret_hash(&secret);
    let created =
        store::insert_client(tx, tenant.as_str(), &client_id, name, &hash, department).await?;
    Ok((created, secret))
}

#[utoipa::path(
    post,
    path = "/v1/clients",
    tag = "clients",
    operation_id = "createClient",
    summary = "業務システムの登録 (register a system client)",
    description = "自団体の業務システム (system client) を登録し、クライアントIDとクライアントシークレットを発行します (システム管理者のみ)。シークレットはこの応答でだけ表示されます。",
    request_body(content = CreateClientRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "登録しました; `client_secret` はこの応答でのみ表示 (`Cache-Control: no-store`)", body = CreatedClient),
        (status = 400, description = "クライアント名の誤り (invalid-field, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
async fn create_client(
    state: web::Data<AdminState>,
    caller: Caller,
    body: web::Json<CreateClientRequest>,
) -> ApiResult {
    // Counted as sent (not trimmed): the document's maxLength says the same.
    let name = body.name.trim();
    if name.is_empty() || body.name.chars().count() > 100 || body.name.chars().any(char::is_control)
    {
        return Err(AdminError::InvalidField {
            field: "name",
            detail_ja: "クライアント名は制御文字を含まない1文字以上100文字以内で指定してください。",
        });
    }
    if let Some(department) = &body.department {
        crate::departments::check_code(department)?;
    }
    let tenant = OrgCode::parse(caller.tenant())
        .map_err(|e| anyhow::anyhow!("token carries an invalid tenant: {e}"))?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let (created, secret) =
        insert_new_client(&tx, &tenant, name, body.department.as_deref()).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, client = %created.client_id, by = %caller.0.sub, "system client created");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedClient {
            client: created,
            client_secret: secret,
        }))
}

#[utoipa::path(
    get,
    path = "/v1/clients",
    tag = "clients",
    operation_id = "listClients",
    summary = "業務システムの一覧 (list system clients)",
    description = "自団体の業務システムの一覧を返します (システム管理者のみ)。シークレットは含みません。",
    responses(
        (status = 200, description = "業務システムの一覧", body = Vec<SystemClient>),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
async fn list_clients(state: web::Data<AdminState>, caller: Caller) -> ApiResult {
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let clients = store::clients(&tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(clients))
}

// ---------------------------------------------------------------------------------------
// Batch status
// ---------------------------------------------------------------------------------------

/// Most runs one `GET /v1/batches` returns.
const MAX_BATCH_LIMIT: i64 = 500;

/// `GET /v1/batches` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchListParams {
    /// Only runs of this job (e.g. `replica-uploads`); every job if omitted.
    job: Option<String>,
    /// At most this many runs, newest first: 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "batches",
    operation_id = "listBatchRuns",
    summary = "バッチ状況の一覧 (batch runs of the caller's tenant)",
    description = "自団体のバッチ処理 (副本の夜間一括登録など) の実行状況を、開始の新しい順に返します (システム管理者・業務担当者)。各実行は最後に報告された状況 (処理中・完了・異常終了、処理件数、繰越件数、エラー件数) を示します。",
    params(BatchListParams),
    responses(
        (status = 200, description = "バッチ実行の一覧 (newest first)", body = Vec<BatchRun>),
        (status = 400, description = "クエリの誤り (invalid-field, invalid-query)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin 又は business_staff が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
#[tracing::instrument(skip_all)]
async fn list_batches(
    state: web::Data<AdminState>,
    caller: Caller,
    params: web::Query<BatchListParams>,
) -> ApiResult {
    let limit = params.limit.unwrap_or(50);
    if !(1..=MAX_BATCH_LIMIT).contains(&limit) {
        return Err(AdminError::InvalidField {
            field: "limit",
            detail_ja: "件数 (limit) は1以上500以下で指定してください。",
        });
    }
    let job = params.job.as_deref().filter(|j| !j.is_empty());
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let runs = store::batch_runs(&tx, job, limit).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(runs))
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
        let until = chrono::Utc::now() + chrono::Duration::minutes(15);
        let locked = AdminError::AccountLocked { until }.problem();
        assert_eq!(locked.status, 423);
        assert_eq!(
            locked.action,
            "ロックが解けるのを待つか、システム管理者にロック解除を依頼してください。"
        );
        assert_eq!(locked.available_at, Some(until.to_rfc3339()));
        assert!(locked.retry_after.is_some_and(|s| s > 800));
        let internal = AdminError::Internal(anyhow::anyhow!("secret cause")).problem();
        assert!(!internal.detail.contains("secret cause"));
    }
}
