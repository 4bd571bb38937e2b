//! Time helpers: the format stores Unix nanoseconds as `i64`.

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// A Unix-nanosecond time as RFC 3339 in UTC.
pub fn format_ns(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => t.to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}
