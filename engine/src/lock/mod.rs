//! The exclusive maintenance lock (format-spec rule M1): prune and repair
//! take it before removing anything; backups, restores, checks and copies
//! never do (rule R3), so a lock never stops them.
//!
//! A lock is an object in `locks/`. [`acquire`] lists the folder, removes
//! stale locks (not refreshed within [`LockOptions::stale_after`], or held
//! by a process of this host that no longer runs), waits for a live one to
//! go (up to [`LockOptions::retry_for`]), then writes its own lock and lists
//! again: when two processes race, the older lock wins and the other removes
//! its own. The returned [`MaintenanceLock`] refreshes the object in the
//! background; a caller must call [`MaintenanceLock::ensure_held`] before
//! each destructive step, because the lock can be lost (a refresh failed, or
//! someone ran `cairn unlock --remove-all`).
//!
//! What this cannot do: object storage offers no compare-and-swap, so "the
//! older wins" compares the holders' clocks. Hosts that run maintenance must
//! keep their clocks within a few minutes of each other (NTP), as restic's
//! locks also assume.

mod guard;
mod object;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use guard::MaintenanceLock;
pub use object::Lock;

use crate::backend::{BackendError, ObjectKind};
use crate::repository::{Repository, RepositoryError};
use crate::time::{format_ns, now_ns};

/// How often a waiting [`acquire`] looks again.
const POLL: Duration = Duration::from_secs(1);

/// How the maintenance lock is taken and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    /// How long [`acquire`] waits for another holder's live lock to go
    /// before failing with [`LockError::Held`] (default 0: fail at once).
    pub retry_for: Duration,
    /// A lock not refreshed for this long is stale and may be removed by
    /// anyone (default 30 minutes).
    pub stale_after: Duration,
    /// How often the holder writes a refreshed lock (default 5 minutes;
    /// must be well below `stale_after`).
    pub refresh_every: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            retry_for: Duration::ZERO,
            stale_after: Duration::from_secs(30 * 60),
            refresh_every: Duration::from_secs(5 * 60),
        }
    }
}

/// Errors of taking, keeping and removing locks.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the maintenance lock.
    #[error(
        "the repository is locked by {holder} since {since}; try again when it is done (or wait with \
         --retry-lock); if that process is gone, `cairn unlock` removes stale locks"
    )]
    Held {
        /// Who holds it: `user@host pid N (operation)`, or which lock object
        /// could not be read.
        holder: String,
        /// Since when (RFC 3339), or `an unknown time` for an unreadable lock.
        since: String,
    },
    /// The lock this process held is gone or could not be refreshed: the
    /// operation must stop, since another may now hold the lock.
    #[error("lost the maintenance lock {name}: {why}; stopped so as not to run alongside another maintenance process")]
    Lost {
        /// The lock object.
        name: String,
        /// What happened.
        why: String,
    },
    /// Reading or writing lock objects failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Listing or removing lock objects failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The refresh thread could not be started.
    #[error("cannot start the lock refresh thread: {0}")]
    Thread(std::io::Error),
}

/// One object in `locks/`, as [`list_locks`] and [`unlock`] judge it.
#[derive(Debug, Clone)]
pub struct LockStatus {
    /// Its name.
    pub name: String,
    /// Its content, or why it could not be read (such a lock counts as held:
    /// only `unlock --remove-all` removes it).
    pub lock: Result<Lock, String>,
    /// Whether it may be removed: not refreshed within the stale period, or
    /// its process no longer runs on this host.
    pub stale: bool,
    /// Why it is stale, or why it counts as live.
    pub reason: String,
    /// Whether [`unlock`] removed it (always false from [`list_locks`]).
    pub removed: bool,
}

impl LockStatus {
    /// Who holds it, for messages.
    pub fn holder(&self) -> String {
        match &self.lock {
            Ok(l) => l.holder(),
            Err(_) => format!("an unreadable lock object {}", self.name),
        }
    }

    /// The order in which locks win (rule M1): older first, then the
    /// smaller name. An unreadable lock comes first, since nobody can tell
    /// when it was taken.
    fn order(&self) -> (i64, &str) {
        let created = self.lock.as_ref().map_or(i64::MIN, |l| l.created_ns);
        (created, &self.name)
    }

    fn held_error(&self) -> LockError {
        LockError::Held {
            holder: self.holder(),
            since: match &self.lock {
                Ok(l) => format_ns(l.created_ns),
                Err(_) => "an unknown time".into(),
            },
        }
    }
}

/// Takes the exclusive maintenance lock for `operation` (e.g. `prune`).
///
/// Stale locks are removed on the way (with a warning naming their holder).
/// While another process holds a live lock this waits, looking about once a
/// second, for up to `opts.retry_for`, then fails with [`LockError::Held`].
/// An unreadable lock object counts as held.
pub fn acquire(repo: &Repository, operation: &str, opts: &LockOptions) -> Result<MaintenanceLock, LockError> {
    // No deadline at all for a retry period too long to add to now.
    let deadline = Instant::now().checked_add(opts.retry_for);
    loop {
        let blocker = match try_acquire(repo, operation, opts)? {
            Attempt::Won { name, lock } => return MaintenanceLock::start(repo, name, lock, opts),
            Attempt::HeldBy(blocker) => blocker,
        };
        let now = Instant::now();
        let wait = match deadline {
            Some(d) if d <= now => return Err(blocker.held_error()),
            Some(d) => POLL.min(d - now),
            None => POLL,
        };
        tracing::info!("waiting for the lock of {}: {}", blocker.holder(), blocker.reason);
        std::thread::sleep(wait);
    }
}

/// How one attempt at the lock ended.
enum Attempt {
    /// Our lock is written, and no live lock comes before it.
    Won { name: String, lock: Lock },
    /// This lock holds us off (we wrote nothing, or removed ours again).
    HeldBy(LockStatus),
}

fn try_acquire(repo: &Repository, operation: &str, opts: &LockOptions) -> Result<Attempt, LockError> {
    let mut live = Vec::new();
    for s in scan(repo, opts)? {
        if s.stale {
            tracing::warn!("removing the stale lock {} of {}: {}", s.name, s.holder(), s.reason);
            remove_lock(repo, &s.name)?;
        } else {
            live.push(s);
        }
    }
    if let Some(blocker) = oldest(live) {
        return Ok(Attempt::HeldBy(blocker));
    }
    let lock = Lock::for_this_process(operation, now_ns());
    let (id, _) = repo.save_file(&lock)?;
    let name = id.to_hex();
    // Rule M1: another process may have written its lock between our listing
    // and our write. Both list again; the older lock wins on both sides.
    let mine = (lock.created_ns, name.as_str());
    let earlier = scan(repo, opts)?
        .into_iter()
        .filter(|s| s.name != name && !s.stale && s.order() < mine);
    if let Some(winner) = oldest(earlier) {
        tracing::debug!("lost the race for the lock to {} ({})", winner.holder(), winner.name);
        remove_lock(repo, &name)?;
        return Ok(Attempt::HeldBy(winner));
    }
    Ok(Attempt::Won { name, lock })
}

fn oldest(locks: impl IntoIterator<Item = LockStatus>) -> Option<LockStatus> {
    locks.into_iter().min_by(|a, b| a.order().cmp(&b.order()))
}

/// Every object in `locks/`, read and judged with the default stale period.
pub fn list_locks(repo: &Repository) -> Result<Vec<LockStatus>, LockError> {
    scan(repo, &LockOptions::default())
}

/// Removes the stale locks (with `remove_all`, every lock, live and
/// unreadable ones too) and returns every lock found, each marked removed
/// or not. Removing a live lock makes its holder stop at its next
/// [`MaintenanceLock::ensure_held`]; use `remove_all` only when that holder
/// is known to be gone (e.g. on another host that crashed).
pub fn unlock(repo: &Repository, remove_all: bool, opts: &LockOptions) -> Result<Vec<LockStatus>, LockError> {
    let mut locks = scan(repo, opts)?;
    for s in &mut locks {
        if s.stale || remove_all {
            remove_lock(repo, &s.name)?;
            tracing::info!("removed the lock {} of {}", s.name, s.holder());
            s.removed = true;
        }
    }
    Ok(locks)
}

/// Stores `lock` as it is and returns its name: for tests that need locks
/// of other processes, hosts or times (maintenance takes its lock with
/// [`acquire`]).
#[cfg(any(test, feature = "testing"))]
pub fn write_lock(repo: &Repository, lock: &Lock) -> Result<String, LockError> {
    Ok(repo.save_file(lock)?.0.to_hex())
}

/// Lists and reads every lock object, judging each at the current time.
fn scan(repo: &Repository, opts: &LockOptions) -> Result<Vec<LockStatus>, LockError> {
    let (this_host, _) = crate::repository::host_and_user();
    let mut out = Vec::new();
    for o in repo.backend().list(ObjectKind::Lock)? {
        let (lock, stale, reason) = match repo.load_file::<Lock>(&o.name) {
            Ok(lock) => {
                let (stale, reason) = judge(&lock, now_ns(), opts, &this_host);
                (Ok(lock), stale, reason)
            }
            // Released (or refreshed) between the listing and the read.
            Err(RepositoryError::Backend(BackendError::NotFound { .. })) => continue,
            Err(RepositoryError::Corrupt { detail, .. }) => {
                let why = "unreadable, so it counts as held; `cairn unlock --remove-all` removes it".into();
                (Err(detail), false, why)
            }
            Err(e) => return Err(e.into()),
        };
        out.push(LockStatus {
            name: o.name,
            lock,
            stale,
            reason,
            removed: false,
        });
    }
    Ok(out)
}

/// Whether `lock` is stale at `now_ns`, and why (or why it is live).
fn judge(lock: &Lock, now_ns: i64, opts: &LockOptions, this_host: &str) -> (bool, String) {
    let age = Duration::from_nanos(u64::try_from(now_ns.saturating_sub(lock.refreshed_ns)).unwrap_or(0));
    if age > opts.stale_after {
        let why = format!(
            "not refreshed since {} (stale after {})",
            format_ns(lock.refreshed_ns),
            human(opts.stale_after)
        );
        return (true, why);
    }
    if lock.host == this_host {
        match object::process_exists(lock.pid) {
            Some(false) => return (true, format!("process {} no longer runs on this host", lock.pid)),
            Some(true) => {
                return (
                    false,
                    format!("process {} runs, refreshed {} ago", lock.pid, human(age)),
                )
            }
            None => {}
        }
    }
    (false, format!("refreshed {} ago", human(age)))
}

/// Removes a lock object; one already gone counts as removed.
fn remove_lock(repo: &Repository, name: &str) -> Result<(), BackendError> {
    match repo.backend().remove(ObjectKind::Lock, name) {
        Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `1h 5m 3s`-style, to the second (under a second: milliseconds).
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let parts = [(s / 3600, "h"), (s / 60 % 60, "m"), (s % 60, "s")];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    text.join(" ")
}
