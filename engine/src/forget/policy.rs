//! Which snapshots of one group a set of `--keep-*` rules keeps: restic's
//! `forget` meaning, exactly, so that a policy moved over from restic keeps
//! the same snapshots.
//!
//! The snapshots are taken newest first (equal times: the order given). A
//! snapshot is kept when any rule wants it:
//! - `keep-tag`: it has every tag of one of the lists (not counted);
//! - `keep-within D`: it is newer than the newest snapshot (not in the
//!   future) minus D;
//! - `keep-last/-hourly/-daily/-weekly/-monthly/-yearly N`: it is the newest
//!   of its bucket (every snapshot; hour; day; ISO week; month; year, in the
//!   local time zone) and the rule has counts left (N = -1: unlimited); the
//!   oldest snapshot is also kept while the rule has counts left, so a short
//!   history is kept whole;
//! - `keep-within-hourly/-daily/... D`: it is the newest of its bucket and
//!   newer than the newest snapshot minus D.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use super::duration::RetentionDuration;

/// The `--keep-*` rules. Counts are 0 (off), N, or -1 (unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepRules {
    /// The newest N snapshots.
    pub last: i32,
    /// The newest snapshot of each of the last N hours that have one.
    pub hourly: i32,
    /// ... days.
    pub daily: i32,
    /// ... ISO weeks.
    pub weekly: i32,
    /// ... months.
    pub monthly: i32,
    /// ... years.
    pub yearly: i32,
    /// Every snapshot within this of the newest.
    pub within: RetentionDuration,
    /// The newest of each hour within this of the newest snapshot.
    pub within_hourly: RetentionDuration,
    /// ... of each day.
    pub within_daily: RetentionDuration,
    /// ... of each ISO week.
    pub within_weekly: RetentionDuration,
    /// ... of each month.
    pub within_monthly: RetentionDuration,
    /// ... of each year.
    pub within_yearly: RetentionDuration,
    /// Every snapshot having all tags of one of these lists.
    pub tags: Vec<Vec<String>>,
}

impl KeepRules {
    /// True when no rule is set: such a policy would remove everything, so
    /// callers refuse it.
    pub fn is_empty(&self) -> bool {
        *self == KeepRules::default()
    }
}

/// One snapshot as the rules see it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Snapshot time, Unix ns.
    pub time_ns: i64,
    /// Its tags.
    pub tags: &'a [String],
}

/// What the rules decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Position of the snapshot in the list given to [`apply`].
    #[serde(skip)]
    pub position: usize,
    /// Kept or not.
    pub keep: bool,
    /// Why it is kept (restic's words: `daily snapshot`, `oldest monthly
    /// snapshot`, `within 1y`, ...); empty when removed.
    pub matches: Vec<String>,
}

#[derive(Clone, Copy)]
enum Bucket {
    Every,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    /// The bucket a time falls in (restic: YYYYMMDDHH, YYYYMMDD, ISO YYYYWW, ...).
    fn of(self, t: &jiff::Zoned, position: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
        );
        match self {
            Bucket::Every => position as i64,
            Bucket::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Bucket::Day => (y * 100 + m) * 100 + d,
            Bucket::Week => {
                let w = t.date().iso_week_date();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Bucket::Month => y * 100 + m,
            Bucket::Year => y,
        }
    }
}

struct Counter {
    left: i32,
    bucket: Bucket,
    last: Option<i64>,
    reason: &'static str,
}

struct WithinCounter {
    within: RetentionDuration,
    since: Option<Timestamp>,
    bucket: Bucket,
    last: Option<i64>,
    reason: &'static str,
}

fn timestamp(ns: i64) -> Timestamp {
    // Every i64 of nanoseconds is inside jiff's range (years 1678 to 2262).
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Applies `rules` to `list` (any order) with buckets in `tz`; returns one
/// verdict per snapshot, newest first.
pub fn apply(list: &[Candidate<'_>], rules: &KeepRules, tz: &TimeZone, now_ns: i64) -> Vec<Verdict> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    // Newest first; equal times keep the order given (restic's stable sort).
    order.sort_by(|&a, &b| list[b].time_ns.cmp(&list[a].time_ns));
    let Some(latest_ns) = list.iter().map(|c| c.time_ns).filter(|&t| t < now_ns).max() else {
        // Every snapshot is in the future: restic measures from the zero time.
        return evaluate(list, &order, rules, tz, None);
    };
    evaluate(list, &order, rules, tz, Some(timestamp(latest_ns)))
}

fn evaluate(
    list: &[Candidate<'_>],
    order: &[usize],
    rules: &KeepRules,
    tz: &TimeZone,
    latest: Option<Timestamp>,
) -> Vec<Verdict> {
    let since = |d: &RetentionDuration| -> Option<Timestamp> {
        if d.is_zero() {
            return None;
        }
        // Without a newest snapshot in the past, everything is "within".
        Some(latest.and_then(|l| d.before(l, tz)).unwrap_or(Timestamp::MIN))
    };
    let mut counters = [
        (rules.last, Bucket::Every, "last snapshot"),
        (rules.hourly, Bucket::Hour, "hourly snapshot"),
        (rules.daily, Bucket::Day, "daily snapshot"),
        (rules.weekly, Bucket::Week, "weekly snapshot"),
        (rules.monthly, Bucket::Month, "monthly snapshot"),
        (rules.yearly, Bucket::Year, "yearly snapshot"),
    ]
    .map(|(left, bucket, reason)| Counter {
        left,
        bucket,
        last: None,
        reason,
    });
    let mut withins = [
        (&rules.within_hourly, Bucket::Hour, "hourly within"),
        (&rules.within_daily, Bucket::Day, "daily within"),
        (&rules.within_weekly, Bucket::Week, "weekly within"),
        (&rules.within_monthly, Bucket::Month, "monthly within"),
        (&rules.within_yearly, Bucket::Year, "yearly within"),
    ]
    .map(|(within, bucket, reason)| WithinCounter {
        within: *within,
        since: since(within),
        bucket,
        last: None,
        reason,
    });
    let within_all = since(&rules.within);
    let oldest = order.len().saturating_sub(1);
    let mut out = Vec::with_capacity(order.len());
    for (nr, &i) in order.iter().enumerate() {
        let cur = &list[i];
        let ts = timestamp(cur.time_ns);
        let zoned = ts.to_zoned(tz.clone());
        let mut matches = Vec::new();
        for l in &rules.tags {
            if l.iter().all(|t| cur.tags.contains(t)) {
                matches.push(format!("has tags [{}]", l.join(", ")));
            }
        }
        if let Some(s) = within_all {
            if ts > s {
                matches.push(format!("within {}", rules.within));
            }
        }
        for c in &mut counters {
            if c.left > 0 || c.left == -1 {
                let val = c.bucket.of(&zoned, nr);
                let same = c.last == Some(val);
                if !same || nr == oldest {
                    c.last = Some(val);
                    if c.left > 0 {
                        c.left -= 1;
                    }
                    matches.push(if same {
                        format!("oldest {}", c.reason)
                    } else {
                        c.reason.to_string()
                    });
                }
            }
        }
        for w in &mut withins {
            let Some(s) = w.since else { continue };
            if ts > s {
                let val = w.bucket.of(&zoned, nr);
                let same = w.last == Some(val);
                if !same || nr == oldest {
                    w.last = Some(val);
                    let reason = if same {
                        format!("oldest {}", w.reason)
                    } else {
                        w.reason.to_string()
                    };
                    matches.push(format!("{reason} {}", w.within));
                }
            }
        }
        out.push(Verdict {
            position: i,
            keep: !matches.is_empty(),
            matches,
        });
    }
    out
}
