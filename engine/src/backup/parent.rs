//! The parent snapshot's files, for change detection.
//!
//! The parent is walked alongside the source: each folder's tree is loaded
//! when the walk enters the same folder, and a file is compared with the
//! entry of the same name (rule 1 of format-spec "Change detection"). Only
//! when a file is not found that way is the whole parent read into a map by
//! (device, inode) for rule 2. An unchanged backup so loads each parent
//! tree once and keeps only the trees on the current path, where a map of
//! every file by path cost it a third of its time and most of its memory.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::Path;

use super::BackupError;
use crate::error::ErrorKind;
use crate::id::{SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::tree::{self, ContentRef, Descend, Node, NodeKind, Tree, Visitor};

/// What rule 2 remembers of a file of the parent.
#[derive(Debug)]
struct ByInode {
    size: u64,
    mtime_ns: i64,
    content: Vec<ContentRef>,
}

/// The parent snapshot, read as the backup walks.
pub(crate) struct ParentFiles<'a> {
    repo: &'a Repository,
    index: &'a Index,
    root: TreeId,
    /// Rule 2's map, built on the first file rule 1 does not vouch for.
    by_inode: OnceCell<HashMap<(u64, u64), ByInode>>,
}

/// One folder of the parent: its entries by name.
#[derive(Debug, Default)]
pub(crate) struct ParentDir {
    tree: Option<Tree>,
}

impl ParentDir {
    /// The parent's entry called `name` in this folder.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&Node> {
        self.tree.as_ref()?.get(name)
    }
}

impl<'a> ParentFiles<'a> {
    /// The parent snapshot `id`; fails when its snapshot object or root tree
    /// cannot be read (the caller then reads every file).
    pub(crate) fn load(repo: &'a Repository, index: &'a Index, id: &SnapshotId) -> Result<Self, BackupError> {
        let snap = repo.load_snapshot(id)?;
        repo.load_tree(index, &snap.tree)?;
        Ok(ParentFiles {
            repo,
            index,
            root: snap.tree,
            by_inode: OnceCell::new(),
        })
    }

    /// The parent's node at absolute `path` (the root as a nameless folder),
    /// `None` when the parent has nothing there or cannot read the way.
    pub(crate) fn at(&self, path: &Path) -> Result<Option<Node>, BackupError> {
        match tree::resolve_path(self.repo, self.index, &self.root, path) {
            Ok(n) => Ok(n),
            Err(e) => damaged(path, e).map(|_| None),
        }
    }

    /// The folder `prev` (the parent's node at `path`), loaded when it is
    /// a folder; empty otherwise.
    pub(crate) fn dir(&self, path: &Path, prev: Option<&Node>) -> Result<ParentDir, BackupError> {
        let Some(id) = prev.filter(|n| n.kind == NodeKind::Dir).and_then(|n| n.subtree) else {
            return Ok(ParentDir::default());
        };
        match self.repo.load_tree(self.index, &id) {
            Ok(tree) => Ok(ParentDir { tree: Some(tree) }),
            Err(e) => damaged(path, e).map(|_| ParentDir::default()),
        }
    }

    /// A content list is reused only while every blob in it has a copy the
    /// index offers: the backup's index leaves out blobs whose copies all
    /// wait for deletion (B3) or are in packs the storage no longer has.
    /// Other files are read again, which stores their data anew.
    fn stored(&self, content: &[ContentRef]) -> bool {
        content.iter().all(|c| self.index.contains(&c.id))
    }

    /// `prev` when rule 1 holds: the parent's entry of the same path has the
    /// same size, mtime, ctime and inode, and its content is stored. If it
    /// had no extended attributes, the file still has none: setting or
    /// removing one changes the ctime. So the backup need not list them,
    /// which saves a syscall and a path lookup per file of an unchanged tree.
    pub(crate) fn same_path<'n>(&self, prev: Option<&'n Node>, now: &Node) -> Option<&'n Node> {
        prev.filter(|p| {
            p.kind == NodeKind::File
                && p.size == now.size
                && p.mtime_ns == now.mtime_ns
                && p.ctime_ns == now.ctime_ns
                && p.inode == now.inode
                && self.stored(&p.content)
        })
    }

    /// The parent's content for a file that has not changed, by the rules in
    /// format-spec "Change detection":
    /// 1. same path, size, mtime, ctime and inode; or
    /// 2. same device and inode, size and mtime, whatever the path. ctime is
    ///    not compared here: making a hard link (as `nodetool snapshot` does
    ///    every night) changes it without changing the content.
    pub(crate) fn unchanged(&self, prev: Option<&Node>, now: &Node) -> Result<Option<Vec<ContentRef>>, BackupError> {
        if let Some(p) = self.same_path(prev, now) {
            return Ok(Some(p.content.clone()));
        }
        if prev.is_some_and(|p| p.kind == NodeKind::File && p.inode == now.inode && p.device == now.device) {
            // The same file at the same path with a new ctime: it was
            // touched in place, so rule 2 (for files reached by a new
            // path) must not vouch for it.
            return Ok(None);
        }
        if now.inode == 0 {
            return Ok(None);
        }
        let by_inode = match self.by_inode.get() {
            Some(m) => m,
            None => {
                let mut v = InodeMap::default();
                tree::walk(self.repo, self.index, &self.root, Path::new("/"), &mut v)?;
                v.files.retain(|_, f| self.stored(&f.content));
                self.by_inode.get_or_init(|| v.files)
            }
        };
        Ok(by_inode
            .get(&(now.device, now.inode))
            .filter(|p| p.size == now.size && p.mtime_ns == now.mtime_ns)
            .map(|p| p.content.clone()))
    }
}

/// A folder of the parent that cannot be read (lost, damaged, or only in
/// packs recorded for deletion): its files are simply read again; the rest
/// of the parent is still worth comparing against. Other errors stop.
fn damaged(path: &Path, e: RepositoryError) -> Result<(), BackupError> {
    if e.kind() == ErrorKind::Damaged {
        tracing::warn!(
            "parent snapshot: folder {}: {e}; its files are read again",
            path.display()
        );
        return Ok(());
    }
    Err(e.into())
}

/// Collects rule 2's map from a walk of the whole parent.
#[derive(Default)]
struct InodeMap {
    files: HashMap<(u64, u64), ByInode>,
}

impl Visitor for InodeMap {
    type Error = BackupError;

    fn enter(&mut self, _: &Path, _: &TreeId, n: &Node) -> Result<Descend, BackupError> {
        match n.kind {
            NodeKind::Dir => return Ok(Descend::Yes),
            NodeKind::File if n.inode != 0 => {
                self.files.insert(
                    (n.device, n.inode),
                    ByInode {
                        size: n.size,
                        mtime_ns: n.mtime_ns,
                        content: n.content.clone(),
                    },
                );
            }
            _ => {}
        }
        Ok(Descend::No)
    }

    fn tree_error(&mut self, path: &Path, _: &TreeId, e: RepositoryError) -> Result<(), BackupError> {
        damaged(path, e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fs;

    use super::*;
    use crate::backup::{backup, BackupOptions, BackupSource};
    use crate::blob::BlobType;
    use crate::index::Avoid;
    use crate::testing::memory_repo;

    /// A folder of the parent whose tree is gone is read again; its sibling
    /// is still compared, and the way to it through the parent still found.
    #[test]
    fn a_lost_folder_of_the_parent_costs_only_that_folder() {
        let src = tempfile::tempdir().unwrap();
        for d in ["a", "b"] {
            fs::create_dir(src.path().join(d)).unwrap();
            fs::write(src.path().join(d).join("f"), d).unwrap();
        }
        let repo = memory_repo();
        let go = |p: &Path| {
            backup(
                &repo,
                BackupSource::Paths(vec![p.to_path_buf()]),
                &BackupOptions::default(),
            )
        };
        go(&src.path().join("a")).unwrap();
        let tree_packs = |repo: &Repository| -> HashSet<_> {
            let index = repo.load_index().unwrap();
            index
                .packs()
                .iter()
                .filter(|p| p.blob_type == BlobType::Tree)
                .map(|p| p.id)
                .collect()
        };
        let first = tree_packs(&repo);
        let snap = go(src.path()).unwrap();
        let second: HashSet<_> = tree_packs(&repo).difference(&first).copied().collect();
        assert!(!second.is_empty(), "the second backup stored new trees");
        // The index of a backup after the first tree pack was recorded for
        // deletion: folder `a`'s tree (stored by the first backup, shared by
        // the second) is gone, the rest is there.
        let index = repo.load_index_avoiding(&first, Avoid::Exclude).unwrap();
        let parent = ParentFiles::load(&repo, &index, &snap.id.unwrap()).unwrap();
        let top = parent.at(src.path()).unwrap().expect("the backed-up folder");
        let dir = parent.dir(src.path(), Some(&top)).unwrap();
        let (a, b) = (dir.get(b"a").unwrap(), dir.get(b"b").unwrap());
        assert!(parent.dir(&src.path().join("a"), Some(a)).unwrap().get(b"f").is_none());
        let b_dir = parent.dir(&src.path().join("b"), Some(b)).unwrap();
        let f = b_dir.get(b"f").expect("b/f in the parent");
        assert!(parent.same_path(Some(f), f).is_some());
        assert_eq!(parent.unchanged(Some(f), f).unwrap(), Some(f.content.clone()));
        assert!(parent.at(&src.path().join("a/f")).unwrap().is_none());
    }

    /// Rule 2 finds a file under a new path by (device, inode); a file at
    /// the same path touched in place is not vouched for by it.
    #[test]
    fn rule_two_follows_inodes_but_not_a_file_touched_in_place() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), "content").unwrap();
        let repo = memory_repo();
        let snap = backup(
            &repo,
            BackupSource::Paths(vec![src.path().to_path_buf()]),
            &BackupOptions::default(),
        )
        .unwrap();
        let index = repo.load_index().unwrap();
        let parent = ParentFiles::load(&repo, &index, &snap.id.unwrap()).unwrap();
        let top = parent.at(src.path()).unwrap().unwrap();
        let dir = parent.dir(src.path(), Some(&top)).unwrap();
        let f = dir.get(b"f").unwrap().clone();
        let mut moved = f.clone();
        moved.name = b"g".to_vec();
        moved.ctime_ns += 1;
        assert_eq!(parent.unchanged(None, &moved).unwrap(), Some(f.content.clone()));
        assert_eq!(parent.unchanged(Some(&f), &moved).unwrap(), None);
        let mut other = moved.clone();
        other.inode += 1;
        assert_eq!(parent.unchanged(None, &other).unwrap(), None);
    }
}
