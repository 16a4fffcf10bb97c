//! Types of the inquiry service's API and the rules they carry.

use chrono::{DateTime, NaiveDate, Utc};
use chukan_core::ids::{AddresseeNo, AffairCode, InfoCode, OrgCode, ProcedureCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// 照会期間 (the period an inquiry asks about).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// 照会開始日付 (YYYY-MM-DD).
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub from: NaiveDate,
    /// 照会終了日付 (YYYY-MM-DD), not before `from`.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub to: NaiveDate,
}

/// 情報照会要求 (an inquiry): exactly one of `as_of` (時点) and `period` (期間).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InquiryInput {
    /// 事務コード.
    pub affair_code: AffairCode,
    /// 事務手続コード.
    pub procedure_code: ProcedureCode,
    /// 特定個人情報名コード.
    pub info_code: InfoCode,
    /// 団体内統合宛名番号.
    pub integrated_addressee_number: AddresseeNo,
    /// 提供者機関コード.
    pub provider_org: OrgCode,
    /// 照会条件区分「1」: the point in time (YYYY-MM-DD).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub as_of: Option<NaiveDate>,
    /// 照会条件区分「2」: the period.
    #[serde(default)]
    pub period: Option<Period>,
    /// 照会年度区分: "0" none, "1" fiscal year (年度), "2" calendar year (年); empty or
    /// absent: none.
    #[serde(default)]
    #[schema(pattern = "^[012]?$")]
    pub year_kind: Option<String>,
}

chukan_core::body_schema!(
    /// The body of `POST /v1/inquiries`: exactly one of `as_of` (時点) and `period` (期間).
    InquiryBody = "InquiryInput" + chukan_core::schema::exactly_one_of(
        ("as_of", serde_json::json!({"type": "string"})),
        ("period", serde_json::json!({"type": "object"})),
    )
);

/// 照会条件 (what point in time or period is asked about), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// "1" = 時点, "2" = 期間.
    pub kind: &'static str,
    pub year_kind: String,
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
}

impl Condition {
    pub fn to_proto(&self) -> chukan_proto::InquiryCondition {
        chukan_proto::InquiryCondition {
            kind: self.kind.into(),
            year_kind: self.year_kind.clone(),
            from: self.from.format("%Y-%m-%d").to_string(),
            to: self
                .to
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        }
    }
}

/// A checked inquiry, whichever way it came in (JSON or a bulk file line).
#[derive(Debug, Clone)]
pub struct NewInquiry {
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub addressee: String,
    pub provider_org: String,
    pub condition: Condition,
    /// 照会側不開示コード as entered (a bulk line may set it); the resident's flag is ORed in.
    pub non_disclosure: bool,
}

/// Why the condition of an inquiry is not acceptable (Japanese, no values).
pub fn condition_of(input: &InquiryInput) -> Result<Condition, &'static str> {
    let year_kind = match input.year_kind.as_deref() {
        None | Some("") => String::new(),
        Some(k @ ("0" | "1" | "2")) => k.to_owned(),
        Some(_) => return Err("照会年度区分は「0」「1」「2」のいずれかで指定してください。"),
    };
    match (&input.as_of, &input.period) {
        (Some(at), None) => Ok(Condition {
            kind: "1",
            year_kind,
            from: *at,
            to: None,
        }),
        (None, Some(p)) if p.from <= p.to => Ok(Condition {
            kind: "2",
            year_kind,
            from: p.from,
            to: Some(p.to),
        }),
        (None, Some(_)) => Err("照会期間の終了日付は開始日付以降にしてください。"),
        _ => Err("照会条件は as_of（時点）か period（期間）のどちらか一方だけを指定してください。"),
    }
}

chukan_db::text_enum! {
    /// 照会の状態 (status of an inquiry).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    pub enum InquiryStatus {
        /// 照会中 (sent, waiting for the result).
        #[serde(rename = "sent")]
        Sent = "sent",
        /// 情報提供済み.
        #[serde(rename = "provided")]
        Provided = "provided",
        /// 提供拒否.
        #[serde(rename = "refused")]
        Refused = "refused",
        /// 別表第二で許可されていない照会.
        #[serde(rename = "not-permitted")]
        NotPermitted = "not-permitted",
        /// NWS が照会者の符号を知らない.
        #[serde(rename = "unknown-code")]
        UnknownCode = "unknown-code",
        /// 提供者機関が不明.
        #[serde(rename = "unknown-provider")]
        UnknownProvider = "unknown-provider",
        /// 有効期限 (30日) 切れ.
        #[serde(rename = "expired")]
        Expired = "expired",
    }
}

impl InquiryStatus {
    /// Japanese reason shown when the NWS gave none.
    pub fn default_reason(self) -> Option<&'static str> {
        match self {
            Self::Sent | Self::Provided => None,
            Self::Refused => Some("提供者機関が情報提供を拒否しました。"),
            Self::NotPermitted => Some("この事務手続での特定個人情報の照会は許可されていません。"),
            Self::UnknownCode => Some("情報提供ネットワークシステムに符号が登録されていません。"),
            Self::UnknownProvider => Some("提供者機関コードに該当する機関がありません。"),
            Self::Expired => Some("照会の有効期限（30日）が過ぎました。"),
        }
    }

    /// Whether the NWS refused to forward the inquiry (audit event "permit.refused").
    pub fn is_permit_refusal(self) -> bool {
        matches!(
            self,
            Self::NotPermitted | Self::UnknownCode | Self::UnknownProvider
        )
    }
}

/// The status shown: a `sent` inquiry past its validity is expired even before the sweep.
pub fn shown_status(
    stored: InquiryStatus,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> InquiryStatus {
    if stored == InquiryStatus::Sent && expires_at < now {
        InquiryStatus::Expired
    } else {
        stored
    }
}

/// Accepted inquiry: 処理通番 and 枝番 to quote to the NWS and the provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct InquiryAccepted {
    pub id: Uuid,
    /// 処理通番 (16 digits, per organisation, increasing).
    pub serial_no: String,
    /// 枝番 (1 for a single inquiry).
    pub branch_no: i32,
    pub status: InquiryStatus,
    /// 照会側不開示コード: set automatically when the resident carries the non-disclosure flag.
    pub inquirer_non_disclosure: bool,
    pub requested_at: DateTime<Utc>,
    /// requested_at + 30 days.
    pub expires_at: DateTime<Utc>,
}

/// One record of a result (情報提供の内容).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultRecord {
    /// データセット.
    pub dataset: String,
    pub major_version: String,
    /// The replica's items as a DuplicateCopyData XML fragment.
    pub payload_xml: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
}

/// An inquiry, its state and (in the single view) its result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inquiry {
    pub id: Uuid,
    pub serial_no: String,
    pub branch_no: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<Uuid>,
    pub status: InquiryStatus,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub provider_org: String,
    /// 照会側不開示コード.
    pub inquirer_non_disclosure: bool,
    /// 提供側不開示コード.
    pub provider_non_disclosure: bool,
    /// Answered by the provider's staff (自動応答不可) rather than automatically.
    pub manual: bool,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permit_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provided_at: Option<DateTime<Utc>>,
    /// When the result was stored here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_at: Option<DateTime<Utc>>,
    /// The result came after the 30-day validity (kept; the inquiry stays expired).
    pub late: bool,
    pub record_count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Japanese reason when not provided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// 確認済み日時.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Only in `GET /v1/inquiries/{id}`, once provided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<ResultRecord>>,
}

/// A page of inquiries (without result payloads).
#[derive(Debug, Serialize, ToSchema)]
pub struct InquiryPage {
    pub items: Vec<Inquiry>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InquiryQuery {
    /// 処理通番.
    pub serial_no: Option<String>,
    /// sent | provided | refused | not-permitted | unknown-code | unknown-provider | expired.
    #[param(inline, value_type = Option<InquiryStatus>)]
    pub status: Option<String>,
    /// `false`: only unconfirmed; `true`: only confirmed.
    pub confirmed: Option<bool>,
    /// 1..=500 (default 100).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub after: Option<Uuid>,
}

/// 一括確認 (bulk confirmation): by ids, or every result of one 処理通番.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmationInput {
    /// The inquiries to confirm (1 to `inquiry.confirm_max`, default 10,000).
    #[serde(default)]
    pub ids: Option<Vec<Uuid>>,
    /// Every result of one 処理通番.
    #[serde(default)]
    pub serial_no: Option<String>,
}

chukan_core::body_schema!(
    /// The body of `POST /v1/inquiry-confirmations`: exactly one of `ids` and `serial_no`.
    ConfirmationBody = "ConfirmationInput" + chukan_core::schema::exactly_one_of(
        ("ids", serde_json::json!({"type": "array", "minItems": 1, "maxItems": 10000})),
        ("serial_no", serde_json::json!({"type": "string", "minLength": 1})),
    )
);

/// What a confirmation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmationOutcome {
    /// Inquiries the request named that this organisation has.
    pub matched: i64,
    /// Newly marked 確認済み.
    pub confirmed: i64,
    pub already_confirmed: i64,
    /// No result yet (未回答): cannot be confirmed.
    pub not_answered: i64,
    /// Ids not found (unknown, or another organisation's).
    pub not_found: i64,
}

/// One refused line of a bulk file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineError {
    pub line: i32,
    /// Japanese field name of the layout (e.g. 「事務手続コード」); 「行」 for the whole line.
    pub field: String,
    pub code: String,
    pub detail: String,
}

/// A received bulk file.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAccepted {
    pub batch_id: Uuid,
    pub serial_no: String,
    pub lines: i32,
    pub accepted: i32,
    pub rejected: i32,
    /// The first 100 errors; all are at `/v1/inquiry-batches/{id}/errors`.
    pub errors: Vec<LineError>,
}

/// A bulk inquiry and how far its lines got.
#[derive(Debug, Serialize, ToSchema)]
pub struct Batch {
    pub batch_id: Uuid,
    pub serial_no: String,
    pub lines: i32,
    pub accepted: i32,
    pub rejected: i32,
    pub created_at: DateTime<Utc>,
    /// When every accepted line was handed to the outbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<DateTime<Utc>>,
    /// Accepted lines not yet handed to the outbox.
    pub waiting: i64,
    /// Accepted lines by status.
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// Accepted lines whose result was confirmed.
    pub confirmed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LineErrorPage {
    pub items: Vec<LineError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after_line: Option<i32>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LineErrorQuery {
    /// Errors of lines after this one.
    pub after_line: Option<i32>,
    /// 1..=1000 (default 500).
    pub limit: Option<i64>,
}

/// Associated data binding a sealed value to its tenant, column and row, so a blob copied
/// elsewhere does not open.
pub fn aad(tenant: &str, column: &str, row: &[u8]) -> Vec<u8> {
    let mut out = format!("inquiry|{column}|{tenant}|").into_bytes();
    out.extend_from_slice(row);
    out
}

/// 処理通番 as sent: 16 digits, zero-padded.
pub fn format_serial(n: i64) -> String {
    format!("{n:016}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sent_inquiry_past_its_validity_shows_expired() {
        let now = Utc::now();
        let past = now - chrono::Duration::seconds(1);
        assert_eq!(
            shown_status(InquiryStatus::Sent, past, now),
            InquiryStatus::Expired
        );
        assert_eq!(
            shown_status(InquiryStatus::Provided, past, now),
            InquiryStatus::Provided
        );
        assert_eq!(
            shown_status(InquiryStatus::Sent, now, past),
            InquiryStatus::Sent
        );
        for &s in InquiryStatus::ALL {
            assert_eq!(InquiryStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn every_status_is_shown_as_it_is_stored() {
        for &s in InquiryStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(
                serde_json::from_value::<InquiryStatus>(s.as_str().into()).unwrap(),
                s
            );
        }
    }
}
