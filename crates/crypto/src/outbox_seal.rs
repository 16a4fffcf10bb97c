//! The seal on published messages kept for a replay after a failover (ADR 0006): a bus
//! message body may carry personal data (an addressee number, a 住民票コード
//! (resident-record code)), which must not stay in the clear for the replay window.

use std::sync::Arc;

use aes_gcm::{Aes256Gcm, Key, KeyInit};
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{
    CryptoError, decode_key,
    envelope::{NONCE_LEN, TAG_LEN, open, random_nonce, seal},
};

/// HKDF `info` of every key this seal derives: names the purpose, so no other use of the KEK
/// can ever share a key with it; the version lets a later format derive apart.
const INFO: &[u8] = b"chukan outbox replay v1";
/// Random bytes in front of each blob that pick its own key (see [`OutboxSeal`]).
const SALT_LEN: usize = 16;

/// AES-256-GCM under keys derived from the KEK by HKDF-SHA256, for the bodies kept in
/// `{schema}.outbox_sent`. A cell and its standby slot share the KEK (escrow), so the
/// promoted cell opens what the failed one sealed.
///
/// Each blob is `salt(16) || nonce(12) || ciphertext+tag`, its key derived from the KEK with
/// its own random salt: every message a cell ever publishes is sealed under one KEK, and
/// random 96-bit nonces under a single key are only safe for about 2³² seals — a busy cell
/// would reach that within its KEK's lifetime. A per-blob key removes the bound for the
/// price of one HMAC per message.
#[derive(Clone)]
pub struct OutboxSeal(Arc<Hkdf<Sha256>>);

impl std::fmt::Debug for OutboxSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxSeal([redacted])")
    }
}

impl OutboxSeal {
    /// The seal of the KEK given as standard base64 of exactly 32 bytes.
    pub fn from_base64(kek: &str) -> Result<OutboxSeal, CryptoError> {
        let kek = decode_key::<32>(kek)?;
        // No extract salt: the KEK is already uniformly random key material.
        Ok(OutboxSeal(Arc::new(Hkdf::<Sha256>::new(
            None,
            kek.as_ref(),
        ))))
    }

    /// The seal of the KEK named by `crypto.kek`.
    pub fn from_settings(s: &chukan_config::CryptoSettings) -> Result<OutboxSeal, CryptoError> {
        OutboxSeal::from_base64(s.kek.expose_secret())
    }

    /// `salt || nonce || ciphertext+tag` of `plain`, bound to `aad` (the outbox passes its
    /// schema and the message id, so a row moved to another schema or id does not open).
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut salt = [0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        self.seal_with(&salt, &random_nonce(), plain, aad)
    }

    /// Opens a blob from [`OutboxSeal::seal`]; fails on another KEK, another `aad` or any
    /// altered byte.
    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < SALT_LEN + NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (salt, rest) = blob.split_at(SALT_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        open(&self.cipher(salt), nonce, sealed, aad)
    }

    fn seal_with(
        &self,
        salt: &[u8; SALT_LEN],
        nonce: &[u8; NONCE_LEN],
        plain: &[u8],
        aad: &[u8],
    ) -> Vec<u8> {
        let sealed = seal(&self.cipher(salt), nonce, plain, aad);
        let mut out = Vec::with_capacity(SALT_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(salt);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The blob key: HKDF-Expand(PRK of the KEK, `INFO || salt`).
    fn cipher(&self, salt: &[u8]) -> Aes256Gcm {
        let mut key = Zeroizing::new([0u8; 32]);
        if self
            .0
            .expand_multi_info(&[INFO, salt], key.as_mut())
            .is_err()
        {
            // HKDF-SHA256 refuses only outputs over 255 × 32 bytes; this asks for 32.
            unreachable!("HKDF-SHA256 output of 32 bytes");
        }
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;
    use crate::generate_key_base64;

    fn seal_of(kek: &[u8; 32]) -> OutboxSeal {
        OutboxSeal::from_base64(&STANDARD.encode(kek)).unwrap()
    }

    #[test]
    fn round_trip_keeps_the_body_out_of_the_blob() {
        let seal = OutboxSeal::from_base64(&generate_key_base64()).unwrap();
        let body = br#"{"addressee":"123456789012"}"#;
        let blob = seal.seal(body, b"provision\x01\x02");
        assert_eq!(blob.len(), SALT_LEN + NONCE_LEN + body.len() + TAG_LEN);
        assert!(!blob.windows(12).any(|w| w == b"123456789012"));
        assert_eq!(seal.open(&blob, b"provision\x01\x02").unwrap(), body);
        // An empty body seals and opens too (events with nothing but ids in headers).
        assert_eq!(
            seal.open(&seal.seal(b"", b"a"), b"a").unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn every_seal_has_its_own_salt_and_nonce() {
        let seal = seal_of(&[3u8; 32]);
        let a = seal.seal(b"same", b"aad");
        let b = seal.seal(b"same", b"aad");
        assert_ne!(a[..SALT_LEN], b[..SALT_LEN]);
        assert_ne!(
            a[SALT_LEN..SALT_LEN + NONCE_LEN],
            b[SALT_LEN..SALT_LEN + NONCE_LEN]
        );
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_aad_fails() {
        let seal = seal_of(&[3u8; 32]);
        let blob = seal.seal(b"body", b"schema-a\x01");
        assert!(matches!(
            seal.open(&blob, b"schema-b\x01"),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            seal.open(&blob, b"schema-a\x02"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn another_keks_seal_fails() {
        let blob = seal_of(&[3u8; 32]).seal(b"body", b"aad");
        assert!(matches!(
            seal_of(&[4u8; 32]).open(&blob, b"aad"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn any_flipped_byte_or_truncation_fails() {
        let seal = seal_of(&[3u8; 32]);
        let blob = seal.seal(b"secret value", b"aad");
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            assert!(seal.open(&tampered, b"aad").is_err(), "byte {i}");
        }
        assert!(matches!(
            seal.open(&blob[..blob.len() - 1], b"aad"),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            seal.open(&blob[..SALT_LEN + NONCE_LEN + TAG_LEN - 1], b"aad"),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(
            seal.open(&[], b"aad"),
            Err(CryptoError::Malformed)
        ));
    }

    /// The standby slot opens what another build sealed: the derivation must never drift.
    /// The expected blob was computed apart from this crate (Python `cryptography`: HKDF-SHA256
    /// with no salt and info `INFO || salt`, then AES-256-GCM), so it is the standard one.
    #[test]
    fn the_derivation_is_fixed() {
        let blob =
            seal_of(&[7u8; 32]).seal_with(&[1u8; SALT_LEN], &[2u8; NONCE_LEN], b"body", b"aad");
        let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "01010101010101010101010101010101020202020202020202020202\
             a024259a9ad602fafc9aecc549c260d961245ed4"
        );
    }

    #[test]
    fn a_kek_of_the_wrong_length_is_refused_and_debug_hides_it() {
        assert!(matches!(
            OutboxSeal::from_base64(&STANDARD.encode([0u8; 31])),
            Err(CryptoError::BadKeyLength {
                expected: 32,
                actual: 31
            })
        ));
        assert!(OutboxSeal::from_base64("not base64!").is_err());
        assert_eq!(
            format!("{:?}", seal_of(&[0x41u8; 32])),
            "OutboxSeal([redacted])"
        );
    }
}
