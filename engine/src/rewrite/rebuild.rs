//! One snapshot's trees without the excluded entries, rebuilt bottom-up
//! during the shared tree walk: a folder whose content changed gets a new
//! tree blob, every other subtree keeps its id (and is not stored again).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::RewriteError;
use crate::backup::{store_tree, Saver};
use crate::browse::NameMatcher;
use crate::id::TreeId;
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::tree::{self, Descend, Node, NodeKind, Tree, Visitor};

/// One entry an exclude pattern matched, removed with everything below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedPath {
    /// Its absolute path in the snapshot.
    pub path: String,
    /// What it is (`file`, `dir`, ... as [`NodeKind::name`] spells it).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Files at or below it.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// What the walk of one snapshot found.
pub(super) struct Pruned {
    /// The new root tree, `None` when nothing matched.
    pub(super) root: Option<TreeId>,
    /// The matched entries, in tree order.
    pub(super) removed: Vec<RemovedPath>,
}

/// What rebuilding each folder gave, by its tree and path, for the whole
/// rewrite: nightly snapshots share most folders, and the same tree at the
/// same path always gives the same result (the globs see only paths and
/// names), so each is walked once per rewrite, not once per snapshot.
#[derive(Default)]
pub(super) struct Seen(HashMap<(TreeId, PathBuf), Outcome>);

#[derive(Clone)]
struct Outcome {
    /// The folder's new tree; `None` when it is unchanged, or removed whole.
    subtree: Option<TreeId>,
    /// What went, at or below it.
    removed: Vec<RemovedPath>,
}

/// A folder being rebuilt: the entries it keeps, and whether any of them
/// differs from the stored tree (only then is a new tree stored).
#[derive(Default)]
struct Folder {
    nodes: Vec<Node>,
    changed: bool,
    /// Where its entries begin in `Rebuild::removed`.
    removed_from: usize,
}

struct Rebuild<'a> {
    repo: &'a Repository,
    saver: &'a Saver,
    excludes: &'a [NameMatcher],
    seen: &'a mut Seen,
    /// The folders on the path being walked, the root first.
    folders: Vec<Folder>,
    /// Folders entered below the newest removed entry: their contents are
    /// only counted into it.
    removing: usize,
    removed: Vec<RemovedPath>,
}

/// Whether the walk goes into `node` (the walker's own condition).
fn has_tree(node: &Node) -> bool {
    node.kind == NodeKind::Dir && node.subtree.is_some()
}

impl Rebuild<'_> {
    fn count(&mut self, node: &Node) {
        if let (NodeKind::File, Some(r)) = (node.kind, self.removed.last_mut()) {
            r.files += 1;
            r.bytes += node.size;
        }
    }

    fn current(&mut self) -> Result<&mut Folder, RewriteError> {
        self.folders
            .last_mut()
            .ok_or(RewriteError::Internal("the walk left the root"))
    }

    fn key(path: &Path, node: &Node) -> Option<(TreeId, PathBuf)> {
        node.subtree.map(|t| (t, path.to_path_buf()))
    }

    fn remember(&mut self, path: &Path, node: &Node, outcome: Outcome) {
        if let Some(key) = Self::key(path, node) {
            self.seen.0.insert(key, outcome);
        }
    }
}

impl Visitor for Rebuild<'_> {
    type Error = RewriteError;

    fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, RewriteError> {
        let descend = if has_tree(node) { Descend::Yes } else { Descend::No };
        if self.removing > 0 {
            // Inside a removed folder: walked only to count what goes with it.
            self.count(node);
            if descend == Descend::Yes {
                self.removing += 1;
            }
            return Ok(descend);
        }
        let matched = self.excludes.iter().any(|m| m.matches(path, node));
        let known = Self::key(path, node).and_then(|k| self.seen.0.get(&k).cloned());
        if let (Descend::Yes, Some(done)) = (descend, known) {
            self.removed.extend(done.removed);
            let folder = self.current()?;
            if matched {
                folder.changed = true;
            } else {
                let mut node = node.clone();
                if let Some(t) = done.subtree {
                    node.subtree = Some(t);
                    folder.changed = true;
                }
                folder.nodes.push(node);
            }
            return Ok(Descend::No);
        }
        if matched {
            self.current()?.changed = true;
            self.removed.push(RemovedPath {
                path: path.to_string_lossy().into_owned(),
                kind: node.kind.name(),
                files: 0,
                bytes: 0,
            });
            self.count(node);
            if descend == Descend::Yes {
                self.removing += 1;
            }
        } else if descend == Descend::Yes {
            let removed_from = self.removed.len();
            self.folders.push(Folder {
                removed_from,
                ..Default::default()
            });
        } else {
            self.current()?.nodes.push(node.clone());
        }
        Ok(descend)
    }

    fn leave(&mut self, path: &Path, node: &Node) -> Result<(), RewriteError> {
        if self.removing > 0 {
            self.removing -= 1;
            // Back at the removed folder itself.
            if let (0, Some(r)) = (self.removing, self.removed.last()) {
                let outcome = Outcome {
                    subtree: None,
                    removed: vec![r.clone()],
                };
                self.remember(path, node, outcome);
            }
            return Ok(());
        }
        let folder = self
            .folders
            .pop()
            .ok_or(RewriteError::Internal("left a folder twice"))?;
        let new = if folder.changed {
            Some(store_tree(self.repo, self.saver, &Tree { nodes: folder.nodes })?)
        } else {
            None
        };
        let removed = self.removed.get(folder.removed_from..).unwrap_or_default().to_vec();
        self.remember(path, node, Outcome { subtree: new, removed });
        let mut node = node.clone();
        if new.is_some() {
            node.subtree = new;
        }
        let parent = self.current()?;
        parent.changed |= new.is_some();
        parent.nodes.push(node);
        Ok(())
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, error: RepositoryError) -> Result<(), RewriteError> {
        // What is removed need not be readable: only its counts are lost.
        if self.removing > 0 {
            tracing::warn!("{}: tree {} of a removed folder: {error}", path.display(), id.short());
            return Ok(());
        }
        Err(error.into())
    }
}

/// Walks the tree `root` and queues in `saver` every tree whose content
/// changes when the entries `excludes` match are removed; folders already
/// in `seen` are not walked again.
pub(super) fn rebuild(
    repo: &Repository,
    index: &Index,
    saver: &Saver,
    root: &TreeId,
    excludes: &[NameMatcher],
    seen: &mut Seen,
) -> Result<Pruned, RewriteError> {
    let mut v = Rebuild {
        repo,
        saver,
        excludes,
        seen,
        folders: vec![Folder::default()],
        removing: 0,
        removed: Vec::new(),
    };
    tree::walk(repo, index, root, Path::new("/"), &mut v)?;
    let top = v
        .folders
        .pop()
        .ok_or(RewriteError::Internal("the walk lost the root"))?;
    if !v.folders.is_empty() {
        return Err(RewriteError::Internal("the walk left folders open"));
    }
    let root = if top.changed {
        Some(store_tree(repo, saver, &Tree { nodes: top.nodes })?)
    } else {
        None
    };
    Ok(Pruned {
        root,
        removed: v.removed,
    })
}
