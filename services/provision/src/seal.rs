//! How a replica's personal data is sealed: the integrated addressee number, the record keys
//! and the payload travel together in one AES-256-GCM blob under the tenant's data key, bound
//! (as associated data) to the row it belongs to so a blob moved to another row fails to open.

use chrono::NaiveDate;
use chukan_crypto::TenantKeys;
use chukan_layout::{Payload, RecordKind};
use serde::{Deserialize, Serialize};

/// The sealed part of a replica row.
#[derive(Clone, Serialize, Deserialize)]
pub struct SealedReplica {
    #[serde(rename = "a")]
    pub addressee: String,
    #[serde(rename = "k")]
    pub record_key: String,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub parent_record_key: Option<String>,
    /// History validity, kept sealed: the dates are payload values.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<NaiveDate>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<NaiveDate>,
    #[serde(rename = "v")]
    pub payload: Payload,
}

/// The same fields borrowed, for sealing without copying the payload.
#[derive(Serialize)]
pub struct SealedReplicaRef<'a> {
    #[serde(rename = "a")]
    pub addressee: &'a str,
    #[serde(rename = "k")]
    pub record_key: &'a str,
    #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
    pub parent_record_key: Option<&'a str>,
    #[serde(rename = "f", skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<NaiveDate>,
    #[serde(rename = "t", skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<NaiveDate>,
    #[serde(rename = "v")]
    pub payload: &'a Payload,
}

/// Blind index of a dataset record key within its item, version and dataset (the replica's
/// identity); prefixed so it never equals an addressee's.
pub fn record_key_index(keys: &TenantKeys, kind: &RecordKind, record_key: &str) -> Vec<u8> {
    keys.blind_index(&format!(
        "record-key:{}|{}|{}|{record_key}",
        kind.info_code, kind.major_version, kind.dataset
    ))
}

/// Blind index of an integrated addressee number.
pub fn addressee_index(keys: &TenantKeys, addressee: &str) -> Vec<u8> {
    keys.blind_index(addressee)
}

/// Blind index of a provider-side code (符号); prefixed so it never equals an addressee's.
pub fn code_index(keys: &TenantKeys, code: &str) -> Vec<u8> {
    keys.blind_index(&format!("code:{code}"))
}

/// Seals an addressee number kept beside a blind index (code links, flags, provisions); the
/// table is the associated data, so a blob copied to another table or tenant fails to open.
pub fn seal_addressee(keys: &TenantKeys, tenant: &str, table: &str, addressee: &str) -> Vec<u8> {
    keys.encrypt(
        addressee.as_bytes(),
        format!("provision.{table}.addressee|{tenant}").as_bytes(),
    )
}

pub fn open_addressee(
    keys: &TenantKeys,
    tenant: &str,
    table: &str,
    sealed: &[u8],
) -> anyhow::Result<String> {
    let plain = keys.decrypt(
        sealed,
        format!("provision.{table}.addressee|{tenant}").as_bytes(),
    )?;
    Ok(String::from_utf8(plain)?)
}

fn replica_aad(tenant: &str, kind: &RecordKind, key_bidx: &[u8]) -> Vec<u8> {
    let mut aad = format!(
        "provision.replica|{tenant}|{}|{}|{}|",
        kind.info_code, kind.major_version, kind.dataset
    )
    .into_bytes();
    aad.extend_from_slice(key_bidx);
    aad
}

pub fn seal_replica(
    keys: &TenantKeys,
    tenant: &str,
    kind: &RecordKind,
    key_bidx: &[u8],
    replica: &SealedReplicaRef<'_>,
) -> Result<Vec<u8>, serde_json::Error> {
    let plain = serde_json::to_vec(replica)?;
    Ok(keys.encrypt(&plain, &replica_aad(tenant, kind, key_bidx)))
}

pub fn open_replica(
    keys: &TenantKeys,
    tenant: &str,
    kind: &RecordKind,
    key_bidx: &[u8],
    sealed: &[u8],
) -> anyhow::Result<SealedReplica> {
    let plain = keys.decrypt(sealed, &replica_aad(tenant, kind, key_bidx))?;
    Ok(serde_json::from_slice(&plain)?)
}

/// Associated data of one chunk of a stored file (upload or reconciliation).
pub fn chunk_aad(what: &str, id: &uuid::Uuid, seq: i32) -> Vec<u8> {
    format!("provision.{what}|{id}|{seq}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chukan_layout::ItemValue;

    fn kind() -> RecordKind {
        RecordKind {
            info_code: "TM00000000000031".into(),
            major_version: "0002".into(),
            dataset: "0101".into(),
        }
    }

    #[test]
    fn a_sealed_replica_opens_only_on_its_own_row() {
        let keys = TenantKeys::generate();
        let r = SealedReplica {
            addressee: "12345".into(),
            record_key: "K-1".into(),
            parent_record_key: None,
            valid_from: None,
            valid_to: None,
            payload: vec![ItemValue {
                code: "I0001".into(),
                value: Some("2222".into()),
                version: None,
                updated: None,
                null_reason: None,
            }],
        };
        let bidx = record_key_index(&keys, &kind(), "K-1");
        let borrowed = SealedReplicaRef {
            addressee: &r.addressee,
            record_key: &r.record_key,
            parent_record_key: None,
            valid_from: None,
            valid_to: None,
            payload: &r.payload,
        };
        let sealed = seal_replica(&keys, "t1", &kind(), &bidx, &borrowed).unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"2222"));
        let back = open_replica(&keys, "t1", &kind(), &bidx, &sealed).unwrap();
        assert_eq!(back.payload, r.payload);
        assert!(open_replica(&keys, "t2", &kind(), &bidx, &sealed).is_err());
        let other = record_key_index(&keys, &kind(), "K-2");
        let mut elsewhere = kind();
        elsewhere.dataset = "0102".into();
        assert_ne!(bidx, record_key_index(&keys, &elsewhere, "K-1"));
        assert!(open_replica(&keys, "t1", &kind(), &other, &sealed).is_err());
        assert_ne!(
            record_key_index(&keys, &kind(), "x"),
            addressee_index(&keys, "x")
        );
    }
}
