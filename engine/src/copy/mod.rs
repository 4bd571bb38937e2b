//! Copy: snapshots from one repository into another (`cairn copy`), for
//! off-site and cold copies.
//!
//! Two paths. When both repositories name content with the same ids and cut
//! it with the same chunker (`Repository::same_blob_ids`, a destination made
//! with `init --chunker-params-from`), blobs and trees are copied verbatim:
//! opened (which verifies them) and sealed again with the destination's
//! keys, into new packs (the fast path). Otherwise every file is re-chunked
//! for the destination (`rechunk`), so that it deduplicates on its own.
//!
//! Order of durable writes (format-spec "Crash consistency"): packs, then
//! the index objects naming them (written every few packs, so a killed copy
//! keeps what it stored), then each snapshot, only once everything it
//! references is stored. A copy run again skips the snapshots copied before
//! (recorded in each copy's `copied_from`) and the blobs stored before.
//!
//! Locks: none. A copy is a reader of the source (R3) and a backup-like
//! writer of the destination (B1: a writer takes no lock), so it runs
//! alongside backups, restores and checks on either side; the engine takes
//! no lock and the CLI must not either.

mod fast;
mod plan;
pub(crate) mod rechunk;
#[cfg(test)]
mod rechunk_tests;
#[cfg(test)]
mod resume_tests;
#[cfg(test)]
mod tests;

mod recut;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::backend::BackendError;
use crate::backup::BackupError;
use crate::id::{PackId, RepositoryId, SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::retrieve::{self, DriveOptions, PackRef, RetrievalHook, RetrievalOptions, RetrievalReport, Retrieved};
use crate::snapshot::{CopyOrigin, Snapshot};
pub(crate) use rechunk::RechunkError;

/// Packs per index object a copy writes: a copy killed part-way copies at
/// most this many packs again when it is run again (a backup writes one
/// every 64 packs; more index objects cost every later load of the index).
const PACKS_PER_INDEX: usize = 8;

/// Default threads sealing for the destination.
const DEFAULT_SEALERS: usize = 2;

/// Errors of a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading either repository failed (missing or damaged data included).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Storing into the destination failed.
    #[error(transparent)]
    Save(#[from] BackupError),
    /// Re-chunking a snapshot's files failed (damaged source data is named
    /// by file and blob).
    #[error(transparent)]
    Rechunk(Box<RechunkError>),
    /// A pack of the source holds less than its index says.
    #[error("{0}")]
    Damaged(String),
    /// Packs of the source are being retrieved from archive storage: what
    /// was readable is copied, the snapshots needing the rest are not.
    #[error("{packs} pack(s) ({bytes} bytes) of the source are being retrieved from archive storage; {snapshots} snapshot(s) wait for them. Run the same copy again once they are readable (typically {typical}); it resumes where it stopped")]
    RetrievalPending {
        /// Packs not yet readable.
        packs: usize,
        /// Their bytes.
        bytes: u64,
        /// Snapshots not copied because of them.
        snapshots: usize,
        /// Typical time for the tier used.
        typical: String,
    },
    /// Stopped on request ([`CopyOptions::cancel`]): the snapshots copied so
    /// far are complete, and packs stored since are indexed and not copied
    /// again by the next run.
    #[error("interrupted: the copy stopped; {copied} snapshot(s) were copied, and what was stored since is reused by the next copy")]
    Interrupted {
        /// Snapshots fully copied before the stop.
        copied: usize,
    },
    /// Source snapshots were not copied because data they reference is
    /// missing or damaged in the source (named in [`CopyReport::failed`]);
    /// every other selected snapshot was copied.
    #[error("{count} snapshot(s) not copied: the source's data is missing or damaged ({first})")]
    SourceDamaged {
        /// Snapshots not copied.
        count: usize,
        /// The first one and why.
        first: String,
    },
    /// The copy cannot be done this way (yet).
    #[error("{0}")]
    Unsupported(String),
    /// A reader thread could not start.
    #[error("cannot start the copy's reader threads: {0}")]
    Thread(String),
}

impl From<RechunkError> for CopyError {
    fn from(e: RechunkError) -> Self {
        CopyError::Rechunk(Box::new(e))
    }
}

/// Called with the progress of a copy (from several threads).
pub type ProgressFn = Arc<dyn Fn(&CopyProgress) + Send + Sync>;

/// How to copy.
#[derive(Default)]
pub struct CopyOptions {
    /// Plan and report only: write nothing, request no retrieval.
    pub dry_run: bool,
    /// Threads sealing blobs for the destination (0 = default).
    pub sealers: usize,
    /// How archived packs of the source are retrieved (as restore does).
    pub retrieval: RetrievalOptions,
    /// Told what must be retrieved (once) and how many packs are ready.
    pub retrieval_hook: Option<RetrievalHook>,
    /// Called as the copy advances.
    pub progress: Option<ProgressFn>,
    /// Set (from Ctrl-C) to stop cleanly: what is stored gets indexed, no
    /// incomplete snapshot is written, and [`CopyError::Interrupted`] comes back.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// How far a copy is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyProgress {
    /// Snapshots written to the destination so far.
    pub snapshots_done: usize,
    /// Snapshots to copy (skipped ones not counted).
    pub snapshots_total: usize,
    /// Bytes of source packs read (fast path) or of file content processed
    /// (re-chunk path) so far.
    pub bytes_done: u64,
    /// The bytes to read in all (an estimate on the re-chunk path).
    pub bytes_total: u64,
}

/// Which way the data went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyPath {
    /// Same blob ids and chunker: blobs re-encrypted and re-packed only.
    Fast,
    /// Different chunker or ids: every file re-chunked for the destination.
    Rechunk,
}

/// One snapshot copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CopiedSnapshot {
    /// Its id in the source.
    pub source: SnapshotId,
    /// The id of its copy in the destination (in a dry run, the id it
    /// would not get: the source's).
    pub destination: SnapshotId,
}

/// A selected snapshot not copied because the source's data it needs is
/// missing or damaged: no destination snapshot is written for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedSnapshot {
    /// Its id in the source.
    pub source: SnapshotId,
    /// Why, naming the object (and the file or folder, where known).
    pub reason: String,
}

/// What a copy did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The path taken.
    pub path: CopyPath,
    /// Snapshots copied (would be, in a dry run), oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Selected snapshots the destination holds already.
    pub skipped: usize,
    /// Blobs read from source packs (in a dry run of the fast path: to read).
    pub blobs_read: u64,
    /// Bytes read from source packs (in a dry run: to read; on the re-chunk
    /// path, the snapshots' file bytes, as their summaries say).
    pub bytes_read: u64,
    /// Blobs written to the destination (in a dry run of the fast path: to
    /// write; 0 on the re-chunk path, known only by cutting the files).
    pub blobs_written: u64,
    /// Bytes stored in the destination, packs and index objects (in a dry
    /// run of the fast path: the blobs' sealed sizes in the source).
    pub bytes_written: u64,
    /// Source packs read, on the fast path (the re-chunk path reads ranges
    /// of packs file by file and counts only bytes; a dry run reads none).
    pub packs_read: u64,
    /// What archive storage was asked for, when any pack was archived.
    pub retrieval: Option<RetrievalReport>,
    /// Archived source packs not waited for: the snapshots needing them
    /// were not copied (the CLI exits 14, see [`CopyReport::pending_error`]).
    pub pending_packs: usize,
    /// Bytes of those packs.
    pub pending_bytes: u64,
    /// Selected snapshots not copied because they need pending packs.
    pub waiting: usize,
    /// Selected snapshots not copied because the source's data they need
    /// is missing or damaged (the CLI exits non-zero, see
    /// [`CopyReport::damage_error`]).
    pub failed: Vec<FailedSnapshot>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl CopyReport {
    /// The error to exit with when archived packs are still pending (kind
    /// `RetrievalPending`, exit 14), after printing the report; `None` when
    /// every selected snapshot was copied or skipped.
    pub fn pending_error(&self, opts: &CopyOptions) -> Option<CopyError> {
        if self.pending_packs == 0 {
            return None;
        }
        let report = self.retrieval.clone().unwrap_or_default();
        Some(CopyError::RetrievalPending {
            packs: self.pending_packs,
            bytes: self.pending_bytes,
            snapshots: self.waiting,
            typical: report.typical_time(opts.retrieval.tier),
        })
    }
}

impl CopyReport {
    /// The error to exit with when snapshots were not copied because of
    /// damage in the source (kind `Damaged`, as restore's), after printing
    /// the report; `None` when none failed.
    pub fn damage_error(&self) -> Option<CopyError> {
        let f = self.failed.first()?;
        Some(CopyError::SourceDamaged {
            count: self.failed.len(),
            first: format!("snapshot {}: {}", f.source.short(), f.reason),
        })
    }
}

/// Copies the snapshots of `selected` (source snapshots, as
/// `filter_snapshots` chose them) that `dst` does not hold yet, oldest
/// first, with every blob they reference that `dst` lacks.
///
/// A destination snapshot is the source's with `copied_from` naming the
/// source repository and snapshot (how later runs skip it), and `parent`
/// naming the destination's copy of the source's parent when there is one.
/// Each is written only once everything it references is durably stored
/// and indexed. Archived source packs are retrieved through the retrieval
/// driver; without `wait`, what is readable is copied and the snapshots
/// needing the rest are left for the next run (`pending_packs`, see
/// [`CopyReport::pending_error`]).
///
/// Takes no lock (see the module documentation): the CLI must not either.
pub fn copy(
    src: &Repository,
    dst: &Repository,
    selected: &[(SnapshotId, Snapshot)],
    opts: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let path = if src.same_blob_ids(dst) {
        CopyPath::Fast
    } else {
        CopyPath::Rechunk
    };
    // A dry run takes the same path, into storage that discards the writes.
    let dst = if opts.dry_run { dst.with_dry_run() } else { dst.clone() };
    let src_id = src.config().repository_id;

    // What the destination holds of this source already.
    let mut copies: HashMap<SnapshotId, SnapshotId> = HashMap::new();
    let mut earlier = Vec::new();
    let listed = dst.list_snapshots_lenient()?;
    for (id, s) in &listed.snapshots {
        if let Some(o) = s.copied_from.as_ref().filter(|o| o.repository == src_id) {
            copies.entry(o.snapshot).or_insert(*id);
            earlier.push(Earlier {
                source: o.snapshot,
                source_tree: None,
                tree: s.tree,
                host: s.host.clone(),
                paths: s.paths.clone(),
                time_ns: s.time_ns,
            });
        }
    }
    let mut seen = HashSet::new();
    let unique: Vec<&(SnapshotId, Snapshot)> = selected.iter().filter(|(id, _)| seen.insert(*id)).collect();
    let mut todo: Vec<&(SnapshotId, Snapshot)> = unique
        .iter()
        .copied()
        .filter(|(id, _)| !copies.contains_key(id))
        .collect();
    todo.sort_by_key(|(_, s)| s.time_ns);
    let report = CopyReport {
        path,
        copied: Vec::new(),
        skipped: unique.len() - todo.len(),
        blobs_read: 0,
        bytes_read: 0,
        blobs_written: 0,
        bytes_written: 0,
        packs_read: 0,
        retrieval: None,
        pending_packs: 0,
        pending_bytes: 0,
        waiting: 0,
        failed: Vec::new(),
        dry_run: opts.dry_run,
    };
    if todo.is_empty() {
        return Ok(report);
    }
    let mut run = Run {
        src,
        dst: &dst,
        src_id,
        selected,
        todo,
        copies,
        earlier,
        opts,
        started: Instant::now(),
        report,
    };
    match path {
        CopyPath::Fast => fast::fast_copy(&mut run)?,
        CopyPath::Rechunk => recut::rechunk_copy(&mut run)?,
    }
    Ok(run.report)
}

/// A destination snapshot copied from this source before.
struct Earlier {
    source: SnapshotId,
    /// The source snapshot's root, once looked up.
    source_tree: Option<TreeId>,
    tree: TreeId,
    host: String,
    paths: Vec<String>,
    time_ns: i64,
}

/// One copy under way.
struct Run<'a> {
    src: &'a Repository,
    /// The destination (discarding writes in a dry run).
    dst: &'a Repository,
    src_id: RepositoryId,
    selected: &'a [(SnapshotId, Snapshot)],
    /// The snapshots to copy, oldest first.
    todo: Vec<&'a (SnapshotId, Snapshot)>,
    /// Source snapshot -> its copy in the destination.
    copies: HashMap<SnapshotId, SnapshotId>,
    /// The destination's copies of this source's snapshots.
    earlier: Vec<Earlier>,
    opts: &'a CopyOptions,
    started: Instant,
    report: CopyReport,
}

impl<'a> Run<'a> {
    /// True once the caller asked to stop.
    fn cancelled(&self) -> bool {
        self.opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Sealing threads for the destination.
    fn sealers(&self) -> usize {
        if self.opts.sealers == 0 {
            DEFAULT_SEALERS
        } else {
            self.opts.sealers
        }
    }

    /// The stop error, counting the snapshots written so far.
    fn interrupted(&self) -> CopyError {
        CopyError::Interrupted {
            copied: self.report.copied.len(),
        }
    }

    /// Writes the destination's copy of `snap` (id `id`), with root `root`,
    /// once everything it references is stored; `deletions` are the records
    /// the destination had when its index was read.
    fn write_snapshot(
        &mut self,
        id: SnapshotId,
        snap: &Snapshot,
        root: TreeId,
        deletions: &crate::prune::Deletions,
    ) -> Result<(), CopyError> {
        // B4/B5: a prune that ran meanwhile may have recorded what this copy
        // reuses in the destination.
        crate::backup::verify_reuse(self.dst, deletions, self.started.elapsed(), &root)?;
        let mut new = snap.clone();
        new.tree = root;
        new.parent = snap.parent.and_then(|p| self.copies.get(&p).copied());
        new.copied_from = Some(CopyOrigin {
            repository: self.src_id,
            snapshot: id,
        });
        let new_id = self.dst.save_snapshot(&new)?;
        self.copies.insert(id, new_id);
        self.earlier.push(Earlier {
            source: id,
            source_tree: Some(snap.tree),
            tree: root,
            host: new.host,
            paths: new.paths,
            time_ns: new.time_ns,
        });
        self.report.copied.push(CopiedSnapshot {
            source: id,
            destination: new_id,
        });
        Ok(())
    }

    /// The snapshots of `todo` that need none of `pending` (source packs
    /// not readable yet), oldest first; the others are counted as waiting.
    fn not_waiting(
        &mut self,
        src_index: &Index,
        known: &Index,
        pending: &HashSet<PackId>,
    ) -> Result<Vec<&'a (SnapshotId, Snapshot)>, CopyError> {
        let mut ready = Vec::new();
        for s in self.todo.clone() {
            if !pending.is_empty() && plan::touches_packs(self.src, src_index, &s.1.tree, known, pending)? {
                self.report.waiting += 1;
            } else {
                ready.push(s);
            }
        }
        Ok(ready)
    }

    /// Moves the snapshots of `todo` whose data the source cannot give
    /// (see [`plan::damage_below`]) to `report.failed`, naming why.
    fn screen(&mut self, src_index: &Index, known: &Index, bad: &HashSet<crate::id::BlobId>) -> Result<(), CopyError> {
        let mut keep = Vec::new();
        for s in self.todo.clone() {
            match plan::damage_below(self.src, src_index, &s.1.tree, known, bad)? {
                Some(reason) => self.report.failed.push(FailedSnapshot { source: s.0, reason }),
                None => keep.push(s),
            }
        }
        self.todo = keep;
        Ok(())
    }

    /// (source root, destination root) of the newest snapshot copied
    /// before from the same host and paths, not newer than `snap`: what
    /// the re-chunk path reuses unchanged files and folders from.
    fn prior(&mut self, snap: &Snapshot) -> Option<(TreeId, TreeId)> {
        let (selected, src) = (self.selected, self.src);
        let best = self
            .earlier
            .iter_mut()
            .filter(|e| e.host == snap.host && e.paths == snap.paths && e.time_ns <= snap.time_ns)
            .max_by_key(|e| e.time_ns)?;
        if best.source_tree.is_none() {
            // A source snapshot forgotten since has no root to compare with.
            best.source_tree = selected
                .iter()
                .find(|(id, _)| *id == best.source)
                .map(|(_, s)| s.tree)
                .or_else(|| src.load_snapshot(&best.source).ok().map(|s| s.tree));
        }
        best.source_tree.map(|t| (t, best.tree))
    }
}

/// Every source pack not readable yet, by name, from `done`.
fn pending_packs(done: &Retrieved, refs: &[PackRef]) -> HashSet<PackId> {
    done.pending.iter().map(|&i| refs[i].id).collect()
}

/// Asks which of `refs` are archived and what retrieving them costs,
/// requesting nothing and reading nothing (a dry run): the driver runs on
/// a source that discards the requests, and never waits.
fn plan_retrievals(src: &Repository, refs: &[PackRef], opts: &CopyOptions) -> Result<Retrieved, CopyError> {
    let looking = src.with_dry_run();
    let retrieval = RetrievalOptions {
        wait: false,
        ..opts.retrieval
    };
    let drive = DriveOptions {
        retrieval: &retrieval,
        ask_first: true,
        hook: opts.retrieval_hook.as_ref(),
    };
    retrieve::drive(&looking, refs, &drive, |_| Ok::<_, CopyError>(Vec::new()))
}

/// Records in `report` what the driver left pending.
fn apply_pending(report: &mut CopyReport, done: &Retrieved, refs: &[PackRef]) {
    report.retrieval = done.report.clone();
    report.pending_packs = done.pending.len();
    report.pending_bytes = done.pending.iter().map(|&i| refs[i].size).sum();
}

/// Progress reporting: bytes from the reading threads as they go,
/// snapshots as they are written.
struct Progress<'a> {
    opts: &'a CopyOptions,
    snapshots_total: usize,
    bytes_total: u64,
    bytes_done: AtomicU64,
    snapshots_done: AtomicUsize,
}

impl<'a> Progress<'a> {
    fn new(opts: &'a CopyOptions, snapshots_total: usize, bytes_total: u64) -> Self {
        let p = Self {
            opts,
            snapshots_total,
            bytes_total,
            bytes_done: AtomicU64::new(0),
            snapshots_done: AtomicUsize::new(0),
        };
        p.send();
        p
    }

    fn bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        self.send();
    }

    fn snapshots(&self, n: usize) {
        self.snapshots_done.store(n, Ordering::Relaxed);
        self.send();
    }

    fn send(&self) {
        if let Some(p) = &self.opts.progress {
            p(&CopyProgress {
                snapshots_done: self.snapshots_done.load(Ordering::Relaxed),
                snapshots_total: self.snapshots_total,
                bytes_done: self.bytes_done.load(Ordering::Relaxed),
                bytes_total: self.bytes_total,
            });
        }
    }
}
