//! The verification steps of a restore drill: what proves that restored
//! data is usable, not only identical to what was backed up. `restore
//! --verify` already proves the bytes; these start the real server (or run
//! the operator's command) on them:
//!
//! - Redis: `redis-server` on the restored RDB, its keys per database
//!   against those recorded at backup;
//! - SQL dumps: a scratch PostgreSQL loads the dump, its rows per table
//!   against the dump's own `COPY` data;
//! - Cassandra: every SSTable's component set, and `sstablemetadata`;
//! - anything else: a `verify-command`.

mod cassandra;
mod postgres;
mod redis;

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

pub use cassandra::verify_cassandra;
pub use postgres::{find_postgres_bin, verify_sql_dump};
pub use redis::verify_redis;

/// The outcome of one verification step.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Which step: `verify-command`, `redis-server`, `postgresql`,
    /// `sstables`, or `restore --verify` when there is nothing more to run.
    pub kind: String,
    /// Whether it passed.
    pub ok: bool,
    /// What it found (the tail of a command's output).
    pub output: String,
}

impl Verification {
    fn fail(kind: &str, output: impl Into<String>) -> Self {
        Verification {
            kind: kind.into(),
            ok: false,
            output: output.into(),
        }
    }
}

/// Why a step could not run: each becomes a failed [`Verification`] naming
/// it, since a drill reports rather than stops.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A program could not be started.
    #[error("cannot run {program} (is it installed?): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{what} failed: {output}")]
    Failed {
        /// What was run.
        what: String,
        /// The tail of its output.
        output: String,
    },
    /// A file of the restored data could not be read, or scratch space
    /// could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl DrillError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DrillError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Runs `program` and returns its standard output, or why it failed.
fn run(cmd: &mut Command, what: &str) -> Result<String, DrillError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DrillError::Spawn { program, source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(DrillError::Failed {
            what: what.to_string(),
            output: tail(&[out.stdout, out.stderr].concat()),
        })
    }
}

/// A drill's `verify-command`, through `sh -c` in `home` (where the
/// source's folder was restored) with `env` set; exit 0 passes.
pub fn verify_command(cmd: &str, home: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Verification {
    let mut c = Command::new("sh");
    c.args(["-c", cmd]).current_dir(home).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    match c.output() {
        Ok(o) => Verification {
            kind: "verify-command".into(),
            ok: o.status.success(),
            output: tail(&[o.stdout, o.stderr].concat()),
        },
        Err(e) => Verification::fail("verify-command", format!("cannot run sh: {e}")),
    }
}

/// The last 4 KiB of a command's output, which is where it says why.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(4096);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Every regular file under `dir`, depth first (restored data, so no
/// symlink is followed).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// A free TCP port on 127.0.0.1 (the kernel's pick, released at once).
fn free_port() -> Result<u16, DrillError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| DrillError::io(Path::new("127.0.0.1:0"), e))
}

/// The restored file a verification reads: the first file named
/// `file_name` under `dir`, or, with no name, the only file there.
pub fn find_restored_file(dir: &Path, file_name: Option<&str>) -> Option<std::path::PathBuf> {
    let files = files_under(dir);
    match file_name {
        Some(n) => files
            .into_iter()
            .find(|p| p.file_name().is_some_and(|f| f == std::ffi::OsStr::new(n))),
        None if files.len() == 1 => files.into_iter().next(),
        None => None,
    }
}
