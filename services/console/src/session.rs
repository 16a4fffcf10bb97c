//! The signed-in staff member's session: their API token and CSRF secret, sealed (AES-GCM)
//! into one cookie, so any console replica with the same key serves any request and no
//! server-side store is needed.
//!
//! The cookie is `__Host-` prefixed (Secure, Path=/, no Domain), HttpOnly and
//! SameSite=Strict. A session ends at the first of: its token's expiry, `idle` without a
//! request, or logout.

use std::{future::Future, pin::Pin, time::Duration};

use actix_web::{
    FromRequest, HttpRequest,
    cookie::{Cookie, CookieJar, Key, SameSite, time::Duration as CookieDuration},
    dev::Payload,
    web,
};
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::{Console, pages::Failure};

/// The cookie's name; `__Host-` makes the browser insist on Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-chukan-session";

/// Seals and opens session cookies.
pub struct Sealer {
    key: Key,
    idle: Duration,
}

/// What the sealed cookie holds. Nothing here is shown in a URL or written to a log.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Sealed {
    /// The API access token of the staff member.
    token: String,
    /// CSRF secret every form and htmx request must echo.
    csrf: String,
    tenant: String,
    /// The user's id (the token's subject).
    user: String,
    /// The ユーザID they signed in with, to show on every page.
    login: String,
    roles: Vec<String>,
    /// When the token expires (Unix seconds): the session's hard end.
    expires: i64,
    /// The last request (Unix seconds), for the idle timeout.
    seen: i64,
}

/// A signed-in staff member, for one request.
pub struct Staff {
    sealed: Sealed,
    /// The session cookie renewed with this request's time (sent back with the answer).
    pub renewed: Cookie<'static>,
}

impl Sealer {
    pub fn from_base64(key: &str, idle: Duration) -> anyhow::Result<Sealer> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| anyhow::anyhow!("not base64"))?;
        let key = Key::try_from(bytes.as_slice())
            .map_err(|_| anyhow::anyhow!("must be base64 of 64 bytes"))?;
        Ok(Sealer { key, idle })
    }

    fn seal(&self, sealed: &Sealed) -> Cookie<'static> {
        let value = serde_json::to_string(sealed).unwrap_or_default();
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(base_cookie(value));
        jar.get(COOKIE)
            .cloned()
            .unwrap_or_else(|| base_cookie(String::new()))
    }

    fn open(&self, req: &HttpRequest, now: i64) -> Result<Sealed, Ended> {
        let cookie = req.cookie(COOKIE).ok_or(Ended::Absent)?;
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        let plain = jar.private(&self.key).get(COOKIE).ok_or(Ended::Absent)?;
        let sealed: Sealed = serde_json::from_str(plain.value()).map_err(|_| Ended::Absent)?;
        let idle = i64::try_from(self.idle.as_secs()).unwrap_or(i64::MAX);
        if now >= sealed.expires || now.saturating_sub(sealed.seen) >= idle {
            return Err(Ended::Expired);
        }
        Ok(sealed)
    }

    /// A new session for a token the API just issued.
    pub fn start(
        &self,
        token: String,
        login: &str,
        expires_in: i64,
        now: i64,
    ) -> Result<Staff, Failure> {
        let claims = Claims::peek(&token).ok_or_else(|| {
            Failure::internal(
                "token",
                anyhow::anyhow!("the API's token has no readable claims"),
            )
        })?;
        let mut csrf = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut csrf);
        let sealed = Sealed {
            token,
            csrf: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(csrf),
            tenant: claims.tenant,
            user: claims.sub,
            login: login.to_string(),
            roles: claims.roles,
            expires: claims.exp.min(now.saturating_add(expires_in)),
            seen: now,
        };
        Ok(Staff {
            renewed: self.seal(&sealed),
            sealed,
        })
    }

    /// The cookie that ends a session in the browser.
    pub fn removal() -> Cookie<'static> {
        let mut c = base_cookie(String::new());
        c.set_max_age(CookieDuration::ZERO);
        c
    }
}

fn base_cookie(value: String) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish()
}

/// Why there is no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// None was ever started here (or its cookie is not ours).
    Absent,
    /// Idle too long, or its token expired.
    Expired,
}

impl Staff {
    pub fn token(&self) -> &str {
        &self.sealed.token
    }
    pub fn csrf(&self) -> &str {
        &self.sealed.csrf
    }
    pub fn tenant(&self) -> &str {
        &self.sealed.tenant
    }
    /// The staff member's user id (the token's subject).
    pub fn user_id(&self) -> &str {
        &self.sealed.user
    }
    /// The ユーザID they signed in with.
    pub fn login(&self) -> &str {
        &self.sealed.login
    }
    pub fn has_role(&self, role: &str) -> bool {
        self.sealed.roles.iter().any(|r| r == role)
    }
    /// When the session ends at the latest (Unix seconds).
    pub fn expires(&self) -> i64 {
        self.sealed.expires
    }

    /// Whether `given` is this session's CSRF secret (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let (a, b) = (given.as_bytes(), self.sealed.csrf.as_bytes());
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

impl FromRequest for Staff {
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<Staff, Failure>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = (|| {
            let console = req
                .app_data::<web::Data<Console>>()
                .ok_or_else(|| Failure::internal("state", anyhow::anyhow!("no console state")))?;
            let now = chrono::Utc::now().timestamp();
            let mut sealed = console
                .sessions
                .open(req, now)
                .map_err(Failure::SignedOut)?;
            sealed.seen = now;
            Ok(Staff {
                renewed: console.sessions.seal(&sealed),
                sealed,
            })
        })();
        Box::pin(async move { result })
    }
}

/// The claims the console reads from its own token, unverified: only to label the page and
/// choose which screens to offer. The API verifies the token on every call.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    roles: Vec<String>,
    exp: i64,
}

impl Claims {
    fn peek(token: &str) -> Option<Claims> {
        let payload = token.split('.').nth(1)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use actix_web::test::TestRequest;

    fn sealer() -> Sealer {
        Sealer::from_base64(
            &base64::engine::general_purpose::STANDARD.encode([7u8; 64]),
            Duration::from_secs(600),
        )
        .unwrap()
    }

    fn token(exp: i64) -> String {
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.sig",
            enc(serde_json::json!({"alg": "EdDSA"})),
            enc(
                serde_json::json!({"sub": "u1", "tenant": "1310010000000001", "roles": ["business_staff"], "exp": exp})
            )
        )
    }

    #[test]
    fn a_sealed_session_opens_until_idle_or_expiry_and_is_unreadable() {
        let s = sealer();
        let staff = s.start(token(10_000), "staff1", 900, 1_000).unwrap();
        assert_eq!(staff.tenant(), "1310010000000001");
        assert_eq!(
            staff.expires(),
            1_900,
            "the earlier of exp and now + expires_in"
        );
        let cookie = staff.renewed.clone();
        assert!(
            !cookie.value().contains("business_staff"),
            "sealed, not just encoded"
        );
        assert!(cookie.http_only() == Some(true) && cookie.secure() == Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        let req = TestRequest::default().cookie(cookie).to_http_request();
        assert!(s.open(&req, 1_599).is_ok());
        assert_eq!(
            s.open(&req, 1_600).unwrap_err(),
            Ended::Expired,
            "idle for 600 s"
        );
        let late = Sealed {
            seen: 1_850,
            ..s.open(&req, 1_000).unwrap()
        };
        let req = TestRequest::default()
            .cookie(s.seal(&late))
            .to_http_request();
        assert_eq!(
            s.open(&req, 1_900).unwrap_err(),
            Ended::Expired,
            "the token's end"
        );
    }

    #[test]
    fn a_forged_or_foreign_cookie_is_no_session() {
        let s = sealer();
        let req = TestRequest::default()
            .cookie(base_cookie(r#"{"token":"x"}"#.into()))
            .to_http_request();
        assert_eq!(s.open(&req, 1).unwrap_err(), Ended::Absent);
        let other = Sealer::from_base64(
            &base64::engine::general_purpose::STANDARD.encode([8u8; 64]),
            Duration::from_secs(600),
        )
        .unwrap();
        let staff = other.start(token(10_000), "staff1", 900, 1_000).unwrap();
        let req = TestRequest::default()
            .cookie(staff.renewed)
            .to_http_request();
        assert_eq!(s.open(&req, 1_001).unwrap_err(), Ended::Absent);
    }

    #[test]
    fn csrf_is_compared_whole() {
        let staff = sealer().start(token(10_000), "staff1", 900, 1_000).unwrap();
        let good = staff.csrf().to_string();
        assert!(staff.csrf_matches(&good));
        assert!(!staff.csrf_matches(&good[..good.len() - 1]));
        assert!(!staff.csrf_matches(""));
    }
}
