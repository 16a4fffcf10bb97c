//! A replica record's payload (副本データ) as business systems send it: a list of item values
//! named by item code, shared by the file parser, the REST API and the validator.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One data item's value in a replica payload, e.g. `<I0001 Version="0002"
/// TimeAndDateOfUpdate="2017-03-01">2222</I0001>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemValue {
    /// Item code from the layout catalogue, e.g. `I0001`.
    pub code: String,
    /// The value as text; `None` for an empty item (then `null_reason` says why).
    pub value: Option<String>,
    /// Version of the repeating group this item belongs to (`Version` attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Update date of the repeating group (`TimeAndDateOfUpdate` attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<NaiveDate>,
    /// Reason for null (`ReasonOfNull`), required when `value` is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_reason: Option<String>,
}

// Values are personal data: never print them by accident.
impl std::fmt::Debug for ItemValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemValue")
            .field("code", &self.code)
            .field("value", &self.value.as_ref().map(|_| "***"))
            .field("version", &self.version)
            .field("updated", &self.updated)
            .field("null_reason", &self.null_reason)
            .finish()
    }
}

/// The payload of one replica record: its item values in document order.
pub type Payload = Vec<ItemValue>;

/// Where a record sits in the catalogue: item, major version, dataset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKind {
    /// 特定個人情報名コード, e.g. `TM00000000000031`.
    pub info_code: String,
    /// 特定個人情報メジャーバージョン, four digits, e.g. `0002`.
    pub major_version: String,
    /// データセット識別項目コード, four digits, e.g. `0101`.
    pub dataset: String,
}
