//! Identifiers of the My Number exchange (DOMAIN.md §3), parsed once at the edge.
//!
//! Each type can only be built by `parse`, so a value that exists is a valid one. Serde goes
//! through `parse` too, so a bad value in a JSON body is refused by the extractor.
//! Their OpenAPI schema is a string with the same rule as a `pattern`, so clients can check
//! a value before sending it.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, schema::Type},
};

/// Why a value is not a valid identifier; the Japanese text is shown to API callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidId {
    /// Which identifier (English, stable).
    pub field: &'static str,
    /// Japanese name of the identifier.
    pub name_ja: &'static str,
    /// The expected form, in Japanese.
    pub expected_ja: &'static str,
    /// What was wrong (never echoes the value: it may be personal data).
    pub reason: &'static str,
}

impl InvalidId {
    /// 「団体内統合宛名番号は15桁以内の数字で指定してください。」
    pub fn detail_ja(&self) -> String {
        format!("{}は{}で指定してください。", self.name_ja, self.expected_ja)
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Declares a string identifier with a validating `parse`, serde through `parse`, Display,
/// and an OpenAPI schema whose `pattern` states the same rule as `parse`.
macro_rules! identifier {
    (
        $(#[$doc:meta])* $name:ident, $field:literal, $name_ja:literal, $expected_ja:literal,
        pattern = $pattern:literal, example = $example:literal,
        |$s:ident| $check:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                let $s = value;
                match $check {
                    Ok(()) => Ok(Self(value.to_owned())),
                    Err(reason) => Err(InvalidId {
                        field: $field,
                        name_ja: $name_ja,
                        expected_ja: $expected_ja,
                        reason,
                    }),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some($pattern))
                    .description(Some(concat!($name_ja, "（", $expected_ja, "）")))
                    .examples([$example])
                    .into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

fn exact_digits(s: &str, n: usize) -> Result<(), &'static str> {
    if s.len() != n {
        return Err("wrong length");
    }
    if !all_digits(s) {
        return Err("not all digits");
    }
    Ok(())
}

fn prefixed(s: &str, prefix: &str) -> Result<(), &'static str> {
    match s.strip_prefix(prefix) {
        None => Err("wrong prefix"),
        Some(rest) => exact_digits(rest, 14),
    }
}

/// The most characters an attachment's file name may have.
pub const MAX_FILE_NAME_CHARS: usize = 200;

/// A file name a resident's browser can be handed as it is: not blank, not `.` or `..`, no
/// path separator, no `"` (it ends a `Content-Disposition` parameter), no control character.
fn file_name_rule(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.chars().count() > MAX_FILE_NAME_CHARS {
        return Err("wrong length");
    }
    if s.trim().is_empty() || s == "." || s == ".." {
        return Err("not a name");
    }
    if s.chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '"'))
    {
        return Err("forbidden character");
    }
    Ok(())
}

identifier!(
    /// 添付ファイル名 (an attachment's file name), the same rule for notices (お知らせ) and
    /// self-information (自己情報提供) attachments.
    FileName, "file_name", "添付ファイル名",
    "200文字以内で、/ \\ \" や制御文字を含まない名前",
    pattern = "^(?=.*\\S)(?!\\.{1,2}$)[^/\\\\\"\\u0000-\\u001F\\u007F-\\u009F]{1,200}$",
    example = "通知書.pdf",
    |s| file_name_rule(s)
);

identifier!(
    /// 機関コード (organisation code): 16 digits. Also the tenant id.
    OrgCode, "org_code", "機関コード", "16桁の数字",
    pattern = "^[0-9]{16}$", example = "1310010000000001",
    |s| exact_digits(s, 16)
);

identifier!(
    /// 特定個人情報名コード (specific-personal-information code): `TM` + 14 digits.
    InfoCode, "info_code", "特定個人情報名コード", "「TM」と14桁の数字",
    pattern = "^TM[0-9]{14}$", example = "TM00000000000002",
    |s| prefixed(s, "TM")
);

identifier!(
    /// 事務手続コード (procedure code): `JT` + 14 digits.
    ProcedureCode, "procedure_code", "事務手続コード", "「JT」と14桁の数字",
    pattern = "^JT[0-9]{14}$", example = "JT00000000000001",
    |s| prefixed(s, "JT")
);

identifier!(
    /// 事務コード (affair code): `JM` + 14 digits.
    AffairCode, "affair_code", "事務コード", "「JM」と14桁の数字",
    pattern = "^JM[0-9]{14}$", example = "JM00000000000001",
    |s| prefixed(s, "JM")
);

identifier!(
    /// 団体内統合宛名番号 (integrated addressee number): 1 to 15 digits, unique in one organisation.
    AddresseeNo, "integrated_addressee_number", "団体内統合宛名番号", "15桁以内の数字",
    pattern = "^[0-9]{1,15}$", example = "000000000012345",
    |s| if s.len() > 15 { Err("too long") } else if all_digits(s) { Ok(()) } else { Err("not all digits") }
);

identifier!(
    /// 住民票コード (resident-record code): 11 digits. Used only to obtain a code, never kept.
    ResidentRecordCode, "resident_record_code", "住民票コード", "11桁の数字",
    pattern = "^[0-9]{11}$", example = "12345678901",
    |s| exact_digits(s, 11)
);

// The resident-record code is personal data: never print it by accident.
impl fmt::Debug for ResidentRecordCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResidentRecordCode(***)")
    }
}

/// 「***********2345」: an addressee number masked to its last four digits (all of it when
/// it has four or fewer), for text a person reads — error details, lists.
pub fn masked_addressee(addressee: &str) -> String {
    let n = addressee.chars().count();
    let keep = if n > 4 { 4 } else { 0 };
    addressee
        .chars()
        .enumerate()
        .map(|(i, c)| if i + keep < n { '*' } else { c })
        .collect()
}

impl fmt::Debug for AddresseeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddresseeNo(***)")
    }
}

macro_rules! plain_debug {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({})"), self.0)
            }
        }
    )*};
}
plain_debug!(OrgCode, InfoCode, ProcedureCode, AffairCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_one_rule_for_notices_and_self_information() {
        for good in ["通知書.pdf", "a", "課税 証明.PDF", &"あ".repeat(200)] {
            assert!(FileName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            " ",
            ".",
            "..",
            "a/b",
            "a\\b",
            "say\"hi\".pdf",
            "tab\there",
            "nul\0",
            "c1\u{85}",
            &"あ".repeat(201),
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn org_code_is_exactly_sixteen_digits() {
        assert!(OrgCode::parse("0123456789012345").is_ok());
        assert_eq!(
            OrgCode::parse("012345678901234").unwrap_err().reason,
            "wrong length"
        );
        assert_eq!(
            OrgCode::parse("01234567890123456").unwrap_err().reason,
            "wrong length"
        );
        assert_eq!(
            OrgCode::parse("012345678901234a").unwrap_err().reason,
            "not all digits"
        );
        assert!(OrgCode::parse("").is_err());
    }

    #[test]
    fn prefixed_codes_need_their_own_prefix() {
        assert!(InfoCode::parse("TM00000000000002").is_ok());
        assert!(ProcedureCode::parse("JT00000000000001").is_ok());
        assert!(AffairCode::parse("JM00000000000001").is_ok());
        assert_eq!(
            InfoCode::parse("JT00000000000002").unwrap_err().reason,
            "wrong prefix"
        );
        assert_eq!(
            InfoCode::parse("TM0000000000002").unwrap_err().reason,
            "wrong length"
        );
        assert_eq!(
            ProcedureCode::parse("jt00000000000001").unwrap_err().reason,
            "wrong prefix"
        );
        assert_eq!(
            AffairCode::parse("JM0000000000000X").unwrap_err().reason,
            "not all digits"
        );
    }

    #[test]
    fn addressee_number_is_up_to_fifteen_digits() {
        assert_eq!(masked_addressee("000000000012345"), "***********2345");
        assert_eq!(masked_addressee("12345"), "*2345");
        assert_eq!(masked_addressee("1234"), "****");
        assert!(AddresseeNo::parse("1").is_ok());
        assert!(AddresseeNo::parse("000000000012345").is_ok());
        assert_eq!(
            AddresseeNo::parse("0000000000123456").unwrap_err().reason,
            "too long"
        );
        assert!(AddresseeNo::parse("").is_err());
        assert!(AddresseeNo::parse("12-34").is_err());
    }

    #[test]
    fn resident_record_code_is_eleven_digits_and_never_debug_printed() {
        let c = ResidentRecordCode::parse("12345678901").unwrap();
        assert_eq!(format!("{c:?}"), "ResidentRecordCode(***)");
        assert!(ResidentRecordCode::parse("1234567890").is_err());
        assert!(ResidentRecordCode::parse("123456789012").is_err());
    }

    #[test]
    fn serde_goes_through_parse() {
        let ok: OrgCode = serde_json::from_str("\"0123456789012345\"").unwrap();
        assert_eq!(ok.as_str(), "0123456789012345");
        assert!(serde_json::from_str::<OrgCode>("\"123\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"0123456789012345\"");
    }

    /// The schema's `pattern` must accept exactly what `parse` accepts, so a client that
    /// validates against the document is never refused by the server (or vice versa).
    #[test]
    fn schema_pattern_states_the_parse_rule() {
        fn check<T: ToSchema>(pattern: &str, name_ja: &str, parses: fn(&str) -> bool) {
            let schema = serde_json::to_value(T::schema()).unwrap();
            assert_eq!(schema["type"], "string", "{schema}");
            assert_eq!(schema["pattern"], pattern);
            assert!(
                schema["description"].as_str().unwrap().starts_with(name_ja),
                "{schema}"
            );
            // The documented example is a value the server accepts.
            assert!(parses(schema["examples"][0].as_str().unwrap()), "{schema}");
        }
        check::<OrgCode>("^[0-9]{16}$", "機関コード", |v| {
            OrgCode::parse(v).is_ok()
        });
        check::<InfoCode>("^TM[0-9]{14}$", "特定個人情報名コード", |v| {
            InfoCode::parse(v).is_ok()
        });
        check::<ProcedureCode>("^JT[0-9]{14}$", "事務手続コード", |v| {
            ProcedureCode::parse(v).is_ok()
        });
        check::<AffairCode>("^JM[0-9]{14}$", "事務コード", |v| {
            AffairCode::parse(v).is_ok()
        });
        check::<AddresseeNo>("^[0-9]{1,15}$", "団体内統合宛名番号", |v| {
            AddresseeNo::parse(v).is_ok()
        });
        check::<ResidentRecordCode>("^[0-9]{11}$", "住民票コード", |v| {
            ResidentRecordCode::parse(v).is_ok()
        });
        assert_eq!(<AddresseeNo as ToSchema>::name(), "AddresseeNo");
    }

    #[test]
    fn japanese_detail_names_the_field_and_form_but_not_the_value() {
        let err = AddresseeNo::parse("1234567890123456").unwrap_err();
        let detail = err.detail_ja();
        assert_eq!(
            detail,
            "団体内統合宛名番号は15桁以内の数字で指定してください。"
        );
        assert!(!detail.contains("1234567890123456"));
    }
}
