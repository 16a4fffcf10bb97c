//! Types of the code service's API.

use chrono::{DateTime, Utc};
use chukan_core::ids::{AddresseeNo, ResidentRecordCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// 符号取得要求 (a request to obtain a resident's code).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquisitionRequest {
    /// 団体内統合宛名番号.
    pub integrated_addressee_number: AddresseeNo,
    /// 住民票コード: forwarded to the NWS once, never stored.
    pub resident_record_code: ResidentRecordCode,
}

chukan_db::text_enum! {
    /// 符号取得要求の状態: `pending` (NWSの応答待ち), `done` (符号取得済み), `failed` (取得失敗).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum AcquisitionStatus {
        Pending = "pending",
        Done = "done",
        Failed = "failed",
    }
}

/// An accepted 符号取得要求: where to follow it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcquisitionAccepted {
    /// The request's id; the same for every repetition for one resident.
    pub id: Uuid,
    pub status: AcquisitionStatus,
    /// `/v1/codes/acquisitions/{id}` (also sent as `Location`).
    pub href: String,
}

/// A 符号取得要求 and how far it got.
#[derive(Debug, Serialize, ToSchema)]
pub struct Acquisition {
    pub id: Uuid,
    pub status: AcquisitionStatus,
    /// Stable reason code when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Japanese reason when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// Whether a code (符号) is held; the code itself never leaves the platform's API.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeHolding {
    /// 符号を取得済みか (whether the code has been obtained).
    pub held: bool,
    /// When it was obtained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<DateTime<Utc>>,
}

/// Additional authenticated data binding a ciphertext to its tenant and column, so a sealed
/// value copied to another row or tenant does not decrypt.
pub fn aad(tenant: &str, column: &str) -> Vec<u8> {
    format!("code|{column}|{tenant}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_shown_as_it_is_stored() {
        for &v in AcquisitionStatus::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
    }
}
