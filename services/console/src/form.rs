//! Posted forms: every state-changing request carries the session's CSRF secret, as the
//! form's `csrf` field or htmx's `X-CSRF-Token` header, or it changes nothing.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use crate::{pages::Failure, session::Staff};

/// Largest urlencoded form (file uploads are multipart, with their own limit).
const FORM_LIMIT: usize = 256 * 1024;

pub fn config() -> web::PayloadConfig {
    web::PayloadConfig::new(FORM_LIMIT)
}

/// A signed-in staff member's form, its CSRF secret checked.
pub struct Posted<T> {
    pub staff: Staff,
    pub form: T,
    /// Every field as sent, in order (repeated names such as check boxes included).
    pub pairs: Vec<(String, String)>,
}

/// The CSRF secret a request carries: the htmx header, else the form field.
pub fn sent_csrf<'a>(req: &'a HttpRequest, pairs: &'a [(String, String)]) -> Option<&'a str> {
    req.headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            pairs
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.as_str())
        })
}

impl<T: DeserializeOwned + 'static> FromRequest for Posted<T> {
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<Posted<T>, Failure>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let staff = Staff::from_request(&req, &mut Payload::None);
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let staff = staff.await?;
            let body = body.await.map_err(|_| Failure::BadForm)?;
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&body).map_err(|_| Failure::BadForm)?;
            match sent_csrf(&req, &pairs) {
                Some(given) if staff.csrf_matches(given) => {}
                _ => return Err(Failure::Csrf),
            }
            let form = serde_urlencoded::from_bytes(&body).map_err(|_| Failure::BadForm)?;
            Ok(Posted { staff, form, pairs })
        })
    }
}
