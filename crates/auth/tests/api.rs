#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tokens through an actix app protected by `Caller`, and the verifier's verdicts.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use actix_web::{App, HttpResponse, HttpServer, test, web};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chukan_auth::{AuthError, Caller, Claims, Role, TokenIssuer, TokenVerifier};
use chukan_core::problem::Problem;
use chukan_crypto::{Signer, generate_key_base64};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const ISS: &str = "chukan";
const AUD: &str = "chukan-api";
const KID: &str = "admin-1";

struct Keys {
    seed: String,
    issuer: TokenIssuer,
}

fn keys() -> Keys {
    let seed = generate_key_base64();
    let issuer = TokenIssuer::new(&seed, KID, ISS, AUD, 900).unwrap();
    Keys { seed, issuer }
}

fn verifier_for(issuer: &TokenIssuer) -> TokenVerifier {
    TokenVerifier::with_static_keys(ISS, AUD, vec![(KID.into(), issuer.public_key())])
}

fn claims(exp_offset: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "user-1".into(),
        tenant: "1310100001".into(),
        roles: vec![Role::BusinessStaff],
        dept: Some("dept-1".into()),
        iss: ISS.into(),
        aud: AUD.into(),
        iat: now,
        exp: now + exp_offset,
        jti: "jti-1".into(),
    }
}

/// Signs arbitrary claims with `seed` under `kid`, bypassing `TokenIssuer`.
fn sign_raw(seed: &str, kid: &str, claims: &Claims) -> String {
    let signer = Signer::from_seed_base64(kid, seed).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_der(&signer.seed_der_pkcs8()),
    )
    .unwrap()
}

async fn whoami(caller: Caller) -> Result<HttpResponse, Problem> {
    caller.require_any(&[Role::BusinessStaff, Role::SystemAdmin])?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "tenant": caller.tenant(),
        "sub": caller.0.sub,
        "dept": caller.0.dept,
    })))
}

async fn admin_only(caller: Caller) -> Result<HttpResponse, Problem> {
    caller.require_any(&[Role::SystemAdmin])?;
    Ok(HttpResponse::Ok().finish())
}

/// Calls `path` with `token` (if any); returns status, WWW-Authenticate and the JSON body.
async fn call(
    verifier: TokenVerifier,
    path: &str,
    token: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(verifier))
            .route("/v1/whoami", web::get().to(whoami))
            .route("/v1/admin", web::get().to(admin_only)),
    )
    .await;
    let mut req = test::TestRequest::get().uri(path);
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let res = test::call_service(&app, req.to_request()).await;
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = test::read_body(res).await;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, www, json)
}

async fn assert_unauthenticated(verifier: TokenVerifier, token: Option<&str>) {
    let (status, www, body) = call(verifier, "/v1/whoami", token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(www.as_deref(), Some("Bearer"));
    assert_eq!(body["code"], "unauthenticated");
    assert!(body["action"].as_str().unwrap().contains("/v1/auth/token"));
}

#[actix_web::test]
async fn valid_token_gives_the_claims() {
    let k = keys();
    let token = k
        .issuer
        .issue(
            "user-1",
            "1310100001",
            &[Role::BusinessStaff],
            Some("dept-1"),
        )
        .unwrap();
    assert_eq!(token.expires_in, 900);
    let (status, _, body) = call(
        verifier_for(&k.issuer),
        "/v1/whoami",
        Some(&token.access_token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["tenant"], "1310100001");
    assert_eq!(body["sub"], "user-1");
    assert_eq!(body["dept"], "dept-1");

    let claims = verifier_for(&k.issuer)
        .verify(&token.access_token)
        .await
        .unwrap();
    assert_eq!(claims.roles, vec![Role::BusinessStaff]);
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(
        jsonwebtoken::decode_header(&token.access_token)
            .unwrap()
            .kid
            .as_deref(),
        Some(KID)
    );
}

#[actix_web::test]
async fn missing_or_non_bearer_header_is_401() {
    let k = keys();
    assert_unauthenticated(verifier_for(&k.issuer), None).await;
    let (status, _, body) = call(verifier_for(&k.issuer), "/v1/whoami", Some("")).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthenticated");
}

#[actix_web::test]
async fn expired_token_is_401() {
    let k = keys();
    // Past the 30-second leeway.
    let token = sign_raw(&k.seed, KID, &claims(-120));
    assert_eq!(
        verifier_for(&k.issuer).verify(&token).await.unwrap_err(),
        AuthError::Expired
    );
    let (status, _, body) = call(verifier_for(&k.issuer), "/v1/whoami", Some(&token)).await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("有効期限"));
}

#[actix_web::test]
async fn token_from_another_key_under_the_same_kid_is_401() {
    let k = keys();
    let forger = keys();
    let token = forger
        .issuer
        .issue("user-1", "1310100001", &[Role::SystemAdmin], None)
        .unwrap();
    assert_eq!(
        verifier_for(&k.issuer)
            .verify(&token.access_token)
            .await
            .unwrap_err(),
        AuthError::BadSignature
    );
    assert_unauthenticated(verifier_for(&k.issuer), Some(&token.access_token)).await;
}

#[actix_web::test]
async fn unknown_kid_is_401() {
    let k = keys();
    let token = sign_raw(&k.seed, "admin-2", &claims(600));
    assert_eq!(
        verifier_for(&k.issuer).verify(&token).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert_unauthenticated(verifier_for(&k.issuer), Some(&token)).await;
}

#[actix_web::test]
async fn tampered_payload_is_401() {
    let k = keys();
    let token = k
        .issuer
        .issue("user-1", "1310100001", &[Role::BusinessStaff], None)
        .unwrap();
    let parts: Vec<&str> = token.access_token.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["tenant"] = "2710000002".into();
    payload["roles"] = serde_json::json!(["system_admin"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    assert_eq!(
        verifier_for(&k.issuer).verify(&forged).await.unwrap_err(),
        AuthError::BadSignature
    );
    assert_unauthenticated(verifier_for(&k.issuer), Some(&forged)).await;
}

#[actix_web::test]
async fn alg_none_token_is_401() {
    let k = keys();
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": KID});
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(600)).unwrap()),
    );
    assert_eq!(
        verifier_for(&k.issuer).verify(&token).await.unwrap_err(),
        AuthError::WrongAlgorithm
    );
    assert_unauthenticated(verifier_for(&k.issuer), Some(&token)).await;
}

#[actix_web::test]
async fn hs256_token_is_401() {
    let k = keys();
    // The classic confusion: HMAC keyed with the (public) verification key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(KID.into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(600),
        &EncodingKey::from_secret(&k.issuer.public_key()),
    )
    .unwrap();
    assert_eq!(
        verifier_for(&k.issuer).verify(&token).await.unwrap_err(),
        AuthError::WrongAlgorithm
    );
    assert_unauthenticated(verifier_for(&k.issuer), Some(&token)).await;
}

#[actix_web::test]
async fn wrong_issuer_or_audience_is_401() {
    let k = keys();
    let mut other_aud = claims(600);
    other_aud.aud = "someone-else".into();
    let token = sign_raw(&k.seed, KID, &other_aud);
    assert!(matches!(
        verifier_for(&k.issuer).verify(&token).await,
        Err(AuthError::Invalid(_))
    ));
    assert_unauthenticated(verifier_for(&k.issuer), Some(&token)).await;

    let mut other_iss = claims(600);
    other_iss.iss = "evil".into();
    let token = sign_raw(&k.seed, KID, &other_iss);
    assert!(matches!(
        verifier_for(&k.issuer).verify(&token).await,
        Err(AuthError::Invalid(_))
    ));
}

#[actix_web::test]
async fn garbage_is_401() {
    let k = keys();
    for token in ["abc", "a.b", "a.b.c.d", "!!.??.##"] {
        assert_eq!(
            verifier_for(&k.issuer).verify(token).await.unwrap_err(),
            AuthError::Malformed,
            "{token}"
        );
    }
    assert_unauthenticated(verifier_for(&k.issuer), Some("abc")).await;
}

#[actix_web::test]
async fn wrong_role_is_403() {
    let k = keys();
    let token = k
        .issuer
        .issue("user-1", "1310100001", &[Role::BusinessStaff], None)
        .unwrap();
    let (status, _, body) = call(
        verifier_for(&k.issuer),
        "/v1/admin",
        Some(&token.access_token),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "forbidden");

    let admin = k
        .issuer
        .issue("user-2", "1310100001", &[Role::SystemAdmin], None)
        .unwrap();
    let (status, _, _) = call(
        verifier_for(&k.issuer),
        "/v1/admin",
        Some(&admin.access_token),
    )
    .await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn settings_without_jwks_trust_the_signing_key() {
    let defaults = chukan_config::Settings::load_with(None, Vec::new()).unwrap();
    let issuer = TokenIssuer::from_settings(&defaults.auth).unwrap();
    let verifier = TokenVerifier::from_settings(&defaults.auth).unwrap();
    let token = issuer.issue("u", "t", &[Role::SystemClient], None).unwrap();
    let claims = verifier.verify(&token.access_token).await.unwrap();
    assert_eq!(claims.iss, defaults.auth.issuer);
    assert_eq!(claims.aud, defaults.auth.audience);
}

#[actix_web::test]
async fn jwks_is_fetched_on_unknown_kid_and_rate_limited() {
    let k = keys();
    let jwks = k.issuer.jwks();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert_eq!(jwks["keys"][0]["use"], "sig");
    assert_eq!(jwks["keys"][0]["kid"], KID);

    let fetches = Arc::new(AtomicUsize::new(0));
    let served = (jwks.clone(), fetches.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (jwks, fetches) = served.clone();
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { HttpResponse::Ok().json(jwks) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let mut settings = chukan_config::Settings::load_with(None, Vec::new())
        .unwrap()
        .auth;
    settings.issuer = ISS.into();
    settings.audience = AUD.into();
    settings.jwks_url = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let verifier = TokenVerifier::from_settings(&settings).unwrap();

    let token = k
        .issuer
        .issue("u", "t", &[Role::BusinessStaff], None)
        .unwrap();
    verifier.verify(&token.access_token).await.unwrap();
    verifier.verify(&token.access_token).await.unwrap();
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "known kid needs no refetch"
    );

    // An unknown kid right after a fetch does not hit admin again.
    let stranger = sign_raw(&k.seed, "admin-9", &claims(600));
    assert_eq!(
        verifier.verify(&stranger).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert_eq!(
        verifier.verify(&stranger).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    handle.stop(true).await;
}
