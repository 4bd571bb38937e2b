//! The mark phase: every blob the snapshots reach, through the shared tree
//! walker, each tree visited once however many snapshots share it.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use super::PruneError;
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::index::{Index, PREFIX_LEN};
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// The first [`PREFIX_LEN`] bytes of a blob id, as the index keeps them.
pub(crate) type BlobKey = [u8; PREFIX_LEN];

/// The key of a blob id.
pub(crate) fn key_of(id: &BlobId) -> BlobKey {
    let mut k = [0u8; PREFIX_LEN];
    k.copy_from_slice(&id.as_bytes()[..PREFIX_LEN]);
    k
}

/// Hashes a blob key by its first eight bytes. Blob ids are keyed BLAKE3
/// hashes, uniform already, and nobody without the key can choose them, so
/// hashing them again (SipHash, the std default) would only cost time: the
/// mark phase does one insert per blob reference.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Arrays hash their length first (a usize) and then the bytes; the
        // last write of 8 or more bytes decides.
        if bytes.len() >= 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[..8]);
            self.0 = u64::from_le_bytes(b);
        }
    }
}

/// A set of blob keys.
pub(crate) type BlobSet = HashSet<BlobKey, BuildHasherDefault<IdHasher>>;

/// What the snapshots use.
#[derive(Debug, Default)]
pub(crate) struct Marked {
    /// Every data and tree blob reachable from the snapshots.
    pub used: BlobSet,
    /// Distinct trees visited.
    pub trees: usize,
}

struct Marker<'a> {
    marked: &'a mut Marked,
    /// Whether an unreadable tree stops the walk (prune) or is passed
    /// over (a check, whose own tree phase reports it).
    strict: bool,
}

impl Visitor for Marker<'_> {
    type Error = PruneError;

    fn enter(&mut self, _: &Path, _: &TreeId, node: &Node) -> Result<Descend, PruneError> {
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => {
                // A tree already marked was walked already, with all below it.
                if self.marked.used.insert(key_of(&sub.blob())) {
                    self.marked.trees += 1;
                    return Ok(Descend::Yes);
                }
            }
            _ => {
                for c in &node.content {
                    self.marked.used.insert(key_of(&c.id));
                }
            }
        }
        Ok(Descend::No)
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, error: RepositoryError) -> Result<(), PruneError> {
        if !self.strict {
            return Ok(());
        }
        // Prune must know every blob a snapshot needs before it deletes
        // anything: an unreadable tree could hide any of them.
        Err(PruneError::UnreadableTree {
            path: path.to_string_lossy().into_owned(),
            tree: id.to_hex(),
            detail: error.to_string(),
        })
    }
}

/// Marks everything `snapshots` reach.
pub(crate) fn mark(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, Snapshot)],
    progress: &dyn Fn(usize),
) -> Result<Marked, PruneError> {
    let mut marked = Marked::default();
    mark_into(repo, index, snapshots, &mut marked, progress)?;
    Ok(marked)
}

/// Marks everything `snapshots` reach into `marked`, skipping the trees it
/// holds already.
pub(crate) fn mark_into(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, Snapshot)],
    marked: &mut Marked,
    progress: &dyn Fn(usize),
) -> Result<(), PruneError> {
    for (i, (_, snap)) in snapshots.iter().enumerate() {
        progress(i);
        if marked.used.insert(key_of(&snap.tree.blob())) {
            marked.trees += 1;
            let mut v = Marker {
                marked: &mut *marked,
                strict: true,
            };
            tree::walk(repo, index, &snap.tree, Path::new("/"), &mut v)?;
        }
    }
    progress(snapshots.len());
    Ok(())
}

/// Every blob `snapshots` reach, passing over trees that cannot be read
/// (for a check scoped to some snapshots: its tree phase names them).
pub(crate) fn reachable(repo: &Repository, index: &Index, snapshots: &[(SnapshotId, Snapshot)]) -> BlobSet {
    let mut marked = Marked::default();
    for (_, snap) in snapshots {
        if marked.used.insert(key_of(&snap.tree.blob())) {
            let mut v = Marker {
                marked: &mut marked,
                strict: false,
            };
            // Only tree errors end a walk, and this marker swallows them.
            let _ = tree::walk(repo, index, &snap.tree, Path::new("/"), &mut v);
        }
    }
    marked.used
}
