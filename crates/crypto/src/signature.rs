//! Ed25519 signatures with key ids: the relay ↔ NWS envelope, provision permits, tree heads.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use crate::{CryptoError, decode_key};

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no public key is known for key id {0:?}")]
    UnknownKey(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// How a receiver answers a message whose signature it does not accept (relay and the NWS
/// simulator answer alike, so a sender sees one vocabulary).
impl From<SignatureError> for chukan_core::Problem {
    fn from(err: SignatureError) -> Self {
        match err {
            SignatureError::UnknownKey(_) => chukan_core::Problem::new(
                401,
                "unknown-key",
                "Unknown key",
                "署名鍵IDが登録されていません。",
                "登録済みの鍵で署名して再度送信してください。",
            ),
            SignatureError::BadSignature => chukan_core::Problem::new(
                401,
                "bad-signature",
                "Bad signature",
                "署名を検証できません。",
                "署名対象と鍵を確認して再度送信してください。",
            ),
        }
    }
}

/// An Ed25519 signing key with the key id peers know it by.
pub struct Signer {
    kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): SEQUENCE { version 0,
/// AlgorithmIdentifier id-Ed25519, OCTET STRING { OCTET STRING seed } }.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl Signer {
    /// A signer from a base64 32-byte seed (what `generate_key_base64` makes).
    pub fn from_seed_base64(kid: &str, seed_b64: &str) -> Result<Signer, CryptoError> {
        let seed = decode_key::<32>(seed_b64)?;
        Ok(Signer {
            kid: kid.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(msg).to_bytes()
    }

    /// The public key as standard base64, the form `Verifiers::add_base64` reads.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.verifying_key_bytes())
    }

    pub fn verifying_key_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The private key as PKCS#8 v1 DER, e.g. for `jsonwebtoken::EncodingKey::from_ed_der`.
    /// Handle as a secret.
    pub fn seed_der_pkcs8(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(self.key.as_bytes());
        der
    }
}

/// Public keys of peers by key id.
#[derive(Clone, Default, Debug)]
pub struct Verifiers {
    keys: HashMap<String, VerifyingKey>,
}

impl Verifiers {
    /// Trusts `public_b64` (standard base64, 32 bytes) under `kid`, replacing any earlier key.
    pub fn add_base64(&mut self, kid: &str, public_b64: &str) -> Result<(), CryptoError> {
        let bytes = decode_key::<32>(public_b64)?;
        self.add_bytes(kid, &bytes)
    }

    /// Trusts a raw 32-byte public key under `kid`.
    pub fn add_bytes(&mut self, kid: &str, public: &[u8; 32]) -> Result<(), CryptoError> {
        let key = VerifyingKey::from_bytes(public).map_err(|_| CryptoError::BadPublicKey)?;
        self.keys.insert(kid.to_owned(), key);
        Ok(())
    }

    /// Reads `"kid=base64"` entries, as in `relay.nws_public_keys`.
    pub fn parse_entries(entries: &[String]) -> Result<Verifiers, CryptoError> {
        let mut verifiers = Verifiers::default();
        for (index, entry) in entries.iter().enumerate() {
            let (kid, key) = entry
                .split_once('=')
                .filter(|(kid, _)| !kid.trim().is_empty())
                .ok_or(CryptoError::BadEntry { index })?;
            verifiers.add_base64(kid.trim(), key.trim())?;
        }
        Ok(verifiers)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Checks `signature` over `msg` with the key named `kid` (strict: no malleable forms).
    pub fn verify(&self, kid: &str, msg: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| SignatureError::UnknownKey(kid.to_owned()))?;
        let signature =
            Signature::from_slice(signature).map_err(|_| SignatureError::BadSignature)?;
        key.verify_strict(msg, &signature)
            .map_err(|_| SignatureError::BadSignature)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_key_base64;

    fn signer(kid: &str) -> Signer {
        Signer::from_seed_base64(kid, &generate_key_base64()).unwrap()
    }

    #[test]
    fn sign_and_verify() {
        let s = signer("nws-1");
        let sig = s.sign(b"envelope");
        let v = Verifiers::parse_entries(&[format!("nws-1={}", s.public_key_base64())]).unwrap();
        assert!(v.contains("nws-1"));
        v.verify("nws-1", b"envelope", &sig).unwrap();
    }

    #[test]
    fn unknown_kid_is_refused() {
        let s = signer("nws-1");
        let mut v = Verifiers::default();
        v.add_base64("nws-1", &s.public_key_base64()).unwrap();
        assert_eq!(
            v.verify("nws-2", b"m", &s.sign(b"m")),
            Err(SignatureError::UnknownKey("nws-2".into()))
        );
    }

    #[test]
    fn bad_signatures_are_refused() {
        let s = signer("k");
        let other = signer("k");
        let mut v = Verifiers::default();
        v.add_bytes("k", &s.verifying_key_bytes()).unwrap();
        let sig = s.sign(b"message");
        assert_eq!(
            v.verify("k", b"messagE", &sig),
            Err(SignatureError::BadSignature)
        );
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(
            v.verify("k", b"message", &flipped),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            v.verify("k", b"message", &other.sign(b"message")),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            v.verify("k", b"message", &sig[..63]),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn same_seed_gives_same_key() {
        let seed = generate_key_base64();
        let a = Signer::from_seed_base64("a", &seed).unwrap();
        let b = Signer::from_seed_base64("b", &seed).unwrap();
        assert_eq!(a.public_key_base64(), b.public_key_base64());
        assert_eq!(a.kid(), "a");
    }

    #[test]
    fn pkcs8_der_round_trips_through_dalek() {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let s = signer("k");
        let parsed = SigningKey::from_pkcs8_der(&s.seed_der_pkcs8()).unwrap();
        assert_eq!(parsed.verifying_key().to_bytes(), s.verifying_key_bytes());
    }

    #[test]
    fn malformed_entries_are_refused() {
        assert!(matches!(
            Verifiers::parse_entries(&["no-equals-sign".into()]),
            Err(CryptoError::BadEntry { index: 0 })
        ));
        assert!(Verifiers::parse_entries(&["=abc".into()]).is_err());
        assert!(Verifiers::parse_entries(&["k=short".into()]).is_err());
        assert!(Signer::from_seed_base64("k", "c2hvcnQ=").is_err());
    }
}
