//! Durations of `--keep-within*` and of retention tables, as restic spells
//! them: a sequence of a number and a unit, `y` years, `m` months, `d` days,
//! `h` hours (`1y6m`, `90d`, `36h`), and `w` weeks (7 days) for retention
//! tables (`52w`). Years and months are calendar steps, not fixed lengths.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};

/// A calendar duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionDuration {
    /// Years.
    pub years: i32,
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
    pub hours: i32,
}

/// A duration that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a duration: {why} (examples: 1y6m, 90d, 52w, 36h)")]
pub struct DurationError {
    text: String,
    why: &'static str,
}

impl RetentionDuration {
    /// Parses `1y2m3d4h`-style text; `w` counts as 7 days.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let err = |why| DurationError {
            text: text.to_string(),
            why,
        };
        let mut d = RetentionDuration::default();
        let mut num: Option<i32> = None;
        for c in text.trim().chars() {
            if let Some(digit) = c.to_digit(10) {
                let n = num.unwrap_or(0);
                num = Some(
                    n.checked_mul(10)
                        .and_then(|n| n.checked_add(digit as i32))
                        .ok_or_else(|| err("number too large"))?,
                );
                continue;
            }
            let n = num.take().ok_or_else(|| err("a unit needs a number before it"))?;
            match c {
                'y' => d.years = n,
                'm' => d.months = n,
                'w' => d.days = n.checked_mul(7).ok_or_else(|| err("number too large"))?,
                'd' => d.days = n,
                'h' => d.hours = n,
                _ => return Err(err("units are y, m, w, d and h")),
            }
        }
        if num.is_some() {
            return Err(err("a number needs a unit after it"));
        }
        if d.is_zero() {
            return Err(err("it is empty or zero"));
        }
        Ok(d)
    }

    /// True when every part is zero (the rule is off).
    pub fn is_zero(&self) -> bool {
        *self == RetentionDuration::default()
    }

    /// `t` moved back by this duration in `tz`, as restic computes it: the
    /// calendar date steps back by years, months and days with Go's
    /// `AddDate` normalisation (31 March minus one month is 3 March, not
    /// 28 February), at the same wall-clock time, then back by the hours.
    pub fn before(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let z = t.to_zoned(tz.clone());
        let months =
            i64::from(z.year()) * 12 + i64::from(z.month()) - 1 - i64::from(self.years) * 12 - i64::from(self.months);
        let year = i16::try_from(months.div_euclid(12)).ok()?;
        let month = i8::try_from(months.rem_euclid(12) + 1).ok()?;
        let first = Date::new(year, month, 1).ok()?;
        let day_offset = i64::from(z.day()) - 1 - i64::from(self.days);
        let date = first.checked_add(Span::new().try_days(day_offset).ok()?).ok()?;
        let moved = date.to_datetime(z.time()).to_zoned(tz.clone()).ok()?.timestamp();
        moved
            .checked_sub(SignedDuration::from_hours(i64::from(self.hours)))
            .ok()
    }
}

impl fmt::Display for RetentionDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_restic_spellings_and_weeks() {
        let d = RetentionDuration::parse("1y2m3d4h").unwrap();
        assert_eq!((d.years, d.months, d.days, d.hours), (1, 2, 3, 4));
        assert_eq!(RetentionDuration::parse("52w").unwrap().days, 364);
        assert_eq!(RetentionDuration::parse("90d").unwrap().to_string(), "90d");
        for bad in ["", "0d", "5", "d", "3x", "1.5d", "-1d"] {
            assert!(RetentionDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_back_like_go_add_date() {
        let utc = TimeZone::UTC;
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let one_month = RetentionDuration::parse("1m").unwrap();
        // 31 March minus a month: 31 February, normalised to 3 March (2023).
        assert_eq!(
            one_month.before(at("2023-03-31T12:00:00Z"), &utc),
            Some(at("2023-03-03T12:00:00Z"))
        );
        // In a leap year, 31 February is 2 March.
        assert_eq!(
            one_month.before(at("2024-03-31T12:00:00Z"), &utc),
            Some(at("2024-03-02T12:00:00Z"))
        );
        let one_year = RetentionDuration::parse("1y").unwrap();
        // 29 February minus a year: 29 February 2023 is 1 March.
        assert_eq!(
            one_year.before(at("2024-02-29T00:00:00Z"), &utc),
            Some(at("2023-03-01T00:00:00Z"))
        );
        let mixed = RetentionDuration::parse("1d2h").unwrap();
        assert_eq!(
            mixed.before(at("2024-01-01T01:00:00Z"), &utc),
            Some(at("2023-12-30T23:00:00Z"))
        );
    }
}
