//! Dates as business systems write them: `YYYY-MM-DD`, also `YYYYMMDD`.

use chrono::NaiveDate;

/// A date, `YYYY-MM-DD` or `YYYYMMDD`.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let (y, m, d) = match b.len() {
        10 if b[4] == b'-' && b[7] == b'-' => (&b[0..4], &b[5..7], &b[8..10]),
        8 => (&b[0..4], &b[4..6], &b[6..8]),
        _ => return None,
    };
    let year = i32::try_from(digits(y)?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(m)?, digits(d)?)
}

/// A date or a date-time (`2017-03-01T10:00:00`, `2017-03-01 10:00`, `20170301100000`);
/// only the date part is kept.
pub(crate) fn parse_date_prefix(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' {
        let rest = &b[10..];
        if rest.is_empty() || matches!(rest[0], b'T' | b't' | b' ') {
            return parse_date(s.get(..10)?);
        }
        return None;
    }
    if b.len() >= 8 {
        let rest = &b[8..];
        if rest.is_empty() || matches!(rest[0], b'T' | b't' | b' ' | b'0'..=b'9') {
            return parse_date(s.get(..8)?);
        }
    }
    None
}

/// Writes `YYYY-MM-DD`.
pub(crate) fn push_date(out: &mut String, date: NaiveDate) {
    use chrono::Datelike;
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    );
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn both_date_forms_parse() {
        assert_eq!(parse_date("2018-07-02"), ymd(2018, 7, 2));
        assert_eq!(parse_date("20180702"), ymd(2018, 7, 2));
        assert_eq!(parse_date("2018-02-30"), None);
        assert_eq!(parse_date("2018/07/02"), None);
        assert_eq!(parse_date("2018-7-2"), None);
        assert_eq!(parse_date("+018-07-02"), None);
        assert_eq!(parse_date(""), None);
    }

    #[test]
    fn date_time_keeps_the_date() {
        assert_eq!(parse_date_prefix("2017-03-01"), ymd(2017, 3, 1));
        assert_eq!(
            parse_date_prefix("2017-03-01T10:11:12+09:00"),
            ymd(2017, 3, 1)
        );
        assert_eq!(parse_date_prefix("2017-03-01 10:11"), ymd(2017, 3, 1));
        assert_eq!(parse_date_prefix("20170301"), ymd(2017, 3, 1));
        assert_eq!(parse_date_prefix("20170301101112"), ymd(2017, 3, 1));
        assert_eq!(parse_date_prefix("2017-03-01x"), None);
        assert_eq!(parse_date_prefix("2017-03-32"), None);
    }

    #[test]
    fn dates_are_written_with_dashes() {
        let mut s = String::new();
        push_date(
            &mut s,
            NaiveDate::from_ymd_opt(987, 1, 2).unwrap_or_default(),
        );
        assert_eq!(s, "0987-01-02");
    }
}
