//! The service calendar (DOMAIN.md §7): when the platform serves, and when data
//! send/receive with the NWS is stopped.
//!
//! All rules are in Japan time (Asia/Tokyo):
//! - weekdays 08:00–21:00 open; 21:00–24:00 send/receive stopped (the API answers, the NWS
//!   link holds traffic); 00:00–08:00 closed;
//! - Saturdays, Sundays, public holidays and the year-end days (12/29–1/3) 08:00–17:00;
//! - planned outage days (計画停止日) closed all day: those of the settings, and those platform
//!   operators announce at runtime (admin's `/v1/calendar`, `calendar.changed`), which every
//!   process applies with [`ServiceCalendar::set_announced`] without a restart.

use std::{collections::BTreeSet, sync::RwLock};

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Asia::Tokyo;

/// What the platform does at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// API and NWS send/receive both running.
    Open,
    /// Weekday 21:00–24:00: the API answers, data send/receive with the NWS is stopped.
    SendReceiveStopped,
    /// Outside service hours (night, after 17:00 on a non-weekday, planned outage).
    Closed(ClosedReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedReason {
    OutsideHours,
    PlannedOutage,
}

/// Kind of day, which decides the hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    Weekday,
    /// Saturday, Sunday, public holiday or year-end day.
    ShortDay,
    PlannedOutage,
}

#[derive(Debug, Default)]
pub struct ServiceCalendar {
    /// From the settings (`calendar.planned_outages`): fixed for the process's life.
    planned_outages: BTreeSet<NaiveDate>,
    /// Announced by platform operators at runtime; replaced whole on each announcement.
    announced: RwLock<BTreeSet<NaiveDate>>,
}

#[derive(Debug, thiserror::Error)]
#[error("planned outage date {0:?} is not YYYY-MM-DD")]
pub struct BadOutageDate(pub String);

const OPEN: u32 = 8;
const WEEKDAY_CLOSE: u32 = 21;
const SHORT_DAY_CLOSE: u32 = 17;

/// The Japan date (Asia/Tokyo) of an instant: the day validity periods and quotas count by.
pub fn japan_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Tokyo).date_naive()
}

impl ServiceCalendar {
    pub fn new(planned_outages: impl IntoIterator<Item = NaiveDate>) -> Self {
        Self {
            planned_outages: planned_outages.into_iter().collect(),
            announced: RwLock::default(),
        }
    }

    /// Replaces the planned outages announced at runtime (the whole list each time, so a
    /// late or repeated announcement converges on the newest).
    pub fn set_announced(&self, dates: impl IntoIterator<Item = NaiveDate>) {
        *self
            .announced
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = dates.into_iter().collect();
    }

    /// Every planned outage date, from the settings and announced, in order.
    pub fn planned_outages(&self) -> Vec<NaiveDate> {
        let announced = self
            .announced
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.planned_outages.union(&announced).copied().collect()
    }

    fn is_planned_outage(&self, date: NaiveDate) -> bool {
        self.planned_outages.contains(&date)
            || self
                .announced
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(&date)
    }

    /// Parses `YYYY-MM-DD` strings as they come from settings.
    pub fn from_strings(dates: &[String]) -> Result<Self, BadOutageDate> {
        let parsed = dates
            .iter()
            .map(|d| {
                NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                    .map_err(|_| BadOutageDate(d.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(parsed))
    }

    pub fn day_kind(&self, date: NaiveDate) -> DayKind {
        if self.is_planned_outage(date) {
            DayKind::PlannedOutage
        } else if matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
            || is_year_end(date)
            || is_public_holiday(date)
        {
            DayKind::ShortDay
        } else {
            DayKind::Weekday
        }
    }

    pub fn state_at(&self, at: DateTime<Utc>) -> ServiceState {
        let local = at.with_timezone(&Tokyo);
        let hour = local.hour();
        match self.day_kind(local.date_naive()) {
            DayKind::PlannedOutage => ServiceState::Closed(ClosedReason::PlannedOutage),
            DayKind::Weekday if (OPEN..WEEKDAY_CLOSE).contains(&hour) => ServiceState::Open,
            DayKind::Weekday if hour >= WEEKDAY_CLOSE => ServiceState::SendReceiveStopped,
            DayKind::ShortDay if (OPEN..SHORT_DAY_CLOSE).contains(&hour) => ServiceState::Open,
            _ => ServiceState::Closed(ClosedReason::OutsideHours),
        }
    }

    /// Whether the API serves calls at `at` (open, or in the send/receive stop window).
    pub fn api_open(&self, at: DateTime<Utc>) -> bool {
        !matches!(self.state_at(at), ServiceState::Closed(_))
    }

    /// Whether send/receive with the NWS ran without a break from `from` to `to`: open at
    /// `from` and at every top of the hour after it up to `to` (the state changes only at
    /// whole hours, Japan time). An exchange that spans a stop or a closed night was held
    /// by design, and the latency SLO leaves it out.
    pub fn open_throughout(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        if to < from {
            return self.state_at(to) == ServiceState::Open;
        }
        // Open spells last at most 13 hours; anything longer crossed a closed night.
        if to - from > Duration::hours(24) || self.state_at(from) != ServiceState::Open {
            return false;
        }
        let Some(mut hour) = from
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
        else {
            return false;
        };
        loop {
            hour += Duration::hours(1);
            if hour > to {
                return true;
            }
            if self.state_at(hour) != ServiceState::Open {
                return false;
            }
        }
    }

    /// The next instant at or after `at` when the service is [`ServiceState::Open`]
    /// (08:00 Japan time of the next day that is not a planned outage, or `at` itself).
    pub fn next_opening(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.state_at(at) == ServiceState::Open {
            return at;
        }
        let local = at.with_timezone(&Tokyo);
        let mut date = local.date_naive();
        if local.hour() >= OPEN {
            date += Duration::days(1);
        }
        // Outage runs are short; a year bounds the search whatever the configuration.
        for _ in 0..366 {
            if self.day_kind(date) != DayKind::PlannedOutage {
                return tokyo_at(date, OPEN);
            }
            date += Duration::days(1);
        }
        tokyo_at(date, OPEN)
    }
}

fn tokyo_at(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN);
    // Japan has no daylight saving time, so every local time maps to exactly one instant.
    Tokyo
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&(date.and_time(time) - Duration::hours(9))))
}

/// 年末年始 (year-end days): 29 December to 3 January.
fn is_year_end(date: NaiveDate) -> bool {
    (date.month() == 12 && date.day() >= 29) || (date.month() == 1 && date.day() <= 3)
}

/// 国民の祝日, including substitute holidays and citizens' holidays.
fn is_public_holiday(date: NaiveDate) -> bool {
    thread_local! {
        static HOLIDAYS: jpholiday::jpholiday::JPHoliday<'static> = jpholiday::jpholiday::JPHoliday::new();
    }
    HOLIDAYS.with(|h| h.is_holiday(&date))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jst(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Tokyo
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cal() -> ServiceCalendar {
        ServiceCalendar::from_strings(&["2026-06-17".to_string()]).unwrap()
    }

    #[test]
    fn an_announced_outage_closes_its_day_and_a_later_announcement_replaces_it() {
        let c = cal();
        // 2026-12-09 is a Wednesday: open at 10:00 until announced.
        let at = jst(2026, 12, 9, 10, 0);
        assert_eq!(c.state_at(at), ServiceState::Open);
        let day = NaiveDate::from_ymd_opt(2026, 12, 9).unwrap();
        c.set_announced([day]);
        assert_eq!(
            c.state_at(at),
            ServiceState::Closed(ClosedReason::PlannedOutage)
        );
        assert_eq!(c.next_opening(at), jst(2026, 12, 10, 8, 0));
        assert_eq!(
            c.planned_outages(),
            [NaiveDate::from_ymd_opt(2026, 6, 17).unwrap(), day]
        );
        // The settings' outages stay; the announced list is replaced whole.
        c.set_announced([]);
        assert_eq!(c.state_at(at), ServiceState::Open);
        assert_eq!(c.planned_outages().len(), 1);
    }

    #[test]
    fn weekday_2059_is_open_and_2100_stops_send_receive() {
        // 2026-11-25 is a Wednesday.
        assert_eq!(
            cal().state_at(jst(2026, 11, 25, 20, 59)),
            ServiceState::Open
        );
        assert_eq!(
            cal().state_at(jst(2026, 11, 25, 21, 0)),
            ServiceState::SendReceiveStopped
        );
        assert_eq!(
            cal().state_at(jst(2026, 11, 25, 23, 59)),
            ServiceState::SendReceiveStopped
        );
        assert!(cal().api_open(jst(2026, 11, 25, 21, 30)));
    }

    #[test]
    fn weekday_night_and_early_morning_are_closed() {
        assert_eq!(
            cal().state_at(jst(2026, 11, 26, 7, 59)),
            ServiceState::Closed(ClosedReason::OutsideHours)
        );
        assert_eq!(cal().state_at(jst(2026, 11, 26, 8, 0)), ServiceState::Open);
    }

    #[test]
    fn saturday_closes_at_1700() {
        // 2026-11-28 is a Saturday.
        assert_eq!(
            cal().state_at(jst(2026, 11, 28, 16, 59)),
            ServiceState::Open
        );
        assert_eq!(
            cal().state_at(jst(2026, 11, 28, 17, 0)),
            ServiceState::Closed(ClosedReason::OutsideHours)
        );
    }

    #[test]
    fn public_holiday_keeps_weekend_hours() {
        // 2026-11-23 (Monday) is 勤労感謝の日.
        assert_eq!(
            cal().day_kind(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()),
            DayKind::ShortDay
        );
        assert_eq!(
            cal().state_at(jst(2026, 11, 23, 18, 0)),
            ServiceState::Closed(ClosedReason::OutsideHours)
        );
        // 2026-05-06 (Wednesday) is a substitute holiday for Constitution Day on Sunday.
        assert_eq!(
            cal().day_kind(NaiveDate::from_ymd_opt(2026, 5, 6).unwrap()),
            DayKind::ShortDay
        );
    }

    #[test]
    fn year_end_days_keep_weekend_hours() {
        // 2025-12-30 is a Tuesday.
        assert_eq!(
            cal().state_at(jst(2025, 12, 30, 18, 0)),
            ServiceState::Closed(ClosedReason::OutsideHours)
        );
        assert_eq!(cal().state_at(jst(2026, 1, 5, 18, 0)), ServiceState::Open);
    }

    #[test]
    fn planned_outage_day_is_closed_all_day() {
        // 2026-06-17 is a Wednesday and a configured outage.
        assert_eq!(
            cal().state_at(jst(2026, 6, 17, 12, 0)),
            ServiceState::Closed(ClosedReason::PlannedOutage)
        );
        assert_eq!(
            cal().next_opening(jst(2026, 6, 17, 12, 0)),
            jst(2026, 6, 18, 8, 0)
        );
    }

    #[test]
    fn next_opening_skips_to_the_next_morning() {
        assert_eq!(
            cal().next_opening(jst(2026, 11, 25, 22, 0)),
            jst(2026, 11, 26, 8, 0)
        );
        assert_eq!(
            cal().next_opening(jst(2026, 11, 26, 3, 0)),
            jst(2026, 11, 26, 8, 0)
        );
        assert_eq!(
            cal().next_opening(jst(2026, 11, 26, 9, 0)),
            jst(2026, 11, 26, 9, 0)
        );
        // Saturday evening → Sunday 08:00 (Sundays open 08:00–17:00).
        assert_eq!(
            cal().next_opening(jst(2026, 11, 28, 17, 30)),
            jst(2026, 11, 29, 8, 0)
        );
    }

    #[test]
    fn bad_outage_dates_are_refused() {
        assert!(ServiceCalendar::from_strings(&["2026/06/17".to_string()]).is_err());
    }

    #[test]
    fn open_throughout_is_broken_by_the_stop_window_and_the_night() {
        let c = cal();
        // Thursday 2026-11-26, an ordinary weekday.
        assert!(c.open_throughout(jst(2026, 11, 26, 10, 5), jst(2026, 11, 26, 10, 6)));
        assert!(c.open_throughout(jst(2026, 11, 26, 8, 0), jst(2026, 11, 26, 20, 59)));
        // Entered at 20:59, answered after the stop began.
        assert!(!c.open_throughout(jst(2026, 11, 26, 20, 59), jst(2026, 11, 26, 21, 1)));
        // Held overnight, answered next morning.
        assert!(!c.open_throughout(jst(2026, 11, 26, 22, 0), jst(2026, 11, 27, 8, 1)));
        // Saturday closes at 17:00.
        assert!(!c.open_throughout(jst(2026, 11, 28, 16, 30), jst(2026, 11, 28, 17, 0)));
        assert!(!c.open_throughout(jst(2026, 11, 26, 10, 0), jst(2026, 11, 27, 10, 0)));
    }
}
