//! A restic snapshot's trees rebuilt as Cairn trees, bottom-up: restic's
//! JSON trees are another format than Cairn's, so this walk is its own (the
//! one Cairn tree walker reads Cairn trees); like it, it keeps an explicit
//! stack, so a hostile restic repository cannot overflow ours, and holds one
//! decoded tree per level of the path being imported.
//!
//! Files are re-chunked with the Cairn repository's chunker. Work is saved
//! three ways: a folder whose restic tree was imported earlier in this run
//! takes that Cairn tree; the previously imported snapshot of the same host
//! and paths (`prior`) is walked alongside, so its unchanged folders and
//! files are taken as they are; and a file whose blobs were just re-chunked
//! (a hard link, a duplicate) takes that content list.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::content::{prefetch, with_contents, Ready};
use super::restic::format::{self, NodeJson, TreeJson};
use super::restic::{ResticIndex, ResticRepo};
use super::{ImportError, ImportProblem};
use crate::backup::{save_content, store_tree, BackupError, ContentError, Saver};
use crate::chunker::ChunkBuffer;
use crate::id::TreeId;
use crate::index::Index;
use crate::repository::Repository;
use crate::tree::{ContentRef, Node, NodeKind, Tree};

/// Blob references the memo of re-chunked files holds at most.
const MEMO_REFS: usize = 1 << 16;
/// Small files whose blobs are read at once, and their bytes at most.
const PREFETCH_FILES: usize = 64;
const PREFETCH_BYTES: u64 = 16 << 20;

/// Folders the memo of imported trees holds at most (~70 bytes each).
const MEMO_TREES: usize = 1 << 20;

/// What importing one snapshot's trees did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TreeStats {
    /// Files in the snapshot (counted where the walk went).
    pub files: u64,
    /// Folders.
    pub dirs: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Files whose contents were read from restic.
    pub files_read: u64,
    /// Bytes of restic blobs read.
    pub bytes_read: u64,
}

impl TreeStats {
    /// What was counted since `start` (files, folders and bytes only).
    fn since(&self, start: &TreeStats) -> TreeStats {
        TreeStats {
            files: self.files - start.files,
            dirs: self.dirs - start.dirs,
            bytes: self.bytes - start.bytes,
            ..TreeStats::default()
        }
    }

    /// Counts the files, folders and bytes of a reused folder.
    fn add(&mut self, held: &TreeStats) {
        self.files += held.files;
        self.dirs += held.dirs;
        self.bytes += held.bytes;
    }
}

/// The prior import at the folder being rebuilt: restic's entries (by
/// name) and Cairn's tree.
struct Prior {
    restic: HashMap<Vec<u8>, (Vec<String>, Option<String>)>,
    cairn: Tree,
}

struct Frame {
    nodes: std::vec::IntoIter<NodeJson>,
    path: PathBuf,
    /// Nodes so far, each with whether it is damaged.
    out: Vec<(Node, bool)>,
    /// The folder's own node and restic tree id (`None` for the root).
    dir: Option<(Node, [u8; 32])>,
    prior: Option<Prior>,
    /// Whether anything below is damaged or left out.
    damaged: bool,
    /// The snapshot's figures when the folder was entered.
    start: TreeStats,
    /// Blobs of the folder's next small files, read in advance.
    ready: HashMap<[u8; 32], Ready>,
}

/// What outlives one snapshot's import: the memos of imported folders and
/// re-chunked files, and the chunker's buffer.
pub(super) struct Memo {
    chunks: ChunkBuffer,
    /// Folders imported whole: restic tree id to the Cairn tree and what
    /// it holds (files, folders, bytes), so a reuse still counts them.
    trees: HashMap<[u8; 32], (TreeId, TreeStats)>,
    files: HashMap<Vec<[u8; 32]>, Vec<ContentRef>>,
    file_refs: usize,
    /// Damaged folders of the snapshot being imported: restic tree id to
    /// the Cairn tree and the path where its problems were named.
    damaged_trees: HashMap<[u8; 32], (TreeId, PathBuf)>,
}

impl Memo {
    /// Empty memos for imports into `dst`.
    pub(super) fn new(dst: &Repository) -> Self {
        Self {
            chunks: ChunkBuffer::new(&dst.config().chunker),
            trees: HashMap::new(),
            files: HashMap::new(),
            file_refs: 0,
            damaged_trees: HashMap::new(),
        }
    }

    /// Keeps only what `index` offers (a snapshot's saver has finished and
    /// the next one starts from this index).
    pub(super) fn retain_indexed(&mut self, index: &Index) {
        self.trees.retain(|_, (t, _)| index.contains(&t.blob()));
        self.files.retain(|_, refs| refs.iter().all(|r| index.contains(&r.id)));
        self.file_refs = self.files.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.damaged_trees.clear();
    }
}

/// Imports one restic snapshot's trees into a Cairn repository.
pub(super) struct TreeImport<'a> {
    pub restic: &'a ResticRepo,
    pub rindex: &'a ResticIndex,
    pub dst: &'a Repository,
    pub dst_index: &'a Index,
    pub saver: &'a Saver,
    pub progress: &'a (dyn Fn(u64) + Sync),
    pub cancel: Option<&'a AtomicBool>,
    pub memo: &'a mut Memo,
    /// Entries damaged or left out, for the report.
    pub problems: Vec<ImportProblem>,
    pub stats: TreeStats,
}

impl TreeImport<'_> {
    /// Imports the tree `root` and returns the Cairn root tree. `prior` is
    /// the (restic root, Cairn root) of an earlier import to reuse from.
    pub(super) fn import(&mut self, root: &[u8; 32], prior: Option<([u8; 32], TreeId)>) -> Result<TreeId, ImportError> {
        let tree = self.restic.load_tree(self.rindex, root).map_err(|e| {
            if e.kind() == crate::error::ErrorKind::Damaged {
                ImportError::Root(e)
            } else {
                ImportError::Restic(e)
            }
        })?;
        let prior = prior.and_then(|(r, c)| self.load_prior(Path::new("/"), &r, &c));
        let mut stack = vec![Frame {
            nodes: tree.nodes.into_iter(),
            path: PathBuf::from("/"),
            out: Vec::new(),
            dir: None,
            prior,
            damaged: false,
            start: TreeStats::default(),
            ready: HashMap::new(),
        }];
        while let Some(top) = stack.last_mut() {
            if let Some(nj) = top.nodes.next() {
                if self.saver.failed() {
                    return Err(ImportError::Save(BackupError::PipelineStopped));
                }
                if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(ImportError::Interrupted);
                }
                if let Some(frame) = self.entry(top, nj)? {
                    stack.push(frame);
                }
                continue;
            }
            let Some(frame) = stack.pop() else { break };
            let (id, dups) = self.store(frame.path.as_path(), frame.out)?;
            let damaged = frame.damaged || dups;
            let Some((mut node, rid)) = frame.dir else {
                return Ok(id);
            };
            node.subtree = Some(id);
            if damaged {
                // Met again in this snapshot (a hostile repository can
                // share one damaged folder many times over), it is not
                // walked again; its problems were named at this path.
                self.memo.damaged_trees.insert(rid, (id, frame.path.clone()));
            } else {
                let held = self.stats.since(&frame.start);
                self.remember_tree(rid, id, held);
            }
            if let Some(parent) = stack.last_mut() {
                parent.out.push((node, false));
                parent.damaged |= damaged;
            }
        }
        Err(ImportError::Invalid("the import walk ended without its root".into()))
    }

    fn problem(&mut self, path: &Path, error: impl Into<String>) {
        self.problems.push(ImportProblem {
            path: path.to_path_buf(),
            error: error.into(),
        });
    }

    /// One entry of the folder `top`; a folder to descend into comes back.
    fn entry(&mut self, top: &mut Frame, nj: NodeJson) -> Result<Option<Frame>, ImportError> {
        let name = format::name(&nj.name);
        let path = top.path.join(OsStr::from_bytes(&name));
        let mut node = match format::node(&nj, name) {
            Ok(n) => n,
            Err(e) => {
                self.problem(&path, format!("left out: {e}"));
                top.damaged = true;
                return Ok(None);
            }
        };
        let prior = top.prior.as_ref().and_then(|p| {
            let (content, subtree) = p.restic.get(&node.name)?;
            Some((content.clone(), subtree.clone(), p.cairn.get(&node.name)?.clone()))
        });
        match node.kind {
            NodeKind::File => {
                self.stats.files += 1;
                let content = nj.content.unwrap_or_default();
                // A file an earlier import or this run has already is not
                // read, so not read in advance either.
                let reused = prior.as_ref().is_some_and(|(pc, _, _)| *pc == content);
                let ready = match content.as_slice() {
                    // Locally a read costs less than handing it to a thread.
                    [one] if !reused && self.restic.remote() => format::hex_id(one).and_then(|id| {
                        if !top.ready.contains_key(&id) && !self.memo.files.contains_key(&vec![id]) {
                            self.prefetch_ahead(top, id);
                        }
                        top.ready.remove(&id)
                    }),
                    _ => None,
                };
                let damaged = self.file(&path, &mut node, content, prior, ready)?;
                top.damaged |= damaged;
                top.out.push((node, damaged));
                Ok(None)
            }
            NodeKind::Dir => {
                self.stats.dirs += 1;
                let Some(sub) = nj.subtree.as_deref().and_then(format::hex_id) else {
                    self.problem(&path, "its folder has no readable tree id in restic; imported empty");
                    return self.damaged_dir(top, &path, node);
                };
                let reused = self.memo.trees.get(&sub).copied().or_else(|| match &prior {
                    Some((_, Some(ps), pd)) if format::hex_id(ps) == Some(sub) && pd.kind == NodeKind::Dir => {
                        let t = pd.subtree.filter(|t| self.dst_index.contains(&t.blob()))?;
                        Some((t, self.count(&path, &t)?))
                    }
                    _ => None,
                });
                if let Some((t, held)) = reused {
                    self.stats.add(&held);
                    (self.progress)(held.bytes);
                    node.subtree = Some(t);
                    top.out.push((node, false));
                    return Ok(None);
                }
                if let Some((t, first)) = self.memo.damaged_trees.get(&sub).cloned() {
                    self.problem(&path, format!("holds the same damaged entries as {}", first.display()));
                    node.subtree = Some(t);
                    top.damaged = true;
                    top.out.push((node, false));
                    return Ok(None);
                }
                let tree: TreeJson = match self.restic.load_tree(self.rindex, &sub) {
                    Ok(t) => t,
                    Err(e) if e.kind() == crate::error::ErrorKind::Damaged => {
                        self.problem(&path, format!("its folder's tree cannot be read ({e}); imported empty"));
                        return self.damaged_dir(top, &path, node);
                    }
                    Err(e) => return Err(ImportError::Restic(e)),
                };
                let prior = match prior {
                    Some((_, Some(ps), Node { subtree: Some(pd), .. })) => {
                        format::hex_id(&ps).and_then(|ps| self.load_prior(&path, &ps, &pd))
                    }
                    _ => None,
                };
                Ok(Some(Frame {
                    nodes: tree.nodes.into_iter(),
                    path,
                    out: Vec::new(),
                    dir: Some((node, sub)),
                    prior,
                    damaged: false,
                    start: self.stats,
                    ready: HashMap::new(),
                }))
            }
            _ => {
                top.out.push((node, false));
                Ok(None)
            }
        }
    }

    /// A folder whose tree is lost: an empty folder, marked damaged.
    fn damaged_dir(&mut self, top: &mut Frame, path: &Path, mut node: Node) -> Result<Option<Frame>, ImportError> {
        node.subtree = Some(self.store(path, Vec::new())?.0);
        top.damaged = true;
        top.out.push((node, true));
        Ok(None)
    }

    /// Gives the file `node` its Cairn content; true when damaged.
    fn file(
        &mut self,
        path: &Path,
        node: &mut Node,
        content: Vec<String>,
        prior: Option<(Vec<String>, Option<String>, Node)>,
        ready: Option<Ready>,
    ) -> Result<bool, ImportError> {
        let mut ids = Vec::with_capacity(content.len());
        for c in &content {
            match format::hex_id(c) {
                Some(id) => ids.push(id),
                None => {
                    self.problem(path, format!("a content id is not hex ({c:?}); imported empty"));
                    node.size = 0;
                    return Ok(true);
                }
            }
        }
        if ids.is_empty() {
            node.size = 0;
            return Ok(false);
        }
        if let Some((pc, _, pd)) = &prior {
            if *pc == content && pd.kind == NodeKind::File && pd.content.iter().all(|c| self.dst_index.contains(&c.id))
            {
                node.content = pd.content.clone();
                node.size = pd.size;
                self.stats.bytes += node.size;
                (self.progress)(node.size);
                return Ok(false);
            }
        }
        if let Some(refs) = self.memo.files.get(&ids) {
            node.content = refs.clone();
            node.size = refs.iter().map(|r| u64::from(r.length)).sum();
            self.stats.bytes += node.size;
            (self.progress)(node.size);
            return Ok(false);
        }
        let (restic, rindex, dst, saver, progress, cancel) = (
            self.restic,
            self.rindex,
            self.dst,
            self.saver,
            self.progress,
            self.cancel,
        );
        let chunks = &mut self.memo.chunks;
        let (saved, read) = with_contents(restic, rindex, &ids, ready, cancel, |reader| {
            save_content(dst, saver, chunks, reader, progress)
        });
        self.stats.bytes_read += read.bytes;
        let saved = match saved {
            Ok(c) => c,
            Err(ContentError::Save(e)) => return Err(ImportError::Save(e)),
            Err(ContentError::Read(e)) => {
                if let Some(f) = read.fatal {
                    return Err(ImportError::Restic(f));
                }
                if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(ImportError::Interrupted);
                }
                return Err(ImportError::Invalid(format!("{}: {e}", path.display())));
            }
        };
        self.stats.files_read += 1;
        node.content = saved.refs;
        node.size = saved.size;
        self.stats.bytes += node.size;
        if read.missing.is_empty() {
            let refs = ids.len() + node.content.len();
            let memo = &mut *self.memo;
            if memo.file_refs + refs > MEMO_REFS {
                memo.files.clear();
                memo.file_refs = 0;
            }
            if refs <= MEMO_REFS {
                memo.files.insert(ids, node.content.clone());
                memo.file_refs += refs;
            }
            return Ok(false);
        }
        let first = &read.missing[0];
        self.problem(
            path,
            format!(
                "{} of its {} blobs cannot be read (first, blob {}: {}); imported with the rest",
                read.missing.len(),
                ids.len(),
                first.position + 1,
                first.error
            ),
        );
        Ok(true)
    }

    /// Stores a folder's nodes as a tree: damaged entries renamed
    /// `NAME.damaged` (as `cairn repair snapshots` does), sorted, and the
    /// second of two entries with one name left out (then true).
    fn store(&mut self, path: &Path, mut out: Vec<(Node, bool)>) -> Result<(TreeId, bool), ImportError> {
        crate::repair::rename_damaged(&mut out);
        let mut nodes: Vec<Node> = out.into_iter().map(|(n, _)| n).collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let before = nodes.len();
        nodes.dedup_by(|a, b| a.name == b.name);
        let dups = nodes.len() != before;
        if dups {
            self.problem(
                path,
                format!(
                    "{} entries share a name with another; the first is kept",
                    before - nodes.len()
                ),
            );
        }
        Ok((store_tree(self.dst, self.saver, &Tree { nodes })?, dups))
    }

    /// Reads at once the blobs of `first` and of the small files that follow
    /// it in the folder `top` (one blob each), leaving out those an earlier
    /// import or this run has already: they will not be read at all.
    fn prefetch_ahead(&mut self, top: &mut Frame, first: [u8; 32]) {
        let mut ids = vec![first];
        let mut bytes = self.rindex.stored_len(&first);
        for n in top.nodes.as_slice() {
            if ids.len() >= PREFETCH_FILES || bytes >= PREFETCH_BYTES {
                break;
            }
            let Some([one]) = n.content.as_deref() else { continue };
            let Some(id) = format::hex_id(one) else { continue };
            if n.kind != "file" || self.memo.files.contains_key(&vec![id]) || ids.contains(&id) {
                continue;
            }
            let unchanged = top.prior.as_ref().is_some_and(|p| {
                p.restic
                    .get(&format::name(&n.name))
                    .is_some_and(|(c, _)| c.as_slice() == [one.clone()])
            });
            if unchanged {
                continue;
            }
            bytes += self.rindex.stored_len(&id);
            ids.push(id);
        }
        top.ready.extend(prefetch(self.restic, self.rindex, &ids));
    }

    fn remember_tree(&mut self, restic: [u8; 32], cairn: TreeId, held: TreeStats) {
        if self.memo.trees.len() >= MEMO_TREES {
            self.memo.trees.clear();
        }
        self.memo.trees.insert(restic, (cairn, held));
    }

    /// What the Cairn tree `id` (an earlier import's folder) holds, walked
    /// with the one tree walker; `None` (reuse nothing) if it cannot be read.
    fn count(&self, path: &Path, id: &TreeId) -> Option<TreeStats> {
        struct Count(TreeStats);
        impl crate::tree::Visitor for Count {
            type Error = crate::repository::RepositoryError;
            fn enter(&mut self, _: &Path, _: &TreeId, n: &Node) -> Result<crate::tree::Descend, Self::Error> {
                match n.kind {
                    NodeKind::Dir => self.0.dirs += 1,
                    NodeKind::File => {
                        self.0.files += 1;
                        self.0.bytes += n.size;
                    }
                    _ => {}
                }
                Ok(crate::tree::Descend::Yes)
            }
        }
        let mut c = Count(TreeStats::default());
        crate::tree::walk(self.dst, self.dst_index, id, path, &mut c)
            .map_err(|e| tracing::debug!("{}: not reusing the prior import: {e}", path.display()))
            .ok()?;
        Some(c.0)
    }

    /// The prior import's trees at `path`, or `None` (with a note in the
    /// log) when either cannot be read: the prior import only saves work.
    fn load_prior(&self, path: &Path, restic: &[u8; 32], cairn: &TreeId) -> Option<Prior> {
        let r = self
            .restic
            .load_tree(self.rindex, restic)
            .map_err(|e| tracing::debug!("{}: not reusing the prior import: {e}", path.display()))
            .ok()?;
        let cairn = self
            .dst
            .load_tree(self.dst_index, cairn)
            .map_err(|e| tracing::debug!("{}: not reusing the prior import: {e}", path.display()))
            .ok()?;
        let restic = r
            .nodes
            .into_iter()
            .map(|n| (format::name(&n.name), (n.content.unwrap_or_default(), n.subtree)))
            .collect();
        Some(Prior { restic, cairn })
    }
}
