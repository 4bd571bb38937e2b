//! The one walk over a snapshot's trees, used by browsing (`ls`, `find`,
//! `diff`), restore planning, the backup's parent lookup and `check` (and
//! next by prune's reachability marking, copy and drills).
//!
//! Depth first, entries in tree order (sorted by name), a folder before its
//! contents and [`Visitor::leave`] after them. The walk keeps an explicit
//! stack rather than recursing: a hostile repository can nest trees as deep
//! as it likes, and must not be able to overflow the stack. Memory is one
//! decoded tree per level of the path being visited.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::id::TreeId;
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::tree::{Node, NodeKind, Tree};

/// Whether the walk goes into a folder's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Descend {
    /// Visit what the folder holds.
    Yes,
    /// Leave the folder's contents out (its `leave` is not called either).
    No,
}

/// What a walk calls for each entry.
pub(crate) trait Visitor {
    /// The error the visitor stops with; a tree that cannot be loaded comes
    /// back as one unless [`Visitor::tree_error`] says to go on.
    type Error: From<RepositoryError>;

    /// Called for every entry at `path`, found in tree `parent`. For a
    /// folder, the answer decides whether its tree is visited.
    fn enter(&mut self, path: &Path, parent: &TreeId, node: &Node) -> Result<Descend, Self::Error>;

    /// Called after everything below a folder that was descended into.
    fn leave(&mut self, path: &Path, node: &Node) -> Result<(), Self::Error> {
        let _ = (path, node);
        Ok(())
    }

    /// A tree could not be read or decoded. The default stops the walk;
    /// a visitor that reports damage (check) returns `Ok` and the walk goes
    /// on without that tree.
    fn tree_error(&mut self, path: &Path, id: &TreeId, error: RepositoryError) -> Result<(), Self::Error> {
        let _ = (path, id);
        Err(error.into())
    }
}

struct Frame {
    id: TreeId,
    tree: Tree,
    next: usize,
    path: PathBuf,
    /// The folder this tree belongs to, for `leave` (`None` for the start).
    dir: Option<Node>,
}

/// Visits everything below tree `root`, whose entries are at `at` (e.g. "/").
pub(crate) fn walk<V: Visitor>(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    at: &Path,
    v: &mut V,
) -> Result<(), V::Error> {
    let mut stack: Vec<Frame> = Vec::new();
    if let Some(tree) = load(repo, index, *root, at, v)? {
        stack.push(Frame {
            id: *root,
            tree,
            next: 0,
            path: at.to_path_buf(),
            dir: None,
        });
    }
    while let Some(top) = stack.last_mut() {
        let Some(node) = top.tree.nodes.get(top.next) else {
            let done = stack.pop();
            if let Some(Frame { path, dir: Some(d), .. }) = done {
                v.leave(&path, &d)?;
            }
            continue;
        };
        top.next += 1;
        let path = top.path.join(OsStr::from_bytes(&node.name));
        let descend = v.enter(&path, &top.id, node)?;
        if let (Descend::Yes, NodeKind::Dir, Some(sub)) = (descend, node.kind, node.subtree) {
            let node = node.clone();
            match load(repo, index, sub, &path, v)? {
                Some(tree) => stack.push(Frame {
                    id: sub,
                    tree,
                    next: 0,
                    path,
                    dir: Some(node),
                }),
                // An unreadable tree the visitor went past: the folder ends here.
                None => v.leave(&path, &node)?,
            }
        }
    }
    Ok(())
}

/// Tree `id`, or `None` when it cannot be read and the visitor goes on.
fn load<V: Visitor>(
    repo: &Repository,
    index: &Index,
    id: TreeId,
    path: &Path,
    v: &mut V,
) -> Result<Option<Tree>, V::Error> {
    match repo.load_tree(index, &id) {
        Ok(tree) => Ok(Some(tree)),
        Err(e) => {
            v.tree_error(path, &id, e)?;
            Ok(None)
        }
    }
}

/// Finds the node at `path` (absolute, in the snapshot whose root tree is
/// `root`). The root itself comes back as a folder node without a name.
/// `Ok(None)` when the path is not there.
pub(crate) fn resolve_path(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    path: impl AsRef<Path>,
) -> Result<Option<Node>, RepositoryError> {
    let mut node = Node::new(Vec::new(), NodeKind::Dir);
    node.subtree = Some(*root);
    node.mode = 0o755;
    for c in path.as_ref().components() {
        let Component::Normal(name) = c else { continue };
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(t)) => t,
            _ => return Ok(None),
        };
        let tree = repo.load_tree(index, &sub)?;
        match tree.get(name.as_bytes()) {
            Some(n) => node = n.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{backup, BackupOptions, BackupSource};
    use crate::snapshot::SourceKind;
    use crate::sources::Stream;

    use crate::testing::memory_repo as repo;

    /// Records what the walk does, and stops descending at `skip`.
    #[derive(Default)]
    struct Log {
        events: Vec<String>,
        skip: Option<PathBuf>,
        depth: usize,
    }

    impl Visitor for Log {
        type Error = RepositoryError;
        fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, RepositoryError> {
            self.events.push(format!("> {}", path.display()));
            self.depth = self.depth.max(path.components().count());
            let skip = self.skip.as_deref() == Some(path) || node.kind != NodeKind::Dir;
            Ok(if skip { Descend::No } else { Descend::Yes })
        }
        fn leave(&mut self, path: &Path, _: &Node) -> Result<(), RepositoryError> {
            self.events.push(format!("< {}", path.display()));
            Ok(())
        }
    }

    #[test]
    fn visits_in_tree_order_parents_first_and_leaves_after_children() {
        let src = tempfile::tempdir().unwrap();
        for d in ["a/y", "b"] {
            std::fs::create_dir_all(src.path().join(d)).unwrap();
        }
        for f in ["a/x", "a/y/z", "c"] {
            std::fs::write(src.path().join(f), f).unwrap();
        }
        let repo = repo();
        let source = BackupSource::Paths(vec![src.path().to_path_buf()]);
        let snap = backup(&repo, source, &BackupOptions::default()).unwrap().snapshot;
        let index = repo.load_index().unwrap();
        let root = resolve_path(&repo, &index, &snap.tree, src.path()).unwrap().unwrap();
        let base = src.path().to_path_buf();
        let sub = root.subtree.unwrap();

        let mut all = Log::default();
        walk(&repo, &index, &sub, &base, &mut all).unwrap();
        let rel: Vec<String> = all
            .events
            .iter()
            .map(|e| e.replace(&format!("{}/", base.display()), ""))
            .collect();
        assert_eq!(
            rel,
            ["> a", "> a/x", "> a/y", "> a/y/z", "< a/y", "< a", "> b", "< b", "> c"]
        );

        let mut pruned = Log {
            skip: Some(base.join("a/y")),
            ..Default::default()
        };
        walk(&repo, &index, &sub, &base, &mut pruned).unwrap();
        assert!(pruned.events.contains(&format!("> {}", base.join("a/y").display())));
        assert!(!pruned
            .events
            .iter()
            .any(|e| e.contains("a/y/z") || e.starts_with("< ") && e.ends_with("a/y")));
    }

    /// A hostile repository may nest trees as deep as it likes; the walk
    /// keeps its own stack, so a thread with a small stack walks them.
    #[test]
    fn walks_trees_nested_far_deeper_than_a_small_stack_would_recurse() {
        const DEPTH: usize = 3000;
        let repo = repo();
        let name = format!("{}f", "d/".repeat(DEPTH));
        let building = repo.clone();
        // Building the nested folders recurses (the backup's tree writer), so
        // it gets a big stack; the walk below gets a small one.
        let snap = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                let source = BackupSource::Stream {
                    stream: Stream::from_reader(Box::new(&b"deep"[..])),
                    filename: name.clone(),
                    kind: SourceKind::Stdin { filename: name },
                };
                backup(&building, source, &BackupOptions::default()).unwrap().snapshot
            })
            .unwrap()
            .join()
            .unwrap();
        let index = repo.load_index().unwrap();
        let depth = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                let mut log = Log::default();
                walk(&repo, &index, &snap.tree, Path::new("/"), &mut log).unwrap();
                log.depth
            })
            .unwrap()
            .join()
            .unwrap();
        // "/" plus DEPTH folders plus the file.
        assert_eq!(depth, DEPTH + 2);
    }
}
