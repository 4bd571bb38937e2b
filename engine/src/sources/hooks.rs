//! Commands run before and after a backup (`--pre-command`,
//! `--post-command`): `nodetool snapshot -t TAG` / `nodetool clearsnapshot
//! -t TAG` around a Cassandra backup, a `FLUSH` or a mount around others.
//!
//! Each runs through `sh -c` with our environment minus the `CAIRN_*`
//! variables (`secrets::without_cairn_env`: a hook has no business with the
//! repository's password); the post-command is told how the backup ended in
//! `CAIRN_BACKUP_RESULT` (`success`, `failure`, `interrupted`, or
//! `pre-command-failed`). A failing pre-command means the backup does not
//! run; the post-command runs whatever happened.

use std::process::{Command, Stdio};

/// Errors of a hook command.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `sh` could not be started.
    #[error("cannot run the {which} `{command}`: {source}")]
    Spawn {
        /// `pre-command` or `post-command`.
        which: &'static str,
        /// The command line.
        command: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The command ended with a failure status.
    #[error("the {which} `{command}` failed ({status}){after}")]
    Failed {
        /// `pre-command` or `post-command`.
        which: &'static str,
        /// The command line.
        command: String,
        /// Exit status as text.
        status: String,
        /// What that means for the backup.
        after: &'static str,
    },
}

/// How the work between the hooks ended, for the post-command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    /// Done (a snapshot was saved, or a dry run finished).
    Success,
    /// Failed.
    Failure,
    /// Stopped by a signal.
    Interrupted,
    /// Never started: the pre-command failed.
    PreCommandFailed,
}

impl HookResult {
    fn as_str(self) -> &'static str {
        match self {
            HookResult::Success => "success",
            HookResult::Failure => "failure",
            HookResult::Interrupted => "interrupted",
            HookResult::PreCommandFailed => "pre-command-failed",
        }
    }
}

/// The commands to run around a backup (either may be absent).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Run first; its failure stops everything (no backup, no snapshot).
    pub pre: Option<String>,
    /// Run last, whatever happened.
    pub post: Option<String>,
}

/// What [`Hooks::run`] did.
#[derive(Debug)]
pub struct Hooked<T, E> {
    /// The pre-command's failure: the work then did not run.
    pub pre_error: Option<HookError>,
    /// The work's result, unchanged (`None` when it did not run).
    pub work: Option<Result<T, E>>,
    /// The post-command's failure, if it ran and failed.
    pub post_error: Option<HookError>,
}

fn run_one(which: &'static str, command: &str, result: Option<HookResult>) -> Result<(), HookError> {
    let mut cmd = Command::new("sh");
    crate::secrets::without_cairn_env(&mut cmd)
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if let Some(r) = result {
        cmd.env("CAIRN_BACKUP_RESULT", r.as_str());
    }
    let status = cmd.status().map_err(|source| HookError::Spawn {
        which,
        command: command.to_string(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(HookError::Failed {
        which,
        command: command.to_string(),
        status: status.to_string(),
        after: if result.is_none() {
            "; nothing was backed up and no snapshot was saved"
        } else {
            ""
        },
    })
}

impl Hooks {
    /// Runs the pre-command, then `work` (only if it succeeded), then the
    /// post-command whatever happened; `classify` tells the post-command
    /// how the work ended.
    pub fn run<T, E>(
        &self,
        work: impl FnOnce() -> Result<T, E>,
        classify: impl FnOnce(&Result<T, E>) -> HookResult,
    ) -> Hooked<T, E> {
        let post = |how| {
            self.post
                .as_deref()
                .and_then(|c| run_one("post-command", c, Some(how)).err())
        };
        if let Some(pre) = &self.pre {
            if let Err(e) = run_one("pre-command", pre, None) {
                return Hooked {
                    pre_error: Some(e),
                    work: None,
                    post_error: post(HookResult::PreCommandFailed),
                };
            }
        }
        let out = work();
        let how = classify(&out);
        Hooked {
            pre_error: None,
            work: Some(out),
            post_error: post(how),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn failing_pre_command_skips_the_work_and_runs_the_post_command() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("post");
        let hooks = Hooks {
            pre: Some("exit 7".into()),
            post: Some(format!("echo \"$CAIRN_BACKUP_RESULT\" > '{}'", marker.display())),
        };
        let mut ran = false;
        let out = hooks.run(
            || {
                ran = true;
                Ok::<u8, u8>(0)
            },
            |_| HookResult::Success,
        );
        assert!(!ran);
        assert!(out.work.is_none());
        let e = out.pre_error.expect("the pre-command's failure");
        assert!(
            e.to_string().contains("exit 7") && e.to_string().contains("exit status: 7"),
            "{e}"
        );
        assert!(out.post_error.is_none());
        assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "pre-command-failed");
    }

    #[test]
    fn post_command_runs_after_a_failure_and_its_own_failure_is_reported() {
        let hooks = Hooks {
            pre: Some("true".into()),
            post: Some("exit 3".into()),
        };
        let out = hooks.run(|| Err::<u8, u8>(9), |_| HookResult::Failure);
        assert!(matches!(out.work, Some(Err(9))));
        let e = out.post_error.expect("the post-command's failure");
        assert!(e.to_string().contains("post-command"), "{e}");
    }
}
