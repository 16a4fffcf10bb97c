//! AES-256-GCM envelopes: the KEK wraps tenant keys, tenant data keys seal values.

use std::sync::Arc;

use aes_gcm::{
    Aes256Gcm, Key, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use hmac::{Hmac, Mac};
use rand::{RngCore, rngs::OsRng};
use secrecy::ExposeSecret;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{CryptoError, decode_key, random_key};

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;

/// Key-encryption key: wraps every tenant's keys, never touches data itself.
#[derive(Clone)]
pub struct Kek(Arc<Aes256Gcm>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

impl Kek {
    /// A KEK from standard base64 of exactly 32 bytes.
    pub fn from_base64(secret: &str) -> Result<Kek, CryptoError> {
        let key = decode_key::<32>(secret)?;
        Ok(Kek(Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(
            key.as_ref(),
        )))))
    }

    /// The KEK named by `crypto.kek`.
    pub fn from_settings(s: &chukan_config::CryptoSettings) -> Result<Kek, CryptoError> {
        Kek::from_base64(s.kek.expose_secret())
    }

    /// `nonce || ciphertext+tag` of a 32-byte key, bound to `aad`.
    pub(crate) fn wrap(&self, key: &[u8; 32], aad: &[u8]) -> Vec<u8> {
        let nonce = random_nonce();
        let sealed = seal(&self.0, &nonce, key, aad);
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub(crate) fn unwrap_key(
        &self,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if wrapped.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let plain = Zeroizing::new(open(&self.0, nonce, sealed, aad)?);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }
}

/// One tenant's unwrapped keys: a data key for sealing values and an index key for
/// blind indexes. Cheap to share behind an `Arc`.
pub struct TenantKeys {
    kid: String,
    data: Aes256Gcm,
    /// HMAC already keyed with the index key: cloning it skips the key schedule per index.
    index_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TenantKeys {
    pub(crate) fn from_parts(kid: String, data_key: &[u8; 32], index_key: &[u8; 32]) -> Self {
        TenantKeys {
            kid,
            data: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key)),
            index_mac: <Hmac<Sha256> as Mac>::new_from_slice(index_key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")),
        }
    }

    /// Fresh random keys under a new key id (the vault stores them; tests use them bare).
    pub fn generate() -> Self {
        Self::from_parts(new_kid(), &random_key(), &random_key())
    }

    /// Key id written in front of every ciphertext sealed with these keys.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `kid_len(u8) || kid || nonce(12) || AES-256-GCM ciphertext+tag`, bound to `aad`
    /// (typically the table, column and row id, so a value cannot be moved elsewhere).
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = random_nonce();
        let sealed = seal(&self.data, &nonce, plaintext, aad);
        let kid = self.kid.as_bytes();
        let mut out = Vec::with_capacity(1 + kid.len() + NONCE_LEN + sealed.len());
        // kid fits a byte: new_kid() makes 19 bytes and the vault refuses stored ones over 255.
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a blob from [`TenantKeys::encrypt`]; fails on another key, another `aad` or
    /// any altered byte.
    pub fn decrypt(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&kid_len, rest) = blob.split_first().ok_or(CryptoError::Malformed)?;
        let kid_len = usize::from(kid_len);
        if rest.len() < kid_len + NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (kid, rest) = rest.split_at(kid_len);
        if kid != self.kid.as_bytes() {
            return Err(CryptoError::WrongKey {
                expected: self.kid.clone(),
                found: String::from_utf8_lossy(kid).into_owned(),
            });
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        open(&self.data, nonce, sealed, aad)
    }

    /// HMAC-SHA256(index key, value): equal values give equal indexes within a tenant,
    /// unrelated ones across tenants, and the value cannot be recovered from it.
    pub fn blind_index(&self, value: &str) -> Vec<u8> {
        let mut mac = self.index_mac.clone();
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// A key id that names no tenant: `dk-` and 16 random hex digits.
pub(crate) fn new_kid() -> String {
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("dk-{hex}")
}

/// A fresh 96-bit nonce from the thread's CSPRNG (ChaCha, seeded and periodically reseeded
/// from the OS): random nonces under one key stay far below the collision bound for the
/// volumes a tenant seals, and bulk sealing does not pay a system call per value.
pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

pub(crate) fn seal(cipher: &Aes256Gcm, nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    match cipher.encrypt(Nonce::from_slice(nonce), Payload { msg, aad }) {
        Ok(sealed) => sealed,
        // AES-GCM refuses only messages over 64 GiB; no caller holds such a value in memory.
        Err(_) => unreachable!("AES-GCM plaintext beyond its length limit"),
    }
}

pub(crate) fn open(
    cipher: &Aes256Gcm,
    nonce: &[u8],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;

    #[test]
    fn round_trip() {
        let keys = TenantKeys::generate();
        let blob = keys.encrypt(b"1234567890", b"code.links:42");
        assert_eq!(blob[0] as usize, keys.kid().len());
        assert_eq!(&blob[1..1 + keys.kid().len()], keys.kid().as_bytes());
        assert!(!blob.windows(10).any(|w| w == b"1234567890"));
        assert_eq!(
            keys.decrypt(&blob, b"code.links:42").unwrap(),
            b"1234567890"
        );
    }

    #[test]
    fn nonces_differ_between_encryptions() {
        let keys = TenantKeys::generate();
        assert_ne!(keys.encrypt(b"same", b""), keys.encrypt(b"same", b""));
    }

    #[test]
    fn any_flipped_byte_fails() {
        let keys = TenantKeys::generate();
        let blob = keys.encrypt(b"secret value", b"aad");
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            assert!(keys.decrypt(&tampered, b"aad").is_err(), "byte {i}");
        }
        assert!(matches!(
            keys.decrypt(&blob[..blob.len() - 1], b"aad"),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            keys.decrypt(&[], b"aad"),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(
            keys.decrypt(&blob[..5], b"aad"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn wrong_aad_fails() {
        let keys = TenantKeys::generate();
        let blob = keys.encrypt(b"secret", b"row-1");
        assert!(matches!(
            keys.decrypt(&blob, b"row-2"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn other_tenants_keys_fail() {
        let a = TenantKeys::generate();
        let b = TenantKeys::generate();
        let blob = a.encrypt(b"secret", b"");
        assert!(matches!(
            b.decrypt(&blob, b""),
            Err(CryptoError::WrongKey { .. })
        ));
        // Same kid but another key (a forged header) still fails authentication.
        let forged = TenantKeys::from_parts(a.kid().to_owned(), &[7u8; 32], &[8u8; 32]);
        assert!(matches!(
            forged.decrypt(&blob, b""),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn blind_index_is_deterministic_per_tenant_and_differs_across_tenants() {
        let a = TenantKeys::generate();
        let b = TenantKeys::generate();
        assert_eq!(a.blind_index("0001"), a.blind_index("0001"));
        assert_eq!(a.blind_index("0001").len(), 32);
        assert_ne!(a.blind_index("0001"), a.blind_index("0002"));
        assert_ne!(a.blind_index("0001"), b.blind_index("0001"));
    }

    #[test]
    fn kek_of_wrong_length_is_refused() {
        assert!(matches!(
            Kek::from_base64(&STANDARD.encode([0u8; 31])),
            Err(CryptoError::BadKeyLength {
                expected: 32,
                actual: 31
            })
        ));
        assert!(Kek::from_base64(&STANDARD.encode([0u8; 33])).is_err());
        assert!(Kek::from_base64("").is_err());
        assert!(Kek::from_base64(&crate::generate_key_base64()).is_ok());
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_context() {
        let kek = Kek::from_base64(&crate::generate_key_base64()).unwrap();
        let key = [5u8; 32];
        let wrapped = kek.wrap(&key, b"tenant-a");
        assert!(!wrapped.windows(32).any(|w| w == key));
        assert_eq!(*kek.unwrap_key(&wrapped, b"tenant-a").unwrap(), key);
        assert!(kek.unwrap_key(&wrapped, b"tenant-b").is_err());
        let other = Kek::from_base64(&crate::generate_key_base64()).unwrap();
        assert!(other.unwrap_key(&wrapped, b"tenant-a").is_err());
    }

    #[test]
    fn debug_output_hides_keys() {
        let kek = Kek::from_base64(&STANDARD.encode([0x41u8; 32])).unwrap();
        assert_eq!(format!("{kek:?}"), "Kek([redacted])");
        let keys = TenantKeys::generate();
        assert!(format!("{keys:?}").contains(keys.kid()));
    }
}
