//! The re-chunk path of `cairn copy`: a snapshot's tree rebuilt in a
//! destination whose chunker differs from the source's, every file's
//! contents read from the source and cut again with the destination's
//! chunker, so the destination deduplicates on its own.
//!
//! Every node keeps its metadata exactly (names, modes, times, owners,
//! xattrs with the sources' `cairn.*` metadata, link targets, hard-link
//! fields, sizes); only content lists and subtree ids change. Trees are
//! rebuilt bottom-up on the one tree walker: a folder's tree is stored when
//! the walk leaves it, so memory is one level of nodes per folder on the
//! current path and one file's blobs in flight, never a whole snapshot.
//!
//! A copy made before (`prior`) is walked alongside: a folder whose source
//! tree is the prior source's takes the prior destination's tree as it is,
//! and a file whose content list is the prior source's takes the prior
//! destination's content list, so a nightly copy reads only what changed.

mod read;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::backup::{save_content, store_tree, BackupError, ContentError, Saver};
use crate::chunker::{ChunkBuffer, ChunkerParams};
use crate::id::{BlobId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::tree::{self, ContentRef, Descend, Node, NodeKind, Tree, Visitor};

/// Errors of re-chunking a tree.
#[derive(Debug, thiserror::Error)]
pub enum RechunkError {
    /// A blob of a file's contents is missing, damaged or unreadable in the
    /// source: nothing may be copied in its place.
    #[error("{}: cannot read blob {blob} of its contents from the source: {source}", path.display())]
    Content {
        /// The file, in the snapshot.
        path: PathBuf,
        /// The blob.
        blob: BlobId,
        /// Why.
        #[source]
        source: RepositoryError,
    },
    /// A blob opened but holds another length than its file's tree says.
    #[error("{}: blob {blob} of its contents holds {found} bytes, the tree says {expected}; the source is damaged", path.display())]
    Length {
        /// The file.
        path: PathBuf,
        /// The blob.
        blob: BlobId,
        /// Bytes the tree says.
        expected: u32,
        /// Bytes it holds.
        found: usize,
    },
    /// A file's contents do not add up to its recorded size.
    #[error("{}: its contents hold {found} bytes, its size says {expected}; the source is damaged", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// Recorded size.
        expected: u64,
        /// Bytes read.
        found: u64,
    },
    /// A folder's tree is missing or damaged in the source.
    #[error("{}: cannot read the folder's tree {tree} from the source: {source}", path.display())]
    Tree {
        /// The folder.
        path: PathBuf,
        /// Its tree.
        tree: TreeId,
        /// Why.
        #[source]
        source: RepositoryError,
    },
    /// Reading a file's contents stopped for another reason.
    #[error("{}: cannot read its contents from the source: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Storing into the destination failed (or was cancelled).
    #[error(transparent)]
    Save(#[from] BackupError),
    /// Reading either repository failed otherwise.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// What a re-chunking did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RechunkStats {
    /// Files whose contents were read from the source and cut again.
    pub files_read: u64,
    /// Files that took a content list without reading anything: the same
    /// content at the same path in the prior copy, or a hard link of a file
    /// re-chunked just before. Files below a reused folder are not counted
    /// (see `subtrees_reused`): counting them would mean reading the trees
    /// the reuse exists to skip.
    pub files_reused: u64,
    /// Folders whose prior destination tree was taken whole.
    pub subtrees_reused: u64,
    /// Bytes read from source packs (sealed, as stored).
    pub bytes_read: u64,
    /// Source blobs read and opened.
    pub blobs_read: u64,
}

/// Copies the tree `root` of `src` into `dst`, re-chunking every file's
/// contents with `params` (the destination's chunker), storing blobs and
/// trees through `saver` (a [`Saver`] started on `dst` with the
/// destination's index as `known`). `prior` is the (source root,
/// destination root) of a snapshot copied before: unchanged files and
/// folders at the same paths reuse the destination's content and trees.
/// `progress` is told bytes of file content processed (read or reused).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rechunk_tree(
    src: &Repository,
    src_index: &Index,
    dst: &Repository,
    dst_index: &Index,
    saver: &Saver,
    params: &ChunkerParams,
    root: &TreeId,
    prior: Option<(TreeId, TreeId)>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(TreeId, RechunkStats), RechunkError> {
    let mut stats = RechunkStats::default();
    if let Some((ps, pd)) = prior {
        if ps == *root && dst_index.contains(&pd.blob()) {
            stats.subtrees_reused = 1;
            return Ok((pd, stats));
        }
    }
    let cx = Cx {
        src,
        src_index,
        dst,
        dst_index,
        saver,
        progress,
    };
    let top = Level {
        nodes: Vec::new(),
        prior: prior.and_then(|(ps, pd)| cx.load_prior(Path::new("/"), ps, pd)),
    };
    let mut v = Rebuild {
        cx,
        chunks: ChunkBuffer::new(params),
        levels: vec![top],
        stats,
        links: HashMap::new(),
    };
    // The walker keeps its own stack (hostile nesting cannot overflow
    // ours), visits a folder before its entries and leaves it after them:
    // exactly the order a bottom-up rebuild needs, one level at a time.
    tree::walk(src, src_index, root, Path::new("/"), &mut v)?;
    let nodes = v.levels.pop().map(|l| l.nodes).unwrap_or_default();
    let id = store_tree(dst, saver, &Tree { nodes })?;
    Ok((id, v.stats))
}

/// The repositories and sinks of one re-chunking.
struct Cx<'a> {
    src: &'a Repository,
    src_index: &'a Index,
    dst: &'a Repository,
    dst_index: &'a Index,
    saver: &'a Saver,
    progress: &'a (dyn Fn(u64) + Sync),
}

/// The trees of the prior copy at the folder being rebuilt.
struct Prior {
    src: Tree,
    dst: Tree,
}

/// A folder being rebuilt: the destination's nodes so far.
struct Level {
    nodes: Vec<Node>,
    prior: Option<Prior>,
}

struct Rebuild<'a> {
    cx: Cx<'a>,
    chunks: ChunkBuffer,
    levels: Vec<Level>,
    stats: RechunkStats,
    /// Hard-linked files re-chunked so far, by (device, inode): the source
    /// content list and the destination's. Only hard links, so it stays
    /// as small as the snapshot's set of multiply-linked files.
    links: HashMap<(u64, u64), (Vec<ContentRef>, Vec<ContentRef>)>,
}

impl Cx<'_> {
    /// The prior source and destination trees, or `None` (with a warning)
    /// when either cannot be read: the prior copy only saves work.
    fn load_prior(&self, path: &Path, src: TreeId, dst: TreeId) -> Option<Prior> {
        let load = |repo: &Repository, index: &Index, id: TreeId| {
            repo.load_tree(index, &id)
                .map_err(|e| tracing::warn!("{}: not reusing the prior copy: {e}", path.display()))
                .ok()
        };
        Some(Prior {
            src: load(self.src, self.src_index, src)?,
            dst: load(self.dst, self.dst_index, dst)?,
        })
    }

    /// Whether the destination still indexes every blob of `content`
    /// (a prune may have removed what a forgotten prior copy held).
    fn has_all(&self, content: &[ContentRef]) -> bool {
        content.iter().all(|c| self.dst_index.contains(&c.id))
    }
}

impl Rebuild<'_> {
    fn level(&mut self) -> &mut Level {
        // `rechunk_tree` starts with the root's level and the walk pops
        // only levels it pushed.
        if self.levels.is_empty() {
            self.levels.push(Level {
                nodes: Vec::new(),
                prior: None,
            });
        }
        let last = self.levels.len() - 1;
        &mut self.levels[last]
    }

    /// The prior source's and destination's nodes named like `node`.
    fn prior_of(&mut self, node: &Node) -> Option<(Node, Node)> {
        let p = self.level().prior.as_ref()?;
        Some((p.src.get(&node.name)?.clone(), p.dst.get(&node.name)?.clone()))
    }

    /// The destination's content list of file `node` at `path`.
    fn file_content(
        &mut self,
        path: &Path,
        node: &Node,
        prior: Option<&(Node, Node)>,
    ) -> Result<Vec<ContentRef>, RechunkError> {
        if node.content.is_empty() {
            return Ok(Vec::new());
        }
        if let Some((ps, pd)) = prior {
            let same = ps.kind == NodeKind::File
                && ps.content == node.content
                && pd.kind == NodeKind::File
                && pd.size == node.size
                && self.cx.has_all(&pd.content);
            if same {
                self.stats.files_reused += 1;
                (self.cx.progress)(node.size);
                return Ok(pd.content.clone());
            }
        }
        let key = (node.device, node.inode);
        if node.is_hard_linked() {
            if let Some((s, d)) = self.links.get(&key) {
                if *s == node.content {
                    self.stats.files_reused += 1;
                    (self.cx.progress)(node.size);
                    return Ok(d.clone());
                }
            }
        }
        let content = self.rechunk(path, node)?;
        if node.is_hard_linked() {
            self.links.insert(key, (node.content.clone(), content.clone()));
        }
        Ok(content)
    }

    /// Reads `node`'s contents from the source and saves them cut with the
    /// destination's chunker.
    fn rechunk(&mut self, path: &Path, node: &Node) -> Result<Vec<ContentRef>, RechunkError> {
        let cx = &self.cx;
        let chunks = &mut self.chunks;
        let (result, read) = read::with_contents(cx.src, cx.src_index, path, &node.content, |reader| {
            save_content(cx.dst, cx.saver, chunks, reader, |n| (cx.progress)(n))
        })?;
        self.stats.bytes_read += read.bytes;
        self.stats.blobs_read += read.blobs;
        let content = match result {
            Ok(c) => c,
            Err((ContentError::Read(e), stored)) => {
                return Err(stored.unwrap_or_else(|| RechunkError::Read {
                    path: path.to_path_buf(),
                    source: e,
                }))
            }
            Err((ContentError::Save(e), _)) => return Err(RechunkError::Save(e)),
        };
        if content.size != node.size {
            return Err(RechunkError::Size {
                path: path.to_path_buf(),
                expected: node.size,
                found: content.size,
            });
        }
        self.stats.files_read += 1;
        Ok(content.refs)
    }
}

impl Visitor for Rebuild<'_> {
    type Error = RechunkError;

    fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, RechunkError> {
        if self.cx.saver.failed() {
            return Err(RechunkError::Save(BackupError::PipelineStopped));
        }
        let prior = self.prior_of(node);
        let mut out = node.clone();
        match (node.kind, node.subtree) {
            (NodeKind::File, _) => out.content = self.file_content(path, node, prior.as_ref())?,
            (NodeKind::Dir, Some(sub)) => {
                if let Some((ps, pd)) = &prior {
                    let reuse = match (ps.kind, ps.subtree, pd.kind, pd.subtree) {
                        (NodeKind::Dir, Some(s), NodeKind::Dir, Some(d)) if s == sub => {
                            self.cx.dst_index.contains(&d.blob()).then_some(d)
                        }
                        _ => None,
                    };
                    if let Some(d) = reuse {
                        out.subtree = Some(d);
                        self.stats.subtrees_reused += 1;
                        self.level().nodes.push(out);
                        return Ok(Descend::No);
                    }
                }
                let prior = match prior {
                    Some((Node { subtree: Some(s), .. }, Node { subtree: Some(d), .. })) => {
                        self.cx.load_prior(path, s, d)
                    }
                    _ => None,
                };
                // The folder's node goes in when the walk leaves it, with
                // the id of its rebuilt tree.
                self.levels.push(Level {
                    nodes: Vec::new(),
                    prior,
                });
                return Ok(Descend::Yes);
            }
            _ => {}
        }
        self.level().nodes.push(out);
        Ok(Descend::No)
    }

    fn leave(&mut self, _: &Path, node: &Node) -> Result<(), RechunkError> {
        let nodes = self.levels.pop().map(|l| l.nodes).unwrap_or_default();
        let id = store_tree(self.cx.dst, self.cx.saver, &Tree { nodes })?;
        let mut out = node.clone();
        out.subtree = Some(id);
        self.level().nodes.push(out);
        Ok(())
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, error: RepositoryError) -> Result<(), RechunkError> {
        Err(RechunkError::Tree {
            path: path.to_path_buf(),
            tree: *id,
            source: error,
        })
    }
}
