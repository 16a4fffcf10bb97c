//! 一括登録スケジュール (upload slot schedule, DOMAIN §5): organisations in groups A–H may
//! upload the heavy items only inside their group's slots, and nobody uploads on planned
//! outage days (計画停止日) or other blocked days (マスタ申請日 …).

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Asia::Tokyo;

/// One slot: a group may upload heavy items on `day` from `start` to `end` (Japan time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub group: char,
    pub day: Weekday,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

#[derive(Debug, thiserror::Error)]
#[error("provision.upload_slots: {0:?} is not GROUP:DAY:HH:MM-HH:MM (GROUP A–H, DAY mon..sun)")]
pub struct BadSlot(pub String);

impl Slot {
    pub fn parse(s: &str) -> Result<Slot, BadSlot> {
        let bad = || BadSlot(s.to_string());
        let (group, rest) = s.split_once(':').ok_or_else(bad)?;
        let (day, times) = rest.split_once(':').ok_or_else(bad)?;
        let (start, end) = times.split_once('-').ok_or_else(bad)?;
        let mut g = group.chars();
        let group = match (g.next(), g.next()) {
            (Some(c @ 'A'..='H'), None) => c,
            _ => return Err(bad()),
        };
        let day: Weekday = day.parse().map_err(|_| bad())?;
        let start = NaiveTime::parse_from_str(start, "%H:%M").map_err(|_| bad())?;
        let end = NaiveTime::parse_from_str(end, "%H:%M").map_err(|_| bad())?;
        if end <= start {
            return Err(bad());
        }
        Ok(Slot {
            group,
            day,
            start,
            end,
        })
    }
}

/// Why an upload may not be made now, and when it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRefusal {
    /// The whole day is closed for uploads (planned outage or blocked day).
    BlockedDay { next_open_day: NaiveDate },
    /// A heavy item outside the organisation's slots.
    OutsideSlot {
        info_code: String,
        group: char,
        next_slot: Option<DateTime<Utc>>,
    },
    /// A heavy item from an organisation that has no group yet.
    NoGroup { info_code: String },
}

#[derive(Debug, Clone, Default)]
pub struct UploadSchedule {
    slots: Vec<Slot>,
    heavy_items: HashSet<String>,
    blocked_days: BTreeSet<NaiveDate>,
    /// The process's calendar: planned outages announced at runtime close uploads too.
    calendar: Option<std::sync::Arc<chukan_core::ServiceCalendar>>,
}

impl UploadSchedule {
    pub fn new(
        slots: Vec<Slot>,
        heavy_items: impl IntoIterator<Item = String>,
        blocked_days: impl IntoIterator<Item = NaiveDate>,
    ) -> Self {
        Self {
            slots,
            heavy_items: heavy_items.into_iter().collect(),
            blocked_days: blocked_days.into_iter().collect(),
            calendar: None,
        }
    }

    /// Also closes the days `calendar` knows as planned outages, including those announced
    /// after start.
    pub fn with_calendar(mut self, calendar: std::sync::Arc<chukan_core::ServiceCalendar>) -> Self {
        self.calendar = Some(calendar);
        self
    }

    /// Whether `day` is closed for uploads.
    fn is_blocked(&self, day: NaiveDate) -> bool {
        self.blocked_days.contains(&day)
            || self
                .calendar
                .as_ref()
                .is_some_and(|c| c.day_kind(day) == chukan_core::calendar::DayKind::PlannedOutage)
    }

    pub fn is_heavy(&self, info_code: &str) -> bool {
        self.heavy_items.contains(info_code)
    }

    pub fn slots_of(&self, group: char) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(move |s| s.group == group)
    }

    /// May an upload be received at all at `at`?
    pub fn check_day(&self, at: DateTime<Utc>) -> Result<(), UploadRefusal> {
        let mut day = at.with_timezone(&Tokyo).date_naive();
        if !self.is_blocked(day) {
            return Ok(());
        }
        while self.is_blocked(day) {
            day += Duration::days(1);
        }
        Err(UploadRefusal::BlockedDay { next_open_day: day })
    }

    /// May `group` upload the heavy item `info_code` at `at`?
    pub fn check_item(
        &self,
        info_code: &str,
        group: Option<char>,
        at: DateTime<Utc>,
    ) -> Result<(), UploadRefusal> {
        if !self.is_heavy(info_code) {
            return Ok(());
        }
        let Some(group) = group else {
            return Err(UploadRefusal::NoGroup {
                info_code: info_code.to_string(),
            });
        };
        let local = at.with_timezone(&Tokyo);
        let open_now = self
            .slots_of(group)
            .any(|s| s.day == local.weekday() && s.start <= local.time() && local.time() < s.end)
            && !self.is_blocked(local.date_naive());
        if open_now {
            return Ok(());
        }
        Err(UploadRefusal::OutsideSlot {
            info_code: info_code.to_string(),
            group,
            next_slot: self.next_slot(group, at),
        })
    }

    /// Start of the group's next slot after `at` on a day that is not blocked (within 8 weeks).
    pub fn next_slot(&self, group: char, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&Tokyo);
        (0..56)
            .map(|d| local.date_naive() + Duration::days(d))
            .filter(|day| !self.is_blocked(*day))
            .flat_map(|day| {
                let mut starts: Vec<_> = self
                    .slots_of(group)
                    .filter(|s| s.day == day.weekday())
                    .filter_map(|s| Tokyo.from_local_datetime(&day.and_time(s.start)).single())
                    .filter(|start| *start > local)
                    .collect();
                starts.sort();
                starts
            })
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokyo(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Tokyo
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn schedule(blocked: &[NaiveDate]) -> UploadSchedule {
        UploadSchedule::new(
            vec![
                Slot::parse("A:mon:08:00-12:00").unwrap(),
                Slot::parse("A:thu:17:00-22:00").unwrap(),
                Slot::parse("B:mon:13:00-17:00").unwrap(),
            ],
            ["TM00000000000002".to_string()],
            blocked.iter().copied(),
        )
    }

    #[test]
    fn an_outage_announced_after_start_closes_uploads_that_day() {
        let calendar = std::sync::Arc::new(chukan_core::ServiceCalendar::default());
        let s = schedule(&[]).with_calendar(calendar.clone());
        let monday = tokyo(2026, 11, 30, 10, 0);
        assert_eq!(s.check_day(monday), Ok(()));
        calendar.set_announced([NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()]);
        assert_eq!(
            s.check_day(monday),
            Err(UploadRefusal::BlockedDay {
                next_open_day: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
            })
        );
        calendar.set_announced([]);
        assert_eq!(s.check_day(monday), Ok(()));
    }

    #[test]
    fn slot_strings_parse_and_bad_ones_are_refused() {
        let s = Slot::parse("H:sat:08:00-12:00").unwrap();
        assert_eq!(s.group, 'H');
        assert_eq!(s.day, Weekday::Sat);
        for bad in [
            "I:mon:08:00-12:00",
            "A:xyz:08:00-12:00",
            "A:mon:12:00-08:00",
            "A:mon",
        ] {
            assert!(Slot::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heavy_item_inside_the_slot_is_allowed_and_light_items_always() {
        let s = schedule(&[]);
        // 2026-11-23 is a Monday.
        let mon_9 = tokyo(2026, 11, 23, 9, 0);
        assert!(s.check_item("TM00000000000002", Some('A'), mon_9).is_ok());
        assert!(s.check_item("TM00000000000031", Some('B'), mon_9).is_ok());
        assert!(s.check_item("TM00000000000031", None, mon_9).is_ok());
    }

    #[test]
    fn outside_the_slot_the_answer_names_the_next_slot() {
        let s = schedule(&[]);
        let mon_12 = tokyo(2026, 11, 23, 12, 0); // the slot ends at 12:00 (exclusive)
        match s.check_item("TM00000000000002", Some('A'), mon_12) {
            Err(UploadRefusal::OutsideSlot { next_slot, .. }) => {
                assert_eq!(next_slot, Some(tokyo(2026, 11, 26, 17, 0)));
            }
            other => panic!("{other:?}"),
        }
        match s.check_item("TM00000000000002", Some('B'), mon_12) {
            Err(UploadRefusal::OutsideSlot { next_slot, .. }) => {
                assert_eq!(next_slot, Some(tokyo(2026, 11, 23, 13, 0)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_blocked_day_closes_uploads_and_moves_the_next_slot() {
        let thu = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let s = schedule(&[thu]);
        let thu_18 = tokyo(2026, 11, 26, 18, 0);
        assert_eq!(
            s.check_day(thu_18),
            Err(UploadRefusal::BlockedDay {
                next_open_day: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
            })
        );
        assert!(s.check_item("TM00000000000002", Some('A'), thu_18).is_err());
        assert_eq!(
            s.next_slot('A', tokyo(2026, 11, 24, 9, 0)),
            Some(tokyo(2026, 11, 30, 8, 0))
        );
    }

    #[test]
    fn an_organisation_without_group_cannot_upload_heavy_items() {
        let s = schedule(&[]);
        assert!(matches!(
            s.check_item("TM00000000000002", None, tokyo(2026, 11, 23, 9, 0)),
            Err(UploadRefusal::NoGroup { .. })
        ));
    }
}
