//! Walking file trees: builds the directory skeleton, decides per file
//! whether it must be read (change detection), and hands files to reader
//! threads that chunk them into the saver.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver};
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::content::{save_content, ContentError};
use super::dir::{Child, DirBuilder, FileResult, Results};
use super::meta::{node_from_meta, read_xattrs, NameCache, Stat};
use super::parent::{ParentDir, ParentFiles};
use super::saver::Saver;
use super::{BackupError, BackupOptions, BackupProgress, SkippedEntry};
use crate::chunker::{ChunkBuffer, ChunkerParams};
use crate::id::TreeId;
use crate::repository::Repository;
use crate::snapshot::Summary;
use crate::tree::{ContentRef, Node, NodeKind};
use lister::{Entry, Listing};

/// `abs` (absolute) without `.` and `..` components, resolved lexically as
/// the user wrote them (not through symlinks).
pub(crate) fn lexically_clean(abs: &std::path::Path) -> PathBuf {
    let mut clean = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    clean
}

/// Makes paths absolute and lexically clean, drops duplicates and paths
/// inside another given path.
pub(crate) fn absolute_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, BackupError> {
    if paths.is_empty() {
        return Err(BackupError::Invalid("no path to back up was given".into()));
    }
    let cwd = std::env::current_dir().map_err(|source| BackupError::Source {
        path: ".".into(),
        source,
    })?;
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let clean = lexically_clean(&if p.is_absolute() { p.clone() } else { cwd.join(p) });
        fs::symlink_metadata(&clean).map_err(|source| BackupError::Source {
            path: clean.clone(),
            source,
        })?;
        out.push(clean);
    }
    out.sort();
    out.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in out {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    Ok(kept)
}

struct FileJob {
    job: usize,
    path: PathBuf,
}

struct Walk<'a> {
    opts: &'a BackupOptions,
    excludes: &'a GlobSet,
    parent: Option<&'a ParentFiles<'a>>,
    jobs: crossbeam_channel::Sender<FileJob>,
    next_job: usize,
    linked: HashMap<(u64, u64), usize>,
    names: NameCache,
    summary: &'a mut Summary,
    skipped: &'a mut Vec<SkippedEntry>,
    root_dev: u64,
    saver: &'a Saver,
    repo: &'a Repository,
    results: &'a Mutex<Results>,
    /// Folder listings taken ahead on the lister's thread.
    ahead: Option<Receiver<Listing>>,
}

fn build_excludes(patterns: &[String]) -> Result<GlobSet, BackupError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| BackupError::BadPattern {
            pattern: p.clone(),
            detail: e.to_string(),
        })?;
        b.add(g);
        // A pattern without a slash matches a name anywhere, as in restic.
        if !p.contains('/') {
            let any = format!("**/{p}");
            b.add(Glob::new(&any).map_err(|e| BackupError::BadPattern {
                pattern: p.clone(),
                detail: e.to_string(),
            })?);
        }
    }
    b.build().map_err(|e| BackupError::BadPattern {
        pattern: patterns.join(" "),
        detail: e.to_string(),
    })
}

impl Walk<'_> {
    fn progress(&self) -> Option<&Arc<BackupProgress>> {
        self.opts.progress.as_ref()
    }

    /// Leaves out what cannot be read, and says so in the outcome.
    fn skip(&mut self, path: &Path, e: std::io::Error) {
        self.skipped.push(SkippedEntry {
            path: path.to_path_buf(),
            error: e.to_string(),
        });
    }

    /// The entry at `path`, whose `lstat` is `stat`; `prev` is the parent
    /// snapshot's entry there.
    fn entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        stat: io::Result<Stat>,
        prev: Option<&Node>,
    ) -> Result<Option<Child>, BackupError> {
        if self.saver.failed() {
            return Err(BackupError::PipelineStopped);
        }
        let m = match stat {
            Ok(m) => m,
            Err(e) => {
                self.skip(path, e);
                return Ok(None);
            }
        };
        let mut node = node_from_meta(name, &m, &mut self.names);
        let parent = self.parent;
        let same = match node.kind {
            NodeKind::File => parent.and_then(|p| p.same_path(prev, &node)),
            _ => None,
        };
        if !same.is_some_and(|f| f.xattrs.is_empty()) {
            node.xattrs = read_xattrs(path);
        }
        match node.kind {
            NodeKind::Dir => {
                let mut dir = DirBuilder {
                    node: Some(node.clone()),
                    children: BTreeMap::new(),
                };
                if self.opts.one_file_system && node.device != self.root_dev {
                    return Ok(Some(Child::Dir(dir)));
                }
                let children = match self.list(path) {
                    Ok(c) => c,
                    Err(e) => {
                        self.skip(path, e);
                        return Ok(Some(Child::Dir(dir)));
                    }
                };
                let before = match self.parent {
                    Some(p) => p.dir(path, prev)?,
                    None => ParentDir::default(),
                };
                // Subfolders left waiting for their readers are looked at
                // again each time the walk finishes a later one, so a folder
                // of many folders does not hold them all until its own end
                // (300 folders of 1,000 files each took 326 MiB).
                let mut waiting = Vec::new();
                for (n, child_path, st) in children {
                    if let Some(c) = self.entry(&child_path, n.clone(), st, before.get(&n))? {
                        let open_dir = matches!(c, Child::Dir(_));
                        let any_dir = open_dir || matches!(&c, Child::Leaf(l) if l.kind == NodeKind::Dir);
                        dir.children.insert(n.clone(), c);
                        if any_dir && !waiting.is_empty() {
                            waiting = self.complete_some(&mut dir, path, waiting)?;
                        }
                        if open_dir {
                            waiting.push(n);
                        }
                    }
                }
                self.settle(dir, path).map(Some)
            }
            NodeKind::Symlink => {
                match fs::read_link(path) {
                    Ok(t) => node.symlink_target = Some(t.as_os_str().as_bytes().to_vec()),
                    Err(e) => {
                        self.skip(path, e);
                        return Ok(None);
                    }
                }
                Ok(Some(Child::Leaf(node)))
            }
            NodeKind::File => Ok(Some(self.file(path, node, prev, same)?)),
            _ => Ok(Some(Child::Leaf(node))),
        }
    }

    /// Stores a folder whose entries are all complete (none waits for a
    /// reader) right away, so the walk holds only the folders still waiting,
    /// not the whole source: an unchanged backup of 100,000 files kept every
    /// file's entry until its end. The folder given as "/" itself stays
    /// open: the caller takes its entries into the snapshot's root.
    fn settle(&mut self, mut dir: DirBuilder, path: &Path) -> Result<Child, BackupError> {
        let Some(mut node) = dir.node.clone().filter(|n| !n.name.is_empty()) else {
            return Ok(Child::Dir(dir));
        };
        self.complete(&mut dir, path)?;
        if dir.children.values().any(|c| !matches!(c, Child::Leaf(_))) {
            return Ok(Child::Dir(dir));
        }
        let id = dir.store_with(
            self.saver,
            self.repo,
            &mut Results::new(),
            self.summary,
            self.skipped,
            path,
        )?;
        node.subtree = Some(id);
        self.summary.dirs += 1;
        Ok(Child::Leaf(node))
    }

    /// Completes what can be below `dir`: files whose reader has finished
    /// get their content, and folders whose entries are then all complete
    /// are stored ([`Walk::settle`]). A first backup's folders wait for
    /// their readers, which run up to a queue behind the walk; each folder
    /// the walk finishes looks again at those it left open.
    fn complete(&mut self, dir: &mut DirBuilder, path: &Path) -> Result<(), BackupError> {
        let open: Vec<Vec<u8>> = dir
            .children
            .iter()
            .filter(|(_, c)| !matches!(c, Child::Leaf(_)))
            .map(|(n, _)| n.clone())
            .collect();
        self.complete_some(dir, path, open).map(|_| ())
    }

    /// [`Walk::complete`] for the entries `names` of `dir` only; returns
    /// those still waiting. A file that could not be read is left out of
    /// the folder, as `DirBuilder::store_with` leaves it out.
    fn complete_some(
        &mut self,
        dir: &mut DirBuilder,
        path: &Path,
        names: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackupError> {
        let mut waiting = Vec::new();
        for name in names {
            let Some(child) = dir.children.get_mut(&name) else {
                continue;
            };
            if matches!(child, Child::Leaf(_)) {
                continue;
            }
            let taken = std::mem::replace(child, Child::Leaf(Node::new(Vec::new(), NodeKind::File)));
            let now = match taken {
                Child::Dir(d) => self.settle(d, &path.join(OsStr::from_bytes(&name)))?,
                Child::File { node, job } => {
                    let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
                    match FileResult::take(&mut results, job, node.nlink > 1) {
                        None => Child::File { node, job },
                        Some(r) => match r.into_node(node) {
                            Ok(node) => Child::Leaf(node),
                            Err(error) => {
                                drop(results);
                                dir.children.remove(&name);
                                self.skipped.push(SkippedEntry {
                                    path: path.join(OsStr::from_bytes(&name)),
                                    error,
                                });
                                continue;
                            }
                        },
                    }
                }
                leaf => leaf,
            };
            if !matches!(now, Child::Leaf(_)) {
                waiting.push(name.clone());
            }
            if let Some(c) = dir.children.get_mut(&name) {
                *c = now;
            }
        }
        Ok(waiting)
    }

    /// The folder's entries that are not excluded, sorted by name: the
    /// lister's next listing, or listed here if it has none for `path`.
    fn list(&mut self, path: &Path) -> io::Result<Vec<Entry>> {
        let listing = match self.ahead.as_ref().map(Receiver::recv) {
            Some(Ok(l)) if l.path == path => l,
            None => lister::list_folder(path, self.excludes),
            Some(other) => {
                // The lister decides from the walk's own data by the walk's
                // rules, so this is a bug: tests fail on it, and a release
                // build goes on without the lister, right but slower.
                let got = other.map(|l| l.path);
                debug_assert!(false, "folder lister out of step at {}: {got:?}", path.display());
                tracing::warn!(expected = %path.display(), ?got, "folder lister out of step");
                self.ahead = None;
                lister::list_folder(path, self.excludes)
            }
        };
        for e in listing.unreadable {
            self.skip(path, e);
        }
        listing.entries
    }

    /// A file; `prev` is the parent's entry at its path, `same` that entry
    /// when rule 1 already found it unchanged.
    fn file(
        &mut self,
        path: &Path,
        mut node: Node,
        prev: Option<&Node>,
        same: Option<&Node>,
    ) -> Result<Child, BackupError> {
        if let Some(p) = self.progress() {
            p.files_total.fetch_add(1, Ordering::Relaxed);
            p.bytes_total.fetch_add(node.size, Ordering::Relaxed);
        }
        let key = (node.device, node.inode);
        let unchanged = match (same, self.parent) {
            (Some(f), _) => Some(f.content.clone()),
            (None, Some(p)) => p.unchanged(prev, &node)?,
            (None, None) => None,
        };
        if let Some(content) = unchanged {
            node.content = content;
            self.summary.files_unchanged += 1;
            self.summary.bytes_unchanged += node.size;
            if let Some(p) = self.progress() {
                p.files_done.fetch_add(1, Ordering::Relaxed);
                p.bytes_done.fetch_add(node.size, Ordering::Relaxed);
            }
            return Ok(Child::Leaf(node));
        }
        if node.nlink > 1 {
            if let Some(&job) = self.linked.get(&key) {
                // Another path to a file already being read in this backup.
                self.summary.files_unchanged += 1;
                self.summary.bytes_unchanged += node.size;
                if let Some(p) = self.progress() {
                    p.files_done.fetch_add(1, Ordering::Relaxed);
                    p.bytes_done.fetch_add(node.size, Ordering::Relaxed);
                }
                return Ok(Child::File { node, job });
            }
        }
        if prev.is_some_and(|p| p.kind == NodeKind::File) {
            self.summary.files_changed += 1;
            self.summary.bytes_changed += node.size;
        } else {
            self.summary.files_new += 1;
            self.summary.bytes_new += node.size;
        }
        let job = self.next_job;
        self.next_job += 1;
        if node.nlink > 1 {
            self.linked.insert(key, job);
        }
        self.jobs
            .send(FileJob {
                job,
                path: path.to_path_buf(),
            })
            .map_err(|_| BackupError::PipelineStopped)?;
        Ok(Child::File { node, job })
    }
}

fn reader_loop(
    repo: &Repository,
    saver: &Saver,
    chunker: &ChunkerParams,
    rx: Receiver<FileJob>,
    results: &Mutex<Results>,
    progress: Option<&BackupProgress>,
    bytes_read: &std::sync::atomic::AtomicU64,
) {
    let mut chunk_buffer = ChunkBuffer::new(chunker);
    for job in rx {
        if saver.failed() {
            break;
        }
        let r = read_file(repo, saver, &mut chunk_buffer, &job.path, progress, bytes_read);
        let res = match r {
            Ok(content) => FileResult { content, error: None },
            Err(e) => FileResult {
                content: Vec::new(),
                error: Some(e),
            },
        };
        if let Some(p) = progress {
            p.files_done.fetch_add(1, Ordering::Relaxed);
        }
        results.lock().unwrap_or_else(|p| p.into_inner()).insert(job.job, res);
    }
}

fn read_file(
    repo: &Repository,
    saver: &Saver,
    chunk_buffer: &mut ChunkBuffer,
    path: &Path,
    progress: Option<&BackupProgress>,
    bytes_read: &std::sync::atomic::AtomicU64,
) -> Result<Vec<ContentRef>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let content = save_content(repo, saver, chunk_buffer, f, |len| {
        bytes_read.fetch_add(len, Ordering::Relaxed);
        if let Some(p) = progress {
            p.bytes_done.fetch_add(len, Ordering::Relaxed);
        }
    })
    .map_err(|e| match e {
        ContentError::Read(e) => e.to_string(),
        ContentError::Save(e) => e.to_string(),
    })?;
    Ok(content.refs)
}

/// Walks `paths`, reads what changed, stores all trees; returns the root tree.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    repo: &Repository,
    saver: &Saver,
    chunker: &ChunkerParams,
    paths: &[PathBuf],
    parent: Option<&ParentFiles>,
    opts: &BackupOptions,
    summary: &mut Summary,
    skipped: &mut Vec<SkippedEntry>,
) -> Result<TreeId, BackupError> {
    let excludes = build_excludes(&opts.excludes)?;
    let results = Mutex::new(Results::new());
    let bytes_read = std::sync::atomic::AtomicU64::new(0);
    let (tx, rx) = bounded::<FileJob>(256);
    let mut root = DirBuilder::synthetic_root();
    let walk_result = std::thread::scope(|s| {
        for _ in 0..opts.readers.max(1) {
            let rx = rx.clone();
            let results = &results;
            let bytes_read = &bytes_read;
            let progress = opts.progress.as_deref();
            s.spawn(move || reader_loop(repo, saver, chunker, rx, results, progress, bytes_read));
        }
        drop(rx);
        // Each path's `lstat` once, for the walk and the lister alike.
        let stats: Vec<io::Result<Stat>> = paths
            .iter()
            .map(|p| fs::symlink_metadata(p).map(|m| Stat::from(&m)))
            .collect();
        let roots: Vec<(&Path, u64)> = paths
            .iter()
            .zip(&stats)
            .filter_map(|(p, st)| match st {
                Ok(st) if st.is_dir() => Some((p.as_path(), st.device())),
                _ => None,
            })
            .collect();
        // A few folders ahead keep the walk fed (4 and 16 timed alike on
        // 100,000 files in 25-file folders); each one held is a whole
        // listing, which in a folder of 100,000 entries is 25 MB.
        let (list_tx, list_rx) = bounded::<Listing>(4);
        let excludes = &excludes;
        s.spawn(move || {
            let rules = lister::Rules {
                excludes,
                one_file_system: opts.one_file_system,
            };
            lister::list_ahead(&roots, &rules, &list_tx);
        });
        let mut walk = Walk {
            opts,
            excludes,
            parent,
            jobs: tx,
            next_job: 0,
            linked: HashMap::new(),
            names: NameCache::default(),
            summary: &mut *summary,
            skipped: &mut *skipped,
            root_dev: 0,
            saver,
            repo,
            results: &results,
            ahead: Some(list_rx),
        };
        for (p, stat) in paths.iter().zip(stats) {
            walk.root_dev = stat.as_ref().map_or(0, Stat::device);
            let prev = match parent {
                Some(pf) => pf.at(p)?,
                None => None,
            };
            let parts: Vec<&OsStr> = p
                .components()
                .filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None })
                .collect();
            let Some((last, dirs)) = parts.split_last() else {
                // Backing up "/" itself: its children go straight into the root.
                if let Some(Child::Dir(d)) = walk.entry(p, Vec::new(), stat, prev.as_ref())? {
                    root.node = d.node;
                    root.children.extend(d.children);
                }
                continue;
            };
            let mut dir = &mut root;
            let mut real = PathBuf::from("/");
            for d in dirs {
                real.push(d);
                dir = dir.child_dir(d.as_bytes(), Some(&real), &mut walk.names);
            }
            if let Some(c) = walk.entry(p, last.as_bytes().to_vec(), stat, prev.as_ref())? {
                dir.children.insert(last.as_bytes().to_vec(), c);
            }
        }
        if let Some(pr) = opts.progress.as_ref() {
            pr.walk_finished.store(true, Ordering::Relaxed);
        }
        Ok::<(), BackupError>(())
        // tx dropped with `walk`; readers drain and exit before the scope ends.
    });
    walk_result?;
    if saver.failed() {
        return Err(BackupError::PipelineStopped);
    }
    summary.bytes_read = bytes_read.load(Ordering::Relaxed);
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    root.store_with(saver, repo, &mut results, summary, skipped, Path::new("/"))
}

mod lister;
#[cfg(test)]
mod tests;
