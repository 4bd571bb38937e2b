//! The mode figures: restore size (memoized per tree), raw data (distinct
//! blobs) and distinct file contents, each through the one tree walker.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::StatsError;
use crate::id::{SnapshotId, TreeId};
use crate::index::{Index, IndexFile};
use crate::prune::mark::{key_of, reachable, BlobKey, BlobSet};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// What restoring one snapshot writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Size {
    /// Bytes of its files.
    pub bytes: u64,
    /// Its regular files.
    pub files: u64,
}

/// Restore sizes, remembering every tree's total so that a tree shared by
/// many snapshots (most of them, night after night) is read once.
#[derive(Default)]
pub(super) struct Sizer {
    memo: HashMap<BlobKey, Size>,
}

/// One folder being summed.
#[derive(Default)]
struct Frame {
    size: Size,
    /// Something below is hard-linked: the total depends on which links the
    /// snapshot met before, so it is not remembered.
    links: bool,
}

struct SizeVisitor<'a> {
    memo: &'a mut HashMap<BlobKey, Size>,
    stack: Vec<Frame>,
    /// Hard-linked inodes (inode, device) counted in this snapshot.
    inodes: HashSet<(u64, u64)>,
}

impl SizeVisitor<'_> {
    fn top(&mut self) -> &mut Frame {
        if self.stack.is_empty() {
            self.stack.push(Frame::default());
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }
}

impl Visitor for SizeVisitor<'_> {
    type Error = StatsError;

    fn enter(&mut self, _: &Path, _: &TreeId, node: &Node) -> Result<Descend, StatsError> {
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => {
                if let Some(s) = self.memo.get(&key_of(&sub.blob())).copied() {
                    let top = self.top();
                    top.size.bytes = top.size.bytes.saturating_add(s.bytes);
                    top.size.files += s.files;
                    return Ok(Descend::No);
                }
                self.stack.push(Frame::default());
                return Ok(Descend::Yes);
            }
            (NodeKind::File, _) => {
                // A restore writes a hard-linked file once and links the
                // rest (restic counts it the same way).
                let linked = node.nlink > 1 && node.inode != 0;
                let first = !linked || self.inodes.insert((node.inode, node.device));
                let top = self.top();
                top.size.files += 1;
                top.links |= linked;
                if first {
                    top.size.bytes = top.size.bytes.saturating_add(node.size);
                }
            }
            _ => {}
        }
        Ok(Descend::No)
    }

    fn leave(&mut self, _: &Path, node: &Node) -> Result<(), StatsError> {
        let done = self.stack.pop().unwrap_or_default();
        if let (Some(sub), false) = (node.subtree, done.links) {
            self.memo.insert(key_of(&sub.blob()), done.size);
        }
        let top = self.top();
        top.size.bytes = top.size.bytes.saturating_add(done.size.bytes);
        top.size.files += done.size.files;
        top.links |= done.links;
        Ok(())
    }
}

impl Sizer {
    /// What restoring the snapshot with root tree `root` writes.
    pub(super) fn snapshot(&mut self, repo: &Repository, index: &Index, root: &TreeId) -> Result<Size, StatsError> {
        if let Some(s) = self.memo.get(&key_of(&root.blob())) {
            return Ok(*s);
        }
        let mut v = SizeVisitor {
            memo: &mut self.memo,
            stack: vec![Frame::default()],
            inodes: HashSet::new(),
        };
        tree::walk(repo, index, root, Path::new("/"), &mut v)?;
        let done = v.stack.pop().unwrap_or_default();
        if !done.links {
            self.memo.insert(key_of(&root.blob()), done.size);
        }
        Ok(done.size)
    }
}

/// The raw-data figure.
#[derive(Debug, Default)]
pub(super) struct Raw {
    /// Plaintext bytes of the distinct blobs.
    pub bytes: u64,
    /// Distinct blobs, data and tree.
    pub blobs: u64,
    /// Referenced blobs the index does not know.
    pub missing: u64,
}

/// The distinct blobs `snapshots` reference, uncompressed: prune's
/// reachability marking, then each marked blob's plaintext length from the
/// index objects (the in-memory index does not keep it), once per blob.
pub(super) fn raw_data(
    repo: &Repository,
    index: &Index,
    files: &[IndexFile],
    snapshots: &[(SnapshotId, Snapshot)],
) -> Raw {
    let mut used = reachable(repo, index, snapshots);
    let mut raw = Raw::default();
    for b in files.iter().flat_map(|f| &f.packs).flat_map(|p| &p.blobs) {
        if used.remove(&key_of(&b.id)) {
            raw.bytes = raw.bytes.saturating_add(u64::from(b.raw_length));
            raw.blobs += 1;
        }
    }
    raw.missing = used.len() as u64;
    raw
}

/// The files-by-contents figure.
#[derive(Debug, Default)]
pub(super) struct Contents {
    /// Distinct contents.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

struct ContentVisitor {
    trees: BlobSet,
    contents: HashSet<[u8; 16]>,
    out: Contents,
}

impl Visitor for ContentVisitor {
    type Error = StatsError;

    fn enter(&mut self, _: &Path, _: &TreeId, node: &Node) -> Result<Descend, StatsError> {
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => Ok(if self.trees.insert(key_of(&sub.blob())) {
                Descend::Yes
            } else {
                Descend::No
            }),
            (NodeKind::File, _) => {
                // A content is its chunk list; 16 bytes of its hash name it
                // as the index's 16-byte prefixes name blobs.
                let mut h = blake3::Hasher::new();
                for c in &node.content {
                    h.update(c.id.as_bytes());
                }
                let mut key = [0u8; 16];
                key.copy_from_slice(&h.finalize().as_bytes()[..16]);
                if self.contents.insert(key) {
                    self.out.files += 1;
                    self.out.bytes = self.out.bytes.saturating_add(node.size);
                }
                Ok(Descend::No)
            }
            _ => Ok(Descend::No),
        }
    }
}

/// The distinct file contents of `snapshots`.
pub(super) fn contents(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, Snapshot)],
) -> Result<Contents, StatsError> {
    let mut v = ContentVisitor {
        trees: BlobSet::default(),
        contents: HashSet::new(),
        out: Contents::default(),
    };
    for (_, s) in snapshots {
        if v.trees.insert(key_of(&s.tree.blob())) {
            tree::walk(repo, index, &s.tree, Path::new("/"), &mut v)?;
        }
    }
    Ok(v.out)
}
