//! The parent snapshot's files, for change detection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::BackupError;
use crate::id::{SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::tree::{self, ContentRef, Descend, Node, NodeKind, Visitor};

/// What is remembered of a file in the parent.
#[derive(Debug)]
pub(crate) struct PrevFile {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
    /// It had no extended attributes (the common case, where a backup
    /// need not ask the file system again: see [`ParentFiles::no_xattrs`]).
    pub no_xattrs: bool,
    pub content: Vec<ContentRef>,
}

/// The parent's files by path and by (device, inode).
#[derive(Debug, Default)]
pub(crate) struct ParentFiles {
    by_path: HashMap<PathBuf, Arc<PrevFile>>,
    by_inode: HashMap<(u64, u64), Arc<PrevFile>>,
}

impl ParentFiles {
    pub(crate) fn load(repo: &Repository, index: &Index, id: &SnapshotId) -> Result<Self, BackupError> {
        let snap = repo.load_snapshot(id)?;
        let mut out = ParentFiles::default();
        tree::walk(repo, index, &snap.tree, Path::new("/"), &mut out)?;
        // A content list is reused only while every blob in it has a copy
        // the index offers: the backup's index leaves out blobs whose copies
        // all wait for deletion (B3) or are in packs the storage no longer
        // has. Other files are read again, which stores their data anew.
        let stored = |f: &PrevFile| f.content.iter().all(|c| index.contains(&c.id));
        out.by_path.retain(|_, f| stored(f));
        out.by_inode.retain(|_, f| stored(f));
        Ok(out)
    }

    /// The parent's content for a file that has not changed, by the rules in
    /// format-spec "Change detection":
    /// 1. same path, size, mtime, ctime and inode; or
    /// 2. same device and inode, size and mtime, whatever the path. ctime is
    ///    not compared here: making a hard link (as `nodetool snapshot` does
    ///    every night) changes it without changing the content.
    pub(crate) fn unchanged(&self, path: &Path, now: &Node) -> Option<&[ContentRef]> {
        let (size, mtime_ns, inode, device) = (now.size, now.mtime_ns, now.inode, now.device);
        if let Some(p) = self.by_path.get(path) {
            if p.size == size && p.mtime_ns == mtime_ns && p.ctime_ns == now.ctime_ns && p.inode == inode {
                return Some(&p.content);
            }
            if p.inode == inode && p.device == device {
                // The same file at the same path with a new ctime: it was
                // touched in place, so rule 2 (for files reached by a new
                // path) must not vouch for it.
                return None;
            }
        }
        if inode != 0 {
            if let Some(p) = self.by_inode.get(&(device, inode)) {
                if p.size == size && p.mtime_ns == mtime_ns {
                    return Some(&p.content);
                }
            }
        }
        None
    }

    /// The parent's file at `path` when rule 1 holds (same path, size,
    /// mtime, ctime and inode). If it had no extended attributes, the file
    /// still has none: setting or removing one changes the ctime. So the
    /// backup need not list them, which saves a syscall and a path lookup
    /// per file of an unchanged tree (format-spec "Change detection").
    pub(crate) fn same_path(&self, path: &Path, now: &Node) -> Option<&PrevFile> {
        self.by_path.get(path).map(|p| &**p).filter(|p| {
            p.size == now.size && p.mtime_ns == now.mtime_ns && p.ctime_ns == now.ctime_ns && p.inode == now.inode
        })
    }

    /// Whether the path was in the parent (new vs changed in the summary).
    pub(crate) fn had_path(&self, path: &Path) -> bool {
        self.by_path.contains_key(path)
    }
}

impl Visitor for ParentFiles {
    type Error = BackupError;

    fn enter(&mut self, path: &Path, _: &TreeId, n: &Node) -> Result<Descend, BackupError> {
        match n.kind {
            NodeKind::Dir => return Ok(Descend::Yes),
            NodeKind::File => {
                let f = Arc::new(PrevFile {
                    size: n.size,
                    mtime_ns: n.mtime_ns,
                    ctime_ns: n.ctime_ns,
                    inode: n.inode,
                    device: n.device,
                    no_xattrs: n.xattrs.is_empty(),
                    content: n.content.clone(),
                });
                if f.inode != 0 {
                    self.by_inode.insert((f.device, f.inode), f.clone());
                }
                self.by_path.insert(path.to_path_buf(), f);
            }
            _ => {}
        }
        Ok(Descend::No)
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, e: RepositoryError) -> Result<(), BackupError> {
        // A folder of the parent that cannot be read (lost, damaged, or only
        // in packs recorded for deletion): its files are simply read again;
        // the rest of the parent is still worth comparing against.
        if e.kind() == crate::error::ErrorKind::Damaged {
            tracing::warn!(
                "parent snapshot: folder {} (tree {}): {e}; its files are read again",
                path.display(),
                id.short()
            );
            return Ok(());
        }
        Err(e.into())
    }
}
