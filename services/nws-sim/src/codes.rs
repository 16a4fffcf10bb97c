//! 機関別符号 (per-organisation codes): derived from a keyed person id, so the same resident
//! has a different code at every organisation and codes cannot be linked without the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The simulator's code secret (decoded from `nws_sim.code_secret`).
#[derive(Clone)]
pub struct CodeSecret(Vec<u8>);

impl std::fmt::Debug for CodeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeSecret(***)")
    }
}

impl CodeSecret {
    pub fn new(bytes: Vec<u8>) -> anyhow::Result<Self> {
        anyhow::ensure!(bytes.len() >= 16, "code secret must be at least 16 bytes");
        Ok(Self(bytes))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC takes a key of any length, so this cannot fail; the length is checked in `new`.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The network-internal person id: HMAC(secret, "person|" + 住民票コード).
    pub fn person_id(
        &self,
        resident_record_code: &chukan_core::ids::ResidentRecordCode,
    ) -> Vec<u8> {
        self.mac(&[b"person|", resident_record_code.as_str().as_bytes()])
            .to_vec()
    }

    /// The person's code at `org_code`: uppercase hex of the first 20 bytes of
    /// HMAC(secret, "code|" + org + "|" + hex(person_id)).
    pub fn code_for(&self, org_code: &str, person_id: &[u8]) -> String {
        let mac = self.mac(&[
            b"code|",
            org_code.as_bytes(),
            b"|",
            hex::encode(person_id).as_bytes(),
        ]);
        hex::encode_upper(&mac[..20])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chukan_core::ids::ResidentRecordCode;

    #[test]
    fn codes_differ_per_organisation_and_are_stable() {
        let secret = CodeSecret::new(vec![7; 32]).unwrap();
        let rrc = ResidentRecordCode::parse("12345678901").unwrap();
        let person = secret.person_id(&rrc);
        let a = secret.code_for("0000000000000001", &person);
        let b = secret.code_for("0000000000000002", &person);
        assert_ne!(a, b);
        assert_eq!(a.len(), 40);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_eq!(
            a,
            secret.code_for("0000000000000001", &secret.person_id(&rrc))
        );
        let other = CodeSecret::new(vec![8; 32]).unwrap();
        assert_ne!(
            a,
            other.code_for("0000000000000001", &other.person_id(&rrc))
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(CodeSecret::new(vec![1; 8]).is_err());
    }
}
