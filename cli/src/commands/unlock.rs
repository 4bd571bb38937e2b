//! `cairn unlock`, and the `--retry-lock` options of maintenance commands.

use anyhow::Result;
use cairn_engine::{unlock, LockOptions, LockStatus};
use serde_json::{json, Value};

use super::Ctx;
use crate::args::{LockArgs, UnlockArgs};
use crate::output::{self, rfc3339};

impl LockArgs {
    /// The engine's lock options for these flags (the stale and refresh
    /// periods stay the engine's defaults).
    // Used by prune (issue 9), which flattens `LockArgs` into its arguments.
    pub fn options(&self) -> LockOptions {
        LockOptions {
            retry_for: self.retry_lock,
            ..LockOptions::default()
        }
    }
}

pub fn run(ctx: &Ctx, a: UnlockArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let locks = unlock(&repo, a.remove_all, &LockOptions::default())?;
    let (removed, kept): (Vec<&LockStatus>, Vec<&LockStatus>) = locks.iter().partition(|s| s.removed);
    if ctx.json {
        output::json(&json!({
            "removed": removed.iter().map(|s| lock_json(s)).collect::<Vec<_>>(),
            "kept": kept.iter().map(|s| lock_json(s)).collect::<Vec<_>>(),
        }))?;
        return Ok(0);
    }
    for s in &removed {
        ctx.say(format!("removed lock {} of {}: {}", short(s), s.holder(), s.reason));
    }
    for s in &kept {
        // Only live and unreadable locks are left, and only without --remove-all.
        let hint = if s.lock.is_ok() {
            "; it is live: `cairn unlock --remove-all` removes it if you know that process is gone"
        } else {
            ""
        };
        ctx.say(format!("kept lock {} of {}: {}{hint}", short(s), s.holder(), s.reason));
    }
    ctx.say(match (removed.len(), kept.len()) {
        (0, 0) => "the repository holds no locks".to_string(),
        (r, k) => format!("{r} lock(s) removed, {k} left"),
    });
    Ok(0)
}

fn short(s: &LockStatus) -> &str {
    s.name.get(..8).unwrap_or(&s.name)
}

fn lock_json(s: &LockStatus) -> Value {
    let (lock, damage) = match &s.lock {
        Ok(l) => (
            json!({
                "host": l.host,
                "pid": l.pid,
                "user": l.user,
                "operation": l.operation,
                "created": rfc3339(l.created_ns),
                "refreshed": rfc3339(l.refreshed_ns),
            }),
            Value::Null,
        ),
        Err(d) => (Value::Null, Value::String(d.clone())),
    };
    json!({"name": s.name, "stale": s.stale, "reason": s.reason, "lock": lock, "damage": damage})
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use std::time::Duration;

    use crate::args::LockArgs;

    #[derive(Debug, Parser)]
    struct Prune {
        #[command(flatten)]
        lock: LockArgs,
    }

    fn retry(args: &[&str]) -> Result<Duration, clap::Error> {
        let argv = std::iter::once("prune").chain(args.iter().copied());
        Prune::try_parse_from(argv).map(|p| p.lock.options().retry_for)
    }

    #[test]
    fn retry_lock_parses_seconds_minutes_and_hours() {
        assert_eq!(retry(&[]).unwrap(), Duration::ZERO);
        assert_eq!(retry(&["--retry-lock", "30s"]).unwrap(), Duration::from_secs(30));
        assert_eq!(retry(&["--retry-lock", "5m"]).unwrap(), Duration::from_secs(300));
        assert_eq!(retry(&["--retry-lock", "1h30m"]).unwrap(), Duration::from_secs(5400));
        assert_eq!(retry(&["--retry-lock", "0"]).unwrap(), Duration::ZERO);
        for bad in ["", "5", "m", "1.5h", "-1s", "99999999999999999999s"] {
            // `=` so that clap takes `-1s` as the value, not as a flag.
            let e = retry(&[&format!("--retry-lock={bad}")]).unwrap_err().to_string();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
    }
}
