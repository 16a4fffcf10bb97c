//! Issuing tokens (admin only) and publishing the public key as a JWKS.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chukan_crypto::Signer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;

use crate::{AuthError, Claims, Role};

pub struct TokenIssuer {
    signer: Signer,
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.signer.kid())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

impl TokenIssuer {
    pub fn new(
        signer_seed_b64: &str,
        kid: &str,
        issuer: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> Result<Self, AuthError> {
        let signer = Signer::from_seed_base64(kid, signer_seed_b64)
            .map_err(|e| AuthError::Config(format!("auth.signing_key: {e}")))?;
        if ttl_secs == 0 || i64::try_from(ttl_secs).is_err() {
            return Err(AuthError::Config("auth.token_ttl_secs out of range".into()));
        }
        let key = EncodingKey::from_ed_der(&signer.seed_der_pkcs8());
        Ok(TokenIssuer {
            signer,
            key,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs,
        })
    }

    pub fn from_settings(s: &chukan_config::AuthSettings) -> Result<Self, AuthError> {
        Self::new(
            s.signing_key.expose_secret(),
            &s.signing_kid,
            &s.issuer,
            &s.audience,
            s.token_ttl_secs,
        )
    }

    /// A signed access token for `sub` in `tenant`, valid for the configured lifetime.
    pub fn issue(
        &self,
        sub: &str,
        tenant: &str,
        roles: &[Role],
        dept: Option<&str>,
    ) -> Result<IssuedToken, AuthError> {
        let now = chrono::Utc::now().timestamp();
        // new() checked that the lifetime fits an i64.
        let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: sub.to_owned(),
            tenant: tenant.to_owned(),
            roles: roles.to_vec(),
            dept: dept.map(str::to_owned),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(ttl),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        if !claims.realm_is_consistent() {
            return Err(AuthError::Invalid(
                "a token is either an organisation's or the platform's".into(),
            ));
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signer.kid().to_owned());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| AuthError::Config(format!("token signing failed: {e}")))?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.ttl_secs,
        })
    }

    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// The public signing key as an Ed25519 verifying key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.verifying_key_bytes()
    }

    /// The JWKS document (RFC 7517/8037) admin serves for the other services.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(self.signer.verifying_key_bytes()),
                "kid": self.signer.kid(),
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }
}
