//! One entry of the list (`InformationOfSPIRegistrationDelete`) as read, and as given to the
//! writer.

use chrono::NaiveDate;
use chukan_layout::Payload;
use std::fmt;

/// Element names of the list, as a published business system writes them.
pub(crate) mod element {
    pub const ROOT: &str = "SPIRegistrationDeleteList";
    pub const SEGMENT: &str = "SegmentOfRegistrationDelete";
    pub const ENTRY: &str = "InformationOfSPIRegistrationDelete";
    pub const RECORD_ID: &str = "RecordIdentificationNumber";
    pub const ADDRESSEE: &str = "IntegratedAddressNumber";
    pub const INFO_CODE: &str = "SpecificPersonalInformationCode";
    pub const DATASET: &str = "DataSetIdentificationItemCode";
    pub const RECORD_KEY: &str = "DataSetRecordKey";
    pub const MAJOR_VERSION: &str = "SPIMajorVersion";
    pub const PARENT_KEY: &str = "ParentDataSetRecordKey";
    pub const PUBLIC_START: &str = "PublicationDate";
    pub const PUBLIC_END: &str = "PublishedEndDate";
    pub const PAYLOAD: &str = "DuplicateCopyData";
}

/// 登録削除区分 (segment of registration/deletion): what an entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `1`: register (or overwrite) the replica.
    Register,
    /// `2`: delete the replica.
    Delete,
}

impl Operation {
    /// The value of `SegmentOfRegistrationDelete`: `1` register, `2` delete.
    pub fn segment_code(self) -> &'static str {
        match self {
            Operation::Register => "1",
            Operation::Delete => "2",
        }
    }

    /// Reads a `SegmentOfRegistrationDelete` value.
    pub fn from_segment_code(code: &str) -> Option<Self> {
        match code {
            "1" => Some(Operation::Register),
            "2" => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// A problem confined to one entry: the entry is refused, the file goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// Stable code, e.g. `missing-element`, `invalid-date`, `payload-malformed`.
    pub code: &'static str,
    /// The element concerned, e.g. `RecordIdentificationNumber`.
    pub field: &'static str,
    /// What is wrong, in Japanese, for the operator; never contains the value itself.
    pub detail: String,
}

/// Whether XML 1.0 can carry `c` (its `Char` production): tab, LF, CR and everything from
/// U+0020 except U+FFFE and U+FFFF (Rust's `char` holds no surrogates). NUL is among those it
/// cannot, and PostgreSQL text cannot hold it either.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Replaces what [`is_xml_char`] refuses with U+FFFD, so a refused entry can still be
/// reported (its record id stored) without the character; true if anything was replaced.
pub(crate) fn scrub(text: &mut String) -> bool {
    if text.chars().all(is_xml_char) {
        return false;
    }
    *text = text
        .chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect();
    true
}

impl Defect {
    pub(crate) fn new(code: &'static str, field: &'static str, detail: impl Into<String>) -> Self {
        Defect {
            code,
            field,
            detail: detail.into(),
        }
    }
}

/// One entry read from a list (`InformationOfSPIRegistrationDelete`).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based position of the entry in the file.
    pub ordinal: u64,
    /// Bytes of the entry element in the file, start tag to end tag (for the daily byte quota).
    pub byte_len: u64,
    /// Register or delete, from the `SegmentOfRegistrationDelete` in force.
    pub operation: Operation,
    /// レコード識別番号 (record identification number), unique.
    pub record_id: String,
    /// 団体内統合宛名番号 (integrated addressee number).
    pub addressee: String,
    /// 特定個人情報名コード, e.g. `TM00000000000031`.
    pub info_code: String,
    /// データセット識別項目コード, e.g. `0101`.
    pub dataset: String,
    /// データセットレコードキー: the same key again overwrites.
    pub record_key: String,
    /// 特定個人情報メジャーバージョン, e.g. `0002`.
    pub major_version: String,
    /// 親データセットレコードキー; an empty element is `None`.
    pub parent_record_key: Option<String>,
    /// 公開開始日 (public start date).
    pub public_start: Option<NaiveDate>,
    /// 公開終了日 (public end date).
    pub public_end: Option<NaiveDate>,
    /// The replica (副本データ) from `DuplicateCopyData`; empty when absent or broken.
    pub payload: Payload,
    /// Problems confined to this entry (missing required element, date that does not parse,
    /// payload fragment not well-formed, unknown child element, text too long for a header
    /// field): the entry is refused, the file goes on.
    pub defects: Vec<Defect>,
}

impl Entry {
    /// Whether the entry can be applied (it has no defects).
    pub fn is_valid(&self) -> bool {
        self.defects.is_empty()
    }

    /// The entry as the writer takes it, e.g. to copy a list.
    pub fn as_spec(&self) -> EntrySpec<'_> {
        EntrySpec {
            operation: self.operation,
            record_id: &self.record_id,
            addressee: &self.addressee,
            info_code: &self.info_code,
            dataset: &self.dataset,
            record_key: &self.record_key,
            major_version: &self.major_version,
            parent_record_key: self.parent_record_key.as_deref(),
            public_start: self.public_start,
            public_end: self.public_end,
            payload: &self.payload,
        }
    }
}

/// Shows `***` for a personal value that is present, nothing for one that is absent.
fn mask(present: bool) -> Option<&'static str> {
    present.then_some("***")
}

// Addressee, record keys and item values are personal data: never print them by accident.
impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("ordinal", &self.ordinal)
            .field("byte_len", &self.byte_len)
            .field("operation", &self.operation)
            .field("record_id", &self.record_id)
            .field("addressee", &mask(!self.addressee.is_empty()))
            .field("info_code", &self.info_code)
            .field("dataset", &self.dataset)
            .field("record_key", &mask(!self.record_key.is_empty()))
            .field("major_version", &self.major_version)
            .field("parent_record_key", &mask(self.parent_record_key.is_some()))
            .field("public_start", &self.public_start)
            .field("public_end", &self.public_end)
            .field("payload", &self.payload)
            .field("defects", &self.defects)
            .finish()
    }
}

/// One entry to write with [`ListWriter`](crate::ListWriter).
#[derive(Clone, Copy)]
pub struct EntrySpec<'a> {
    /// Register or delete; the writer emits `SegmentOfRegistrationDelete` when it changes.
    pub operation: Operation,
    /// レコード識別番号 (record identification number).
    pub record_id: &'a str,
    /// 団体内統合宛名番号 (integrated addressee number).
    pub addressee: &'a str,
    /// 特定個人情報名コード.
    pub info_code: &'a str,
    /// データセット識別項目コード.
    pub dataset: &'a str,
    /// データセットレコードキー.
    pub record_key: &'a str,
    /// 特定個人情報メジャーバージョン.
    pub major_version: &'a str,
    /// 親データセットレコードキー; `None` (or empty) writes an empty element.
    pub parent_record_key: Option<&'a str>,
    /// 公開開始日.
    pub public_start: Option<NaiveDate>,
    /// 公開終了日.
    pub public_end: Option<NaiveDate>,
    /// The replica; empty writes an empty `DuplicateCopyData` (deletions).
    pub payload: &'a Payload,
}

impl fmt::Debug for EntrySpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntrySpec")
            .field("operation", &self.operation)
            .field("record_id", &self.record_id)
            .field("addressee", &mask(!self.addressee.is_empty()))
            .field("info_code", &self.info_code)
            .field("dataset", &self.dataset)
            .field("record_key", &mask(!self.record_key.is_empty()))
            .field("major_version", &self.major_version)
            .field("parent_record_key", &mask(self.parent_record_key.is_some()))
            .field("public_start", &self.public_start)
            .field("public_end", &self.public_end)
            .field("payload", &self.payload)
            .finish()
    }
}
