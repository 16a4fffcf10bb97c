//! The `Caller` extractor: the verified claims of the request's bearer token.

use actix_web::{
    Error, FromRequest, HttpMessage as _, HttpRequest, ResponseError as _,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web,
};
use chukan_core::edge::KnownRoutes;
use chukan_core::problem::Problem;
use futures_util::future::LocalBoxFuture;

use crate::{AuthError, Claims, Role, TokenVerifier};

/// The authenticated caller. Needs `web::Data<TokenVerifier>` in the app data.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    /// The tenant (情報保有機関) every query of this request is confined to.
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    pub fn claims(&self) -> &Claims {
        &self.0
    }

    /// 403 unless the caller holds at least one of `roles`.
    // Problem is the house error every handler returns; boxing it here would only add a hop.
    #[allow(clippy::result_large_err)]
    pub fn require_any(&self, roles: &[Role]) -> Result<(), Problem> {
        if self.0.has_any(roles) {
            Ok(())
        } else {
            Err(Problem::forbidden())
        }
    }
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Caller, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The gate verified the token already (see [`gate`]): no second verification.
        if let Some(caller) = req.extensions().get::<Caller>().cloned() {
            return Box::pin(async move { Ok(caller) });
        }
        let verifier = req.app_data::<web::Data<TokenVerifier>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let Some(verifier) = verifier else {
                tracing::error!("TokenVerifier missing from app data");
                return Err(Problem::internal());
            };
            let result = match token {
                Ok(token) => verifier.verify(&token).await,
                Err(e) => Err(e),
            };
            result.map(Caller).map_err(|e| {
                // The kind of failure only: the token itself is a credential.
                tracing::info!(reason = %e, "request not authenticated");
                unauthenticated(&e)
            })
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<String, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim().to_owned())
}

fn unauthenticated(e: &AuthError) -> Problem {
    let detail = match e {
        AuthError::Missing => "認証トークンがありません。",
        AuthError::Expired => "認証トークンの有効期限が切れています。",
        _ => "認証トークンが無効です。",
    };
    Problem::new(
        401,
        "unauthenticated",
        "Unauthenticated",
        detail,
        "/v1/auth/token で新しいトークンを取得してください。",
    )
}

/// The authorisation gate, before any extractor reads the request: an operation whose OpenAPI
/// description names roles (the `bearer` scheme's scopes) is open to a verified token holding
/// one of them, and to nobody else (401 without a valid token, 403 without the role). The
/// document is the one place that says who may call what (docs/api.md is generated from it);
/// the verified caller is kept for the [`Caller`] extractor.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let required: Option<Vec<Role>> = req
        .app_data::<web::Data<KnownRoutes>>()
        .and_then(|k| k.roles(req.method(), req.path()))
        .map(|names| names.iter().filter_map(|n| Role::parse(n)).collect());
    let Some(required) = required else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let verifier = req.app_data::<web::Data<TokenVerifier>>().cloned();
    let verified = match (verifier, bearer_token(req.request())) {
        (None, _) => {
            tracing::error!("TokenVerifier missing from app data");
            Err(Problem::internal())
        }
        (Some(_), Err(e)) => Err(unauthenticated(&e)),
        (Some(v), Ok(token)) => v.verify(&token).await.map_err(|e| {
            tracing::info!(reason = %e, "request not authenticated");
            unauthenticated(&e)
        }),
    };
    let refusal = match verified {
        Err(problem) => problem,
        Ok(claims) if claims.has_any(&required) => {
            // The request boundary's span shows which organisation called (never who).
            tracing::Span::current().record("tenant", claims.tenant.as_str());
            req.extensions_mut().insert(Caller(claims));
            return Ok(next.call(req).await?.map_into_left_body());
        }
        Ok(_) => Problem::forbidden(),
    };
    let res = refusal.error_response();
    Ok(req.into_response(res).map_into_right_body())
}
