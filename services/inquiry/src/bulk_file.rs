//! 一括照会ファイル (bulk inquiry file): the fixed-length 18-field layout of DOMAIN §6, one
//! inquiry per line, 220 bytes per line in the configured encoding (UTF-8 or Shift_JIS),
//! space-padded. Widths count bytes of the encoded line, so fields are cut before decoding.

use std::borrow::Cow;

use chrono::{NaiveDate, NaiveDateTime};
use chukan_core::ids::{AddresseeNo, AffairCode, InfoCode, InvalidId, OrgCode, ProcedureCode};

use crate::domain::{Condition, LineError, NewInquiry};

/// Field names (as published) and their widths in bytes.
pub const FIELDS: [(&str, usize); 18] = [
    ("番号体系", 2),
    ("宛名番号", 15),
    ("統合宛名番号", 15),
    ("照会依頼日時", 17),
    ("部署コード", 20),
    ("ユーザーID", 20),
    ("照会者機関コード", 16),
    ("照会側不開示コード", 1),
    ("事務コード", 16),
    ("事務手続コード", 16),
    ("照会者機関コード(委任元)", 16),
    ("提供者機関コード(委任元)", 16),
    ("提供者機関コード", 16),
    ("特定個人情報名コード", 16),
    ("照会条件区分", 1),
    ("照会年度区分", 1),
    ("照会開始日付", 8),
    ("照会終了日付", 8),
];

/// Bytes of one line without its line end.
pub const LINE_BYTES: usize = 220;
/// Bytes of one line with CR LF: the unit of the upload size cap.
pub const LINE_BYTES_WITH_END: usize = LINE_BYTES + 2;

/// The field name used for errors of the line as a whole.
pub const WHOLE_LINE: &str = "行";

/// Character encoding of bulk files: the setting `inquiry.bulk_encoding` itself.
pub use chukan_config::BulkEncoding as FileEncoding;

/// The text of `bytes` in `encoding`, or None when they are not text in it.
fn decode(encoding: FileEncoding, bytes: &[u8]) -> Option<Cow<'_, str>> {
    match encoding {
        FileEncoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
        FileEncoding::ShiftJis => {
            encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes)
        }
    }
}

/// A line that passed the format checks (the department and code checks need the database).
#[derive(Debug, Clone)]
pub struct BulkLine {
    /// 1-based line number = 枝番.
    pub line: i32,
    pub inquiry: NewInquiry,
    /// The department the line is entered for (the line's, else the caller's).
    pub department: Option<String>,
}

/// Every line of a file, checked.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub lines: i32,
    pub ok: Vec<BulkLine>,
    pub errors: Vec<LineError>,
}

/// Splits the file into lines (LF or CR LF; a final line end is optional).
pub fn split_lines(body: &[u8]) -> Vec<&[u8]> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

/// Checks every line of `body` for `tenant`, entered by a caller of `caller_dept`.
pub fn parse(
    body: &[u8],
    encoding: FileEncoding,
    tenant: &str,
    caller_dept: Option<&str>,
) -> ParsedFile {
    let mut out = ParsedFile::default();
    for (i, raw) in split_lines(body).into_iter().enumerate() {
        let line = i32::try_from(i + 1).unwrap_or(i32::MAX);
        out.lines = line;
        match parse_line(line, raw, encoding, tenant, caller_dept) {
            Ok(ok) => out.ok.push(ok),
            Err(errors) => out.errors.extend(errors),
        }
    }
    out
}

fn err(line: i32, field: &str, code: &str, detail: impl Into<String>) -> LineError {
    LineError {
        line,
        field: field.to_owned(),
        code: code.to_owned(),
        detail: detail.into(),
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\u{3000}')
}

fn parse_line(
    line: i32,
    raw: &[u8],
    encoding: FileEncoding,
    tenant: &str,
    caller_dept: Option<&str>,
) -> Result<BulkLine, Vec<LineError>> {
    if raw.len() != LINE_BYTES {
        return Err(vec![err(
            line,
            WHOLE_LINE,
            "invalid-line-length",
            format!(
                "行の長さが{}バイトです。1行は{LINE_BYTES}バイトの固定長で作成してください。",
                raw.len()
            ),
        )]);
    }
    let mut values: Vec<String> = Vec::with_capacity(FIELDS.len());
    let mut errors = Vec::new();
    let mut at = 0;
    for (name, width) in FIELDS {
        let bytes = &raw[at..at + width];
        at += width;
        match decode(encoding, bytes) {
            // A control character (NUL above all) means nothing in a fixed-length field, and
            // PostgreSQL text cannot hold NUL: refused here, before anything is stored.
            Some(s) if s.chars().any(char::is_control) => {
                errors.push(err(
                    line,
                    name,
                    "invalid-character",
                    format!("{name}に使用できない文字（NUL などの制御文字）が含まれています。"),
                ));
                values.push(String::new());
            }
            Some(s) => values.push(trim(&s).to_owned()),
            None => {
                errors.push(err(
                    line,
                    name,
                    "invalid-encoding",
                    format!("{name}を文字コードとして解釈できません。ファイルの文字コードと桁位置を確認してください。"),
                ));
                values.push(String::new());
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let v = |i: usize| values[i].as_str();
    let id_error = |name: &str, e: InvalidId| err(line, name, "invalid-field", e.detail_ja());

    if !(v(0).len() == 2 && v(0).bytes().all(|b| b.is_ascii_digit())) {
        errors.push(err(
            line,
            FIELDS[0].0,
            "invalid-field",
            "番号体系は2桁の数字で指定してください。",
        ));
    }
    if !v(1).is_empty() && AddresseeNo::parse(v(1)).is_err() {
        errors.push(err(
            line,
            FIELDS[1].0,
            "invalid-field",
            "宛名番号は15桁以内の数字で指定してください。",
        ));
    }
    let addressee = AddresseeNo::parse(v(2)).map_err(|e| id_error(FIELDS[2].0, e));
    if !v(3).is_empty() && !valid_request_time(v(3)) {
        errors.push(err(
            line,
            FIELDS[3].0,
            "invalid-field",
            "照会依頼日時はYYYYMMDDHHMMSSfff（17桁）で指定してください。",
        ));
    }
    let department = match (v(4), caller_dept) {
        ("", dept) => dept.map(str::to_owned),
        (line_dept, Some(dept)) if line_dept != dept => {
            errors.push(err(
                line,
                FIELDS[4].0,
                "department-mismatch",
                "部署コードがログイン中の利用者の所属部署と一致しません。",
            ));
            None
        }
        (line_dept, _) => Some(line_dept.to_owned()),
    };
    match OrgCode::parse(v(6)) {
        Err(e) => errors.push(id_error(FIELDS[6].0, e)),
        Ok(org) if org.as_str() != tenant => errors.push(err(
            line,
            FIELDS[6].0,
            "wrong-inquirer",
            "照会者機関コードがログイン中の団体の機関コードと一致しません。",
        )),
        Ok(_) => {}
    }
    let non_disclosure = match v(7) {
        "" | "0" => false,
        "1" => true,
        _ => {
            errors.push(err(
                line,
                FIELDS[7].0,
                "invalid-field",
                "照会側不開示コードは「0」又は「1」で指定してください。",
            ));
            false
        }
    };
    let affair = AffairCode::parse(v(8)).map_err(|e| id_error(FIELDS[8].0, e));
    let procedure = ProcedureCode::parse(v(9)).map_err(|e| id_error(FIELDS[9].0, e));
    for i in [10, 11] {
        if !v(i).is_empty()
            && let Err(e) = OrgCode::parse(v(i))
        {
            errors.push(id_error(FIELDS[i].0, e));
        }
    }
    let provider = OrgCode::parse(v(12)).map_err(|e| id_error(FIELDS[12].0, e));
    let info = InfoCode::parse(v(13)).map_err(|e| id_error(FIELDS[13].0, e));
    let year_kind = match v(15) {
        k @ ("" | "0" | "1" | "2") => k.to_owned(),
        _ => {
            errors.push(err(
                line,
                FIELDS[15].0,
                "invalid-field",
                "照会年度区分は「0」「1」「2」のいずれかで指定してください。",
            ));
            String::new()
        }
    };
    let from = date(v(16)).ok_or_else(|| {
        err(
            line,
            FIELDS[16].0,
            "invalid-field",
            "照会開始日付はYYYYMMDD（8桁）の日付で指定してください。",
        )
    });
    let condition = match (v(14), from) {
        ("1", Ok(from)) => Some(Condition {
            kind: "1",
            year_kind,
            from,
            to: None,
        }),
        ("2", Ok(from)) => match date(v(17)) {
            Some(to) if to >= from => Some(Condition {
                kind: "2",
                year_kind,
                from,
                to: Some(to),
            }),
            Some(_) => {
                errors.push(err(
                    line,
                    FIELDS[17].0,
                    "invalid-field",
                    "照会終了日付は照会開始日付以降の日付にしてください。",
                ));
                None
            }
            None => {
                errors.push(err(line, FIELDS[17].0, "invalid-field", "照会条件区分「2」（期間）では照会終了日付をYYYYMMDD（8桁）で指定してください。"));
                None
            }
        },
        ("1" | "2", Err(e)) => {
            errors.push(e);
            None
        }
        (_, from) => {
            errors.push(err(
                line,
                FIELDS[14].0,
                "invalid-field",
                "照会条件区分は「1」（時点）又は「2」（期間）で指定してください。",
            ));
            if let Err(e) = from {
                errors.push(e);
            }
            None
        }
    };
    let addressee = collect(addressee, &mut errors);
    let affair = collect(affair, &mut errors);
    let procedure = collect(procedure, &mut errors);
    let provider = collect(provider, &mut errors);
    let info = collect(info, &mut errors);
    match (addressee, affair, procedure, provider, info, condition) {
        (Some(a), Some(af), Some(p), Some(pr), Some(i), Some(c)) if errors.is_empty() => {
            Ok(BulkLine {
                line,
                inquiry: NewInquiry {
                    affair_code: af.as_str().to_owned(),
                    procedure_code: p.as_str().to_owned(),
                    info_code: i.as_str().to_owned(),
                    addressee: a.as_str().to_owned(),
                    provider_org: pr.as_str().to_owned(),
                    condition: c,
                    non_disclosure,
                },
                department,
            })
        }
        _ => {
            errors.sort_by_key(|e| field_position(&e.field));
            Err(errors)
        }
    }
}

fn collect<T>(r: Result<T, LineError>, errors: &mut Vec<LineError>) -> Option<T> {
    match r {
        Ok(x) => Some(x),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn field_position(name: &str) -> usize {
    FIELDS.iter().position(|(n, _)| *n == name).unwrap_or(0)
}

fn date(s: &str) -> Option<NaiveDate> {
    (s.len() == 8)
        .then(|| NaiveDate::parse_from_str(s, "%Y%m%d").ok())
        .flatten()
}

fn valid_request_time(s: &str) -> bool {
    s.len() == 17
        && s.bytes().all(|b| b.is_ascii_digit())
        && NaiveDateTime::parse_from_str(&s[..14], "%Y%m%d%H%M%S").is_ok()
}

/// Pads `value` with spaces to `width` bytes (for building files: tests, docs, tools).
pub fn pad(value: &str, width: usize) -> String {
    let mut s = value.to_owned();
    while s.len() < width {
        s.push(' ');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TENANT: &str = "1310010000000001";

    fn line(fields: [&str; 18]) -> String {
        fields
            .iter()
            .zip(FIELDS)
            .map(|(v, (_, w))| pad(v, w))
            .collect()
    }

    fn good() -> [&'static str; 18] {
        [
            "01",
            "",
            "12345",
            "20260401093000000",
            "",
            "",
            TENANT,
            "0",
            "JM00000000000001",
            "JT00000000000001",
            "",
            "",
            "2710000000000002",
            "TM00000000000002",
            "1",
            "0",
            "20260401",
            "",
        ]
    }

    #[test]
    fn widths_add_up_to_220_bytes() {
        assert_eq!(FIELDS.iter().map(|(_, w)| w).sum::<usize>(), LINE_BYTES);
        assert_eq!(line(good()).len(), LINE_BYTES);
    }

    #[test]
    fn a_good_line_parses_into_an_inquiry() {
        let file = format!("{}\r\n{}\n", line(good()), line(good()));
        let parsed = parse(file.as_bytes(), FileEncoding::Utf8, TENANT, None);
        assert_eq!(parsed.lines, 2);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let first = &parsed.ok[0];
        assert_eq!(first.line, 1);
        assert_eq!(first.inquiry.addressee, "12345");
        assert_eq!(first.inquiry.condition.kind, "1");
        assert_eq!(parsed.ok[1].line, 2);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut f = good();
        f[6] = "9999999999999999";
        f[9] = "JX00000000000001";
        f[14] = "2";
        f[17] = "2026";
        let parsed = parse(line(f).as_bytes(), FileEncoding::Utf8, TENANT, None);
        let fields: Vec<&str> = parsed.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["照会者機関コード", "事務手続コード", "照会終了日付"]
        );
        assert!(parsed.errors.iter().all(|e| e.line == 1));
        assert_eq!(parsed.errors[0].code, "wrong-inquirer");
        let short = parse(b"01 12", FileEncoding::Utf8, TENANT, None);
        assert_eq!(short.errors[0].field, WHOLE_LINE);
        assert_eq!(short.errors[0].code, "invalid-line-length");
    }

    #[test]
    fn a_nul_or_another_control_character_in_a_field_is_refused_naming_the_field() {
        for (at, bad) in [(4, "総務\0課"), (5, "user\u{1}"), (2, "\0\0\0")] {
            let mut f = good();
            f[at] = bad;
            let parsed = parse(line(f).as_bytes(), FileEncoding::Utf8, TENANT, None);
            assert!(parsed.ok.is_empty(), "{bad:?}");
            assert_eq!(parsed.errors[0].code, "invalid-character");
            assert_eq!(parsed.errors[0].field, FIELDS[at].0);
        }
    }

    #[test]
    fn shift_jis_fields_are_cut_by_bytes() {
        // 「福祉課」 is 6 bytes in Shift_JIS and 9 in UTF-8: the line is 220 bytes only in SJIS.
        let mut f = good();
        f[4] = "福祉課";
        let text: String = f
            .iter()
            .zip(FIELDS)
            .map(|(v, (_, w))| {
                let len = encoding_rs::SHIFT_JIS.encode(v).0.len();
                format!("{v}{}", " ".repeat(w - len))
            })
            .collect();
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(&text);
        assert_eq!(bytes.len(), LINE_BYTES);
        let parsed = parse(&bytes, FileEncoding::ShiftJis, TENANT, None);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(parsed.ok[0].department.as_deref(), Some("福祉課"));
        let as_utf8 = parse(&bytes, FileEncoding::Utf8, TENANT, None);
        assert_eq!(as_utf8.errors[0].code, "invalid-encoding");
    }
}
