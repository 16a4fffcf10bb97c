//! Checking one replica record's payload (副本データ) against its dataset layout.
//!
//! Violations go back to business systems and into logs, so their text never contains a
//! value: values are personal data. They name the item code, its Japanese name and the limit.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::Serialize;

use crate::{
    catalogue::{Dataset, Field, FieldType, LayoutError},
    record::{ItemValue, Payload, RecordKind},
};

/// What validation learned about a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Validated {
    /// Start of the record's validity, from a history dataset's start item (e.g. 資格取得年月日).
    pub valid_from: Option<NaiveDate>,
    /// End of the record's validity, from a history dataset's end item (e.g. 資格喪失年月日);
    /// `None` while still valid.
    pub valid_to: Option<NaiveDate>,
}

/// Why a record is refused: every problem found, in payload order, then missing items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Rejection {
    /// At least one.
    pub violations: Vec<Violation>,
}

/// One problem with a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Stable kebab-case code, e.g. `required-missing`.
    pub code: &'static str,
    /// The data item concerned, if one.
    pub item: Option<String>,
    /// What is wrong, in Japanese; never contains the value.
    pub detail: String,
    /// What to do next, in Japanese.
    pub action: String,
}

const FIX_AND_RETRY: &str = "データ標準レイアウトの該当版を確認し、修正して再登録してください。";

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.violations.split_first() {
            None => f.write_str("登録できません。"),
            Some((first, [])) => write!(f, "{}", first.detail),
            Some((first, rest)) => write!(f, "{}（ほか{}件）", first.detail, rest.len()),
        }
    }
}

impl Rejection {
    /// A record whose kind has no layout: one violation with the error's code.
    pub fn from_layout(err: LayoutError, kind: &RecordKind) -> Rejection {
        let RecordKind {
            info_code,
            major_version,
            dataset,
        } = kind;
        let (detail, action) = match err {
            LayoutError::UnknownItem => (
                format!("特定個人情報名コード「{info_code}」はデータ標準レイアウトにありません。"),
                "特定個人情報名コードを確認し、修正して再登録してください。".to_owned(),
            ),
            LayoutError::UnknownVersion => (
                format!(
                    "特定個人情報「{info_code}」にメジャーバージョン「{major_version}」はありません。"
                ),
                "データ標準レイアウトの該当版を確認し、メジャーバージョンを修正して再登録してください。"
                    .to_owned(),
            ),
            LayoutError::UnknownDataset => (
                format!(
                    "特定個人情報「{info_code}」メジャーバージョン「{major_version}」にデータセット「{dataset}」はありません。"
                ),
                "データ標準レイアウトの該当版を確認し、データセットコードを修正して再登録してください。"
                    .to_owned(),
            ),
            LayoutError::DatasetAbolished { on } => (
                format!(
                    "データセット「{dataset}」（特定個人情報「{info_code}」メジャーバージョン「{major_version}」）は{on}に廃止されました。"
                ),
                "廃止されたデータセットは登録できません。登録対象から除くか、新しい版のデータセットで登録してください。"
                    .to_owned(),
            ),
        };
        Rejection {
            violations: vec![Violation {
                code: err.code(),
                item: None,
                detail,
                action,
            }],
        }
    }

    /// The violation codes, in order (handy for callers that count them).
    pub fn codes(&self) -> Vec<&'static str> {
        self.violations.iter().map(|v| v.code).collect()
    }
}

impl Violation {
    fn at(code: &'static str, field: &Field, detail: String, action: impl Into<String>) -> Self {
        Violation {
            code,
            item: Some(field.code.clone()),
            detail,
            action: action.into(),
        }
    }
}

/// 「I0002」（資格取得年月日）
fn named(field: &Field) -> String {
    format!("項目「{}」（{}）", field.code, field.name)
}

/// An empty string is an empty item, the same as `xsi:nil`.
fn value_of(item: &ItemValue) -> Option<&str> {
    item.value.as_deref().filter(|v| !v.is_empty())
}

fn present(s: Option<&str>) -> bool {
    s.is_some_and(|s| !s.trim().is_empty())
}

pub(crate) fn validate(dataset: &Dataset, payload: &Payload) -> Result<Validated, Rejection> {
    let mut violations = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut with_value: HashSet<&str> = HashSet::new();
    for item in payload {
        let Some(field) = dataset.field(&item.code) else {
            violations.push(unknown_item(dataset, item));
            continue;
        };
        if !seen.insert(field.code.as_str()) && field.group.is_none() {
            violations.push(Violation::at(
                "duplicate-item",
                field,
                format!(
                    "{}が複数あります。繰り返し項目ではないため1つだけ指定できます。",
                    named(field)
                ),
                "重複している項目を1つにして再登録してください。",
            ));
            continue;
        }
        if field.group.is_some() && (!present(item.version.as_deref()) || item.updated.is_none()) {
            violations.push(Violation::at(
                "group-without-version",
                field,
                format!(
                    "繰り返し項目{}にVersionまたはTimeAndDateOfUpdateがありません。",
                    named(field)
                ),
                "繰り返し項目ごとにVersionとTimeAndDateOfUpdateを設定して再登録してください。",
            ));
        }
        match value_of(item) {
            None => {
                if !present(item.null_reason.as_deref()) {
                    violations.push(Violation::at(
                        "null-without-reason",
                        field,
                        format!(
                            "{}が空ですが、空の理由（ReasonOfNull）がありません。",
                            named(field)
                        ),
                        "値を設定するか、ReasonOfNullを指定して再登録してください。",
                    ));
                }
            }
            Some(value) => {
                with_value.insert(field.code.as_str());
                check_value(field, value, &mut violations);
            }
        }
    }
    for field in dataset.fields.iter().filter(|f| f.required) {
        if !with_value.contains(field.code.as_str()) {
            violations.push(Violation::at(
                "required-missing",
                field,
                format!("必須の{}に値がありません。", named(field)),
                "必須項目に値を設定して再登録してください。",
            ));
        }
    }
    let validated = history_period(dataset, payload, &mut violations);
    if violations.is_empty() {
        Ok(validated)
    } else {
        Err(Rejection { violations })
    }
}

fn unknown_item(dataset: &Dataset, item: &ItemValue) -> Violation {
    // The code is the element name the business system sent; keep it short in case it is junk.
    let code: String = item.code.chars().take(16).collect();
    Violation {
        code: "unknown-item",
        item: Some(code.clone()),
        detail: format!(
            "項目コード「{code}」はデータセット「{}」（{}）にありません。",
            dataset.code, dataset.name
        ),
        action: FIX_AND_RETRY.to_owned(),
    }
}

fn check_value(field: &Field, value: &str, violations: &mut Vec<Violation>) {
    if value.chars().count() > field.max_length {
        violations.push(Violation::at(
            "too-long",
            field,
            format!(
                "{}が最大{}文字を超えています。",
                named(field),
                field.max_length
            ),
            format!("{}文字以内で指定して再登録してください。", field.max_length),
        ));
    }
    match field.ty {
        FieldType::Text => {}
        FieldType::Digits => {
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                violations.push(Violation::at(
                    "not-digits",
                    field,
                    format!("{}に数字以外の文字があります。", named(field)),
                    "半角数字だけで指定して再登録してください。",
                ));
            }
        }
        FieldType::Number => {
            if !is_number(value) {
                violations.push(Violation::at(
                    "not-number",
                    field,
                    format!("{}が数値の形式ではありません。", named(field)),
                    "半角の数値（符号と小数点は可、桁区切りは不可）で指定して再登録してください。",
                ));
            }
        }
        FieldType::Date => {
            if parse_date(value).is_none() {
                violations.push(Violation::at(
                    "not-date",
                    field,
                    format!(
                        "{}が日付（YYYY-MM-DD）の形式でないか、存在しない日付です。",
                        named(field)
                    ),
                    "YYYY-MM-DD形式の正しい日付で指定して再登録してください。",
                ));
            }
        }
        FieldType::Code => {
            let values = field.values.as_deref().unwrap_or_default();
            if !values.iter().any(|allowed| allowed == value) {
                violations.push(Violation::at(
                    "not-in-code-list",
                    field,
                    format!("{}の値がコード一覧にありません。", named(field)),
                    format!(
                        "コード一覧（{}）のいずれかを指定して再登録してください。",
                        values.join("、")
                    ),
                ));
            }
        }
    }
}

/// `[+-]digits[.digits]`, as written in the layout's numeric items.
fn is_number(value: &str) -> bool {
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

/// Strictly `YYYY-MM-DD` (chrono alone would accept `2017-2-8`).
pub(crate) fn parse_date(value: &str) -> Option<NaiveDate> {
    let b = value.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()
}

fn history_period(
    dataset: &Dataset,
    payload: &Payload,
    violations: &mut Vec<Violation>,
) -> Validated {
    let Some(history) = &dataset.history else {
        return Validated {
            valid_from: None,
            valid_to: None,
        };
    };
    let date_of = |code: &str| {
        payload
            .iter()
            .filter(|item| item.code == code)
            .find_map(value_of)
            .and_then(parse_date)
    };
    let valid_from = date_of(&history.from);
    let valid_to = date_of(&history.to);
    let reversed = valid_from.zip(valid_to).is_some_and(|(from, to)| to < from);
    if reversed {
        let name = |code: &str| {
            dataset
                .field(code)
                .map(named)
                .unwrap_or_else(|| format!("項目「{code}」"))
        };
        violations.push(Violation {
            code: "history-order",
            item: Some(history.to.clone()),
            detail: format!(
                "履歴の終了日{}が開始日{}より前です。",
                name(&history.to),
                name(&history.from)
            ),
            action: "履歴の開始日と終了日を確認し、修正して再登録してください。".to_owned(),
        });
    }
    Validated {
        valid_from,
        valid_to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalogue;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn kind(info: &str, major: &str, dataset: &str) -> RecordKind {
        RecordKind {
            info_code: info.into(),
            major_version: major.into(),
            dataset: dataset.into(),
        }
    }

    fn no31() -> RecordKind {
        kind("TM00000000000031", "0002", "0101")
    }

    fn value(code: &str, value: &str) -> ItemValue {
        ItemValue {
            code: code.into(),
            value: Some(value.into()),
            version: None,
            updated: None,
            null_reason: None,
        }
    }

    fn grouped(code: &str, v: &str) -> ItemValue {
        ItemValue {
            version: Some("0002".into()),
            updated: Some(date("2017-03-01")),
            ..value(code, v)
        }
    }

    fn null(code: &str, reason: Option<&str>) -> ItemValue {
        ItemValue {
            code: code.into(),
            value: None,
            version: None,
            updated: None,
            null_reason: reason.map(Into::into),
        }
    }

    /// The DOMAIN appendix sample: No. 31 資格情報.
    fn appendix_sample() -> Payload {
        vec![
            grouped("I0001", "2222"),
            value("I0002", "2017-02-28"),
            null("I0003", Some("NotAcceptable")),
        ]
    }

    fn check(kind: &RecordKind, payload: &Payload) -> Result<Validated, Rejection> {
        Catalogue::builtin()
            .unwrap()
            .validate(kind, payload, date("2019-08-01"))
    }

    /// Reject, assert the only violation's code, and that no value leaked into its text.
    fn rejected(kind: &RecordKind, payload: &Payload, code: &str) -> Violation {
        let rejection = check(kind, payload).unwrap_err();
        assert_eq!(rejection.codes(), [code], "{rejection:?}");
        let violation = rejection.violations[0].clone();
        for item in payload {
            if let Some(v) = item.value.as_ref().filter(|v| !v.is_empty()) {
                assert!(!violation.detail.contains(v.as_str()), "{violation:?}");
            }
        }
        assert!(!violation.action.is_empty());
        violation
    }

    #[test]
    fn appendix_sample_validates_with_its_history_period() {
        let validated = check(&no31(), &appendix_sample()).unwrap();
        assert_eq!(
            validated,
            Validated {
                valid_from: Some(date("2017-02-28")),
                valid_to: None
            }
        );
    }

    #[test]
    fn repeating_group_may_repeat() {
        let mut payload = appendix_sample();
        payload.insert(1, grouped("I0001", "11111"));
        assert!(check(&no31(), &payload).is_ok());
    }

    #[test]
    fn non_history_dataset_has_no_period() {
        let payload = vec![
            value("I0001", "0012345"),
            value("I0002", "3"),
            value("I0004", "2019-07-01"),
        ];
        let validated = check(&kind("TM00000000000008", "0001", "0102"), &payload).unwrap();
        assert_eq!(validated.valid_from, None);
        assert_eq!(validated.valid_to, None);
    }

    #[test]
    fn layout_errors_become_one_violation() {
        let payload = appendix_sample();
        let cases = [
            (
                kind("TM00000000000052", "0001", "0101"),
                "unknown-info-code",
            ),
            (
                kind("TM00000000000031", "0009", "0101"),
                "unknown-major-version",
            ),
            (kind("TM00000000000031", "0002", "0199"), "unknown-dataset"),
            (
                kind("TM00000000000019", "0001", "0102"),
                "dataset-abolished",
            ),
        ];
        for (kind, code) in cases {
            let violation = rejected(&kind, &payload, code);
            assert_eq!(violation.item, None);
        }
    }

    #[test]
    fn unknown_item() {
        let mut payload = appendix_sample();
        payload.push(value("I0099", "x"));
        let violation = rejected(&no31(), &payload, "unknown-item");
        assert_eq!(violation.item.as_deref(), Some("I0099"));
    }

    #[test]
    fn duplicate_item() {
        let mut payload = appendix_sample();
        payload.push(value("I0002", "2017-03-01"));
        let violation = rejected(&no31(), &payload, "duplicate-item");
        assert!(violation.detail.contains("資格取得年月日"), "{violation:?}");
    }

    #[test]
    fn required_missing() {
        let payload = vec![grouped("I0001", "2222")];
        let violation = rejected(&no31(), &payload, "required-missing");
        assert_eq!(violation.item.as_deref(), Some("I0002"));
        // An empty item with a reason is still missing when the item is required.
        let payload = vec![grouped("I0001", "2222"), null("I0002", Some("Unknown"))];
        rejected(&no31(), &payload, "required-missing");
    }

    #[test]
    fn too_long() {
        let mut payload = appendix_sample();
        payload.push(value("I0005", "記号記号記号記号記号記号記号記号記号記号記"));
        let violation = rejected(&no31(), &payload, "too-long");
        assert!(violation.detail.contains("20文字"), "{violation:?}");
        // Characters, not bytes: 20 kanji fit.
        let mut payload = appendix_sample();
        payload.push(value("I0005", "記号記号記号記号記号記号記号記号記号記号"));
        assert!(check(&no31(), &payload).is_ok());
    }

    #[test]
    fn not_digits() {
        let mut payload = appendix_sample();
        payload.push(value("I0004", "0113A456"));
        rejected(&no31(), &payload, "not-digits");
    }

    #[test]
    fn not_number() {
        let tax = kind("TM00000000000002", "0002", "0101");
        let good = |amount: &str| {
            vec![
                value("I0001", "2019"),
                value("I0002", amount),
                value("I0003", "3500"),
                value("I0006", "1"),
            ]
        };
        for amount in ["123000", "-5", "+12.50", "0.5"] {
            assert!(check(&tax, &good(amount)).is_ok(), "{amount}");
        }
        for amount in ["1,000", "12.", ".5", "-", "１２"] {
            rejected(&tax, &good(amount), "not-number");
        }
    }

    #[test]
    fn not_date() {
        for bad in ["2017-2-28", "2017-02-30", "20170228", "2017/02/28"] {
            let payload = vec![grouped("I0001", "2222"), value("I0002", bad)];
            let violation = rejected(&no31(), &payload, "not-date");
            assert_eq!(violation.item.as_deref(), Some("I0002"));
        }
    }

    #[test]
    fn not_in_code_list() {
        let payload = vec![
            value("I0001", "0012345"),
            value("I0002", "9"),
            value("I0004", "2019-07-01"),
        ];
        let violation = rejected(
            &kind("TM00000000000008", "0001", "0102"),
            &payload,
            "not-in-code-list",
        );
        assert!(violation.action.contains("1、2、3"), "{violation:?}");
    }

    #[test]
    fn null_without_reason() {
        let mut payload = appendix_sample();
        payload[2] = null("I0003", None);
        rejected(&no31(), &payload, "null-without-reason");
        // An empty string is an empty item too.
        payload[2] = value("I0003", "");
        rejected(&no31(), &payload, "null-without-reason");
    }

    #[test]
    fn group_without_version() {
        let mut payload = appendix_sample();
        payload[0].version = None;
        rejected(&no31(), &payload, "group-without-version");
        let mut payload = appendix_sample();
        payload[0].updated = None;
        rejected(&no31(), &payload, "group-without-version");
    }

    #[test]
    fn history_order() {
        let payload = vec![
            grouped("I0001", "11111"),
            value("I0002", "2017-02-28"),
            value("I0003", "2017-02-27"),
        ];
        let violation = rejected(&no31(), &payload, "history-order");
        assert_eq!(violation.item.as_deref(), Some("I0003"));
        // Ending on the day it starts is allowed (DOMAIN §4, enhancement #14).
        let payload = vec![
            grouped("I0001", "11111"),
            value("I0002", "2017-02-28"),
            value("I0003", "2017-02-28"),
        ];
        let validated = check(&no31(), &payload).unwrap();
        assert_eq!(validated.valid_to, Some(date("2017-02-28")));
    }

    #[test]
    fn all_problems_are_collected_and_none_shows_a_value() {
        let payload = vec![
            ItemValue {
                version: None,
                ..value("I0001", "secret-number-0000000000")
            },
            value("I0002", "secret-2017"),
            value("I0004", "secret12"),
            value("I0005", "secret-mark-xxxxxxxxxx"),
            value("I0042", "secret-unknown"),
        ];
        let rejection = check(&no31(), &payload).unwrap_err();
        assert_eq!(
            rejection.codes(),
            [
                "group-without-version",
                "too-long",
                "too-long",
                "not-date",
                "not-digits",
                "too-long",
                "unknown-item",
            ]
        );
        let shown = format!("{rejection} {rejection:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(rejection.to_string().ends_with("（ほか6件）"));
    }
}
