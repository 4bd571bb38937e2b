//! Tables and sizes for people; JSON for scripts.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Set once a write to standard output failed because its reader closed it.
static OUTPUT_CUT_SHORT: AtomicBool = AtomicBool::new(false);

/// Whether some output was lost to a closed standard output: main then
/// exits non-zero even if the command otherwise succeeded, so `cairn dump
/// ... | consumer` never hides a truncated stream.
pub fn output_cut_short() -> bool {
    OUTPUT_CUT_SHORT.load(Ordering::Relaxed)
}

fn note<T>(r: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(e) = &r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            OUTPUT_CUT_SHORT.store(true, Ordering::Relaxed);
        }
    }
    r
}

/// Standard output as a writer that records a closed pipe
/// ([`output_cut_short`]); every write to standard output goes through it
/// or through [`out`].
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        note(std::io::stdout().lock().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        note(std::io::stdout().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        note(std::io::stdout().lock().flush())
    }
}

/// Writes text to standard output. Unlike `print!`, a closed pipe
/// (`cairn ls | head`) becomes an error (and is recorded), not a panic.
pub fn out(text: &str) -> std::io::Result<()> {
    Stdout.write_all(text.as_bytes())?;
    Stdout.flush()
}

/// [`out`] with a newline.
pub fn outln(text: &str) -> std::io::Result<()> {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    out(&line)
}

/// Prints rows as aligned columns. A dozen lines here rather than a table
/// crate: the output is plain text with no borders or wrapping.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        s.join("  ").trim_end().to_string()
    };
    let mut text = line(header.to_vec());
    text.push('\n');
    text.push_str(&"-".repeat(w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1)));
    text.push('\n');
    for r in rows {
        text.push_str(&line(r.iter().map(String::as_str).collect()));
        text.push('\n');
    }
    out(&text)
}

pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    outln(&serde_json::to_string_pretty(v)?)?;
    Ok(())
}

pub fn bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub fn local_time(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("@{ns}"),
    }
}

pub fn rfc3339(ns: i64) -> String {
    cairn_engine::format_ns(ns)
}

/// Parses RFC 3339, `YYYY-MM-DD[ HH:MM[:SS]]` in local time, or `@UNIX_SECONDS`.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Some(secs) = s.strip_prefix('@') {
        let v: i64 = secs
            .parse()
            .map_err(|_| anyhow::anyhow!("`{s}`: expected @UNIX_SECONDS"))?;
        return Ok(v.saturating_mul(1_000_000_000));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_nanosecond() as i64);
    }
    let tz = jiff::tz::TimeZone::system();
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(tz)?.timestamp().as_nanosecond() as i64);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Ok(d.to_zoned(tz)?.timestamp().as_nanosecond() as i64);
    }
    anyhow::bail!("`{s}` is not a time: use RFC 3339 (2026-11-25T10:00:00Z), `2026-11-25 10:00[:00]` (local), `2026-11-25` or `@UNIX_SECONDS`")
}
