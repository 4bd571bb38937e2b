//! Import of snapshots from other tools' repositories (`cairn import
//! restic`): each selected snapshot is read through a reader of the other
//! format (`restic`), its files re-chunked with this repository's chunker,
//! and saved as a Cairn snapshot with the same time, host, user, tags,
//! paths and file metadata.
//!
//! An imported snapshot records where it came from in `copied_from`: the
//! restic repository's id (its config's `id`) and the restic snapshot's id,
//! so an import run again skips what is done. Writes follow the backup's
//! order (packs, index objects, then the snapshot), so a crash leaves at
//! worst unreferenced packs, which the next import reuses. Nothing is ever
//! written to the restic repository and no restic lock is taken.

mod content;
pub mod restic;
mod tree;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::backup::{verify_reuse, BackupError, Saver};
use crate::id::{RepositoryId, SnapshotId, TreeId};
use crate::repository::{Repository, RepositoryError};
use crate::select::SnapshotFilter;
use crate::snapshot::{CopyOrigin, Snapshot, SourceDetails, SourceKind, Summary};
use restic::{ResticError, ResticRepo, ResticSnapshot};

/// Errors of an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the restic repository failed.
    #[error(transparent)]
    Restic(#[from] ResticError),
    /// A snapshot's root tree cannot be read: that snapshot cannot be imported.
    #[error("its root tree cannot be read: {0}")]
    Root(#[source] ResticError),
    /// Reading or writing the Cairn repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storing into the Cairn repository failed.
    #[error(transparent)]
    Save(#[from] BackupError),
    /// Stopped on request: snapshots imported so far stay, what was stored
    /// since is reused by the next import.
    #[error(
        "interrupted: the import stopped; snapshots imported so far are kept and the next import picks up the rest"
    )]
    Interrupted,
    /// Something that should not happen.
    #[error("import: {0}")]
    Invalid(String),
}

impl ImportError {
    /// What a caller can do about it.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            ImportError::Restic(e) | ImportError::Root(e) => e.kind(),
            ImportError::Repository(e) => e.kind(),
            ImportError::Save(BackupError::Interrupted) | ImportError::Interrupted => ErrorKind::Interrupted,
            ImportError::Save(e) => e.kind(),
            ImportError::Invalid(_) => ErrorKind::Internal,
        }
    }
}

/// How to import.
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// Which restic snapshots (host, tag, path filters as for Cairn's own).
    pub filter: SnapshotFilter,
    /// Read and re-chunk, but write nothing.
    pub dry_run: bool,
    /// Threads that compress and encrypt (0: one per CPU).
    pub sealers: usize,
    /// Set from outside (a signal handler) to stop at the next file or blob.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Counters for a progress display.
    pub progress: Option<Arc<ImportProgress>>,
}

/// Live counters of an import.
#[derive(Debug, Default)]
pub struct ImportProgress {
    /// Snapshots to import (those done before not counted).
    pub snapshots_total: AtomicU64,
    /// Snapshots imported so far.
    pub snapshots_done: AtomicU64,
    /// Bytes of file contents processed (read or reused).
    pub bytes_done: AtomicU64,
    /// Bytes to process, as restic's snapshot summaries count them (0
    /// where restic older than 0.17 wrote none).
    pub bytes_total: AtomicU64,
}

/// An entry of an imported snapshot that is damaged or was left out.
#[derive(Debug, Clone, Serialize)]
pub struct ImportProblem {
    /// Its path in the snapshot (before any `.damaged` renaming).
    pub path: PathBuf,
    /// What is wrong, and what was imported instead.
    pub error: String,
}

/// One restic snapshot imported (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct ImportedSnapshot {
    /// The restic snapshot's id.
    pub restic_id: String,
    /// The Cairn snapshot's id (`None` in a dry run).
    pub id: Option<SnapshotId>,
    /// Its time, Unix ns.
    pub time_ns: i64,
    /// Host.
    pub host: String,
    /// Paths.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Files in it.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Files whose contents were read from restic (the others were
    /// unchanged since an earlier import).
    pub files_read: u64,
    /// Entries damaged in restic (imported as `NAME.damaged`) or left out.
    pub problems: Vec<ImportProblem>,
}

/// A restic snapshot imported by an earlier run.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedSnapshot {
    /// The restic snapshot's id.
    pub restic_id: String,
    /// Its Cairn snapshot.
    pub id: SnapshotId,
}

/// A restic snapshot that could not be imported.
#[derive(Debug, Clone, Serialize)]
pub struct FailedImport {
    /// The restic snapshot's id (or object name).
    pub restic_id: String,
    /// Why.
    pub error: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// The restic repository's id.
    pub restic_repository: String,
    /// Its format version (1 or 2).
    pub restic_version: u32,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Snapshots the filters selected.
    pub selected: usize,
    /// Imported now, oldest first.
    pub imported: Vec<ImportedSnapshot>,
    /// Imported before, so skipped.
    pub skipped: Vec<SkippedSnapshot>,
    /// Could not be imported (unreadable snapshot file or root tree).
    pub failed: Vec<FailedImport>,
    /// Files in the imported snapshots.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Bytes of restic blobs read.
    pub bytes_read: u64,
    /// Bytes added to the Cairn repository (packs and index objects).
    pub bytes_added: u64,
    /// Entries damaged or left out, over all imported snapshots.
    pub problems: u64,
}

impl ImportReport {
    /// Whether everything selected was imported whole.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.problems == 0
    }
}

/// Imports the snapshots of the restic repository `src` (opened with its
/// own password) that `opts.filter` selects into `dst`, oldest first,
/// skipping those imported before.
pub fn import_restic(
    dst: &Repository,
    src: Arc<dyn crate::backend::Backend>,
    password: &[u8],
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let restic = ResticRepo::open(src, password)?;
    let rid = RepositoryId::from_bytes(restic.id());
    let mut report = ImportReport {
        restic_repository: rid.to_hex(),
        restic_version: restic.version(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let listed = restic.snapshots()?;
    for e in listed.damaged {
        tracing::warn!("{e}");
        report.failed.push(FailedImport {
            restic_id: match &e {
                ResticError::Damaged { what, .. } => what.clone(),
                other => other.to_string(),
            },
            error: e.to_string(),
        });
    }
    let trees: HashMap<[u8; 32], String> = listed.snapshots.iter().map(|(id, s)| (*id, s.tree.clone())).collect();
    let mut selected: Vec<([u8; 32], ResticSnapshot, Snapshot)> = listed
        .snapshots
        .into_iter()
        .map(|(id, s)| {
            let shell = shell_snapshot(&s);
            (id, s, shell)
        })
        .filter(|(_, _, shell)| opts.filter.matches(shell))
        .collect();
    selected.sort_by_key(|(id, _, s)| (s.time_ns, *id));
    report.selected = selected.len();

    // What earlier imports of this restic repository did.
    let mut done: HashMap<[u8; 32], (SnapshotId, Snapshot)> = HashMap::new();
    for (id, s) in dst.list_snapshots_lenient()?.snapshots {
        if let Some(o) = s.copied_from.filter(|o| o.repository == rid) {
            done.insert(*o.snapshot.as_bytes(), (id, s));
        }
    }
    let todo: Vec<_> = selected
        .into_iter()
        .filter(|(id, _, _)| match done.get(id) {
            Some((cid, _)) => {
                report.skipped.push(SkippedSnapshot {
                    restic_id: hex::encode(id),
                    id: *cid,
                });
                false
            }
            None => true,
        })
        .collect();
    if let Some(p) = &opts.progress {
        p.snapshots_total.store(todo.len() as u64, Ordering::Relaxed);
        let total = todo
            .iter()
            .filter_map(|(_, s, _)| s.summary.as_ref())
            .map(|s| s.total_bytes_processed);
        p.bytes_total.store(total.sum(), Ordering::Relaxed);
    }
    if todo.is_empty() {
        return Ok(report);
    }
    let (mut rindex, index_damage) = restic.load_index()?;
    for e in &index_damage {
        tracing::warn!("{e}; the blobs it lists read as missing");
    }
    let dst = if opts.dry_run { dst.with_dry_run() } else { dst.clone() };
    let mut memo = tree::Memo::new(&dst);
    for (restic_id, rs, mut snap) in todo {
        if cancelled(opts) {
            return Err(interrupted(&report));
        }
        let started = Instant::now();
        // The newest earlier import of the same host and paths, when it was
        // whole: its unchanged folders and files are taken as they are.
        let prior = done
            .iter()
            .filter(|(_, (_, s))| s.host == snap.host && s.paths == snap.paths && s.time_ns <= snap.time_ns)
            // Only a whole import as it was written: a rewritten or repaired
            // copy keeps `copied_from` but lacks what was excluded or lost.
            .filter(|(_, (_, s))| {
                s.summary.errors == 0
                    && s.rewritten_from.is_none()
                    && !s.tags.iter().any(|t| t == crate::repair::REPAIRED_TAG)
            })
            .max_by_key(|(rid, (_, s))| (s.time_ns, **rid))
            .and_then(|(rid, (cid, s))| {
                let rtree = format_tree(trees.get(rid)?)?;
                Some((*cid, rtree, s.tree))
            });
        let mut job = Job {
            restic: &restic,
            dst: &dst,
            opts,
            root: &rs.tree,
            prior: prior.map(|(_, r, c)| (r, c)),
        };
        let mut built = match job.build(&rindex, &mut memo) {
            Ok(b) => b,
            Err(ImportError::Root(e)) => {
                tracing::warn!("restic snapshot {}: {e}", hex::encode(&restic_id[..4]));
                report.failed.push(FailedImport {
                    restic_id: hex::encode(restic_id),
                    error: ImportError::Root(e).to_string(),
                });
                continue;
            }
            Err(e) if e.kind() == crate::error::ErrorKind::Interrupted => return Err(interrupted(&report)),
            Err(e) => return Err(e),
        };
        // Blobs gone because a restic prune ran meanwhile (no restic lock
        // keeps it away) are not damage: with restic's new index they read.
        if !built.problems.is_empty() && restic.index_names()? != rindex.names() {
            tracing::warn!("restic's index changed during the import (a restic prune?); importing this snapshot again with the new index");
            rindex = restic.load_index()?.0;
            job.prior = None;
            built = match job.build(&rindex, &mut memo) {
                Ok(b) => b,
                Err(e) if e.kind() == crate::error::ErrorKind::Interrupted => return Err(interrupted(&report)),
                Err(e) => return Err(e),
            };
        }
        let Built {
            root,
            problems,
            stats,
            added,
            deletions,
        } = built;
        snap.tree = root;
        snap.parent = job.prior.and(prior.map(|(cid, _, _)| cid));
        snap.program_version = if rs.program_version.is_empty() {
            format!("cairn {} (import from restic)", crate::VERSION)
        } else {
            format!("cairn {} (import from {})", crate::VERSION, rs.program_version)
        };
        snap.copied_from = Some(CopyOrigin {
            repository: rid,
            snapshot: SnapshotId::from_bytes(restic_id),
        });
        snap.summary = Summary {
            files_new: stats.files,
            bytes_new: stats.bytes,
            dirs: stats.dirs,
            bytes_read: stats.bytes_read,
            errors: problems.len() as u64,
            duration_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            ..added
        };
        let id = if opts.dry_run {
            None
        } else {
            verify_reuse(&dst, &deletions, started.elapsed(), &snap.tree)?;
            if cancelled(opts) {
                return Err(interrupted(&report));
            }
            crate::failpoint::hit("import-before-snapshot");
            Some(dst.save_snapshot(&snap)?)
        };
        for p in &problems {
            tracing::warn!(
                "restic snapshot {}: {}: {}",
                hex::encode(&restic_id[..4]),
                p.path.display(),
                p.error
            );
        }
        report.files += stats.files;
        report.bytes += stats.bytes;
        report.bytes_read += stats.bytes_read;
        report.bytes_added += snap.summary.bytes_added_stored;
        report.problems += problems.len() as u64;
        report.imported.push(ImportedSnapshot {
            restic_id: hex::encode(restic_id),
            id,
            time_ns: snap.time_ns,
            host: snap.host.clone(),
            paths: snap.paths.clone(),
            tags: snap.tags.clone(),
            files: stats.files,
            bytes: stats.bytes,
            files_read: stats.files_read,
            problems,
        });
        if let Some(p) = &opts.progress {
            p.snapshots_done.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(id) = id {
            done.insert(restic_id, (id, snap));
        }
    }
    Ok(report)
}

/// One restic snapshot's trees to import.
struct Job<'a> {
    restic: &'a ResticRepo,
    dst: &'a Repository,
    opts: &'a ImportOptions,
    /// Its root tree id, as restic wrote it.
    root: &'a str,
    /// The (restic root, Cairn root) of the earlier import to reuse from.
    prior: Option<([u8; 32], TreeId)>,
}

/// A snapshot's trees, stored and indexed.
struct Built {
    root: TreeId,
    problems: Vec<ImportProblem>,
    stats: tree::TreeStats,
    /// What was added (the `*_added` fields of a summary).
    added: Summary,
    deletions: crate::prune::Deletions,
}

impl Job<'_> {
    /// Imports the trees through a saver of their own, finished (so
    /// stored and indexed) before this returns.
    fn build(&self, rindex: &restic::ResticIndex, memo: &mut tree::Memo) -> Result<Built, ImportError> {
        let (index, deletions) = self.dst.load_index_for_backup()?;
        let index = Arc::new(index);
        memo.retain_indexed(&index);
        let sealers = match self.opts.sealers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        };
        let saver = Saver::start_cancellable(self.dst, index.clone(), sealers, self.opts.cancel.clone());
        let progress_fn = |n: u64| {
            if let Some(p) = &self.opts.progress {
                p.bytes_done.fetch_add(n, Ordering::Relaxed);
            }
        };
        let mut t = tree::TreeImport {
            restic: self.restic,
            rindex,
            dst: self.dst,
            dst_index: &index,
            saver: &saver,
            progress: &progress_fn,
            cancel: self.opts.cancel.as_deref(),
            memo,
            problems: Vec::new(),
            stats: Default::default(),
        };
        let root = match format_tree(self.root) {
            Some(root) => t.import(&root, self.prior),
            None => Err(ImportError::Root(ResticError::Damaged {
                what: "its tree id".into(),
                detail: "is not 64 hex digits".into(),
            })),
        };
        let (problems, stats) = (std::mem::take(&mut t.problems), t.stats);
        let root = match root {
            Ok(root) => root,
            Err(e) => {
                // The saver's own failure (a full disk) is the cause to show.
                return Err(match (e, saver.finish()) {
                    (ImportError::Save(BackupError::PipelineStopped), Err(cause)) => cause.into(),
                    (ImportError::Save(BackupError::PipelineStopped), Ok(())) if cancelled(self.opts) => {
                        ImportError::Interrupted
                    }
                    (e, _) => e,
                });
            }
        };
        let s = saver.stats.clone();
        saver.finish()?;
        let added = Summary {
            data_blobs_added: s.data_blobs.load(Ordering::Relaxed),
            tree_blobs_added: s.tree_blobs.load(Ordering::Relaxed),
            bytes_added_raw: s.raw_bytes.load(Ordering::Relaxed),
            bytes_added_stored: s.stored_bytes.load(Ordering::Relaxed),
            ..Summary::default()
        };
        Ok(Built {
            root,
            problems,
            stats,
            added,
            deletions,
        })
    }
}

/// The interruption, after saying what is kept.
fn interrupted(report: &ImportReport) -> ImportError {
    if !report.imported.is_empty() {
        tracing::warn!(
            "{} snapshot(s) were imported before the interruption and are kept",
            report.imported.len()
        );
    }
    ImportError::Interrupted
}

fn cancelled(opts: &ImportOptions) -> bool {
    opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
}

fn format_tree(hex_id: &str) -> Option<[u8; 32]> {
    restic::format::hex_id(hex_id)
}

/// The Cairn snapshot a restic snapshot becomes, before its tree is
/// imported (and what the filters are matched against).
fn shell_snapshot(s: &ResticSnapshot) -> Snapshot {
    let time_ns = restic::format::time_ns(Some(&s.time));
    if time_ns == 0 {
        tracing::warn!(
            "a restic snapshot's time {:?} does not parse; it is imported at 1970-01-01",
            s.time
        );
    }
    Snapshot {
        time_ns,
        host: s.hostname.clone(),
        user: s.username.clone(),
        uid: s.uid,
        gid: s.gid,
        tags: s.tags.clone().unwrap_or_default(),
        paths: s.paths.clone(),
        excludes: s.excludes.clone().unwrap_or_default(),
        source: SourceKind::Files,
        tree: TreeId::from_bytes([0; 32]),
        parent: None,
        program_version: String::new(),
        summary: Summary::default(),
        rewritten_from: None,
        details: SourceDetails::None,
        chunk_sizes: None,
        copied_from: None,
    }
}
