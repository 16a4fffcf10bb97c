//! 時点指定 (point-in-time) selection over a resident's replica history (DOMAIN §4).
//!
//! An entry of a history dataset is valid from its start item to its end item, both days
//! included. A date asks for what was valid that day; when one entry ends and the next begins
//! on the same day (enhancement #14: member number 11111 lost on 2017-02-28, 2222 acquired on
//! 2017-02-28) the answer is the latest entry of each group, not both and not neither. A period
//! asks for every entry valid at some day of it.

use chrono::{DateTime, NaiveDate, Utc};

/// What the inquiry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointInTime {
    /// The current state (no 時点指定).
    Current,
    On(NaiveDate),
    Period {
        from: NaiveDate,
        to: NaiveDate,
    },
}

/// The facts selection needs of one replica entry.
#[derive(Debug, Clone)]
pub struct HistoryFacts {
    /// Entries compete only within a group: the same dataset under the same parent record.
    pub group: String,
    /// `None` for a dataset without history: always valid.
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub registered_at: DateTime<Utc>,
}

impl HistoryFacts {
    fn valid_on(&self, day: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= day) && self.valid_to.is_none_or(|t| t >= day)
    }

    fn overlaps(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= to) && self.valid_to.is_none_or(|t| t >= from)
    }
}

/// Indexes of the entries that answer `when`, in input order.
pub fn select(entries: &[HistoryFacts], when: PointInTime) -> Vec<usize> {
    match when {
        PointInTime::Period { from, to } => (0..entries.len())
            .filter(|&i| entries[i].overlaps(from, to))
            .collect(),
        PointInTime::Current | PointInTime::On(_) => {
            let day = match when {
                PointInTime::On(d) => Some(d),
                _ => None,
            };
            let candidates = (0..entries.len()).filter(|&i| match day {
                Some(d) => entries[i].valid_on(d),
                // Now: entries not yet ended.
                None => entries[i].valid_to.is_none(),
            });
            // Latest entry of each group: greatest start, then latest registration.
            // Entries without history (no start date) do not compete: each is an answer.
            let mut best: Vec<usize> = Vec::new();
            for i in candidates {
                let e = &entries[i];
                if e.valid_from.is_none() {
                    best.push(i);
                    continue;
                }
                match best
                    .iter_mut()
                    .find(|b| entries[**b].valid_from.is_some() && entries[**b].group == e.group)
                {
                    None => best.push(i),
                    Some(b) => {
                        let cur = &entries[*b];
                        if (e.valid_from, e.registered_at) > (cur.valid_from, cur.registered_at) {
                            *b = i;
                        }
                    }
                }
            }
            best.sort_unstable();
            best
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn entry(group: &str, from: &str, to: Option<&str>, n: i64) -> HistoryFacts {
        HistoryFacts {
            group: group.into(),
            valid_from: Some(d(from)),
            valid_to: to.map(d),
            registered_at: DateTime::from_timestamp(n, 0).unwrap(),
        }
    }

    /// No. 31: member number 11111 held until 2017-02-28, 2222 from 2017-02-28.
    fn insurance() -> Vec<HistoryFacts> {
        vec![
            entry("0101", "2010-04-01", Some("2017-02-28"), 1),
            entry("0101", "2017-02-28", None, 2),
        ]
    }

    #[test]
    fn same_day_switch_answers_the_latest_entry_only() {
        assert_eq!(
            select(&insurance(), PointInTime::On(d("2017-02-28"))),
            vec![1]
        );
    }

    #[test]
    fn the_day_before_and_after_answer_one_entry_each() {
        let e = insurance();
        assert_eq!(select(&e, PointInTime::On(d("2017-02-27"))), vec![0]);
        assert_eq!(select(&e, PointInTime::On(d("2017-03-01"))), vec![1]);
        assert_eq!(
            select(&e, PointInTime::On(d("2009-01-01"))),
            Vec::<usize>::new()
        );
        assert_eq!(select(&e, PointInTime::Current), vec![1]);
    }

    #[test]
    fn a_period_answers_every_entry_valid_in_it() {
        let e = insurance();
        let p = PointInTime::Period {
            from: d("2017-01-01"),
            to: d("2017-12-31"),
        };
        assert_eq!(select(&e, p), vec![0, 1]);
        let before = PointInTime::Period {
            from: d("2011-01-01"),
            to: d("2017-02-27"),
        };
        assert_eq!(select(&e, before), vec![0]);
    }

    #[test]
    fn groups_are_answered_separately() {
        let mut e = insurance();
        e.push(entry("0102", "2015-01-01", None, 3));
        assert_eq!(select(&e, PointInTime::On(d("2017-02-28"))), vec![1, 2]);
    }

    #[test]
    fn entries_without_history_are_always_valid_and_all_answered() {
        let plain = |n| HistoryFacts {
            group: "0101".into(),
            valid_from: None,
            valid_to: None,
            registered_at: DateTime::from_timestamp(n, 0).unwrap(),
        };
        let e = vec![plain(1), plain(2)];
        assert_eq!(select(&e, PointInTime::On(d("2000-01-01"))), vec![0, 1]);
    }
}
