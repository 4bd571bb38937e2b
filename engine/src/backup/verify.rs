//! The backup's side of the many-writer protocol at its end (format-spec
//! B4, B5): before the snapshot is written, every blob it reuses must still
//! have a copy that no prune has recorded for deletion since the backup
//! started, and, after a run longer than the grace period, a copy in a pack
//! that still exists.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::BackupError;
use crate::id::{PackId, TreeId};
use crate::index::{Avoid, Index};
use crate::prune::{Deletions, DEFAULT_GRACE};
use crate::repository::{Repository, RepositoryError};
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// Checks the tree `root` about to be saved. `seen` are the deletion
/// records the backup started with, `elapsed` how long it has run.
pub(crate) fn verify_reuse(
    repo: &Repository,
    seen: &Deletions,
    elapsed: Duration,
    root: &TreeId,
) -> Result<(), BackupError> {
    let now = repo.load_deletions()?;
    let names = seen.names();
    let new_records = now.records.iter().filter(|(n, _)| !names.contains(n)).count();
    let long = elapsed > DEFAULT_GRACE;
    if new_records == 0 && !long {
        return Ok(());
    }
    // Only copies outside every recorded pack count, as in B3.
    let index = repo.load_index_avoiding(&now.doomed_packs(), Avoid::Exclude)?;
    let existing = if long { Some(repo.list_pack_ids()?) } else { None };
    let mut v = Checker {
        index: &index,
        existing: existing.as_ref(),
        visited: HashSet::new(),
        lost: 0,
    };
    v.check(&root.blob());
    if v.lost == 0 {
        tree::walk(repo, &index, root, Path::new("/"), &mut v)?;
    }
    match v.lost {
        0 => Ok(()),
        n => Err(BackupError::ReusedDataDeleted { blobs: n }),
    }
}

struct Checker<'a> {
    index: &'a Index,
    existing: Option<&'a HashSet<PackId>>,
    visited: HashSet<TreeId>,
    lost: usize,
}

impl Checker<'_> {
    fn check(&mut self, id: &crate::id::BlobId) {
        let ok = match self.index.get(id) {
            Some(loc) => self.existing.is_none_or(|e| e.contains(&loc.pack)),
            None => false,
        };
        if !ok {
            self.lost += 1;
        }
    }
}

impl Visitor for Checker<'_> {
    type Error = BackupError;

    fn enter(&mut self, _: &Path, _: &TreeId, node: &Node) -> Result<Descend, BackupError> {
        for c in &node.content {
            self.check(&c.id);
        }
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) if self.visited.insert(sub) => {
                self.check(&sub.blob());
                Ok(Descend::Yes)
            }
            _ => Ok(Descend::No),
        }
    }

    fn tree_error(&mut self, _: &Path, _: &TreeId, e: RepositoryError) -> Result<(), BackupError> {
        match e {
            // No copy outside recorded packs: counted by `check` already.
            RepositoryError::MissingBlob { .. } => Ok(()),
            other => Err(other.into()),
        }
    }
}
