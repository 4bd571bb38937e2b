//! Small helpers shared by the generators: errors, CRC32, dates, files,
//! ports, child processes.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

/// The generator's error: a message, optionally wrapping an I/O error.
#[derive(Debug)]
pub struct Error {
    msg: String,
    source: Option<io::Error>,
}

impl Error {
    pub fn msg(msg: impl Into<String>) -> Self {
        Error {
            msg: msg.into(),
            source: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error {
            msg: "I/O error".into(),
            source: Some(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to I/O results.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error {
            msg: what(),
            source: Some(e),
        })
    }
}

/// CRC-32 (IEEE, as zlib and Cassandra's checksums use).
pub struct Crc32 {
    table: [u32; 256],
}

impl Crc32 {
    pub fn new() -> Self {
        let mut table = [0_u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        Crc32 { table }
    }

    /// Continues a running CRC (start with 0).
    pub fn update(&self, crc: u32, bytes: &[u8]) -> u32 {
        let mut c = !crc;
        for &b in bytes {
            c = self.table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        !c
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Unix seconds to `YYYY-MM-DD HH:MM:SS`.
pub fn format_timestamp(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Unix seconds of the first night (2026-11-01 02:00 UTC); night N is N-1
/// days later.
pub const FIRST_NIGHT_EPOCH: i64 = 1_793_498_400;

pub fn night_epoch(night: u32) -> i64 {
    FIRST_NIGHT_EPOCH + i64::from(night.saturating_sub(1)) * 86_400
}

/// The snapshot tag of a night, e.g. `nightly-2026-11-03`.
pub fn night_tag(night: u32) -> String {
    let (y, m, d) = civil_from_days(night_epoch(night).div_euclid(86_400));
    format!("nightly-{y:04}-{m:02}-{d:02}")
}

/// Writes a file atomically (temp file in the same directory, then rename),
/// so the result is always a new inode, like a real dump tool produces.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    {
        let mut f = fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(bytes).ctx(|| format!("write {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).ctx(|| format!("rename to {}", path.display()))
}

/// Copies a file atomically (new inode at `dst`).
pub fn copy_atomic(src: &Path, dst: &Path) -> Result<()> {
    let tmp = tmp_path(dst);
    fs::copy(src, &tmp).ctx(|| format!("copy {} to {}", src.display(), tmp.display()))?;
    fs::rename(&tmp, dst).ctx(|| format!("rename to {}", dst.display()))
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).ctx(|| format!("create directory {}", path.display()))
}

pub fn remove_dir_all_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("remove {}", path.display())),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").ctx(|| "bind 127.0.0.1:0".into())?;
    Ok(l.local_addr()?.port())
}

/// Runs a command to completion, failing with its stderr on non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().ctx(|| format!("run {:?}", cmd.get_program()))?;
    check_status(cmd, out.status, &out.stderr)
}

pub fn check_status(cmd: &Command, status: ExitStatus, stderr: &[u8]) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        Err(Error::msg(format!(
            "{} {} failed ({status}): {}",
            cmd.get_program().to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(stderr).trim()
        )))
    }
}

/// Kills and reaps a child process when dropped (servers we started).
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Looks a program up on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(Crc32::new().update(0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(night_tag(1), "nightly-2026-11-01");
        assert_eq!(night_tag(3), "nightly-2026-11-03");
        assert_eq!(night_tag(31), "nightly-2026-12-01");
        assert_eq!(format_timestamp(FIRST_NIGHT_EPOCH), "2026-11-01 02:00:00");
    }
}
