//! Where backup data comes from, as opposed to where the repository lives
//! (`backend`). File trees are walked by `backup::walk`; streams come from
//! here.

pub(crate) mod cassandra;
pub(crate) mod hooks;
pub mod redis;
pub(crate) mod s3;

pub use s3::S3Source;

use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};

/// Errors of sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The command could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// Program name.
        command: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The command ended with a failure status.
    #[error("`{command}` failed ({status}); no snapshot was saved")]
    CommandFailed {
        /// Program name.
        command: String,
        /// Exit status as text.
        status: String,
        /// Exit code, when it exited normally.
        code: Option<i32>,
    },
    /// Reading the stream failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What was read.
        what: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// A byte stream to back up, with a check to run once it is fully read.
pub struct Stream {
    reader: Box<dyn Read + Send>,
    child: Option<(String, Child)>,
}

impl Stream {
    /// Standard input (or any reader).
    pub fn from_reader(reader: Box<dyn Read + Send>) -> Self {
        Self { reader, child: None }
    }

    /// Starts `argv` and streams its standard output. Its standard error
    /// passes through to ours. It inherits our environment without the
    /// `CAIRN_*` variables (`secrets::without_cairn_env`): the command has
    /// no business with the repository's password.
    pub fn from_command(argv: &[String]) -> Result<Self, SourceError> {
        let (prog, args) = argv.split_first().ok_or_else(|| SourceError::Spawn {
            command: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        })?;
        let mut child = crate::secrets::without_cairn_env(&mut Command::new(prog))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| SourceError::Spawn {
                command: prog.clone(),
                source,
            })?;
        let out: ChildStdout = child.stdout.take().ok_or_else(|| SourceError::Spawn {
            command: prog.clone(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        Ok(Self {
            reader: Box::new(out),
            child: Some((prog.clone(), child)),
        })
    }

    /// The data.
    pub fn reader(&mut self) -> &mut (dyn Read + Send) {
        self.reader.as_mut()
    }

    /// Waits for the command (if any) and fails unless it succeeded. Must be
    /// called before a snapshot of the stream is saved. Returns the
    /// command's exit code (`None` for a reader).
    pub fn finish(self) -> Result<Option<i32>, SourceError> {
        drop(self.reader);
        if let Some((command, mut child)) = self.child {
            let status = child.wait().map_err(|source| SourceError::Read {
                what: command.clone(),
                source,
            })?;
            if !status.success() {
                return Err(SourceError::CommandFailed {
                    command,
                    status: status.to_string(),
                    code: status.code(),
                });
            }
            return Ok(status.code());
        }
        Ok(None)
    }

    /// Kills a command whose output is no longer wanted.
    pub fn abort(self) {
        if let Some((_, mut child)) = self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
