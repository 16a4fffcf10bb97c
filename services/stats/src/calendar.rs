//! When replica statistics are taken (seed §2.5): on the first Saturday of every month, and
//! on every Saturday while a replica migration window (移行期間) is open. Operators may also
//! take one on any day (`chukan stats snapshot`).

use chrono::{Datelike as _, NaiveDate, Weekday};
use chukan_config::MigrationWindow;

chukan_db::text_enum! {
    /// Why a snapshot was taken (`stats.snapshot_runs.reason`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum SnapshotReason {
        /// 毎月第1土曜日.
        Monthly = "monthly",
        /// 移行期間中の毎週土曜日.
        Weekly = "weekly",
        /// Taken by an operator.
        OnDemand = "on-demand",
    }
}

/// Why `date` (a Japan date) gets a snapshot by the calendar rule, if it does. A first
/// Saturday inside a window is the monthly one: one snapshot per date.
pub fn scheduled(date: NaiveDate, windows: &[MigrationWindow]) -> Option<SnapshotReason> {
    if date.weekday() != Weekday::Sat {
        return None;
    }
    if date.day() <= 7 {
        Some(SnapshotReason::Monthly)
    } else if windows.iter().any(|w| w.from <= date && date <= w.to) {
        Some(SnapshotReason::Weekly)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_first_saturday_of_each_month_and_no_other_day_outside_a_window() {
        let taken: Vec<_> = d(2026, 1, 1)
            .iter_days()
            .take_while(|day| day.year() == 2026)
            .filter(|day| scheduled(*day, &[]).is_some())
            .collect();
        assert_eq!(taken.len(), 12);
        assert_eq!(taken[0], d(2026, 1, 3));
        assert_eq!(taken[11], d(2026, 12, 5));
        assert!(
            taken
                .iter()
                .all(|day| day.weekday() == Weekday::Sat && day.day() <= 7)
        );
        assert_eq!(scheduled(d(2026, 1, 3), &[]), Some(SnapshotReason::Monthly));
        assert_eq!(scheduled(d(2026, 1, 10), &[]), None);
    }

    #[test]
    fn every_saturday_inside_a_migration_window_its_first_and_last_day_included() {
        let window = MigrationWindow {
            from: d(2026, 6, 13),
            to: d(2026, 7, 11),
        };
        let w = std::slice::from_ref(&window);
        assert_eq!(scheduled(d(2026, 6, 6), w), Some(SnapshotReason::Monthly));
        assert_eq!(scheduled(d(2026, 6, 13), w), Some(SnapshotReason::Weekly));
        assert_eq!(scheduled(d(2026, 6, 20), w), Some(SnapshotReason::Weekly));
        assert_eq!(scheduled(d(2026, 6, 27), w), Some(SnapshotReason::Weekly));
        // The first Saturday stays the monthly one inside a window.
        assert_eq!(scheduled(d(2026, 7, 4), w), Some(SnapshotReason::Monthly));
        assert_eq!(scheduled(d(2026, 7, 11), w), Some(SnapshotReason::Weekly));
        assert_eq!(scheduled(d(2026, 7, 18), w), None);
        // Not a Saturday, though inside the window.
        assert_eq!(scheduled(d(2026, 6, 14), w), None);
    }
}
