//! Prune: removes the data no snapshot uses, safely alongside running
//! backups (format-spec "Many writers, locks and deletion").
//!
//! One run, under the maintenance lock:
//! 1. **Mark** every blob the snapshots reach ([`mark`]).
//! 2. **Carry out** the deletion records whose grace period is over
//!    ([`execute`]): remove their packs and superseded index objects, except
//!    packs a snapshot written since still needs (M3).
//! 3. **Plan** ([`plan`]): wholly unused packs are deleted, partly used ones
//!    repacked where `--max-unused` asks for it, packs no index names
//!    (left by killed backups) deleted.
//! 4. **Copy** the used blobs of the packs to repack into new packs, write
//!    a new index of everything kept, and only then record the old packs
//!    and index objects in a new deletion record (M2). They are removed by
//!    a later prune, after the grace period; `--instant-delete` removes them
//!    at once, for a repository known to be idle.
//!
//! A prune killed at any point leaves every snapshot restorable: nothing is
//! removed that a stored deletion record does not list, nothing is listed
//! before its replacement is durably stored, and every step is repeated
//! harmlessly by the next prune.

mod execute;
pub(crate) mod mark;
mod plan;
mod record;
mod repack;
mod retained;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::backend::{BackendError, ObjectKind};
use crate::backup::BackupError;
use crate::blob::BlobType;
use crate::error::ErrorKind;
use crate::id::{ObjectId, PackId, SnapshotId};
use crate::index::{Avoid, Index, IndexFile};
use crate::lock::{self, LockError, LockOptions, MaintenanceLock};
use crate::repository::{Repository, RepositoryError};
use crate::retrieve::{RetrievalHook, RetrievalOptions, RetrievalReport};

pub use execute::DueReport;
pub use plan::{ColdPack, PackCount, PrunePlan};
pub use record::{DeletionRecord, Deletions, RecordedPack};
pub use retained::{ExtendedReport, RetainedReport};

use plan::StoredPack;

/// The grace period by default: longer than a nightly backup runs.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Errors of prune. Each one stops the prune before it removes anything it
/// could not justify.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Another maintenance command holds the lock, or ours was lost.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Repository failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Storing the repacked blobs failed.
    #[error(transparent)]
    Store(#[from] BackupError),
    /// A snapshot or index object is damaged: prune cannot tell what is in use.
    #[error("prune refuses to run: {0}; run `cairn check` (nothing was removed)")]
    Damaged(String),
    /// A tree a snapshot reaches cannot be read.
    #[error("prune refuses to run: tree {tree} at {path} cannot be read ({detail}); run `cairn check` (nothing was removed)")]
    UnreadableTree {
        /// Where it is in the snapshot.
        path: String,
        /// The tree id.
        tree: String,
        /// Why.
        detail: String,
    },
    /// The index names packs the storage does not have.
    #[error("prune refuses to run: {count} pack(s) the index names are missing from the storage (first: {first}); run `cairn check` (nothing was removed)")]
    MissingPacks {
        /// How many.
        count: usize,
        /// The first one.
        first: String,
    },
    /// Snapshots use blobs that no pack holds.
    #[error("prune refuses to run: {count} blob(s) the snapshots use are in no pack (first id prefix: {first}); run `cairn check` (nothing was removed)")]
    MissingBlobs {
        /// How many.
        count: usize,
        /// The first one (id prefix).
        first: String,
    },
    /// An option is out of range.
    #[error("invalid prune option: {0}")]
    Invalid(String),
    /// Extending the Object Lock retention of objects still in use failed
    /// (after prune's own work, which stands). Nothing is lost: those
    /// objects keep their earlier date, and the next prune tries again.
    #[error("could not extend the Object Lock retention of {count} object(s) still in use (first: {first}); they keep their earlier date: fix the cause and run prune again")]
    NotExtended {
        /// How many failed.
        count: usize,
        /// The first failure, naming its object.
        first: BackendError,
    },
}

impl PruneError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PruneError::Lock(e) => e.kind(),
            PruneError::Repository(e) => e.kind(),
            PruneError::Backend(e) => e.kind(),
            PruneError::Store(e) => e.kind(),
            PruneError::Damaged(_)
            | PruneError::UnreadableTree { .. }
            | PruneError::MissingPacks { .. }
            | PruneError::MissingBlobs { .. } => ErrorKind::Damaged,
            PruneError::Invalid(_) => ErrorKind::InvalidInput,
            PruneError::NotExtended { first, .. } => first.kind(),
        }
    }
}

/// How much unused space prune tolerates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// A share (0–100) of the repository's size after the prune.
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
    /// Any amount: only wholly unused packs go.
    Unlimited,
}

/// Prune settings.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Unused space to tolerate in partly used packs (default 5 %).
    pub max_unused: MaxUnused,
    /// At most this many bytes of packs are repacked (default no limit).
    pub max_repack: Option<u64>,
    /// How long recorded packs stay before a prune removes them.
    pub grace: Duration,
    /// Remove what this prune decides at once (idle repository only).
    pub instant_delete: bool,
    /// Only plan: touch nothing.
    pub dry_run: bool,
    /// Repack partly used packs in archive classes (retrieving them first).
    pub repack_cold: bool,
    /// Wholly unused packs in classes with a minimum storage duration wait
    /// until they are this old.
    pub cold_min_age: Option<Duration>,
    /// How to retrieve archived packs for `repack_cold`.
    pub retrieval: RetrievalOptions,
    /// Told what must be retrieved for `repack_cold`.
    pub on_retrieval: Option<Arc<RetrievalHook>>,
    /// The maintenance lock.
    pub lock: LockOptions,
    /// Threads sealing repacked blobs.
    pub sealers: usize,
    /// The moment the prune acts at, instead of now: for tests of grace
    /// periods, which would otherwise have to wait them out.
    pub at_ns: Option<i64>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: MaxUnused::Percent(5.0),
            max_repack: None,
            grace: DEFAULT_GRACE,
            instant_delete: false,
            dry_run: false,
            repack_cold: false,
            cold_min_age: None,
            retrieval: RetrievalOptions::default(),
            on_retrieval: None,
            lock: LockOptions::default(),
            sealers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            at_ns: None,
        }
    }
}

/// What a prune did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// True when nothing was changed on purpose.
    pub dry_run: bool,
    /// Records of earlier prunes that were due, and what became of them.
    pub due: DueReport,
    /// This prune's plan.
    pub plan: PrunePlan,
    /// The deletion record this prune wrote, if any.
    pub record: Option<String>,
    /// Packs removed by this run (due records, and with `--instant-delete`
    /// this run's own).
    pub removed: PackCount,
    /// Packs recorded for deletion by this run, removed by a later prune
    /// after the grace period.
    pub recorded: PackCount,
    /// Archived packs to repack that were not readable (their retrieval is
    /// requested; they are kept for now).
    pub retrieval: Option<RetrievalReport>,
    /// Packs whose repack waits for a retrieval.
    pub repack_pending: usize,
    /// Peak size of the used-blob set, in entries.
    pub marked_blobs: usize,
    /// Seconds the mark phase took (walking every snapshot's trees).
    pub mark_seconds: f64,
    /// Incomplete writes of killed commands removed (older than the grace period).
    pub temporaries_removed: usize,
}

/// Runs a prune.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport, PruneError> {
    if let MaxUnused::Percent(p) = opts.max_unused {
        if !(0.0..=100.0).contains(&p) {
            return Err(PruneError::Invalid(format!(
                "--max-unused {p}% is not between 0 and 100"
            )));
        }
    }
    let lock = if opts.dry_run {
        None
    } else {
        Some(lock::acquire(repo, "prune", &opts.lock)?)
    };
    let report = run(repo, opts, lock.as_ref());
    if let Some(l) = lock {
        l.release()?;
    }
    report
}

/// Everything prune reads before deciding.
struct State {
    deletions: Deletions,
    files: Vec<(String, IndexFile)>,
    stored: HashMap<PackId, StoredPack>,
    retention: retained::Retention,
}

fn load_state(repo: &Repository) -> Result<State, PruneError> {
    let deletions = repo.load_deletions()?;
    let mut files = Vec::new();
    for o in repo.load_index_files()? {
        match o.file {
            Ok(f) => files.push((o.name, f)),
            // Packs only a damaged index object names would look unused.
            Err(e) => return Err(PruneError::Damaged(e.to_string())),
        }
    }
    let mut stored = HashMap::new();
    for (kind, blob_type) in [
        (ObjectKind::DataPack, BlobType::Data),
        (ObjectKind::TreePack, BlobType::Tree),
    ] {
        for info in repo.backend().list(kind)? {
            match crate::id::PackId::from_hex(&info.name) {
                Ok(id) => {
                    stored.insert(id, StoredPack { blob_type, info });
                }
                Err(_) => tracing::warn!("ignoring {kind} {}: not a pack name", info.name),
            }
        }
    }
    let retention = retained::Retention::load(repo, &files)?;
    Ok(State {
        deletions,
        files,
        stored,
        retention,
    })
}

/// Loads and marks the snapshots written since `snapshots` was listed, and
/// adds them to it.
fn mark_new(
    repo: &Repository,
    snapshots: &mut Vec<(SnapshotId, crate::snapshot::Snapshot)>,
    marked: &mut mark::Marked,
) -> Result<(), PruneError> {
    let known: HashSet<SnapshotId> = snapshots.iter().map(|(id, _)| *id).collect();
    let mut new = Vec::new();
    for o in repo.backend().list(ObjectKind::Snapshot)? {
        let id = SnapshotId::from_hex(&o.name).map_err(|e| PruneError::Damaged(format!("snapshot {}: {e}", o.name)))?;
        if known.contains(&id) {
            continue;
        }
        match repo.load_snapshot(&id) {
            Ok(s) => new.push((id, s)),
            // Forgotten since the listing: it needs nothing.
            Err(RepositoryError::Backend(BackendError::NotFound { .. })) => {}
            Err(e @ RepositoryError::Corrupt { .. }) => return Err(PruneError::Damaged(e.to_string())),
            Err(e) => return Err(e.into()),
        }
    }
    if new.is_empty() {
        return Ok(());
    }
    // A fresh index: the new snapshots' trees may be in packs indexed since.
    let index = repo.load_index()?;
    mark::mark_into(repo, &index, &new, marked, &|_| {})?;
    snapshots.extend(new);
    Ok(())
}

fn ensure(lock: Option<&MaintenanceLock>) -> Result<(), PruneError> {
    match lock {
        Some(l) => Ok(l.ensure_held()?),
        None => Ok(()),
    }
}

fn run(repo: &Repository, opts: &PruneOptions, lock: Option<&MaintenanceLock>) -> Result<PruneReport, PruneError> {
    let now = opts.at_ns.unwrap_or_else(crate::time::now_ns);
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut snapshots = repo.list_snapshots().map_err(|e| match e {
        e @ RepositoryError::Corrupt { .. } => PruneError::Damaged(e.to_string()),
        e => e.into(),
    })?;
    let mut state = load_state(repo)?;
    let mut marked = {
        let index = Index::from_files_avoiding(
            state.files.iter().map(|(_, f)| f),
            &state.deletions.doomed_packs(),
            Avoid::PreferOthers,
        )
        .map_err(RepositoryError::from)?;
        let started = std::time::Instant::now();
        let marked = mark::mark(repo, &index, &snapshots, &|_| {})?;
        report.mark_seconds = started.elapsed().as_secs_f64();
        marked
    };
    report.marked_blobs = marked.used.len();
    report.plan.snapshots = snapshots.len();
    report.plan.trees = marked.trees;

    ensure(lock)?;
    if !opts.dry_run {
        // M3 is judged against the snapshots as they are now: those written
        // while the mark ran count too (and this run's record names them).
        mark_new(repo, &mut snapshots, &mut marked)?;
    }
    report.due = execute::carry_out_due(repo, &state, &marked.used, now, opts, lock)?;
    report.removed = report.due.removed;
    if !opts.dry_run && report.due.changed() {
        state = load_state(repo)?;
    }
    if !opts.dry_run {
        let grace = i64::try_from(opts.grace.as_nanos()).unwrap_or(i64::MAX);
        report.temporaries_removed = repo.backend().remove_temporaries(now.saturating_sub(grace))?;
    }

    let doomed = state.deletions.doomed_packs();
    let (mut p, work) = plan::plan(
        &state.files,
        &state.stored,
        &doomed,
        &mut marked.used,
        opts,
        now,
        &state.retention,
    )?;
    drop(marked);
    p.snapshots = report.plan.snapshots;
    p.trees = report.plan.trees;
    p.retained.merge(&state.retention.index_report());
    p.retained.merge(&report.due.retained);
    if opts.dry_run || work.is_empty() {
        p.index_objects = 0;
        // Without a new index, the index objects describing the packs in
        // use are to stay protected too (a dry run with work to do would
        // write a new index, with a fresh date).
        let in_use = in_use_packs(&work, &HashSet::new());
        let indexes = if work.is_empty() {
            let doomed: HashSet<String> = state
                .deletions
                .records
                .iter()
                .flat_map(|(_, r)| r.indexes.iter().map(|i| i.to_hex()))
                .collect();
            state.retention.indexes_in_use(&state.files, &doomed, &in_use)
        } else {
            Vec::new()
        };
        ensure(lock)?;
        p.retention_extended = retained::extend(repo, &state.stored, &in_use, &indexes, opts.dry_run)?;
        report.plan = p;
        return Ok(report);
    }
    ensure(lock)?;
    let copied = repack::copy(repo, &work, opts)?;
    report.retrieval = copied.retrieval.clone();
    report.repack_pending = copied.pending.len();
    ensure(lock)?;
    let mut keep = work.keep.clone();
    let pending: HashSet<PackId> = copied.pending.iter().copied().collect();
    // Packs whose repack waits for a retrieval stay, described in the new index.
    keep.extend(
        state
            .files
            .iter()
            .flat_map(|(_, f)| &f.packs)
            .filter(|d| pending.contains(&d.id))
            .map(|d| (d.id, d.clone()))
            .collect::<HashMap<_, _>>()
            .into_values(),
    );
    crate::failpoint::hit("prune-after-repack");
    repack::write_index(repo, keep)?;
    crate::failpoint::hit("prune-after-index");
    let mut packs: Vec<RecordedPack> = work.delete.clone();
    packs.extend(work.repack.iter().map(|c| c.pack).filter(|r| !pending.contains(&r.id)));
    for r in &packs {
        report.recorded.add(r.size);
    }
    // Index objects under retention stay (they pin what they describe).
    let removable = state.retention.removable(state.files.iter().map(|(n, _)| n));
    p.index_objects = removable.len();
    let record = DeletionRecord {
        created_ns: now,
        grace_ns: i64::try_from(opts.grace.as_nanos()).unwrap_or(i64::MAX),
        host: crate::backup::default_host(),
        snapshots: snapshots.iter().map(|(id, _)| *id).collect(),
        packs,
        indexes: state
            .files
            .iter()
            .filter(|(n, _)| removable.contains(n))
            .filter_map(|(n, _)| ObjectId::from_hex(n).ok())
            .collect(),
        executed_ns: None,
    };
    ensure(lock)?;
    let (name, _) = repo.save_file(&record)?;
    crate::failpoint::hit("prune-after-record");
    report.record = Some(name.to_hex());
    report.plan = p;
    if opts.instant_delete {
        let listed: HashSet<SnapshotId> = snapshots.iter().map(|(id, _)| *id).collect();
        let now_listed: HashSet<SnapshotId> = repo.list_snapshots()?.into_iter().map(|(id, _)| id).collect();
        if now_listed == listed {
            let removed = execute::carry_out_now(repo, &name.to_hex(), &record, lock)?;
            report.removed.packs += removed.packs;
            report.removed.bytes += removed.bytes;
            report.recorded = PackCount::default();
            report.record = None;
        } else {
            tracing::warn!(
                "the snapshots changed while prune ran: the recorded packs wait for the grace period instead of --instant-delete"
            );
        }
    }
    // The new index describes every pack kept and carries a fresh date: of
    // the index objects, none is due.
    ensure(lock)?;
    let in_use = in_use_packs(&work, &pending);
    report.plan.retention_extended = retained::extend(repo, &state.stored, &in_use, &[], false)?;
    Ok(report)
}

/// The packs still in use after the plan: those the new index keeps (or the
/// old one goes on describing), but the idle ones, and those whose repack
/// waits for a retrieval.
fn in_use_packs(work: &plan::Work, pending: &HashSet<PackId>) -> HashSet<PackId> {
    work.keep
        .iter()
        .map(|d| d.id)
        .filter(|id| !work.idle.contains(id))
        .chain(pending.iter().copied())
        .collect()
}
