//! The replica payload (副本データ): the XML fragment inside `DuplicateCopyData`, a run of
//! sibling item elements named by item code, e.g.
//! `<I0001 Version="0002" TimeAndDateOfUpdate="2017-03-01">2222</I0001>`.

use crate::{
    date::{parse_date_prefix, push_date},
    entry::{Defect, element},
    escape::{is_blank, push_attr, push_text},
};
use chukan_layout::{ItemValue, Payload};
use quick_xml::{
    Reader,
    events::{BytesRef, BytesStart, Event},
};

const MALFORMED: &str = "payload-malformed";

fn malformed(detail: impl Into<String>) -> Defect {
    Defect::new(MALFORMED, element::PAYLOAD, detail)
}

/// Parses a `DuplicateCopyData` fragment (several sibling item elements, no root) into a
/// payload. An item with no text (`<I0003/>`, `<I0003></I0003>`) has value `None`.
pub fn parse_payload(fragment: &str) -> Result<Payload, Defect> {
    let mut reader = Reader::from_str(fragment);
    let mut items = Vec::new();
    let mut open: Option<ItemValue> = None;
    let mut text = String::new();
    loop {
        let event = reader.read_event().map_err(|err| {
            malformed(format!(
                "DuplicateCopyData の XML が整形式ではありません ({}): {}",
                position_note(fragment, reader.error_position()),
                describe(&err)
            ))
        })?;
        match event {
            Event::Start(start) => {
                if let Some(outer) = &open {
                    return Err(nested(&outer.code));
                }
                open = Some(item_from_start(&start, &reader)?);
                text.clear();
            }
            Event::Empty(start) => {
                if let Some(outer) = &open {
                    return Err(nested(&outer.code));
                }
                items.push(item_from_start(&start, &reader)?);
            }
            Event::End(_) => {
                // Unmatched and mismatched end tags are errors from the reader itself.
                if let Some(mut item) = open.take() {
                    item.value = (!text.is_empty()).then(|| text.clone());
                    items.push(item);
                }
            }
            Event::Text(t) => match &open {
                Some(_) => text.push_str(&t.xml10_content().map_err(|_| not_utf8())?),
                None if is_blank(&t) => {}
                None => return Err(stray_text()),
            },
            Event::CData(c) => match &open {
                Some(_) => text.push_str(&c.xml10_content().map_err(|_| not_utf8())?),
                None if c.is_empty() => {}
                None => return Err(stray_text()),
            },
            Event::GeneralRef(r) => match &open {
                Some(item) => match resolve_reference(&r) {
                    Some(c) => text.push(c),
                    None => {
                        return Err(malformed(format!(
                            "DuplicateCopyData の項目 {} に定義されていない参照があります",
                            item.code
                        )));
                    }
                },
                None => return Err(stray_text()),
            },
            // A replica is sometimes sent as a whole document: its declaration is harmless.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => {
                return match open {
                    Some(item) => Err(malformed(format!(
                        "DuplicateCopyData の項目 {} が閉じられていません",
                        item.code
                    ))),
                    None => Ok(items),
                };
            }
        }
    }
}

fn item_from_start(start: &BytesStart<'_>, reader: &Reader<&[u8]>) -> Result<ItemValue, Defect> {
    let code = std::str::from_utf8(start.local_name().into_inner())
        .map_err(|_| not_utf8())?
        .to_owned();
    let mut item = ItemValue {
        code,
        value: None,
        version: None,
        updated: None,
        null_reason: None,
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|_| {
            malformed(format!(
                "DuplicateCopyData の項目 {} の属性が正しくありません",
                item.code
            ))
        })?;
        let value = || {
            attr.decode_and_unescape_value(reader.decoder())
                .map(|v| crate::escape::trim_xml(&v).to_owned())
                .map_err(|_| {
                    malformed(format!(
                        "DuplicateCopyData の項目 {} の属性値に不正な参照があります",
                        item.code
                    ))
                })
        };
        match attr.key.local_name().as_ref() {
            b"Version" => item.version = Some(value()?).filter(|v| !v.is_empty()),
            b"TimeAndDateOfUpdate" => {
                let v = value()?;
                if !v.is_empty() {
                    item.updated = Some(parse_date_prefix(&v).ok_or_else(|| {
                        Defect::new(
                            "invalid-date",
                            element::PAYLOAD,
                            format!(
                                "DuplicateCopyData の項目 {} の TimeAndDateOfUpdate が日付 (YYYY-MM-DD) ではありません",
                                item.code
                            ),
                        )
                    })?);
                }
            }
            b"ReasonOfNull" => item.null_reason = Some(value()?).filter(|v| !v.is_empty()),
            // `xsi:nil` only repeats what an empty element says; namespace declarations and
            // attributes of other schemas carry nothing for us.
            _ => {}
        }
    }
    Ok(item)
}

/// The character a reference stands for: predefined entities and character references.
pub(crate) fn resolve_reference(r: &BytesRef<'_>) -> Option<char> {
    if r.is_char_ref() {
        return r.resolve_char_ref().ok().flatten();
    }
    match &**r {
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"amp" => Some('&'),
        b"apos" => Some('\''),
        b"quot" => Some('"'),
        _ => None,
    }
}

fn nested(code: &str) -> Defect {
    malformed(format!(
        "DuplicateCopyData の項目 {code} の中に要素があります (項目は入れ子にできません)"
    ))
}

fn stray_text() -> Defect {
    malformed("DuplicateCopyData の項目の外に文字列があります")
}

fn not_utf8() -> Defect {
    Defect::new(
        "invalid-encoding",
        element::PAYLOAD,
        "DuplicateCopyData が UTF-8 ではありません",
    )
}

/// `n 行目` within the fragment, for the operator to find the spot.
fn position_note(fragment: &str, offset: u64) -> String {
    let end = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(fragment.len());
    let line = 1 + fragment.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    format!("断片の {line} 行目")
}

/// A Japanese description of a quick-xml error that never repeats document content other
/// than element names.
pub(crate) fn describe(err: &quick_xml::Error) -> String {
    use quick_xml::errors::{IllFormedError, SyntaxError};
    match err {
        quick_xml::Error::Syntax(s) => match s {
            SyntaxError::InvalidBangMarkup => "`<!` の後が正しくありません".to_owned(),
            SyntaxError::UnclosedPIOrXmlDecl => "処理命令が閉じられていません".to_owned(),
            SyntaxError::UnclosedComment => "コメントが閉じられていません".to_owned(),
            SyntaxError::UnclosedDoctype => "DOCTYPE が閉じられていません".to_owned(),
            SyntaxError::UnclosedCData => "CDATA セクションが閉じられていません".to_owned(),
            SyntaxError::UnclosedTag => "タグが閉じられていません".to_owned(),
        },
        quick_xml::Error::IllFormed(i) => match i {
            IllFormedError::MismatchedEndTag { expected, found } => format!(
                "終了タグ </{}> が開始タグ <{}> と対応していません",
                short(found),
                short(expected)
            ),
            IllFormedError::UnmatchedEndTag(name) => {
                format!("開始タグのない終了タグ </{}> があります", short(name))
            }
            IllFormedError::MissingEndTag(name) => {
                format!("要素 <{}> が閉じられていません", short(name))
            }
            IllFormedError::UnclosedReference => {
                "`&` の後に `;` がありません (`&` は `&amp;` と書きます)".to_owned()
            }
            IllFormedError::DoubleHyphenInComment => "コメントの中に `--` があります".to_owned(),
            IllFormedError::MissingDeclVersion(_) => "XML 宣言に version がありません".to_owned(),
            IllFormedError::MissingDoctypeName => "DOCTYPE に名前がありません".to_owned(),
        },
        quick_xml::Error::InvalidAttr(_) => "属性が正しくありません".to_owned(),
        quick_xml::Error::Encoding(_) => "UTF-8 ではない文字があります".to_owned(),
        quick_xml::Error::Escape(_) => "文字参照が正しくありません".to_owned(),
        quick_xml::Error::Namespace(_) => "名前空間の宣言が正しくありません".to_owned(),
        quick_xml::Error::Io(_) => "読み込みに失敗しました".to_owned(),
    }
}

/// Element names are markup, not values, but may be arbitrarily long.
pub(crate) fn short(name: &str) -> String {
    const MAX: usize = 64;
    match name.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

/// Renders a payload as a fragment: one element per item, text escaped, `Version`,
/// `TimeAndDateOfUpdate` and `ReasonOfNull` as attributes, an empty item as
/// `<I0003 ReasonOfNull="…" xsi:nil="true"/>`.
///
/// Item codes are written as element names as they are: they must be XML names (catalogue
/// codes such as `I0001` are); [`ListWriter`](crate::ListWriter) checks this.
pub fn write_payload(payload: &Payload) -> String {
    let mut out = String::with_capacity(payload.len() * 48);
    push_payload(&mut out, payload);
    out
}

pub(crate) fn push_payload(out: &mut String, payload: &Payload) {
    for item in payload {
        out.push('<');
        out.push_str(&item.code);
        if let Some(version) = &item.version {
            out.push_str(" Version=\"");
            push_attr(out, version);
            out.push('"');
        }
        if let Some(updated) = item.updated {
            out.push_str(" TimeAndDateOfUpdate=\"");
            push_date(out, updated);
            out.push('"');
        }
        if let Some(reason) = &item.null_reason {
            out.push_str(" ReasonOfNull=\"");
            push_attr(out, reason);
            out.push('"');
        }
        match item.value.as_deref() {
            Some(value) if !value.is_empty() => {
                out.push('>');
                push_text(out, value);
                out.push_str("</");
                out.push_str(&item.code);
                out.push('>');
            }
            _ => out.push_str(" xsi:nil=\"true\"/>"),
        }
    }
}

/// Whether `code` can be written as an element name without escaping (an item code of the
/// layout catalogue, e.g. `I0001`, always can).
pub fn is_item_name(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn item(code: &str, value: Option<&str>) -> ItemValue {
        ItemValue {
            code: code.to_owned(),
            value: value.map(str::to_owned),
            version: None,
            updated: None,
            null_reason: None,
        }
    }

    #[test]
    fn the_appendix_fragment_parses() {
        let payload = parse_payload(
            r#"
      <I0001 Version="0002" TimeAndDateOfUpdate="2017-03-01">2222</I0001>
      <I0002>2017-02-28</I0002>
      <I0003 ReasonOfNull="NotAcceptable" xsi:nil="true"/>
    "#,
        )
        .unwrap();
        assert_eq!(
            payload,
            vec![
                ItemValue {
                    version: Some("0002".into()),
                    updated: NaiveDate::from_ymd_opt(2017, 3, 1),
                    ..item("I0001", Some("2222"))
                },
                item("I0002", Some("2017-02-28")),
                ItemValue {
                    null_reason: Some("NotAcceptable".into()),
                    ..item("I0003", None)
                },
            ]
        );
    }

    #[test]
    fn round_trip_with_awkward_text() {
        let payload = vec![
            item("I0001", Some("a<b>&c]]>d \"q\" 'x'\r\n山田　太郎")),
            ItemValue {
                version: Some("00\"02".into()),
                updated: NaiveDate::from_ymd_opt(2017, 2, 28),
                ..item("I0002", Some("  spaced  "))
            },
            ItemValue {
                null_reason: Some("NotAcceptable".into()),
                ..item("I0003", None)
            },
            item("I0004", None),
        ];
        let fragment = write_payload(&payload);
        assert!(!fragment.contains("]]>"));
        assert_eq!(parse_payload(&fragment).unwrap(), payload);
    }

    #[test]
    fn date_time_update_keeps_the_date() {
        let p = parse_payload(r#"<I1 TimeAndDateOfUpdate="2017-03-01T12:00:00">x</I1>"#).unwrap();
        assert_eq!(p[0].updated, NaiveDate::from_ymd_opt(2017, 3, 1));
    }

    #[test]
    fn broken_fragments_are_defects() {
        for (fragment, code) in [
            ("<I0001>x</I0002>", MALFORMED),
            ("<I0001>x", MALFORMED),
            ("<I0001><I0002/></I0001>", MALFORMED),
            ("text<I0001/>", MALFORMED),
            ("<I0001>&nbsp;</I0001>", MALFORMED),
            ("<I0001>&amp</I0001>", MALFORMED),
            ("<I0001 Version=\"1\" Version=\"2\"/>", MALFORMED),
            (
                "<I0001 TimeAndDateOfUpdate=\"2017-13-01\"/>",
                "invalid-date",
            ),
            ("</I0001>", MALFORMED),
        ] {
            let defect = parse_payload(fragment).unwrap_err();
            assert_eq!(defect.code, code, "{fragment}");
            assert_eq!(defect.field, "DuplicateCopyData");
        }
    }

    #[test]
    fn defect_detail_never_repeats_values() {
        let defect = parse_payload("<I0001>秘密の値</I0002>").unwrap_err();
        assert!(!defect.detail.contains("秘密"));
        let defect = parse_payload("<I0001>秘密 & 値</I0001>").unwrap_err();
        assert!(!defect.detail.contains("秘密"));
    }

    #[test]
    fn empty_fragment_is_an_empty_payload() {
        assert_eq!(parse_payload("  \n ").unwrap(), vec![]);
        assert_eq!(parse_payload("").unwrap(), vec![]);
    }

    #[test]
    fn item_names() {
        assert!(is_item_name("I0001"));
        assert!(is_item_name("_a-b.c"));
        assert!(!is_item_name("1abc"));
        assert!(!is_item_name("a b"));
        assert!(!is_item_name(""));
        assert!(!is_item_name("a<b"));
    }
}
