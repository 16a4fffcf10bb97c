//! JWT issue and verification, roles, the actix extractor and JWKS.
//!
//! Tokens are EdDSA (Ed25519) JWTs with a `kid`. Admin issues them ([`TokenIssuer`]) and
//! publishes its keys as a JWKS; every service checks them with [`TokenVerifier`] and reads
//! the caller through the [`Caller`] extractor.

mod claims;
mod extractor;
mod issuer;
mod verifier;

pub use claims::{Claims, Role};
pub use extractor::{Caller, gate};
pub use issuer::{IssuedToken, TokenIssuer};
pub use verifier::TokenVerifier;

/// Why a token was not issued or not accepted. Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token has expired")]
    Expired,
    #[error("token is signed with an unknown key")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("token is not acceptable: {0}")]
    Invalid(String),
    #[error("auth is misconfigured: {0}")]
    Config(String),
}
