//! 日次上限 (daily quota) of replica registration per organisation (DOMAIN §5, seed §5.1).
//! Both caps must hold; registrations and deletions count together.

use serde::Serialize;

/// One kibibyte: the seed's "10 KB per resident" is counted in the same unit as a record's
/// size, so the worked example (5 KB records, 200,000 residents) gives exactly 400,000.
const KB: i64 = 1024;

/// Cities of at least this population may register 100 % of it per day; everyone else a flat
/// [`FLAT_RECORD_CAP`].
const BIG_CITY: i64 = 2_000_000;
const FLAT_RECORD_CAP: i64 = 2_000_000;

/// The kinds of organisation the byte cap distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgKind {
    Municipality,
    Prefecture,
    /// 一部事務組合 / 広域連合: population is the constituent population.
    Union,
}

impl OrgKind {
    pub fn parse(s: &str) -> Option<OrgKind> {
        match s {
            "municipality" => Some(OrgKind::Municipality),
            "prefecture" => Some(OrgKind::Prefecture),
            "union" => Some(OrgKind::Union),
            _ => None,
        }
    }
}

/// Today's caps of one organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DailyQuota {
    /// 件数上限 (records per day).
    pub records: i64,
    /// 容量上限 (bytes per day).
    pub bytes: i64,
}

impl DailyQuota {
    pub fn for_org(kind: OrgKind, population: i64) -> DailyQuota {
        let records = if population >= BIG_CITY {
            population
        } else {
            FLAT_RECORD_CAP
        };
        // population × share × 10 KB, exactly: shares are in percent to stay in integers, and
        // the only rounding is the last division, down to whole bytes. (Dividing by 100 first
        // cost an organisation up to 9 residents' worth, and a union of three a cap of 0.)
        let share_percent = match kind {
            OrgKind::Municipality => 100,
            OrgKind::Prefecture => 10,
            OrgKind::Union => 30,
        };
        let bytes = population.max(0).saturating_mul(share_percent * 10 * KB) / 100;
        DailyQuota { records, bytes }
    }

    /// Whether an entry of `bytes` could fit even an empty day: one that never can is
    /// refused, not carried from night to night for ever.
    pub fn admits(&self, bytes: i64) -> bool {
        bytes <= self.bytes && self.records >= 1
    }
}

/// What is left of today's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Remaining {
    pub records: i64,
    pub bytes: i64,
}

impl Remaining {
    pub fn of(quota: DailyQuota, used_records: i64, used_bytes: i64) -> Remaining {
        Remaining {
            records: (quota.records - used_records).max(0),
            bytes: (quota.bytes - used_bytes).max(0),
        }
    }

    /// Takes one record of `bytes` if both caps allow it.
    pub fn take(&mut self, bytes: i64) -> bool {
        if self.records >= 1 && self.bytes >= bytes {
            self.records -= 1;
            self.bytes -= bytes;
            true
        } else {
            false
        }
    }

    pub fn is_exhausted(&self) -> bool {
        self.records == 0 || self.bytes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_of_domain_5_gives_400_000_records_a_day() {
        // City of 200,000 with 5 KB records: byte cap 2,000,000 KB → 400,000 records, though
        // the record cap is 2,000,000.
        let q = DailyQuota::for_org(OrgKind::Municipality, 200_000);
        assert_eq!(q.records, 2_000_000);
        assert_eq!(q.bytes, 2_000_000 * KB);
        let mut left = Remaining::of(q, 0, 0);
        let mut n = 0;
        while left.take(5 * KB) {
            n += 1;
        }
        assert_eq!(n, 400_000);
    }

    #[test]
    fn big_cities_may_register_their_whole_population() {
        let q = DailyQuota::for_org(OrgKind::Municipality, 3_800_000);
        assert_eq!(q.records, 3_800_000);
        assert_eq!(q.bytes, 3_800_000 * 10 * KB);
        assert_eq!(
            DailyQuota::for_org(OrgKind::Municipality, 1_999_999).records,
            2_000_000
        );
    }

    #[test]
    fn prefectures_and_unions_get_their_share_of_bytes() {
        assert_eq!(
            DailyQuota::for_org(OrgKind::Prefecture, 1_000_000).bytes,
            100_000 * 10 * KB
        );
        assert_eq!(
            DailyQuota::for_org(OrgKind::Union, 1_000_000).bytes,
            300_000 * 10 * KB
        );
    }

    #[test]
    fn populations_that_are_not_multiples_of_ten_keep_every_byte_of_their_share() {
        // (kind, population, exact population × share × 10 KB, rounded down to bytes)
        let cases = [
            (OrgKind::Municipality, 123_457, 123_457 * 10 * KB),
            (OrgKind::Municipality, 1, 10 * KB),
            (OrgKind::Prefecture, 1_234_567, 1_234_567 * 10 * KB / 10),
            // 9 people × 10 % = 0.9 residents' worth = 9,216 bytes, not 0.
            (OrgKind::Prefecture, 9, 9_216),
            (OrgKind::Prefecture, 3, 3_072),
            (OrgKind::Union, 98_765, 98_765 * 3 * KB * 10 / 10),
            // 3 people × 30 % = 0.9 residents' worth; 1 person 0.3 = 3,072 bytes.
            (OrgKind::Union, 3, 9_216),
            (OrgKind::Union, 1, 3_072),
            // 7 × 30 % × 10,240 = 21,504 exactly; 11 × 10 % × 10,240 = 11,264.
            (OrgKind::Union, 7, 21_504),
            (OrgKind::Prefecture, 11, 11_264),
        ];
        for (kind, population, bytes) in cases {
            assert_eq!(
                DailyQuota::for_org(kind, population).bytes,
                bytes,
                "{kind:?} of {population}"
            );
        }
        // Rounded once, at the end: 13 × 30 % × 10,240 = 39,936 exactly; 1,001 prefecture
        // residents give 1,025,024 bytes (100.1 residents' worth), not 1,024,000.
        assert_eq!(DailyQuota::for_org(OrgKind::Union, 13).bytes, 39_936);
        assert_eq!(
            DailyQuota::for_org(OrgKind::Prefecture, 1_001).bytes,
            1_025_024
        );
    }

    #[test]
    fn an_entry_larger_than_an_empty_day_is_never_admitted() {
        let q = DailyQuota::for_org(OrgKind::Union, 1);
        assert!(q.admits(3_072));
        assert!(!q.admits(3_073));
    }

    #[test]
    fn record_cap_binds_when_records_are_small() {
        let q = DailyQuota {
            records: 3,
            bytes: 1_000_000,
        };
        let mut left = Remaining::of(q, 1, 0);
        assert!(left.take(10));
        assert!(left.take(10));
        assert!(!left.take(10));
        assert!(left.is_exhausted());
    }

    #[test]
    fn a_record_bigger_than_what_is_left_does_not_fit() {
        let mut left = Remaining::of(
            DailyQuota {
                records: 10,
                bytes: 100,
            },
            0,
            60,
        );
        assert!(!left.take(41));
        assert!(left.take(40));
        assert!(left.is_exhausted());
    }
}
