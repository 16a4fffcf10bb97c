//! Envelope encryption with per-tenant keys, blind indexes and Ed25519 signatures.
//!
//! Each tenant (情報保有機関) has a data key (AES-256-GCM) and an index key (HMAC-SHA256),
//! both wrapped by the process-wide key-encryption key ([`Kek`]) and stored in the owning
//! service's `{schema}.tenant_keys`. [`Vault`] loads, creates and caches them. Published
//! messages kept for a failover's replay are sealed by [`OutboxSeal`], under a KEK-derived key.

mod envelope;
mod outbox_seal;
mod signature;
mod vault;

use base64::{Engine, engine::general_purpose::STANDARD};
use rand::{RngCore, rngs::OsRng};

pub use envelope::{Kek, TenantKeys};
pub use outbox_seal::OutboxSeal;
pub use signature::{SignatureError, Signer, Verifiers};
pub use vault::{Vault, VaultError};

/// Why a key could not be read or a ciphertext could not be opened.
///
/// Messages never carry key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key is not valid base64")]
    BadBase64,
    #[error("key must be {expected} bytes, got {actual}")]
    BadKeyLength { expected: usize, actual: usize },
    #[error("public key is not a valid Ed25519 key")]
    BadPublicKey,
    #[error("verifier entry {index} is not of the form \"kid=base64\"")]
    BadEntry { index: usize },
    #[error("ciphertext is truncated or malformed")]
    Malformed,
    #[error("ciphertext was sealed under key {found:?}, not {expected:?}")]
    WrongKey { expected: String, found: String },
    #[error("ciphertext failed authentication (tampered, wrong key or wrong context)")]
    Decrypt,
}

/// 32 random bytes as standard base64: a fresh KEK or Ed25519 seed.
pub fn generate_key_base64() -> String {
    STANDARD.encode(random_key())
}

/// `len` random bytes as standard base64 (the console's cookie key takes 64).
pub fn generate_bytes_base64(len: usize) -> String {
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; len]);
    OsRng.fill_bytes(&mut bytes);
    STANDARD.encode(bytes.as_slice())
}

/// Decodes standard base64 into exactly `N` bytes.
pub(crate) fn decode_key<const N: usize>(
    b64: &str,
) -> Result<zeroize::Zeroizing<[u8; N]>, CryptoError> {
    let raw = zeroize::Zeroizing::new(
        STANDARD
            .decode(b64.trim())
            .map_err(|_| CryptoError::BadBase64)?,
    );
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    if raw.len() != N {
        return Err(CryptoError::BadKeyLength {
            expected: N,
            actual: raw.len(),
        });
    }
    out.copy_from_slice(&raw);
    Ok(out)
}

pub(crate) fn random_key() -> zeroize::Zeroizing<[u8; 32]> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_32_random_bytes() {
        let a = generate_key_base64();
        let b = generate_key_base64();
        assert_ne!(a, b);
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 32);
    }

    #[test]
    fn generated_byte_strings_have_the_length_asked_for() {
        let a = generate_bytes_base64(64);
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 64);
        assert_ne!(a, generate_bytes_base64(64));
    }

    #[test]
    fn decode_key_checks_length_and_alphabet() {
        assert!(matches!(
            decode_key::<32>(&STANDARD.encode([1u8; 16])),
            Err(CryptoError::BadKeyLength {
                expected: 32,
                actual: 16
            })
        ));
        assert!(matches!(
            decode_key::<32>("not base64!"),
            Err(CryptoError::BadBase64)
        ));
        assert_eq!(
            *decode_key::<4>(&STANDARD.encode([9u8; 4])).unwrap(),
            [9u8; 4]
        );
    }
}
