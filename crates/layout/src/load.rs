//! Reading catalogue files (proto/layout/*.toml) and checking them. Every error names the file
//! and line so that an operator can fix a broken catalogue; a broken catalogue stops the service.

use std::{collections::HashMap, ops::Range};

use chrono::NaiveDate;
use chukan_core::ids::InfoCode;
use serde::Deserialize;
use toml::{Spanned, value::Datetime};

use crate::catalogue::{CatalogueError, Dataset, Field, FieldType, History, ItemLayout, Release};

/// A release file as written. Codes and values that a check may point at keep their span.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    release: Spanned<String>,
    name: String,
    valid_from: Spanned<Datetime>,
    #[serde(default)]
    item: Vec<RawItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    info_code: Spanned<String>,
    name: String,
    major_version: Spanned<String>,
    #[serde(default)]
    dataset: Vec<RawDataset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    code: Spanned<String>,
    name: String,
    #[serde(default)]
    parent: Option<Spanned<String>>,
    #[serde(default)]
    history: Option<RawHistory>,
    #[serde(default)]
    field: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    code: Spanned<String>,
    name: String,
    #[serde(rename = "type")]
    ty: Spanned<FieldType>,
    max_length: Spanned<usize>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    group: Option<Spanned<String>>,
    #[serde(default)]
    values: Option<Spanned<Vec<String>>>,
}

/// One catalogue file: its name and text, to turn byte spans into `file:line` errors.
#[derive(Clone, Copy)]
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> CatalogueError {
        CatalogueError::Invalid {
            file: self.file.to_owned(),
            line: self.line(span.start),
            message: message.into(),
        }
    }
}

struct Parsed<'a> {
    source: Source<'a>,
    raw: RawRelease,
    release: Release,
}

/// Parse and check every file, then check the releases against each other.
pub(crate) fn compile(sources: &[(String, String)]) -> Result<Vec<Release>, CatalogueError> {
    if sources.is_empty() {
        return Err(CatalogueError::Empty("(no sources)".to_owned()));
    }
    let mut parsed = Vec::with_capacity(sources.len());
    for (file, text) in sources {
        let source = Source { file, text };
        let raw: RawRelease = toml::from_str(text).map_err(|err| {
            let message = err.message().trim().replace('\n', " ");
            source.error(
                err.span().unwrap_or(0..0),
                format!("TOMLとして読めません: {message}"),
            )
        })?;
        let release = compile_release(source, &raw)?;
        parsed.push(Parsed {
            source,
            raw,
            release,
        });
    }
    check_release_ids(&parsed)?;
    // Stable sort: files with the same date keep their given order, so errors are repeatable.
    parsed.sort_by_key(|p| p.release.valid_from);
    check_across_releases(&parsed)?;
    Ok(parsed.into_iter().map(|p| p.release).collect())
}

fn toml_date(value: &Datetime) -> Option<NaiveDate> {
    match (value.date, value.time, value.offset) {
        (Some(d), None, None) => {
            NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        }
        _ => None,
    }
}

fn four_digits(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

fn item_code(s: &str) -> bool {
    s.strip_prefix('I')
        .is_some_and(|rest| rest.len() == 4 && rest.bytes().all(|b| b.is_ascii_digit()))
}

fn compile_release(source: Source<'_>, raw: &RawRelease) -> Result<Release, CatalogueError> {
    let valid_from = toml_date(raw.valid_from.get_ref()).ok_or_else(|| {
        source.error(
            raw.valid_from.span(),
            "valid_from は日付（例: 2018-07-01、引用符なし）で書いてください。",
        )
    })?;
    if raw.release.get_ref().trim().is_empty() {
        return Err(source.error(raw.release.span(), "release（版の識別子）が空です。"));
    }
    if raw.item.is_empty() {
        return Err(source.error(
            raw.release.span(),
            "特定個人情報（[[item]]）が1つもありません。",
        ));
    }
    let mut items: Vec<ItemLayout> = Vec::with_capacity(raw.item.len());
    for item in &raw.item {
        let info_code = item.info_code.get_ref();
        if InfoCode::parse(info_code).is_err() {
            return Err(source.error(
                item.info_code.span(),
                format!("特定個人情報名コード「{info_code}」は「TM」と14桁の数字ではありません。"),
            ));
        }
        if items.iter().any(|seen| &seen.info_code == info_code) {
            return Err(source.error(
                item.info_code.span(),
                format!("特定個人情報名コード「{info_code}」がこの版に重複しています。"),
            ));
        }
        let major_version = item.major_version.get_ref();
        if !four_digits(major_version) {
            return Err(source.error(
                item.major_version.span(),
                format!(
                    "{info_code}: メジャーバージョン「{major_version}」は4桁の数字ではありません。"
                ),
            ));
        }
        if item.dataset.is_empty() {
            return Err(source.error(
                item.info_code.span(),
                format!("{info_code}: データセット（[[item.dataset]]）が1つもありません。"),
            ));
        }
        let mut datasets: Vec<Dataset> = Vec::with_capacity(item.dataset.len());
        for dataset in &item.dataset {
            let code = dataset.code.get_ref();
            if !four_digits(code) {
                return Err(source.error(
                    dataset.code.span(),
                    format!("{info_code}: データセットコード「{code}」は4桁の数字ではありません。"),
                ));
            }
            if datasets.iter().any(|seen| &seen.code == code) {
                return Err(source.error(
                    dataset.code.span(),
                    format!("{info_code}: データセットコード「{code}」が重複しています。"),
                ));
            }
            datasets.push(compile_dataset(source, info_code, dataset)?);
        }
        check_parents(source, info_code, &item.dataset)?;
        items.push(ItemLayout {
            info_code: info_code.clone(),
            name: item.name.clone(),
            major_version: major_version.clone(),
            datasets,
        });
    }
    Ok(Release {
        id: raw.release.get_ref().clone(),
        name: raw.name.clone(),
        valid_from,
        items,
    })
}

fn compile_dataset(
    source: Source<'_>,
    info_code: &str,
    raw: &RawDataset,
) -> Result<Dataset, CatalogueError> {
    let at = format!("{info_code}/{}", raw.code.get_ref());
    if raw.field.is_empty() {
        return Err(source.error(
            raw.code.span(),
            format!("{at}: データ項目（[[item.dataset.field]]）が1つもありません。"),
        ));
    }
    let mut fields: Vec<Field> = Vec::with_capacity(raw.field.len());
    for field in &raw.field {
        let code = field.code.get_ref();
        if !item_code(code) {
            return Err(source.error(
                field.code.span(),
                format!("{at}: 項目コード「{code}」は「I」と4桁の数字ではありません。"),
            ));
        }
        if fields.iter().any(|seen| &seen.code == code) {
            return Err(source.error(
                field.code.span(),
                format!("{at}: 項目コード「{code}」が重複しています。"),
            ));
        }
        let max_length = *field.max_length.get_ref();
        if max_length == 0 {
            return Err(source.error(
                field.max_length.span(),
                format!("{at}/{code}: max_length は1以上にしてください。"),
            ));
        }
        let ty = *field.ty.get_ref();
        let values = match (&field.values, ty) {
            (None, FieldType::Code) => {
                return Err(source.error(
                    field.ty.span(),
                    format!("{at}/{code}: type = \"code\" にはコード値の一覧 values が必要です。"),
                ));
            }
            (Some(values), FieldType::Code) => {
                if values.get_ref().is_empty() {
                    return Err(source.error(
                        values.span(),
                        format!("{at}/{code}: values（コード値の一覧）が空です。"),
                    ));
                }
                if values
                    .get_ref()
                    .iter()
                    .any(|v| v.is_empty() || v.chars().count() > max_length)
                {
                    return Err(source.error(
                        values.span(),
                        format!(
                            "{at}/{code}: values に空のコード値か max_length（{max_length}文字）を超えるコード値があります。"
                        ),
                    ));
                }
                Some(values.get_ref().clone())
            }
            (Some(values), _) => {
                return Err(source.error(
                    values.span(),
                    format!("{at}/{code}: values は type = \"code\" の項目にだけ書けます。"),
                ));
            }
            (None, _) => None,
        };
        let group = match &field.group {
            Some(group) if group.get_ref().trim().is_empty() => {
                return Err(source.error(
                    group.span(),
                    format!("{at}/{code}: group（繰り返し項目グループ）が空です。"),
                ));
            }
            Some(group) => Some(group.get_ref().clone()),
            None => None,
        };
        fields.push(Field {
            code: code.clone(),
            name: field.name.clone(),
            ty,
            max_length,
            required: field.required,
            group,
            values,
        });
    }
    let history = match &raw.history {
        None => None,
        Some(history) => {
            for end in [&history.from, &history.to] {
                let code = end.get_ref();
                let Some(field) = fields.iter().find(|f| &f.code == code) else {
                    return Err(source.error(
                        end.span(),
                        format!("{at}: 履歴の項目「{code}」がこのデータセットにありません。"),
                    ));
                };
                if field.ty != FieldType::Date {
                    return Err(source.error(
                        end.span(),
                        format!(
                            "{at}: 履歴の項目「{code}」（{}）は日付型（type = \"date\"）ではありません。",
                            field.name
                        ),
                    ));
                }
                // A repeating item has several values: which one bounds the history?
                if field.group.is_some() {
                    return Err(source.error(
                        end.span(),
                        format!("{at}: 履歴の項目「{code}」は繰り返し項目にできません。"),
                    ));
                }
            }
            if history.from.get_ref() == history.to.get_ref() {
                return Err(source.error(
                    history.to.span(),
                    format!("{at}: 履歴の開始項目と終了項目が同じです。"),
                ));
            }
            Some(History {
                from: history.from.get_ref().clone(),
                to: history.to.get_ref().clone(),
            })
        }
    };
    Ok(Dataset {
        code: raw.code.get_ref().clone(),
        name: raw.name.clone(),
        parent: raw.parent.as_ref().map(|p| p.get_ref().clone()),
        history,
        fields,
    })
}

fn check_parents(
    source: Source<'_>,
    info_code: &str,
    datasets: &[RawDataset],
) -> Result<(), CatalogueError> {
    for dataset in datasets {
        let Some(parent) = &dataset.parent else {
            continue;
        };
        let code = parent.get_ref();
        let exists = datasets.iter().any(|d| d.code.get_ref() == code);
        if code == dataset.code.get_ref() || !exists {
            return Err(source.error(
                parent.span(),
                format!(
                    "{info_code}/{}: 親データセット「{code}」が同じ特定個人情報の別のデータセットにありません。",
                    dataset.code.get_ref()
                ),
            ));
        }
    }
    Ok(())
}

fn check_release_ids(parsed: &[Parsed<'_>]) -> Result<(), CatalogueError> {
    for (i, p) in parsed.iter().enumerate() {
        if let Some(first) = parsed[..i].iter().find(|q| q.release.id == p.release.id) {
            return Err(p.source.error(
                p.raw.release.span(),
                format!(
                    "版「{}」は {} にもあります。",
                    p.release.id, first.source.file
                ),
            ));
        }
        if let Some(first) = parsed[..i]
            .iter()
            .find(|q| q.release.valid_from == p.release.valid_from)
        {
            return Err(p.source.error(
                p.raw.valid_from.span(),
                format!(
                    "valid_from {} は版「{}」（{}）と同じです。",
                    p.release.valid_from, first.release.id, first.source.file
                ),
            ));
        }
    }
    Ok(())
}

/// Checks between releases, oldest first: a major version never goes back, and within one
/// major version a data item keeps its type (other definitions may change: minor revision).
fn check_across_releases(parsed: &[Parsed<'_>]) -> Result<(), CatalogueError> {
    let mut majors: HashMap<&str, (&str, &str)> = HashMap::new();
    let mut types: HashMap<(&str, &str, &str, &str), (FieldType, &str)> = HashMap::new();
    for p in parsed {
        let release = p.release.id.as_str();
        for item in &p.raw.item {
            let info_code = item.info_code.get_ref().as_str();
            let major = item.major_version.get_ref().as_str();
            let previous = majors.insert(info_code, (major, release));
            if let Some((before, in_release)) = previous.filter(|(before, _)| major < *before) {
                return Err(p.source.error(
                    item.major_version.span(),
                    format!(
                        "{info_code}: メジャーバージョン{major}は前の版「{in_release}」の{before}より古くなっています。"
                    ),
                ));
            }
            for dataset in &item.dataset {
                for field in &dataset.field {
                    let key = (
                        info_code,
                        major,
                        dataset.code.get_ref().as_str(),
                        field.code.get_ref().as_str(),
                    );
                    let ty = *field.ty.get_ref();
                    let previous = types.insert(key, (ty, release));
                    if let Some((before, in_release)) = previous.filter(|(before, _)| *before != ty)
                    {
                        return Err(p.source.error(
                            field.ty.span(),
                            format!(
                                "{info_code}/{major}/{}/{}: 型が版「{in_release}」の {before} から {ty} に変わっています。同じメジャーバージョンでは項目の型を変えられません。",
                                key.2, key.3
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Catalogue, CatalogueError};

    const HEAD: &str = r#"release = "2018-07"
name = "平成30年7月版"
valid_from = 2018-07-01
"#;

    fn load(files: &[(&str, &str)]) -> Result<Catalogue, CatalogueError> {
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
            .collect();
        Catalogue::from_sources(&sources)
    }

    /// The error of a single-file catalogue, asserting its place.
    fn error_at(text: &str, line: usize) -> String {
        let err = load(&[("2018-07.toml", text)]).unwrap_err();
        let shown = err.to_string();
        match err {
            CatalogueError::Invalid {
                file, line: got, ..
            } => {
                assert_eq!(file, "2018-07.toml", "{shown}");
                assert_eq!(got, line, "{shown}");
            }
            other => panic!("not a placed error: {other}"),
        }
        assert!(
            shown.starts_with(&format!("2018-07.toml:{line}: ")),
            "{shown}"
        );
        shown
    }

    /// A valid one-item catalogue; `extra` is appended to its only dataset's fields.
    fn catalogue_with(info_code: &str, history: &str, extra: &str) -> String {
        format!(
            r#"{HEAD}
[[item]]
info_code = "{info_code}"
name = "医療保険給付関係情報"
major_version = "0002"

[[item.dataset]]
code = "0101"
name = "資格情報"
{history}

[[item.dataset.field]]
code = "I0001"
name = "被保険者番号"
type = "text"
max_length = 20

[[item.dataset.field]]
code = "I0002"
name = "資格取得年月日"
type = "date"
max_length = 10
{extra}"#
        )
    }

    #[test]
    fn the_template_is_valid() {
        let text = catalogue_with(
            "TM00000000000031",
            r#"history = { from = "I0002", to = "I0003" }"#,
            "\n[[item.dataset.field]]\ncode = \"I0003\"\nname = \"資格喪失年月日\"\ntype = \"date\"\nmax_length = 10\n",
        );
        let catalogue = load(&[("2018-07.toml", &text)]).unwrap();
        assert_eq!(catalogue.releases().len(), 1);
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let text = format!("{HEAD}\n[[item]]\ninfo_code = \"TM00000000000031\nname = \"x\"\n");
        let shown = error_at(&text, 6);
        assert!(shown.contains("TOMLとして読めません"), "{shown}");
    }

    #[test]
    fn type_error_names_file_and_line() {
        let text = catalogue_with("TM00000000000031", "", "")
            .replace("max_length = 20", "max_length = \"20\"");
        error_at(&text, 19);
    }

    #[test]
    fn unknown_field_type_is_an_error() {
        let text = catalogue_with("TM00000000000031", "", "").replace("\"text\"", "\"txt\"");
        error_at(&text, 18);
    }

    #[test]
    fn bad_info_code_names_its_line() {
        let text = catalogue_with("TM0000000000031", "", "");
        let shown = error_at(&text, 6);
        assert!(shown.contains("TM0000000000031"), "{shown}");
    }

    #[test]
    fn duplicate_field_names_the_second_one() {
        let extra = "\n[[item.dataset.field]]\ncode = \"I0001\"\nname = \"被保険者番号\"\ntype = \"text\"\nmax_length = 20\n";
        let text = catalogue_with("TM00000000000031", "", extra);
        let shown = error_at(&text, 28);
        assert!(shown.contains("I0001") && shown.contains("重複"), "{shown}");
    }

    #[test]
    fn history_to_a_missing_field_is_an_error() {
        let text = catalogue_with(
            "TM00000000000031",
            r#"history = { from = "I0002", to = "I0003" }"#,
            "",
        );
        let shown = error_at(&text, 13);
        assert!(shown.contains("I0003"), "{shown}");
    }

    #[test]
    fn history_to_a_non_date_field_is_an_error() {
        let text = catalogue_with(
            "TM00000000000031",
            r#"history = { from = "I0001", to = "I0002" }"#,
            "",
        );
        let shown = error_at(&text, 13);
        assert!(shown.contains("日付型"), "{shown}");
    }

    #[test]
    fn bad_codes_and_lengths_are_errors() {
        let base = catalogue_with("TM00000000000031", "", "");
        error_at(&base.replace("\"0002\"", "\"2\""), 8);
        error_at(&base.replace("\"0101\"", "\"101\""), 11);
        error_at(&base.replace("\"I0002\"", "\"J0002\""), 22);
        error_at(&base.replace("max_length = 10", "max_length = 0"), 25);
    }

    #[test]
    fn code_type_needs_values() {
        let base = catalogue_with("TM00000000000031", "", "");
        let shown = error_at(&base.replace("\"text\"", "\"code\""), 18);
        assert!(shown.contains("values"), "{shown}");
        // …and values belong to code items only.
        error_at(
            &base.replace("max_length = 20", "max_length = 20\nvalues = [\"1\"]"),
            20,
        );
    }

    #[test]
    fn duplicate_dataset_and_info_codes_are_errors() {
        let base = catalogue_with("TM00000000000031", "", "");
        let dataset = "\n[[item.dataset]]\ncode = \"0101\"\nname = \"資格情報\"\n\n[[item.dataset.field]]\ncode = \"I0001\"\nname = \"x\"\ntype = \"text\"\nmax_length = 1\n";
        error_at(&format!("{base}{dataset}"), 28);
        let item = "\n[[item]]\ninfo_code = \"TM00000000000031\"\nname = \"x\"\nmajor_version = \"0002\"\n\n[[item.dataset]]\ncode = \"0101\"\nname = \"x\"\n\n[[item.dataset.field]]\ncode = \"I0001\"\nname = \"x\"\ntype = \"text\"\nmax_length = 1\n";
        error_at(&format!("{base}{item}"), 28);
    }

    #[test]
    fn parent_must_be_another_dataset_of_the_item() {
        let base = catalogue_with("TM00000000000031", "parent = \"0199\"", "");
        error_at(&base, 13);
    }

    #[test]
    fn duplicate_release_ids_are_errors() {
        let a = catalogue_with("TM00000000000031", "", "");
        let b = a.replace("valid_from = 2018-07-01", "valid_from = 2019-07-01");
        let err = load(&[("a.toml", &a), ("b.toml", &b)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.toml:1: 版「2018-07」は a.toml にもあります。"
        );
    }

    #[test]
    fn minor_revision_may_change_definitions_but_not_types() {
        let a = catalogue_with("TM00000000000031", "", "");
        let b = a
            .replace("\"2018-07\"", "\"2019-07\"")
            .replace("2018-07-01", "2019-07-01")
            .replace("name = \"被保険者番号\"", "name = \"被保険者番号（改）\"")
            .replace("max_length = 20", "max_length = 30");
        assert!(load(&[("a.toml", &a), ("b.toml", &b)]).is_ok());
        let c = b.replace("\"text\"", "\"digits\"");
        let err = load(&[("a.toml", &a), ("b.toml", &c)]).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("b.toml:18: "), "{shown}");
        assert!(
            shown.contains("text") && shown.contains("digits"),
            "{shown}"
        );
    }

    #[test]
    fn empty_sources_are_an_error() {
        assert!(matches!(load(&[]), Err(CatalogueError::Empty(_))));
    }
}
