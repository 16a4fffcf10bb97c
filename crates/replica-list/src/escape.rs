//! Escaping text and attribute values for the XML we write.

/// Escapes element text. `>` is escaped too so that `]]>` never appears in what we write, and
/// `\r` as a character reference so that XML end-of-line handling does not eat it.
pub(crate) fn push_text(out: &mut String, text: &str) {
    push_escaped(out, text, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '\r' => Some("&#xD;"),
        _ => None,
    });
}

/// Escapes an attribute value (quoted with `"`); whitespace other than the space is kept as
/// character references because attribute-value normalisation would turn it into spaces.
pub(crate) fn push_attr(out: &mut String, text: &str) {
    push_escaped(out, text, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\r' => Some("&#xD;"),
        '\n' => Some("&#xA;"),
        '\t' => Some("&#x9;"),
        _ => None,
    });
}

fn push_escaped(out: &mut String, text: &str, escape: impl Fn(char) -> Option<&'static str>) {
    let mut plain_from = 0;
    for (i, c) in text.char_indices() {
        if let Some(replacement) = escape(c) {
            out.push_str(&text[plain_from..i]);
            out.push_str(replacement);
            plain_from = i + c.len_utf8();
        }
    }
    out.push_str(&text[plain_from..]);
}

/// Appends `content` as CDATA, splitting it wherever it contains the closing `]]>`.
pub(crate) fn push_cdata(out: &mut String, content: &str) {
    out.push_str("<![CDATA[");
    let mut rest = content;
    while let Some(at) = rest.find("]]>") {
        // End the section between `]]` and `>` and reopen it: `]]]]><![CDATA[>`.
        out.push_str(&rest[..at + 2]);
        out.push_str("]]><![CDATA[");
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out.push_str("]]>");
}

/// Whitespace as XML defines it (not the ideographic space U+3000, which is data).
pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(crate) fn trim_xml(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escaping() {
        let mut s = String::new();
        push_text(&mut s, "a<b>&c]]>\r\n漢字");
        assert_eq!(s, "a&lt;b&gt;&amp;c]]&gt;&#xD;\n漢字");
    }

    #[test]
    fn attr_escaping() {
        let mut s = String::new();
        push_attr(&mut s, "\"x\"\t<y>");
        assert_eq!(s, "&quot;x&quot;&#x9;&lt;y&gt;");
    }

    #[test]
    fn cdata_splits_the_terminator() {
        let mut s = String::new();
        push_cdata(&mut s, "a]]>b]]>");
        assert_eq!(s, "<![CDATA[a]]]]><![CDATA[>b]]]]><![CDATA[>]]>");
        let mut s = String::new();
        push_cdata(&mut s, "");
        assert_eq!(s, "<![CDATA[]]>");
    }
}
