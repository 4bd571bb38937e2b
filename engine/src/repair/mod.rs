//! Repair: rebuilding the index from the packs themselves (`repair index`),
//! and copies of snapshots without the data that is lost (`repair
//! snapshots`).
//!
//! Neither ever removes data: `repair index` replaces index objects only
//! after the new ones are durably stored, under the maintenance lock (M1);
//! `repair snapshots` adds trees and snapshots in backup order, and removes
//! an original snapshot object (with `--forget`) only after its copy is
//! stored, as rewrite does (F2).

mod index;
mod snapshots;

pub use index::{repair_index, DamagedPack, IndexRepairReport, RepairIndexOptions, RepairProgress};
pub use snapshots::{
    repair_snapshots, DamagedEntry, RepairAction, RepairSnapshotsOptions, SnapshotRepair, SnapshotsRepairReport,
};

use crate::backup::BackupError;
use crate::lock::LockError;
use crate::repository::RepositoryError;

/// The suffix a repaired copy gives a file (or folder) whose data is lost.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// Renames the marked entries of one folder `NAME.damaged` (or
/// `NAME.damaged.1`, `.2`, ... where that is taken among their siblings), as
/// a repaired copy and an import from restic mark what they could not
/// recover; returns each (old name, new name).
pub(crate) fn rename_damaged(nodes: &mut [(crate::tree::Node, bool)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names: std::collections::HashSet<Vec<u8>> = nodes.iter().map(|(n, _)| n.name.clone()).collect();
    let mut renamed = Vec::new();
    for (n, _) in nodes.iter_mut().filter(|(_, marked)| *marked) {
        let mut name = [n.name.as_slice(), DAMAGED_SUFFIX.as_bytes()].concat();
        let mut k = 1;
        while names.contains(&name) {
            name = [n.name.as_slice(), DAMAGED_SUFFIX.as_bytes(), format!(".{k}").as_bytes()].concat();
            k += 1;
        }
        names.insert(name.clone());
        renamed.push((std::mem::replace(&mut n.name, name.clone()), name));
    }
    renamed
}

/// The tag every repaired snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

/// Errors of a repair.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage failure.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// The maintenance lock could not be taken or was lost.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Storing the new trees failed.
    #[error(transparent)]
    Save(#[from] BackupError),
    /// The tree walk broke its own promise (a bug).
    #[error("repair: {0}")]
    Internal(&'static str),
}

#[cfg(test)]
mod tests;
