//! Reading snapshots without restoring them: listing, finding, comparing and
//! streaming single files (`ls`, `find`, `diff`, `dump`).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use serde::Serialize;

use crate::error::Result;
use crate::id::{SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::{self, Descend, Node, NodeKind, Tree, Visitor};

/// Errors of browsing.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// The path is not in the snapshot, or not a file.
    #[error("{0}")]
    Path(String),
    /// Bad glob.
    #[error("bad pattern `{0}`: {1}")]
    Pattern(String, String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    /// `dump` could not read all of a file's data (damaged or missing);
    /// what came before the damage was written.
    #[error("{path} cannot be dumped whole: {error}")]
    Unreadable {
        /// The file, in the snapshot.
        path: String,
        /// The blob, pack or storage failure at fault.
        error: RepositoryError,
    },
    /// Repository failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// The node at `path` in `snapshot`, or an error naming the path.
pub fn node_at(repo: &Repository, index: &Index, snapshot: &Snapshot, path: &str) -> Result<Node> {
    tree::resolve_path(repo, index, &snapshot.tree, path)?
        .ok_or_else(|| BrowseError::Path(format!("{path} is not in the snapshot")).into())
}

/// Calls `f` for every entry at or below `start` (an absolute path in the
/// snapshot; "/" for all), parents before children; with `recursive` unset,
/// only `start` and its direct entries.
pub fn walk(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    start: &str,
    recursive: bool,
    f: &mut dyn FnMut(&Path, &Node),
) -> Result<()> {
    let node = node_at(repo, index, snapshot, start)?;
    let base = PathBuf::from(if start.is_empty() { "/" } else { start });
    if !node.name.is_empty() {
        f(&base, &node);
        if node.kind != NodeKind::Dir {
            return Ok(());
        }
    }
    struct Each<'a> {
        f: &'a mut dyn FnMut(&Path, &Node),
        recursive: bool,
    }
    impl Visitor for Each<'_> {
        type Error = BrowseError;
        fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, BrowseError> {
            (self.f)(path, node);
            Ok(if self.recursive { Descend::Yes } else { Descend::No })
        }
    }
    if let Some(t) = node.subtree {
        tree::walk(repo, index, &t, &base, &mut Each { f, recursive })?;
    }
    Ok(())
}

/// Writes the content of the file at `path` to `out`, blob by blob (memory
/// stays at one blob whatever the file size). A blob that is missing,
/// unreadable or of the wrong length stops it with
/// [`BrowseError::Unreadable`] naming the file and the blob or pack; the
/// output then holds only what came before, and the caller must not take it
/// for the file.
pub fn dump(repo: &Repository, index: &Index, snapshot: &Snapshot, path: &str, out: &mut dyn Write) -> Result<u64> {
    let node = node_at(repo, index, snapshot, path)?;
    dump_node(repo, index, &node, path, out)
}

/// [`dump`] of a file node already at hand (found by a walk), named `path`
/// in messages.
pub(crate) fn dump_node(repo: &Repository, index: &Index, node: &Node, path: &str, out: &mut dyn Write) -> Result<u64> {
    if node.kind != NodeKind::File {
        return Err(BrowseError::Path(format!("{path} is not a file")).into());
    }
    let unreadable = |error| BrowseError::Unreadable {
        path: path.to_string(),
        error,
    };
    let mut n = 0u64;
    for c in &node.content {
        let data = repo.read_blob(index, &c.id).map_err(unreadable)?;
        if data.len() != c.length as usize {
            let pack = index.get(&c.id).map(|l| l.pack.to_hex()).unwrap_or_default();
            return Err(unreadable(RepositoryError::corrupt(
                crate::backend::ObjectKind::DataPack,
                &pack,
                format!(
                    "blob {} has {} bytes, the tree says {}",
                    c.id.short(),
                    data.len(),
                    c.length
                ),
            ))
            .into());
        }
        out.write_all(&data).map_err(BrowseError::Output)?;
        n += data.len() as u64;
    }
    out.flush().map_err(BrowseError::Output)?;
    Ok(n)
}

/// A glob for `find` and `rewrite --exclude`: a pattern without `/` matches
/// an entry's name at any depth, one with `/` matches its whole absolute path
/// in the snapshot (`/home/alice/**`), as restic's `find` and `rewrite` do.
#[derive(Debug, Clone)]
pub struct NameMatcher {
    glob: GlobMatcher,
    whole_path: bool,
}

impl NameMatcher {
    /// Parses `pattern`; a glob that does not parse is a
    /// [`BrowseError::Pattern`].
    pub fn new(pattern: &str) -> Result<Self, BrowseError> {
        let g = Glob::new(pattern).map_err(|e| BrowseError::Pattern(pattern.to_string(), e.to_string()))?;
        Ok(Self {
            glob: g.compile_matcher(),
            whole_path: pattern.contains('/'),
        })
    }

    /// Whether the entry `node` at `path` matches.
    pub fn matches(&self, path: &Path, node: &Node) -> bool {
        if self.whole_path {
            self.glob.is_match(path)
        } else {
            self.glob.is_match(OsStr::from_bytes(&node.name))
        }
    }
}

/// One entry `find` found.
#[derive(Debug, Clone, Serialize)]
pub struct FindHit {
    /// The snapshot holding it.
    pub snapshot: SnapshotId,
    /// That snapshot's time, Unix ns.
    #[serde(skip)]
    pub time_ns: i64,
    /// Its path in the snapshot.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// What it is (`file`, `dir`, ... as [`NodeKind::name`] spells it).
    #[serde(rename = "type", serialize_with = "kind_name")]
    pub kind: NodeKind,
}

fn kind_name<S: serde::Serializer>(k: &NodeKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.name())
}

/// Every entry matching `matcher` in `snapshots`, snapshot by snapshot.
pub fn find(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, Snapshot)],
    matcher: &NameMatcher,
) -> Result<Vec<FindHit>> {
    let mut hits = Vec::new();
    for (id, snap) in snapshots {
        walk(repo, index, snap, "/", true, &mut |p, n| {
            if matcher.matches(p, n) {
                hits.push(FindHit {
                    snapshot: *id,
                    time_ns: snap.time_ns,
                    path: p.to_string_lossy().into_owned(),
                    size: n.size,
                    kind: n.kind,
                });
            }
        })?;
    }
    Ok(hits)
}

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the second.
    Added,
    /// Only in the first.
    Removed,
    /// Content differs.
    Modified,
    /// Same content, other metadata (mode, owner, times).
    Metadata,
    /// File became folder or similar.
    Type,
}

impl Change {
    /// One-character marker as restic prints it.
    pub fn marker(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
            Change::Type => 'T',
        }
    }
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    /// Path in the snapshots.
    pub path: String,
    /// What changed.
    pub change: Change,
    /// Whether it is a folder.
    pub dir: bool,
}

/// Compares two snapshots; identical subtrees are skipped without reading them.
pub fn diff(repo: &Repository, index: &Index, a: &Snapshot, b: &Snapshot) -> Result<Vec<DiffEntry>> {
    let mut out = Vec::new();
    diff_trees(repo, index, Some(a.tree), Some(b.tree), Path::new("/"), &mut out)?;
    Ok(out)
}

fn load(repo: &Repository, index: &Index, id: Option<TreeId>) -> Result<Tree, BrowseError> {
    Ok(match id {
        Some(t) => repo.load_tree(index, &t)?,
        None => Tree::default(),
    })
}

/// An entry that only one snapshot has, and everything below it.
fn one_side(
    repo: &Repository,
    index: &Index,
    node: &Node,
    at: &Path,
    change: Change,
    out: &mut Vec<DiffEntry>,
) -> Result<(), BrowseError> {
    struct Record<'a> {
        change: Change,
        out: &'a mut Vec<DiffEntry>,
    }
    impl Visitor for Record<'_> {
        type Error = BrowseError;
        fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, BrowseError> {
            self.out.push(DiffEntry::new(path, node, self.change));
            Ok(Descend::Yes)
        }
    }
    out.push(DiffEntry::new(at, node, change));
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(t)) => tree::walk(repo, index, &t, at, &mut Record { change, out }),
        _ => Ok(()),
    }
}

impl DiffEntry {
    fn new(path: &Path, node: &Node, change: Change) -> Self {
        DiffEntry {
            path: path.to_string_lossy().into_owned(),
            change,
            dir: node.kind == NodeKind::Dir,
        }
    }
}

fn diff_trees(
    repo: &Repository,
    index: &Index,
    a: Option<TreeId>,
    b: Option<TreeId>,
    at: &Path,
    out: &mut Vec<DiffEntry>,
) -> Result<(), BrowseError> {
    if a == b {
        return Ok(());
    }
    let (ta, tb) = (load(repo, index, a)?, load(repo, index, b)?);
    let (mut i, mut j) = (0, 0);
    while i < ta.nodes.len() || j < tb.nodes.len() {
        let (na, nb) = (ta.nodes.get(i), tb.nodes.get(j));
        let ord = match (na, nb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match (ord, na, nb) {
            (std::cmp::Ordering::Less, Some(x), _) => {
                i += 1;
                one_side(
                    repo,
                    index,
                    x,
                    &at.join(OsStr::from_bytes(&x.name)),
                    Change::Removed,
                    out,
                )?;
            }
            (std::cmp::Ordering::Greater, _, Some(y)) => {
                j += 1;
                one_side(repo, index, y, &at.join(OsStr::from_bytes(&y.name)), Change::Added, out)?;
            }
            (_, Some(x), Some(y)) => {
                i += 1;
                j += 1;
                let p = at.join(OsStr::from_bytes(&x.name));
                if x.kind != y.kind {
                    out.push(DiffEntry::new(&p, x, Change::Type));
                } else if x.kind == NodeKind::Dir {
                    diff_trees(repo, index, x.subtree, y.subtree, &p, out)?;
                } else if x.content != y.content || x.symlink_target != y.symlink_target {
                    out.push(DiffEntry::new(&p, x, Change::Modified));
                } else if x.mode != y.mode
                    || x.uid != y.uid
                    || x.gid != y.gid
                    || x.mtime_ns != y.mtime_ns
                    || x.xattrs != y.xattrs
                {
                    out.push(DiffEntry::new(&p, x, Change::Metadata));
                }
            }
            _ => break,
        }
    }
    Ok(())
}
