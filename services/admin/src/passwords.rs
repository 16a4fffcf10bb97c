//! Password hashing (argon2id) and system-client secrets (SHA-256).
//!
//! Hashing is deliberately slow (tens of milliseconds), so the async wrappers run it on the
//! blocking pool and never inside a database transaction.

use std::sync::OnceLock;

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes: bounds the work one request can ask for.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest password a user may set, in characters (4 bytes each at most: under the byte cap).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Why a password is refused; the texts are shown to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("パスワードは12文字以上で指定してください。")]
    TooShort,
    #[error("パスワードが長すぎます（256文字以内）。")]
    TooLong,
}

/// Checks the password policy (length only: long passphrases beat composition rules).
pub fn check_policy(password: &str) -> Result<(), WeakPassword> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    // Counted in characters, as the document's maxLength; 256 characters never exceed the
    // byte cap the login path applies before hashing.
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(WeakPassword::TooLong);
    }
    Ok(())
}

/// argon2id (v19, m = 19 MiB, t = 2, p = 1: the crate's defaults, OWASP's recommendation)
/// with a random salt, as a PHC string.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

/// Whether `password` matches the PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the user does not exist so that an
/// unknown user id takes as long to refuse as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        // Hashing cannot fail for a short ASCII input and a generated salt; an empty string
        // would still be a safe dummy (it never parses, so it never matches).
        hash(&hex::encode(random)).unwrap_or_default()
    })
}

/// [`hash`] on the blocking pool.
pub async fn hash_blocking(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash(&password)).await?
}

/// [`verify`] on the blocking pool; `None` as the hash verifies against [`dummy_hash`] and
/// is always false.
pub async fn verify_blocking(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&password, &phc),
        None => {
            let _ = verify(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A new client secret: 32 random bytes, hex (64 characters). Shown to the caller once.
pub fn new_client_secret() -> String {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    hex::encode(secret)
}

/// The random part of a client id: 16 bytes, hex.
pub fn new_client_suffix() -> String {
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    hex::encode(id)
}

/// SHA-256 of a client secret. The secret has 256 bits of entropy, so a fast hash is
/// enough: nobody can brute-force it from the hash, unlike a human-chosen password.
pub fn client_secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(verify("correct horse battery", &b));
        assert!(!verify("correct horse battery!", &a));
        assert!(!verify("", &a));
    }

    #[test]
    fn malformed_hashes_never_match() {
        assert!(!verify("anything", ""));
        assert!(!verify("anything", "$argon2id$garbage"));
        assert!(!verify("anything", "plaintext"));
    }

    #[test]
    fn the_dummy_hash_is_a_real_hash_no_password_matches() {
        let dummy = dummy_hash();
        assert!(dummy.starts_with("$argon2id$"));
        assert!(!verify("", dummy));
        assert!(!verify("correct horse battery", dummy));
    }

    #[test]
    fn policy_counts_characters_not_bytes() {
        assert_eq!(check_policy("short"), Err(WeakPassword::TooShort));
        assert_eq!(check_policy("elevenchars"), Err(WeakPassword::TooShort));
        assert!(check_policy("twelve chars").is_ok());
        // 12 Japanese characters are 36 bytes but 12 characters: accepted.
        assert!(check_policy("あいうえおかきくけこさし").is_ok());
        assert!(check_policy("あいうえおかきくけこさ").is_err());
        assert_eq!(
            check_policy(&"x".repeat(MAX_PASSWORD_CHARS + 1)),
            Err(WeakPassword::TooLong)
        );
    }

    #[tokio::test]
    async fn blocking_wrappers_agree_with_the_direct_functions() {
        let h = hash_blocking("a long enough pw".into()).await.unwrap();
        assert!(verify_blocking("a long enough pw".into(), Some(h.clone())).await);
        assert!(!verify_blocking("another password".into(), Some(h)).await);
        assert!(!verify_blocking("a long enough pw".into(), None).await);
    }

    #[test]
    fn client_secrets_are_random_and_compared_in_constant_time() {
        let s1 = new_client_secret();
        let s2 = new_client_secret();
        assert_eq!(s1.len(), 64);
        assert_ne!(s1, s2);
        let h = client_secret_hash(&s1);
        assert_eq!(h.len(), 32);
        assert!(constant_time_eq(&h, &client_secret_hash(&s1)));
        assert!(!constant_time_eq(&h, &client_secret_hash(&s2)));
        assert!(!constant_time_eq(&h, &h[..31]));
        assert_eq!(new_client_suffix().len(), 32);
    }
}
