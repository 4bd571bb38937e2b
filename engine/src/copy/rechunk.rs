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

pub(in crate::copy) mod read;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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

impl RechunkError {
    /// Whether the source's data is missing or damaged (a snapshot needing
    /// it cannot be copied, the others can), rather than the destination or
    /// the copy itself failing.
    pub(crate) fn is_source_damage(&self) -> bool {
        use crate::error::ErrorKind;
        match self {
            RechunkError::Length { .. } | RechunkError::Size { .. } => true,
            RechunkError::Content { source, .. } | RechunkError::Tree { source, .. } => {
                source.kind() == ErrorKind::Damaged
            }
            RechunkError::Read { .. } | RechunkError::Save(_) | RechunkError::Repository(_) => false,
        }
    }
}

/// What a re-chunking did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RechunkStats {
    /// Files whose contents were read from the source and cut again.
    pub files_read: u64,
    /// Files that took a content list without reading anything: the same
    /// content at the same path in the prior copy, or the same content as a
    /// file re-chunked shortly before (a hard link, a duplicate). Files
    /// below a reused folder are not counted (see `subtrees_reused`):
    /// counting them would mean reading the trees the reuse exists to skip.
    /// Empty files count as neither read nor reused.
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
/// Once `cancel` is set the walk stops (between files, and between reads
/// within a file) with [`BackupError::Interrupted`]: the caller's saver is
/// not cancelled itself, so finishing it stores and indexes every blob
/// handed to it, and the next copy cuts the same blobs and finds them.
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
    cancel: Option<&AtomicBool>,
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
        cancel,
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
        seen: HashMap::new(),
        seen_refs: 0,
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
    cancel: Option<&'a AtomicBool>,
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
    /// Files re-chunked lately: source content list to the destination's.
    /// The same blobs are the same bytes, and the same bytes cut alike, so
    /// a hard link or a duplicate file is not read again. Emptied when it
    /// holds `MEMO_REFS` blob references, which bounds its memory.
    seen: HashMap<Vec<BlobId>, Vec<ContentRef>>,
    seen_refs: usize,
}

/// Blob references the memo of re-chunked files holds at most (source and
/// destination lists together; 32 and 36 bytes each).
const MEMO_REFS: usize = 1 << 16;

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
        // Ids name the plaintext, so they say the lengths too.
        let key: Vec<BlobId> = node.content.iter().map(|c| c.id).collect();
        if let Some(d) = self.seen.get(&key) {
            self.stats.files_reused += 1;
            (self.cx.progress)(node.size);
            return Ok(d.clone());
        }
        let content = self.rechunk(path, node)?;
        let refs = node.content.len() + content.len();
        if self.seen_refs + refs > MEMO_REFS {
            self.seen.clear();
            self.seen_refs = 0;
        }
        if refs <= MEMO_REFS {
            self.seen.insert(key, content.clone());
            self.seen_refs += refs;
        }
        Ok(content)
    }

    /// Reads `node`'s contents from the source and saves them cut with the
    /// destination's chunker.
    fn rechunk(&mut self, path: &Path, node: &Node) -> Result<Vec<ContentRef>, RechunkError> {
        let cx = &self.cx;
        let chunks = &mut self.chunks;
        let (result, read) = read::with_contents(cx.src, cx.src_index, path, &node.content, cx.cancel, |reader| {
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
        if self.cx.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(RechunkError::Save(BackupError::Interrupted));
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
