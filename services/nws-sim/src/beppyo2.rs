//! 別表第二 (Appendix 2 of the My Number Act): which procedure (事務手続) may ask the network
//! for which specific personal information item (特定個人情報). The table is data
//! (`data/beppyo2.toml`), embedded at build time and checked when the simulator starts, so a
//! broken table stops it with the line at fault instead of refusing inquiries at random.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
};

use chukan_core::ids::{AffairCode, InfoCode, ProcedureCode};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The table shipped with the simulator.
pub const EMBEDDED: &str = include_str!("../data/beppyo2.toml");
const EMBEDDED_NAME: &str = "data/beppyo2.toml";

/// A table that cannot be used, with where.
#[derive(Debug, thiserror::Error)]
#[error("別表第二 ({file}) {line}行目: {message}")]
pub struct TableError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    item: Vec<RawNamed>,
    #[serde(default)]
    affair: Vec<RawNamed>,
    #[serde(default)]
    procedure: Vec<RawProcedure>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamed {
    code: Spanned<String>,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcedure {
    code: Spanned<String>,
    name: String,
    affair: Spanned<String>,
    items: Spanned<Vec<Spanned<String>>>,
}

/// A code with its Japanese name, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Named {
    pub code: String,
    pub name: String,
}

/// One procedure row: its affair and the items it may ask for, in the table's order.
#[derive(Debug, Clone, Serialize)]
pub struct Procedure {
    pub code: String,
    pub name: String,
    pub affair: Named,
    pub items: Vec<Named>,
}

/// The checked table, as `GET /v1/beppyo2` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Beppyo2 {
    pub items: Vec<Named>,
    pub affairs: Vec<Named>,
    pub procedures: Vec<Procedure>,
    /// procedure code → (affair code, allowed item codes), for the per-inquiry check.
    #[serde(skip)]
    allowed: BTreeMap<String, (String, BTreeSet<String>)>,
    #[serde(skip)]
    item_names: BTreeMap<String, String>,
}

struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> TableError {
        let upto = span.start.min(self.text.len());
        TableError {
            file: self.file.to_owned(),
            line: self.text[..upto].matches('\n').count() + 1,
            message: message.into(),
        }
    }
}

impl Beppyo2 {
    /// The embedded table.
    pub fn embedded() -> Result<Beppyo2, TableError> {
        Self::parse(EMBEDDED_NAME, EMBEDDED)
    }

    /// Parses and checks a table; `file` only names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Beppyo2, TableError> {
        let source = Source { file, text };
        let raw: RawTable = toml::from_str(text).map_err(|err| {
            let message = err.message().trim().replace('\n', " ");
            source.error(
                err.span().unwrap_or(0..0),
                format!("TOMLとして読めません: {message}"),
            )
        })?;

        let mut item_names = BTreeMap::new();
        for item in &raw.item {
            let code = item.code.get_ref();
            if InfoCode::parse(code).is_err() {
                return Err(source.error(
                    item.code.span(),
                    format!("特定個人情報名コード「{code}」は「TM」と14桁の数字ではありません。"),
                ));
            }
            check_name(&source, &item.code, &item.name)?;
            if item_names.insert(code.clone(), item.name.clone()).is_some() {
                return Err(source.error(
                    item.code.span(),
                    format!("特定個人情報名コード「{code}」が重複しています。"),
                ));
            }
        }
        let mut affair_names = BTreeMap::new();
        for affair in &raw.affair {
            let code = affair.code.get_ref();
            if AffairCode::parse(code).is_err() {
                return Err(source.error(
                    affair.code.span(),
                    format!("事務コード「{code}」は「JM」と14桁の数字ではありません。"),
                ));
            }
            check_name(&source, &affair.code, &affair.name)?;
            if affair_names
                .insert(code.clone(), affair.name.clone())
                .is_some()
            {
                return Err(source.error(
                    affair.code.span(),
                    format!("事務コード「{code}」が重複しています。"),
                ));
            }
        }

        let mut allowed = BTreeMap::new();
        let mut procedures = Vec::with_capacity(raw.procedure.len());
        for p in &raw.procedure {
            let code = p.code.get_ref();
            if ProcedureCode::parse(code).is_err() {
                return Err(source.error(
                    p.code.span(),
                    format!("事務手続コード「{code}」は「JT」と14桁の数字ではありません。"),
                ));
            }
            check_name(&source, &p.code, &p.name)?;
            let affair_code = p.affair.get_ref();
            let Some(affair_name) = affair_names.get(affair_code) else {
                return Err(source.error(
                    p.affair.span(),
                    format!("事務コード「{affair_code}」は[[affair]]にありません。"),
                ));
            };
            if p.items.get_ref().is_empty() {
                return Err(source.error(
                    p.items.span(),
                    format!("事務手続「{code}」に照会できる特定個人情報がありません。"),
                ));
            }
            let mut codes = BTreeSet::new();
            let mut items = Vec::with_capacity(p.items.get_ref().len());
            for item in p.items.get_ref() {
                let item_code = item.get_ref();
                let Some(item_name) = item_names.get(item_code) else {
                    return Err(source.error(
                        item.span(),
                        format!("特定個人情報名コード「{item_code}」は[[item]]にありません。"),
                    ));
                };
                if !codes.insert(item_code.clone()) {
                    return Err(source.error(
                        item.span(),
                        format!("特定個人情報名コード「{item_code}」が重複しています。"),
                    ));
                }
                items.push(Named {
                    code: item_code.clone(),
                    name: item_name.clone(),
                });
            }
            if allowed
                .insert(code.clone(), (affair_code.clone(), codes))
                .is_some()
            {
                return Err(source.error(
                    p.code.span(),
                    format!("事務手続コード「{code}」が重複しています。"),
                ));
            }
            procedures.push(Procedure {
                code: code.clone(),
                name: p.name.clone(),
                affair: Named {
                    code: affair_code.clone(),
                    name: affair_name.clone(),
                },
                items,
            });
        }
        if procedures.is_empty() {
            return Err(source.error(0..0, "事務手続（[[procedure]]）が1つもありません。"));
        }
        let named = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(code, name)| Named {
                    code: code.clone(),
                    name: name.clone(),
                })
                .collect()
        };
        Ok(Beppyo2 {
            items: named(&item_names),
            affairs: named(&affair_names),
            procedures,
            allowed,
            item_names,
        })
    }

    /// Whether `procedure` (of `affair`) may ask for `info`: a listed row whose affair matches.
    pub fn permits(&self, affair: &str, procedure: &str, info: &str) -> bool {
        self.allowed
            .get(procedure)
            .is_some_and(|(a, items)| a == affair && items.contains(info))
    }

    /// The item's Japanese name, if the table has it.
    pub fn item_name(&self, info: &str) -> Option<&str> {
        self.item_names.get(info).map(String::as_str)
    }
}

fn check_name(source: &Source<'_>, code: &Spanned<String>, name: &str) -> Result<(), TableError> {
    if name.trim().is_empty() {
        return Err(source.error(
            code.span(),
            format!("「{}」の名称（name）が空です。", code.get_ref()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_is_valid_and_realistic() {
        let t = Beppyo2::embedded().unwrap();
        assert!(t.procedures.len() >= 8);
        assert!(t.items.len() >= 6);
        // 児童手当の認定請求 may ask for local tax, not for medical insurance benefits.
        assert!(t.permits("JM00000000000001", "JT00000000000101", "TM00000000000002"));
        assert!(!t.permits("JM00000000000001", "JT00000000000101", "TM00000000000031"));
        // A listed pair under the wrong affair is not permitted.
        assert!(!t.permits("JM00000000000002", "JT00000000000101", "TM00000000000002"));
        assert!(t.permits("JM00000000000004", "JT00000000000401", "TM00000000000031"));
        assert!(!t.permits("JM00000000000004", "JT00000000099999", "TM00000000000031"));
        assert_eq!(
            t.item_name("TM00000000000031"),
            Some("医療保険給付関係情報")
        );
        assert_eq!(t.item_name("TM00000000009999"), None);
    }

    fn error_of(text: &str) -> TableError {
        Beppyo2::parse("test.toml", text).unwrap_err()
    }

    #[test]
    fn errors_name_the_line() {
        let base = "[[item]]\ncode = \"TM00000000000002\"\nname = \"地方税関係情報\"\n\n\
                    [[affair]]\ncode = \"JM00000000000001\"\nname = \"児童手当\"\n\n";
        let unknown_item = format!(
            "{base}[[procedure]]\ncode = \"JT00000000000101\"\nname = \"x\"\n\
             affair = \"JM00000000000001\"\nitems = [\"TM00000000000099\"]\n"
        );
        let e = error_of(&unknown_item);
        assert_eq!(e.line, 13, "{e}");
        assert!(e.to_string().contains("TM00000000000099"), "{e}");

        let unknown_affair = format!(
            "{base}[[procedure]]\ncode = \"JT00000000000101\"\nname = \"x\"\n\
             affair = \"JM00000000000009\"\nitems = [\"TM00000000000002\"]\n"
        );
        assert_eq!(error_of(&unknown_affair).line, 12);

        let bad_code = "[[item]]\ncode = \"XX1\"\nname = \"x\"\n";
        assert_eq!(error_of(bad_code).line, 2);
        let not_toml = "[[item]]\ncode = \n";
        let e = error_of(not_toml);
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("test.toml"));
        assert_eq!(error_of("").line, 1);
    }
}
