//! The catalogue of data standard layout (データ標準レイアウト) releases and the lookup of a
//! record's dataset layout.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{
    load,
    record::{Payload, RecordKind},
    revision::{self, Abolition, Revision},
    validate::{self, Rejection, Validated},
};

/// The releases shipped in the binary; operators may replace them with `Catalogue::load_dir`.
const BUILTIN: &[(&str, &str)] = &[
    (
        "2018-07.toml",
        include_str!("../../../proto/layout/2018-07.toml"),
    ),
    (
        "2019-07.toml",
        include_str!("../../../proto/layout/2019-07.toml"),
    ),
];

/// Every release of the data standard layout known to this server, oldest first.
///
/// Built once at start and checked then: a catalogue that exists is a consistent one.
#[derive(Debug, Clone)]
pub struct Catalogue {
    releases: Vec<Release>,
}

/// One release (版) of the catalogue: a complete snapshot in force from `valid_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// Stable id, e.g. `2018-07`.
    pub id: String,
    /// Japanese name, e.g. `平成30年7月版`.
    pub name: String,
    /// The date this release takes effect.
    pub valid_from: NaiveDate,
    /// Specific personal information items (特定個人情報) in this release.
    pub items: Vec<ItemLayout>,
}

/// One specific personal information item (特定個人情報) at one major version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemLayout {
    /// 特定個人情報名コード, `TM` + 14 digits.
    pub info_code: String,
    /// Japanese name, e.g. `地方税関係情報`.
    pub name: String,
    /// 特定個人情報メジャーバージョン, four digits.
    pub major_version: String,
    /// Its datasets (データセット).
    pub datasets: Vec<Dataset>,
}

/// The layout of one dataset (データセット): the data items a record of it may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    /// データセット識別項目コード, four digits, e.g. `0101`.
    pub code: String,
    /// Japanese name.
    pub name: String,
    /// Code of the parent dataset in the same item, if this one hangs below another.
    pub parent: Option<String>,
    /// For a history dataset, which items hold its validity period.
    pub history: Option<History>,
    /// Its data items (データ項目) in catalogue order.
    pub fields: Vec<Field>,
}

/// The items of a history dataset that give each record's validity period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    /// Item code of the start date, e.g. `I0002` 資格取得年月日.
    pub from: String,
    /// Item code of the end date, e.g. `I0003` 資格喪失年月日.
    pub to: String,
}

/// One data item (データ項目) of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Item code, `I` + 4 digits, unique within its dataset.
    pub code: String,
    /// Japanese name, e.g. `被保険者番号`.
    pub name: String,
    /// The form its value must take.
    pub ty: FieldType,
    /// Maximum length in characters.
    pub max_length: usize,
    /// Whether a record must carry a value for it.
    pub required: bool,
    /// The repeating group (繰り返し項目) it belongs to: it may repeat and each occurrence
    /// carries `Version` and `TimeAndDateOfUpdate`.
    pub group: Option<String>,
    /// The allowed values of a `code` item (コード値).
    pub values: Option<Vec<String>>,
}

/// The form of a data item's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Any characters.
    Text,
    /// ASCII digits only, e.g. an insurer number.
    Digits,
    /// A decimal number: optional sign, digits, optional fraction.
    Number,
    /// A calendar date `YYYY-MM-DD`.
    Date,
    /// One of the item's listed code values.
    Code,
}

impl FieldType {
    /// The name used in catalogue files.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Digits => "digits",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Code => "code",
        }
    }
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record's kind has no layout. Shown to business systems, so in Japanese.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// No release knows the info code.
    #[error("特定個人情報名コードがデータ標準レイアウトにありません。")]
    UnknownItem,
    /// The info code exists, never at this major version.
    #[error("特定個人情報のメジャーバージョンがデータ標準レイアウトにありません。")]
    UnknownVersion,
    /// The item exists at this major version, without this dataset.
    #[error("データセットがデータ標準レイアウトの該当版にありません。")]
    UnknownDataset,
    /// The dataset was abolished (データセット廃止) on `on`.
    #[error("データセットは{on}に廃止されました。")]
    DatasetAbolished {
        /// The abolition date: the valid_from of the first release without it.
        on: NaiveDate,
    },
}

impl LayoutError {
    /// Stable machine-readable code, also used as the violation code.
    pub fn code(&self) -> &'static str {
        match self {
            LayoutError::UnknownItem => "unknown-info-code",
            LayoutError::UnknownVersion => "unknown-major-version",
            LayoutError::UnknownDataset => "unknown-dataset",
            LayoutError::DatasetAbolished { .. } => "dataset-abolished",
        }
    }
}

/// A catalogue that cannot be used; the service must not start with it.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// A problem at a place in a catalogue file: `2019-07.toml:42: …`.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// File name, as given to `from_sources` or found by `load_dir`.
        file: String,
        /// 1-based line of the offending entry.
        line: usize,
        /// What is wrong, in Japanese.
        message: String,
    },
    /// A catalogue file or directory could not be read.
    #[error("{}: データ標準レイアウトを読み込めません: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O cause.
        #[source]
        source: std::io::Error,
    },
    /// No catalogue file at all.
    #[error("{0}: データ標準レイアウトのファイル（*.toml）がありません。")]
    Empty(String),
}

impl Catalogue {
    /// The catalogue compiled into the binary (proto/layout/*.toml via include_str!).
    pub fn builtin() -> Result<Catalogue, CatalogueError> {
        let sources: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(file, text)| ((*file).to_owned(), (*text).to_owned()))
            .collect();
        Self::from_sources(&sources)
    }

    /// Every *.toml in a directory (operators may override the built-in one).
    pub fn load_dir(dir: &Path) -> Result<Catalogue, CatalogueError> {
        let read_err = |path: &Path, source| CatalogueError::Read {
            path: path.to_owned(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let path = entry.map_err(|e| read_err(dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                paths.push(path);
            }
        }
        // Sorted so that errors and ties are reported the same way on every machine.
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            let file = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            sources.push((file, text));
        }
        if sources.is_empty() {
            return Err(CatalogueError::Empty(dir.display().to_string()));
        }
        Self::from_sources(&sources)
    }

    /// From (file name, text) pairs — used by both of the above and by tests.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Catalogue, CatalogueError> {
        let releases = load::compile(sources)?;
        Ok(Catalogue { releases })
    }

    /// Whether some release has the item `info_code` (特定個人情報名).
    pub fn knows_item(&self, info_code: &str) -> bool {
        self.releases.iter().any(|r| r.item(info_code).is_some())
    }

    /// All releases, sorted by `valid_from`.
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// The release in force on a date: the newest whose `valid_from` is not after it.
    pub fn release_on(&self, on: NaiveDate) -> Option<&Release> {
        self.releases.iter().rev().find(|r| r.valid_from <= on)
    }

    /// The layout of a dataset: from the newest release that has `info_code` at `major_version`
    /// AND contains that dataset. Errors: UnknownItem, UnknownVersion, UnknownDataset, and
    /// DatasetAbolished { on } when `on >= abolished date`.
    ///
    /// A release is used even before its `valid_from`: a revision's data may be registered
    /// ahead of the switch date (with a future public start date, 公開開始日).
    pub fn dataset(&self, kind: &RecordKind, on: NaiveDate) -> Result<&Dataset, LayoutError> {
        let mut known_item = false;
        let mut known_version = false;
        for release in self.releases.iter().rev() {
            let Some(item) = release.item(&kind.info_code) else {
                continue;
            };
            known_item = true;
            if item.major_version != kind.major_version {
                continue;
            }
            known_version = true;
            if let Some(dataset) = item.dataset(&kind.dataset) {
                return match self.abolished_on(kind) {
                    Some(abolished_on) if on >= abolished_on => {
                        Err(LayoutError::DatasetAbolished { on: abolished_on })
                    }
                    _ => Ok(dataset),
                };
            }
        }
        Err(if known_version {
            LayoutError::UnknownDataset
        } else if known_item {
            LayoutError::UnknownVersion
        } else {
            LayoutError::UnknownItem
        })
    }

    /// Every abolished dataset with its abolition date (dataset present at a major version in an
    /// older release and missing from a newer release with the same item and major version;
    /// abolished_on = the newer release's valid_from).
    pub fn abolitions(&self) -> Vec<Abolition> {
        revision::abolitions(&self.releases)
    }

    /// The revisions between consecutive releases, derived by diffing snapshots.
    pub fn revisions(&self) -> Vec<Revision> {
        revision::revisions(&self.releases)
    }

    /// Validate one record's payload against its dataset layout (kind resolved with `dataset`).
    pub fn validate(
        &self,
        kind: &RecordKind,
        payload: &Payload,
        on: NaiveDate,
    ) -> Result<Validated, Rejection> {
        let dataset = self
            .dataset(kind, on)
            .map_err(|err| Rejection::from_layout(err, kind))?;
        validate::validate(dataset, payload)
    }

    fn abolished_on(&self, kind: &RecordKind) -> Option<NaiveDate> {
        revision::abolished_on(&self.releases, kind)
    }
}

impl Release {
    /// The item with this info code, if the release has it.
    pub fn item(&self, info_code: &str) -> Option<&ItemLayout> {
        self.items.iter().find(|item| item.info_code == info_code)
    }
}

impl ItemLayout {
    /// The dataset with this code, if the item has it.
    pub fn dataset(&self, code: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|dataset| dataset.code == code)
    }
}

impl Dataset {
    /// The data item with this item code, if the dataset has it.
    pub fn field(&self, code: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn kind(info: &str, major: &str, dataset: &str) -> RecordKind {
        RecordKind {
            info_code: info.into(),
            major_version: major.into(),
            dataset: dataset.into(),
        }
    }

    #[test]
    fn builtin_loads_both_releases_in_order() {
        let catalogue = Catalogue::builtin().unwrap();
        let ids: Vec<_> = catalogue.releases().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["2018-07", "2019-07"]);
        assert_eq!(catalogue.releases()[0].name, "平成30年7月版");
        assert_eq!(catalogue.releases()[1].valid_from, date("2019-07-01"));
        let infos = |i: usize| -> Vec<&str> {
            catalogue.releases()[i]
                .items
                .iter()
                .map(|item| item.info_code.as_str())
                .collect()
        };
        assert_eq!(
            infos(0),
            [
                "TM00000000000002",
                "TM00000000000008",
                "TM00000000000019",
                "TM00000000000021",
                "TM00000000000031"
            ]
        );
        assert_eq!(infos(1).len(), 6);
        assert!(infos(1).contains(&"TM00000000000085"));
    }

    #[test]
    fn builtin_medical_insurance_is_a_history_dataset() {
        let catalogue = Catalogue::builtin().unwrap();
        let dataset = catalogue
            .dataset(
                &kind("TM00000000000031", "0002", "0101"),
                date("2018-07-02"),
            )
            .unwrap();
        assert_eq!(dataset.name, "資格情報");
        assert_eq!(
            dataset.history,
            Some(History {
                from: "I0002".into(),
                to: "I0003".into()
            })
        );
        let codes: Vec<_> = dataset.fields.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["I0001", "I0002", "I0003", "I0004", "I0005"]);
        assert_eq!(
            dataset.field("I0001").unwrap().group.as_deref(),
            Some("G01")
        );
    }

    #[test]
    fn builtin_is_also_loadable_from_its_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/layout");
        let from_dir = Catalogue::load_dir(&dir).unwrap();
        assert_eq!(
            from_dir.releases(),
            Catalogue::builtin().unwrap().releases()
        );
    }

    #[test]
    fn load_dir_without_toml_files_is_an_error() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let err = Catalogue::load_dir(&dir).unwrap_err();
        assert!(matches!(err, CatalogueError::Empty(_)), "{err}");
        let err = Catalogue::load_dir(&dir.join("no-such-dir")).unwrap_err();
        assert!(matches!(err, CatalogueError::Read { .. }), "{err}");
    }

    #[test]
    fn dataset_uses_the_newest_release_with_that_major_version() {
        let catalogue = Catalogue::builtin().unwrap();
        let on = date("2019-08-01");
        // 0001 of No. 2 only exists in 2018-07: still resolvable, without the added item.
        let old = catalogue
            .dataset(&kind("TM00000000000002", "0001", "0101"), on)
            .unwrap();
        assert!(old.field("I0007").is_none());
        let new = catalogue
            .dataset(&kind("TM00000000000002", "0002", "0101"), on)
            .unwrap();
        assert!(new.field("I0007").is_some());
        // Minor revision: the same major version takes the newest definition.
        let no8 = catalogue
            .dataset(&kind("TM00000000000008", "0001", "0101"), on)
            .unwrap();
        assert_eq!(
            no8.field("I0006").unwrap().values.as_deref(),
            Some(&["1".to_owned(), "2".to_owned(), "3".to_owned()][..])
        );
        // A new item may be registered ahead of its release date.
        assert!(
            catalogue
                .dataset(
                    &kind("TM00000000000085", "0001", "0101"),
                    date("2019-06-01")
                )
                .is_ok()
        );
    }

    #[test]
    fn dataset_errors_say_what_is_unknown() {
        let catalogue = Catalogue::builtin().unwrap();
        let on = date("2019-08-01");
        let err = |k| catalogue.dataset(&k, on).unwrap_err();
        assert_eq!(
            err(kind("TM00000000000052", "0001", "0101")),
            LayoutError::UnknownItem
        );
        assert_eq!(
            err(kind("TM00000000000031", "0001", "0101")),
            LayoutError::UnknownVersion
        );
        assert_eq!(
            err(kind("TM00000000000031", "0002", "0109")),
            LayoutError::UnknownDataset
        );
        assert_eq!(LayoutError::UnknownItem.code(), "unknown-info-code");
        assert_eq!(LayoutError::UnknownVersion.code(), "unknown-major-version");
        assert_eq!(LayoutError::UnknownDataset.code(), "unknown-dataset");
    }

    #[test]
    fn abolished_dataset_resolves_before_its_abolition_date_only() {
        let catalogue = Catalogue::builtin().unwrap();
        let abolished = kind("TM00000000000019", "0001", "0102");
        let before = catalogue.dataset(&abolished, date("2019-06-30")).unwrap();
        assert_eq!(before.name, "助産施設 入所措置情報");
        let on = date("2019-07-01");
        let err = catalogue.dataset(&abolished, on).unwrap_err();
        assert_eq!(err, LayoutError::DatasetAbolished { on });
        assert_eq!(err.code(), "dataset-abolished");
        assert_eq!(
            err.to_string(),
            "データセットは2019-07-01に廃止されました。"
        );
        assert!(catalogue.dataset(&abolished, date("2020-01-01")).is_err());
        // The surviving dataset of the same item is unaffected.
        assert!(
            catalogue
                .dataset(&kind("TM00000000000019", "0001", "0101"), on)
                .is_ok()
        );
    }

    #[test]
    fn release_on_picks_the_release_in_force() {
        let catalogue = Catalogue::builtin().unwrap();
        assert!(catalogue.release_on(date("2018-06-30")).is_none());
        assert_eq!(
            catalogue.release_on(date("2019-06-30")).unwrap().id,
            "2018-07"
        );
        assert_eq!(
            catalogue.release_on(date("2019-07-01")).unwrap().id,
            "2019-07"
        );
    }
}
