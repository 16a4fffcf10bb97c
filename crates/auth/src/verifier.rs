//! Checking tokens: EdDSA only, known `kid`, `exp`/`iss`/`aud`.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chukan_crypto::Signer;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};
use secrecy::ExposeSecret;

use crate::{AuthError, Claims};

/// Clock difference tolerated on `exp`; small, as tokens live only minutes.
const LEEWAY_SECS: u64 = 30;
/// Unknown `kid`s could otherwise make every request fetch the JWKS.
const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(10);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Verifies access tokens; share one per process (it is `Send + Sync`).
pub struct TokenVerifier {
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    jwks: Option<JwksSource>,
}

struct JwksSource {
    url: String,
    client: reqwest::Client,
    /// Held across a fetch so concurrent misses fetch once; remembers the last attempt.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("jwks_url", &self.jwks.as_ref().map(|j| &j.url))
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// With `auth.jwks_url` empty, trusts the public half of `auth.signing_key` under
    /// `auth.signing_kid`; otherwise fetches admin's JWKS when a token names an unknown kid.
    pub fn from_settings(s: &chukan_config::AuthSettings) -> Result<Self, AuthError> {
        if s.jwks_url.trim().is_empty() {
            let signer = Signer::from_seed_base64(&s.signing_kid, s.signing_key.expose_secret())
                .map_err(|e| AuthError::Config(format!("auth.signing_key: {e}")))?;
            return Ok(Self::with_static_keys(
                &s.issuer,
                &s.audience,
                vec![(s.signing_kid.clone(), signer.verifying_key_bytes())],
            ));
        }
        // Admin's certificate checked against `auth.jwks_ca_file` when the URL is https.
        let client = chukan_tls::https::client_builder(&chukan_tls::https::ClientTls::jwks(s))
            .map_err(|e| AuthError::Config(format!("{e:#}")))?
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|e| AuthError::Config(format!("JWKS client: {e}")))?;
        Ok(TokenVerifier {
            validation: validation(&s.issuer, &s.audience),
            keys: RwLock::default(),
            jwks: Some(JwksSource {
                url: s.jwks_url.trim().to_owned(),
                client,
                last_attempt: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Trusts exactly `keys` (kid, Ed25519 public key); no JWKS.
    pub fn with_static_keys(issuer: &str, audience: &str, keys: Vec<(String, [u8; 32])>) -> Self {
        let keys = keys
            .into_iter()
            .filter_map(|(kid, public)| Some((kid, decoding_key(&public)?)))
            .collect();
        TokenVerifier {
            validation: validation(issuer, audience),
            keys: RwLock::new(keys),
            jwks: None,
        }
    }

    /// The token's claims if it is an unexpired EdDSA token for our issuer and audience,
    /// signed by a key we trust under the `kid` it names.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let kid = header_kid(token)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refresh(&kid).await;
                self.key(&kid).ok_or(AuthError::UnknownKey)?
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| map_error(e.kind()))?;
        if !claims.realm_is_consistent() {
            return Err(AuthError::Invalid(
                "mixes the organisation and platform realms".into(),
            ));
        }
        Ok(claims)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(kid)
            .cloned()
    }

    /// Re-reads the JWKS, at most once per `JWKS_MIN_INTERVAL`; failures leave the keys as
    /// they were (the token is then refused as signed by an unknown key).
    async fn refresh(&self, kid: &str) {
        let Some(source) = &self.jwks else { return };
        let mut last_attempt = source.last_attempt.lock().await;
        if self.key(kid).is_some() {
            return; // fetched by a concurrent caller while we waited
        }
        if last_attempt.is_some_and(|at| at.elapsed() < JWKS_MIN_INTERVAL) {
            return;
        }
        *last_attempt = Some(Instant::now());
        match fetch_jwks(source).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS refreshed");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
            }
            Err(reason) => tracing::warn!(url = %source.url, %reason, "JWKS fetch failed"),
        }
    }
}

fn validation(issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = LEEWAY_SECS;
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

fn decoding_key(public: &[u8; 32]) -> Option<DecodingKey> {
    // Refuse bytes that are not a curve point now rather than fail every verification later.
    ed25519_dalek::VerifyingKey::from_bytes(public).ok()?;
    DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public)).ok()
}

/// Reads the header ourselves so a foreign `alg` (none, HS256, RS256…) is named as such
/// rather than as a parse error, and so the `kid` is known before any key is chosen.
fn header_kid(token: &str) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| AuthError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
        return Err(AuthError::WrongAlgorithm);
    }
    match header.get("kid").and_then(|k| k.as_str()) {
        Some(kid) if !kid.is_empty() => Ok(kid.to_owned()),
        _ => Err(AuthError::UnknownKey),
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
        ErrorKind::InvalidIssuer => AuthError::Invalid("issuer".into()),
        ErrorKind::InvalidAudience => AuthError::Invalid("audience".into()),
        ErrorKind::MissingRequiredClaim(claim) => AuthError::Invalid(format!("missing {claim}")),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidClaimFormat(_) => AuthError::Malformed,
        other => AuthError::Invalid(format!("{other:?}")),
    }
}

async fn fetch_jwks(source: &JwksSource) -> Result<HashMap<String, DecodingKey>, String> {
    let set: JwkSet = source
        .client
        .get(&source.url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let (Some(kid), AlgorithmParameters::OctetKeyPair(okp)) =
            (&jwk.common.key_id, &jwk.algorithm)
        else {
            continue;
        };
        if okp.curve != EllipticCurve::Ed25519 {
            continue;
        }
        let Ok(raw) = URL_SAFE_NO_PAD.decode(&okp.x) else {
            continue;
        };
        let Ok(public) = <[u8; 32]>::try_from(raw.as_slice()) else {
            continue;
        };
        if let Some(key) = decoding_key(&public) {
            keys.insert(kid.clone(), key);
        }
    }
    Ok(keys)
}
