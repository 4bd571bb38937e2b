//! The lock object (format-spec "Locks"): who holds the maintenance lock,
//! since when, and when they last showed they are alive.

use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::repository::RepoFile;

/// Version byte of an encoded lock object.
pub const LOCK_VERSION: u8 = 1;
/// Object kind bound into a lock's authenticated data.
pub const LOCK_KIND: &str = "lock";

/// One lock object. Objects are immutable, so a refresh writes a new object
/// (same fields, a new `refreshed_ns`) and then removes the previous one.
/// Field order is part of the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Lock {
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder on `host`.
    pub pid: u32,
    /// User name of the holder.
    pub user: String,
    /// What the holder does, e.g. `prune`.
    pub operation: String,
    /// When the holder first wrote its lock, Unix ns (kept by refreshes):
    /// of two live locks the older one wins.
    pub created_ns: i64,
    /// When this object was written, Unix ns: a lock not refreshed for
    /// longer than the stale period is stale.
    pub refreshed_ns: i64,
}

impl RepoFile for Lock {
    const KIND: ObjectKind = ObjectKind::Lock;
    const AAD: &'static str = LOCK_KIND;
    const VERSION: u8 = LOCK_VERSION;
    // Host, user and operation names: far below 64 KiB.
    const LIMIT: crate::encoding::Limit = crate::encoding::Limit::Kib64;
}

impl Lock {
    /// A lock for `operation` by this process, created and refreshed `now_ns`.
    pub(crate) fn for_this_process(operation: &str, now_ns: i64) -> Self {
        let (host, user) = crate::repository::host_and_user();
        Lock {
            host,
            pid: std::process::id(),
            user,
            operation: operation.to_string(),
            created_ns: now_ns,
            refreshed_ns: now_ns,
        }
    }

    /// `user@host pid N (operation)`, for messages.
    pub fn holder(&self) -> String {
        format!("{}@{} pid {} ({})", self.user, self.host, self.pid, self.operation)
    }
}

/// Whether process `pid` runs on this host: `None` when this system cannot
/// tell (no `/proc`), so that a lock is then judged by its age alone rather
/// than broken on a guess.
pub(crate) fn process_exists(pid: u32) -> Option<bool> {
    // `/proc/<pid>` rather than kill(pid, 0): it needs no signal permission
    // (kill fails with EPERM for another user's process) and no unsafe code
    // or extra nix feature. A zombie still has its folder: it counts as
    // running until reaped, which only delays breaking its lock.
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}
