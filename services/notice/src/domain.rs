//! Types of the notice service's API and the rules they carry (limits, states).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use chukan_core::ids::{AddresseeNo, FileName};
use chukan_proto::{NoticeAttachment, NoticeContent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// 件名 (title): at most this many characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// 本文 (body): at most this many characters.
pub const MAX_BODY_CHARS: usize = 4000;
/// 添付ファイル: at most this many files.
pub const MAX_ATTACHMENTS: usize = 5;
/// 添付ファイル: decoded bytes of all files together (and so of any one). The notice travels
/// in one signed envelope, and both the NWS and relay refuse envelopes over 1 MiB; half of
/// that leaves room for the text and the envelope.
pub const MAX_ATTACHMENT_BYTES: usize = 512 * 1024;
/// 回答選択肢: at most this many choices, each at most this many characters.
pub const MAX_REPLY_CHOICES: usize = 10;
pub const MAX_CHOICE_CHARS: usize = 50;
/// A notice may be scheduled at most this far ahead.
pub const MAX_SCHEDULE_DAYS: i64 = 366;
/// Largest `POST /v1/notices` body: base64 of the attachments (4/3) plus the text.
pub const NOTICE_JSON_LIMIT: usize = 1024 * 1024;
/// Notices one status check may ask about.
pub const MAX_CHECK_NOTICES: usize = 1000;

/// 添付ファイル as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    /// File name shown to the resident (the rule of [`FileName`], as for self-information).
    #[schema(value_type = FileName)]
    pub file_name: String,
    /// Media type, e.g. `application/pdf`.
    #[schema(pattern = "^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")]
    pub media_type: String,
    /// The file, base64 (standard alphabet, padded), not empty; 512 KiB decoded at most.
    #[schema(
        min_length = 4,
        max_length = 699052,
        pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    )]
    pub content_base64: String,
}

/// お知らせ (a notice to one resident).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeInput {
    /// 団体内統合宛名番号 of the resident.
    pub addressee: AddresseeNo,
    /// 件名 (1..=100 characters, not blank, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^(?=.*[^\\s])[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub title: String,
    /// 本文 (1..=4000 characters, not blank).
    #[schema(min_length = 1, max_length = 4000, pattern = "\\S")]
    pub body: String,
    /// Up to 5 files, 512 KiB decoded in total.
    #[serde(default)]
    #[schema(max_items = 5)]
    pub attachments: Vec<AttachmentInput>,
    /// 回答選択肢: 0..=10 distinct choices of 1..=50 characters (not blank, no control
    /// characters); the resident picks one.
    #[serde(default)]
    #[schema(max_items = 10, value_type = Vec<ReplyChoice>)]
    pub reply_choices: Vec<String>,
    /// 配信日時: send at this time instead of at once (at most 366 days ahead).
    #[serde(default)]
    pub deliver_at: Option<DateTime<Utc>>,
}

/// 回答選択肢 (one reply choice), as documented: 1..=50 characters, not blank, no control
/// characters.
#[derive(ToSchema)]
#[schema(pattern = "^(?=.*[^\\s])[^\\u0000-\\u001F\\u007F-\\u009F]{1,50}$")]
pub struct ReplyChoice(#[allow(dead_code)] String);

chukan_core::body_schema!(
    /// The body of `POST /v1/notices`: reply choices are distinct.
    NoticeBody = "NoticeInput" + serde_json::json!({
        "type": "object",
        "properties": {"reply_choices": {"type": "array", "uniqueItems": true}}
    })
);

/// Why a notice is not acceptable: HTTP status, stable code, Japanese detail (no values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub detail: &'static str,
}

fn invalid(detail: &'static str) -> Refusal {
    Refusal {
        status: 400,
        code: "invalid-field",
        detail,
    }
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `type/subtype`, ASCII token characters only.
fn media_type_ok(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match s.split_once('/') {
        Some((a, b)) => token(a) && token(b),
        None => false,
    }
}

/// Checks a notice and turns it into what is sealed and sent.
pub fn content_of(input: &NoticeInput) -> Result<NoticeContent, Refusal> {
    if blank(&input.title) || input.title.chars().count() > MAX_TITLE_CHARS {
        return Err(invalid(
            "件名（title）は1文字以上100文字以内で指定してください。",
        ));
    }
    if has_control(&input.title) {
        return Err(invalid("件名（title）に制御文字は使えません。"));
    }
    if blank(&input.body) || input.body.chars().count() > MAX_BODY_CHARS {
        return Err(invalid(
            "本文（body）は1文字以上4000文字以内で指定してください。",
        ));
    }
    if input.reply_choices.len() > MAX_REPLY_CHOICES {
        return Err(invalid("回答選択肢（reply_choices）は10個までです。"));
    }
    for (i, c) in input.reply_choices.iter().enumerate() {
        if blank(c) || c.chars().count() > MAX_CHOICE_CHARS || has_control(c) {
            return Err(invalid(
                "回答選択肢（reply_choices）は1文字以上50文字以内（制御文字なし）で指定してください。",
            ));
        }
        if input.reply_choices[..i].contains(c) {
            return Err(invalid(
                "回答選択肢（reply_choices）に同じ選択肢が重複しています。",
            ));
        }
    }
    if input.attachments.len() > MAX_ATTACHMENTS {
        return Err(invalid("添付ファイル（attachments）は5個までです。"));
    }
    let mut attachments = Vec::with_capacity(input.attachments.len());
    let mut total = 0usize;
    for a in &input.attachments {
        if FileName::parse(&a.file_name).is_err() {
            return Err(invalid(
                "添付ファイル名（file_name）は200文字以内で、/ \\ \" や制御文字を含まない名前を指定してください。",
            ));
        }
        if !media_type_ok(&a.media_type) {
            return Err(invalid(
                "添付ファイルの種類（media_type）は「application/pdf」のような形式で指定してください。",
            ));
        }
        // Longer text cannot decode to an acceptable size: refuse before decoding it.
        if a.content_base64.len() > MAX_ATTACHMENT_BYTES.div_ceil(3) * 4 {
            return Err(too_large());
        }
        let content = STANDARD.decode(a.content_base64.as_bytes()).map_err(|_| {
            invalid("添付ファイルの内容（content_base64）はbase64で指定してください。")
        })?;
        if content.is_empty() {
            return Err(invalid("空の添付ファイルは送れません。"));
        }
        total += content.len();
        if total > MAX_ATTACHMENT_BYTES {
            return Err(too_large());
        }
        attachments.push(NoticeAttachment {
            file_name: a.file_name.clone(),
            media_type: a.media_type.clone(),
            content,
        });
    }
    Ok(NoticeContent {
        title: input.title.clone(),
        body: input.body.clone(),
        attachments,
        reply_choices: input.reply_choices.clone(),
    })
}

fn too_large() -> Refusal {
    Refusal {
        status: 413,
        code: "attachments-too-large",
        detail: "添付ファイルは合計512KiBまでです。",
    }
}

chukan_db::text_enum! {
    /// お知らせの状態 (state of a notice).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum NoticeStatus {
        /// 受付済み: waiting for its deliver_at, or for the broker to take it.
        Accepted = "accepted",
        /// 送信済み: handed to relay for the NWS.
        Sent = "sent",
        /// 配信済み: in the resident's portal inbox, unread.
        Delivered = "delivered",
        /// 既読.
        Read = "read",
        /// 回答済み.
        Replied = "replied",
        /// 配信不能: the NWS knows no such resident, or the resident has no portal account.
        Undeliverable = "undeliverable",
    }
}

impl NoticeStatus {
    /// Whether a report of `next` moves a notice now in `self` forward. States only advance
    /// (a late or repeated report never undoes a newer one); undeliverable ends a notice the
    /// portal never had.
    pub fn advances_to(self, next: NoticeStatus) -> bool {
        let rank = |s: NoticeStatus| match s {
            Self::Accepted => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Replied => 4,
            Self::Undeliverable => 5,
        };
        match (self, next) {
            (Self::Undeliverable | Self::Replied, _) => false,
            (Self::Accepted | Self::Sent, Self::Undeliverable) => true,
            (_, Self::Undeliverable) => false,
            _ => rank(next) > rank(self),
        }
    }
}

/// Accepted notice.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeAccepted {
    pub notice_id: Uuid,
    pub state: NoticeStatus,
    pub accepted_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<DateTime<Utc>>,
}

/// 添付ファイル as shown back.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    pub file_name: String,
    pub media_type: String,
    pub size_bytes: usize,
    pub content_base64: String,
}

/// A notice and how far it got. Lists leave out `body` and `attachments`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notice {
    pub notice_id: Uuid,
    pub state: NoticeStatus,
    /// 団体内統合宛名番号, masked to its last four digits.
    pub addressee_masked: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentView>>,
    pub attachment_count: i32,
    pub reply_choices_count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_choices: Option<Vec<String>>,
    pub accepted_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    /// The resident's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_choice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<DateTime<Utc>>,
    /// Why undeliverable (stable code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// When the NWS last reported on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticePage {
    pub items: Vec<Notice>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<Uuid>,
}

/// Notice filters: as a query string (deprecated, the addressee would be in the URL) or as
/// the body of `POST /v1/notices/search`.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
pub struct NoticeQuery {
    /// 団体内統合宛名番号: only this resident's notices.
    #[param(value_type = Option<AddresseeNo>)]
    #[schema(value_type = Option<AddresseeNo>)]
    pub addressee: Option<String>,
    /// accepted | sent | delivered | read | replied | undeliverable.
    #[param(inline, value_type = Option<NoticeStatus>)]
    #[schema(inline, value_type = Option<NoticeStatus>)]
    pub state: Option<String>,
    /// 1..=500 (default 100).
    #[serde(default, deserialize_with = "chukan_core::json_int::option_i64")]
    pub limit: Option<i64>,
    /// The last notice_id of the previous page.
    pub after: Option<Uuid>,
}

/// 状況確認要求: the notices named, or every notice still open (sent, delivered or read).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusCheckInput {
    /// 1..=1000 notice ids.
    #[serde(default)]
    pub notice_ids: Option<Vec<Uuid>>,
    /// Every dispatched notice not yet replied or undeliverable (the oldest 1000).
    #[serde(default)]
    pub all_pending: Option<bool>,
}

chukan_core::body_schema!(
    /// The body of `POST /v1/notice-status-checks`: `notice_ids` (1–1000) or
    /// `all_pending: true`, not both.
    StatusCheckBody = "StatusCheckInput" + serde_json::json!({
        "oneOf": [
            {"type": "object", "required": ["notice_ids"], "properties": {
                "notice_ids": {"type": "array", "minItems": 1, "maxItems": 1000},
                "all_pending": {"enum": [false, null]}}},
            {"type": "object", "required": ["all_pending"], "properties": {
                "all_pending": {"const": true},
                "notice_ids": {"type": "null"}}}
        ]
    })
);

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCheckAccepted {
    pub check_id: Uuid,
    pub notice_count: usize,
    pub requested_at: DateTime<Utc>,
}

/// State of a status check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// Sent to the NWS, no answer yet.
    Pending,
    Answered,
}

/// One notice as a status check shows it (its current state).
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckedNotice {
    pub notice_id: Uuid,
    pub state: NoticeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_choice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCheck {
    pub check_id: Uuid,
    pub state: CheckState,
    pub requested_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    /// Notices the NWS's answer named.
    pub reported: i32,
    pub notices: Vec<CheckedNotice>,
}

/// Associated data binding a sealed value to its tenant, column and row, so a blob copied
/// elsewhere does not open.
pub fn aad(tenant: &str, column: &str, row: &[u8]) -> Vec<u8> {
    let mut out = format!("notice|{column}|{tenant}|").into_bytes();
    out.extend_from_slice(row);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn input() -> NoticeInput {
        NoticeInput {
            addressee: AddresseeNo::parse("12345").unwrap(),
            title: "お知らせ".into(),
            body: "本文".into(),
            attachments: vec![],
            reply_choices: vec!["はい".into(), "いいえ".into()],
            deliver_at: None,
        }
    }

    #[test]
    fn limits_are_enforced_by_characters_not_bytes() {
        let mut i = input();
        i.title = "あ".repeat(100);
        assert!(content_of(&i).is_ok());
        i.title = "あ".repeat(101);
        assert_eq!(content_of(&i).unwrap_err().code, "invalid-field");
        let mut i = input();
        i.body = "x".repeat(4001);
        assert!(content_of(&i).is_err());
        let mut i = input();
        i.reply_choices = (0..11).map(|n| n.to_string()).collect();
        assert!(content_of(&i).is_err());
        i.reply_choices = vec!["a".into(), "a".into()];
        assert!(content_of(&i).is_err());
    }

    #[test]
    fn attachments_are_decoded_and_capped_in_total() {
        let mut i = input();
        let half = STANDARD.encode(vec![7u8; MAX_ATTACHMENT_BYTES / 2]);
        let file = |name: &str| AttachmentInput {
            file_name: name.into(),
            media_type: "application/pdf".into(),
            content_base64: half.clone(),
        };
        i.attachments = vec![file("a.pdf"), file("b.pdf")];
        assert_eq!(content_of(&i).unwrap().attachments.len(), 2);
        i.attachments.push(file("c.pdf"));
        assert_eq!(content_of(&i).unwrap_err().status, 413);
        i.attachments = vec![file("../a.pdf")];
        assert!(content_of(&i).is_err());
        i.attachments = vec![AttachmentInput {
            media_type: "pdf".into(),
            ..file("a.pdf")
        }];
        assert!(content_of(&i).is_err());
        i.attachments = vec![AttachmentInput {
            content_base64: "***".into(),
            ..file("a.pdf")
        }];
        assert!(content_of(&i).is_err());
    }

    #[test]
    fn states_only_advance() {
        use NoticeStatus::*;
        assert!(Sent.advances_to(Delivered));
        assert!(Accepted.advances_to(Replied));
        assert!(Delivered.advances_to(Read));
        assert!(!Read.advances_to(Delivered));
        assert!(!Replied.advances_to(Read));
        assert!(Sent.advances_to(Undeliverable));
        assert!(!Read.advances_to(Undeliverable));
        assert!(!Undeliverable.advances_to(Delivered));
        for &s in NoticeStatus::ALL {
            assert_eq!(NoticeStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn every_state_is_shown_as_it_is_stored() {
        for &s in NoticeStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(
                serde_json::from_value::<NoticeStatus>(s.as_str().into()).unwrap(),
                s
            );
        }
    }
}
