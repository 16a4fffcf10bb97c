//! Residents' flags (DOMAIN §6): 不開示該当フラグ (non-disclosure), 自己情報提供不可フラグ
//! (self-information prohibited) and 自動応答不可 (auto-response prohibited) per info item or,
//! enhancement #3, per dataset of an item.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One 自動応答不可 setting: a whole item (`dataset` null) or one dataset of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct Prohibition {
    /// 特定個人情報名コード (TM + 14 digits).
    pub info_code: String,
    /// データセット識別項目コード (4 digits); null = every dataset of the item.
    #[serde(default)]
    pub dataset: Option<String>,
}

/// A resident's flags as they are now (all false / empty when never set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub non_disclosure: bool,
    pub self_info_prohibited: bool,
    pub auto_response_prohibited: Vec<Prohibition>,
}

impl Flags {
    /// Whether an automatic answer of `info_code` whose records are of `datasets` must wait
    /// for staff: the whole item is prohibited, or a dataset the answer would contain is.
    pub fn blocks_auto_answer<'a>(
        &self,
        info_code: &str,
        mut datasets: impl Iterator<Item = &'a str>,
    ) -> bool {
        let of_item: Vec<&Prohibition> = self
            .auto_response_prohibited
            .iter()
            .filter(|p| p.info_code == info_code)
            .collect();
        if of_item.is_empty() {
            return false;
        }
        if of_item.iter().any(|p| p.dataset.is_none()) {
            return true;
        }
        datasets.any(|d| of_item.iter().any(|p| p.dataset.as_deref() == Some(d)))
    }
}

pub fn four_digits(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(p: &[(&str, Option<&str>)]) -> Flags {
        Flags {
            auto_response_prohibited: p
                .iter()
                .map(|(i, d)| Prohibition {
                    info_code: (*i).into(),
                    dataset: d.map(Into::into),
                })
                .collect(),
            ..Flags::default()
        }
    }

    const TM: &str = "TM00000000000031";

    #[test]
    fn a_whole_item_blocks_even_an_empty_answer() {
        assert!(flags(&[(TM, None)]).blocks_auto_answer(TM, std::iter::empty()));
        assert!(!flags(&[(TM, None)]).blocks_auto_answer("TM00000000000002", ["0101"].into_iter()));
    }

    #[test]
    fn a_dataset_blocks_only_answers_containing_it() {
        let f = flags(&[(TM, Some("0102"))]);
        assert!(!f.blocks_auto_answer(TM, ["0101"].into_iter()));
        assert!(f.blocks_auto_answer(TM, ["0101", "0102"].into_iter()));
        assert!(!f.blocks_auto_answer(TM, std::iter::empty()));
        assert!(!Flags::default().blocks_auto_answer(TM, ["0102"].into_iter()));
    }
}
