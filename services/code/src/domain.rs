//! Types of the code service's API.

use chrono::{DateTime, Utc};
use chukan_core::ids::{AddresseeNo, ResidentRecordCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// 符号取得要求 (a request to obtain a resident's code).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquisitionRequest {
    /// 団体内統合宛名番号.
    pub integrated_addressee_number: AddresseeNo,
    /// 住民票コード: forwarded to the NWS once, never stored.
    pub resident_record_code: ResidentRecordCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AcquisitionStatus {
    Pending,
    Done,
    Failed,
}

impl AcquisitionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Acquisition {
    pub id: Uuid,
    pub status: AcquisitionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Japanese reason when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// Whether a code is held; the code itself never leaves the platform's API.
#[derive(Debug, Serialize)]
pub struct CodeHolding {
    pub held: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<DateTime<Utc>>,
}

/// Additional authenticated data binding a ciphertext to its tenant and column, so a sealed
/// value copied to another row or tenant does not decrypt.
pub fn aad(tenant: &str, column: &str) -> Vec<u8> {
    format!("code|{column}|{tenant}").into_bytes()
}
