//! Errors that end the reading of a list.

/// A problem that ends the file: nothing after it can be trusted. Problems confined to one
/// entry are [`Defect`](crate::Defect)s instead.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The outer document is not well-formed XML (mismatched tags, bad syntax).
    #[error("XML の形式が正しくありません ({line} 行目): {detail}")]
    Malformed {
        /// 1-based line of the problem.
        line: u64,
        /// What is wrong, in Japanese; never contains values from the file.
        detail: String,
    },
    /// The file ends before `</SPIRegistrationDeleteList>`.
    #[error(
        "ファイルが途中で終わっています ({line} 行目): </SPIRegistrationDeleteList> まで届いていません。ファイル全体を送り直してください"
    )]
    Truncated {
        /// 1-based line where the file ends.
        line: u64,
    },
    /// The root element is not `SPIRegistrationDeleteList`.
    #[error("副本登録リストではありません (ルート要素が SPIRegistrationDeleteList ではありません)")]
    NotARegistrationList,
    /// An entry is larger than the configured limit; reading stopped without buffering it.
    #[error("{ordinal} 件目のエントリが上限の {limit} バイトを超えています")]
    EntryTooLarge {
        /// 1-based position of the entry.
        ordinal: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// The file could not be read.
    #[error("ファイルを読み込めませんでした: {0}")]
    Io(#[from] std::io::Error),
}

impl ListError {
    /// Stable code for logs and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            ListError::Malformed { .. } => "malformed-xml",
            ListError::Truncated { .. } => "truncated-file",
            ListError::NotARegistrationList => "not-a-registration-list",
            ListError::EntryTooLarge { .. } => "entry-too-large",
            ListError::Io(_) => "io",
        }
    }
}
