//! Revisions (改版) of the data standard layout, derived by diffing release snapshots
//! (DOMAIN §4): major revision, dataset added, specific personal information added, dataset
//! abolished. Minor revisions (same major version, changed definitions) need no replica work
//! and are not reported.

use chrono::NaiveDate;
use serde::Serialize;

use crate::{
    catalogue::{ItemLayout, Release},
    record::RecordKind,
};

/// A dataset that is no longer part of its item's major version from `abolished_on`; its
/// replicas are deleted from 31 days after that date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Abolition {
    /// Item, major version and dataset abolished.
    pub kind: RecordKind,
    /// The valid_from of the first release without it.
    pub abolished_on: NaiveDate,
}

/// One change brought by a release, relative to the release before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revision {
    /// Id of the release that brings the change.
    pub release: String,
    /// What changed.
    pub change: RevisionKind,
}

/// The kinds of revision that require replica work (DOMAIN §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RevisionKind {
    /// メジャー改版: re-register everything under the new major version.
    MajorRevision {
        info_code: String,
        from: String,
        to: String,
    },
    /// データセット追加: register the new dataset, past included.
    DatasetAdded { kind: RecordKind },
    /// 特定個人情報追加: register as new.
    InfoAdded { info_code: String },
    /// データセット廃止: delete its replicas from 31 days after `on`.
    DatasetAbolished { kind: RecordKind, on: NaiveDate },
}

pub(crate) fn revisions(releases: &[Release]) -> Vec<Revision> {
    let mut out = Vec::new();
    for pair in releases.windows(2) {
        let (older, newer) = (&pair[0], &pair[1]);
        let mut push = |change| {
            out.push(Revision {
                release: newer.id.clone(),
                change,
            })
        };
        for item in &newer.items {
            let Some(before) = older.item(&item.info_code) else {
                push(RevisionKind::InfoAdded {
                    info_code: item.info_code.clone(),
                });
                continue;
            };
            if before.major_version != item.major_version {
                push(RevisionKind::MajorRevision {
                    info_code: item.info_code.clone(),
                    from: before.major_version.clone(),
                    to: item.major_version.clone(),
                });
                continue;
            }
            let kind = |dataset: &str| RecordKind {
                info_code: item.info_code.clone(),
                major_version: item.major_version.clone(),
                dataset: dataset.to_owned(),
            };
            for dataset in &item.datasets {
                if before.dataset(&dataset.code).is_none() {
                    push(RevisionKind::DatasetAdded {
                        kind: kind(&dataset.code),
                    });
                }
            }
            for dataset in &before.datasets {
                if item.dataset(&dataset.code).is_none() {
                    push(RevisionKind::DatasetAbolished {
                        kind: kind(&dataset.code),
                        on: newer.valid_from,
                    });
                }
            }
        }
    }
    out
}

pub(crate) fn abolitions(releases: &[Release]) -> Vec<Abolition> {
    let mut kinds: Vec<RecordKind> = Vec::new();
    for release in releases {
        for item in &release.items {
            for dataset in &item.datasets {
                let kind = RecordKind {
                    info_code: item.info_code.clone(),
                    major_version: item.major_version.clone(),
                    dataset: dataset.code.clone(),
                };
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
    }
    kinds
        .into_iter()
        .filter_map(|kind| {
            abolished_on(releases, &kind).map(|abolished_on| Abolition { kind, abolished_on })
        })
        .collect()
}

/// When `kind` was abolished: the first release after the newest one containing it that has
/// the same item at the same major version (and so, by construction, lacks the dataset).
pub(crate) fn abolished_on(releases: &[Release], kind: &RecordKind) -> Option<NaiveDate> {
    fn same_version<'r>(release: &'r Release, kind: &RecordKind) -> Option<&'r ItemLayout> {
        release
            .item(&kind.info_code)
            .filter(|item| item.major_version == kind.major_version)
    }
    let last = releases.iter().rposition(|release| {
        same_version(release, kind).is_some_and(|item| item.dataset(&kind.dataset).is_some())
    })?;
    releases[last + 1..]
        .iter()
        .find(|release| same_version(release, kind).is_some())
        .map(|release| release.valid_from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalogue;

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

    fn builtin_revisions() -> Vec<Revision> {
        Catalogue::builtin().unwrap().revisions()
    }

    fn change(change: RevisionKind) -> Revision {
        Revision {
            release: "2019-07".into(),
            change,
        }
    }

    #[test]
    fn major_revisions_are_detected() {
        let revisions = builtin_revisions();
        for info_code in ["TM00000000000002", "TM00000000000021"] {
            assert!(
                revisions.contains(&change(RevisionKind::MajorRevision {
                    info_code: info_code.into(),
                    from: "0001".into(),
                    to: "0002".into(),
                })),
                "{info_code}: {revisions:?}"
            );
        }
    }

    #[test]
    fn dataset_added_is_detected() {
        assert!(
            builtin_revisions().contains(&change(RevisionKind::DatasetAdded {
                kind: kind("TM00000000000008", "0001", "0102"),
            }))
        );
    }

    #[test]
    fn info_added_is_detected() {
        assert!(
            builtin_revisions().contains(&change(RevisionKind::InfoAdded {
                info_code: "TM00000000000085".into(),
            }))
        );
    }

    #[test]
    fn dataset_abolished_is_detected() {
        assert!(
            builtin_revisions().contains(&change(RevisionKind::DatasetAbolished {
                kind: kind("TM00000000000019", "0001", "0102"),
                on: date("2019-07-01"),
            }))
        );
    }

    #[test]
    fn builtin_revisions_are_exactly_the_planned_ones() {
        // Minor revisions (No. 8 code value added) and unchanged items are not revisions.
        let revisions = builtin_revisions();
        assert_eq!(revisions.len(), 5, "{revisions:?}");
    }

    #[test]
    fn abolitions_lists_the_abolished_dataset() {
        let abolitions = Catalogue::builtin().unwrap().abolitions();
        assert_eq!(
            abolitions,
            [Abolition {
                kind: kind("TM00000000000019", "0001", "0102"),
                abolished_on: date("2019-07-01"),
            }]
        );
    }
}
