//! What the screens share: reading a multipart form with its CSRF secret, the problems a
//! form shows beside its fields, passing a file the API serves on, and names in URLs.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use futures_util::StreamExt as _;

use crate::{
    api::{ApiError, Download, Problem},
    form::sent_csrf,
    pages::Failure,
    session::Staff,
    view::Errors,
};

/// Largest text field of a multipart form (a notice body is at most 4,000 characters).
const TEXT_LIMIT: usize = 64 * 1024;
/// Most parts one form may have.
const MAX_PARTS: usize = 64;

/// A file of a multipart form.
pub struct FilePart {
    pub field: String,
    pub file_name: String,
    pub content_type: String,
    pub body: bytes::Bytes,
}

/// A multipart form read whole, its CSRF secret checked.
#[derive(Default)]
pub struct Parts {
    pub fields: Vec<(String, String)>,
    pub files: Vec<FilePart>,
    /// The files were larger than allowed together (and were dropped): the text fields
    /// are kept to show the form again.
    pub too_large: bool,
}

impl Parts {
    pub fn text(&self, name: &str) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }
    pub fn file(&self, name: &str) -> Option<&FilePart> {
        self.files.iter().find(|f| f.field == name)
    }
}

/// The refusal of files larger than `limit` together, worded like the API's, beside
/// `field`.
pub fn too_large(field: &str, what: &str, limit: usize) -> Problem {
    Problem {
        status: 413,
        code: "payload-too-large".into(),
        detail: format!(
            "{what}が大きすぎます（上限 {} バイト）。",
            grouped(i64::try_from(limit).unwrap_or(i64::MAX))
        ),
        action: "ファイルを分けるか小さくしてから、もう一度送信してください。".into(),
        field: Some(field.into()),
        support_id: None,
    }
}

/// The refusal of a form sent without its file.
pub fn missing_file(field: &str, what: &str) -> Problem {
    Problem {
        status: 422,
        code: "missing-file".into(),
        detail: format!("{what}が選択されていません。"),
        action: "ファイルを選んでから送信してください。".into(),
        field: Some(field.into()),
        support_id: None,
    }
}

/// Reads a multipart form. Its CSRF secret (the `X-CSRF-Token` header, or a `csrf`
/// field placed before any file) is checked before a file is read, so a forged upload is
/// refused without being buffered. `file_limit` bounds all files together.
pub async fn read_multipart(
    req: &HttpRequest,
    staff: &Staff,
    payload: web::Payload,
    file_limit: usize,
) -> Result<Parts, Failure> {
    let mut csrf_ok = matches!(sent_csrf(req, &[]), Some(given) if staff.csrf_matches(given));
    let mut form = Multipart::new(req.headers(), payload);
    let mut parts = Parts::default();
    let mut room = file_limit;
    let mut count = 0usize;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|_| Failure::BadForm)?;
        count += 1;
        if count > MAX_PARTS {
            return Err(Failure::BadForm);
        }
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(str::to_string);
        let Some(file_name) = file_name else {
            let value = read_text(&mut field).await?;
            if name == "csrf" && !csrf_ok {
                csrf_ok = staff.csrf_matches(&value);
            }
            parts.fields.push((name, value));
            continue;
        };
        if !csrf_ok {
            return Err(Failure::Csrf);
        }
        let content_type = field
            .content_type()
            .map(|m| m.essence_str().to_string())
            .unwrap_or_else(|| "application/octet-stream".into());
        match field.bytes(room).await {
            Ok(body) => {
                let body = body.map_err(|_| Failure::BadForm)?;
                room -= body.len();
                // An empty file input sends a nameless, empty part: nothing was chosen.
                if !(file_name.is_empty() && body.is_empty()) {
                    parts.files.push(FilePart {
                        field: name,
                        file_name,
                        content_type,
                        body,
                    });
                }
            }
            // Read on (the stream is drained) so the browser gets the answer.
            Err(_) => parts.too_large = true,
        }
    }
    if !csrf_ok {
        return Err(Failure::Csrf);
    }
    Ok(parts)
}

async fn read_text(field: &mut actix_multipart::Field) -> Result<String, Failure> {
    let bytes = field
        .bytes(TEXT_LIMIT)
        .await
        .map_err(|_| Failure::BadForm)?
        .map_err(|_| Failure::BadForm)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Failure::BadForm)
}

/// A problem the form can show (a refusal of what was entered); anything else is a
/// failure of the page.
pub fn form_problem(e: ApiError) -> Result<Problem, Failure> {
    shown_problem(e, &[400, 409, 413, 415, 422])
}

/// Places a problem beside its field: the one the API names in `field`, else the one its
/// code always concerns (`weak-password` → the password).
pub fn beside(mut problem: Problem, fields: &[&str], by_code: &[(&str, &str)]) -> Errors {
    if problem.field.is_none() {
        problem.field = by_code
            .iter()
            .find(|(code, _)| *code == problem.code)
            .map(|(_, f)| (*f).to_string());
    }
    Errors::from_problem(problem, fields)
}

/// A problem of one of `statuses` the page shows; anything else is a failure of the page.
pub fn shown_problem(e: ApiError, statuses: &[u16]) -> Result<Problem, Failure> {
    match e {
        ApiError::Problem(p) if statuses.contains(&p.status) => Ok(*p),
        e => Err(e.into()),
    }
}

/// A file the API serves, passed on with its type and name.
pub fn pass_on(staff: &Staff, file: Download) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, file.content_type))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(staff.renewed.clone());
    if let Some(d) = file.disposition {
        res.insert_header((header::CONTENT_DISPOSITION, d));
    }
    res.body(file.body)
}

/// `s` percent-encoded for one URL path segment or query value (RFC 3986 unreserved
/// characters kept), so a file name with spaces, `&` or Japanese reaches the API intact.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form field left blank is absent (the API's null), otherwise its trimmed text.
pub fn optional(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `path` with `pairs` as its query string (none when there are none).
pub fn with_query<V: serde::Serialize>(path: &str, pairs: &[(&str, V)]) -> String {
    match serde_urlencoded::to_string(pairs) {
        Ok(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// `1234567` as `1,234,567` (by value or, as templates pass fields, by reference).
pub fn grouped(n: impl std::borrow::Borrow<i64>) -> String {
    let n = *n.borrow();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_for_urls() {
        assert_eq!(encode_component("a b&c.xml"), "a%20b%26c.xml");
        assert_eq!(encode_component("説明"), "%E8%AA%AC%E6%98%8E");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(-1_000), "-1,000");
    }
}
