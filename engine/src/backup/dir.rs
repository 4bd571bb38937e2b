//! Folders under construction during a backup, stored bottom-up as trees
//! once every file below them has been read.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::meta::{node_from_meta, NameCache};
use super::saver::Saver;
use super::{store_tree, BackupError, SkippedEntry};
use crate::id::TreeId;
use crate::repository::Repository;
use crate::snapshot::Summary;
use crate::tree::{ContentRef, Node, NodeKind, Tree};

/// An entry of a folder under construction.
pub(crate) enum Child {
    /// A folder.
    Dir(DirBuilder),
    /// Anything complete already (unchanged files, links, devices).
    Leaf(Node),
    /// A file whose content a reader is still chunking (job number).
    File { node: Node, job: usize },
}

/// A directory under construction.
pub(crate) struct DirBuilder {
    pub(super) node: Option<Node>,
    pub(super) children: BTreeMap<Vec<u8>, Child>,
}

/// What a reader made of one file.
pub(crate) struct FileResult {
    pub(super) content: Vec<ContentRef>,
    pub(super) error: Option<String>,
}

/// Reader results by job number.
pub(crate) type Results = HashMap<usize, FileResult>;

impl FileResult {
    /// Job `job`'s result if its reader has finished: taken out of
    /// `results`, or copied while other paths link to the same job
    /// (`linked`), so each of them finds it.
    pub(super) fn take(results: &mut Results, job: usize, linked: bool) -> Option<FileResult> {
        if linked {
            results.get(&job).map(|r| FileResult {
                content: r.content.clone(),
                error: r.error.clone(),
            })
        } else {
            results.remove(&job)
        }
    }

    /// `node` with the content its reader found, or why it could not be
    /// read. The size is what was read, not what stat said before: a file
    /// that grew or shrank meanwhile must still make a valid tree
    /// (format-spec "Tree validity").
    pub(super) fn into_node(self, mut node: Node) -> Result<Node, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        node.size = self.content.iter().map(|c| u64::from(c.length)).sum();
        node.content = self.content;
        Ok(node)
    }
}

impl DirBuilder {
    /// The root of a snapshot of streams: intermediate folders are made up.
    pub(crate) fn synthetic_root() -> Self {
        Self {
            node: None,
            children: BTreeMap::new(),
        }
    }

    pub(super) fn child_dir(&mut self, name: &[u8], real: Option<&Path>, names: &mut NameCache) -> &mut DirBuilder {
        let entry = self.children.entry(name.to_vec()).or_insert_with(|| {
            let node = match real.and_then(|p| fs::symlink_metadata(p).ok()) {
                Some(m) => node_from_meta(name.to_vec(), &(&m).into(), names),
                None => {
                    let mut n = Node::new(name.to_vec(), NodeKind::Dir);
                    n.mode = 0o755;
                    n.mtime_ns = crate::time::now_ns();
                    n
                }
            };
            Child::Dir(DirBuilder {
                node: Some(node),
                children: BTreeMap::new(),
            })
        });
        // A path that is both a file and a folder cannot come from one file
        // system walk; if it ever did, the folder wins.
        if !matches!(entry, Child::Dir(_)) {
            *entry = Child::Dir(DirBuilder::synthetic_root());
        }
        match entry {
            Child::Dir(d) => d,
            _ => unreachable!("replaced by a folder just above"),
        }
    }

    /// Places `node` at absolute `path`, making up parent folders.
    pub(crate) fn insert_path(&mut self, path: &Path, node: Node) {
        let mut names = NameCache::default();
        let parts: Vec<&OsStr> = path
            .components()
            .filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None })
            .collect();
        let mut dir = self;
        for p in parts.iter().take(parts.len().saturating_sub(1)) {
            dir = dir.child_dir(p.as_bytes(), None, &mut names);
        }
        dir.children.insert(node.name.clone(), Child::Leaf(node));
    }

    /// Makes sure the folder at absolute `path` exists (made up like the
    /// parent folders of [`DirBuilder::insert_path`]), even with nothing in it.
    pub(crate) fn insert_dir(&mut self, path: &Path) {
        let mut names = NameCache::default();
        let mut dir = self;
        for c in path.components() {
            if let Component::Normal(n) = c {
                dir = dir.child_dir(n.as_bytes(), None, &mut names);
            }
        }
    }

    /// Stores every tree bottom-up; returns the root tree's id.
    pub(crate) fn store(self, saver: &Saver, repo: &Repository) -> Result<TreeId, BackupError> {
        let mut none = Results::new();
        self.store_with(
            saver,
            repo,
            &mut none,
            &mut Summary::default(),
            &mut Vec::new(),
            Path::new("/"),
        )
    }

    pub(super) fn store_with(
        self,
        saver: &Saver,
        repo: &Repository,
        results: &mut Results,
        summary: &mut Summary,
        skipped: &mut Vec<SkippedEntry>,
        at: &Path,
    ) -> Result<TreeId, BackupError> {
        let mut tree = Tree::default();
        for (name, child) in self.children {
            match child {
                Child::Dir(d) => {
                    let path = at.join(OsStr::from_bytes(&name));
                    let mut node = d.node.clone().unwrap_or_else(|| Node::new(name.clone(), NodeKind::Dir));
                    node.subtree = Some(d.store_with(saver, repo, results, summary, skipped, &path)?);
                    summary.dirs += 1;
                    tree.nodes.push(node);
                }
                Child::Leaf(n) => tree.nodes.push(n),
                Child::File { node, job } => {
                    let linked = node.nlink > 1;
                    match FileResult::take(results, job, linked).map(|r| r.into_node(node)) {
                        Some(Ok(node)) => tree.nodes.push(node),
                        Some(Err(error)) => skipped.push(SkippedEntry {
                            path: at.join(OsStr::from_bytes(&name)),
                            error,
                        }),
                        None => return Err(BackupError::PipelineStopped),
                    }
                }
            }
        }
        store_tree(repo, saver, &tree)
    }
}
