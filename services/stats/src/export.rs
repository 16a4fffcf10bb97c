//! CSV as Japanese staff open it in Excel: CRLF lines, fields quoted where needed, Japanese
//! headers, and either UTF-8 with a byte-order mark (without it Excel reads UTF-8 as
//! Shift_JIS and shows mojibake) or Shift_JIS for older tools.

use actix_web::{HttpResponse, http::header};

/// The character set of a CSV answer (`encoding=` on the statistics routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvEncoding {
    /// UTF-8 with a byte-order mark.
    #[default]
    Utf8,
    ShiftJis,
}

impl CsvEncoding {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Self::Utf8),
            "shift_jis" | "shift-jis" | "sjis" => Some(Self::ShiftJis),
            _ => None,
        }
    }

    fn charset(self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::ShiftJis => "Shift_JIS",
        }
    }
}

/// One field, quoted when it holds a comma, a quote or a line break.
fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// The CSV text of `headers` and `rows`.
pub fn to_text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let mut line = |values: &mut dyn Iterator<Item = &str>| {
        for (i, v) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, v);
        }
        out.push_str("\r\n");
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The bytes of `text` in `encoding`. Every character a statistics CSV holds (codes, digits
/// and the Japanese headers) exists in Shift_JIS.
pub fn encode(text: &str, encoding: CsvEncoding) -> Vec<u8> {
    match encoding {
        CsvEncoding::Utf8 => {
            let mut bytes = Vec::with_capacity(text.len() + 3);
            bytes.extend_from_slice(b"\xEF\xBB\xBF");
            bytes.extend_from_slice(text.as_bytes());
            bytes
        }
        CsvEncoding::ShiftJis => encoding_rs::SHIFT_JIS.encode(text).0.into_owned(),
    }
}

/// A download of `headers` and `rows` named `file_name` (ASCII).
pub fn response(
    file_name: &str,
    headers: &[&str],
    rows: &[Vec<String>],
    encoding: CsvEncoding,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            format!("text/csv; charset={}", encoding.charset()),
        ))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        ))
        .body(encode(&to_text(headers, rows), encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed_and_lines_end_in_crlf() {
        let text = to_text(
            &["件数", "備考"],
            &[
                vec!["12".into(), "a,b".into()],
                vec!["3".into(), "say \"hi\"".into()],
            ],
        );
        assert_eq!(text, "件数,備考\r\n12,\"a,b\"\r\n3,\"say \"\"hi\"\"\"\r\n");
    }

    #[test]
    fn utf8_starts_with_a_bom_and_shift_jis_encodes_the_japanese_headers() {
        let utf8 = encode("件数\r\n", CsvEncoding::Utf8);
        assert_eq!(&utf8[..3], b"\xEF\xBB\xBF");
        assert_eq!(&utf8[3..], "件数\r\n".as_bytes());
        let sjis = encode("件数\r\n", CsvEncoding::ShiftJis);
        // 件 = 0x8C 0x8F, 数 = 0x90 0x94 in Shift_JIS.
        assert_eq!(sjis, b"\x8C\x8F\x90\x94\r\n");
        assert_eq!(CsvEncoding::parse("Shift_JIS"), Some(CsvEncoding::ShiftJis));
        assert_eq!(CsvEncoding::parse("latin1"), None);
    }
}
