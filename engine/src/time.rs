//! Time helpers: the format stores Unix nanoseconds as `i64`.

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// A file system time in Unix nanoseconds (times before 1970 negative,
/// saturating far outside i64's ~292 years).
pub(crate) fn system_time_ns(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// A Unix-nanosecond time as RFC 3339 in UTC.
pub fn format_ns(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => t.to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}
