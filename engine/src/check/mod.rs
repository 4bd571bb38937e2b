//! Integrity checks: structure (index, packs, snapshots, trees) and, with
//! `read_data`, every byte of every pack.
//!
//! Every problem found in a pack, a blob or a tree is reported with every
//! snapshot and path that depends on it ([`Problem`]), so the user knows
//! what is lost before deciding anything; the advice given never removes
//! data.

mod data;
mod subset;
mod trees;

pub use subset::DataSubset;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::ObjectKind;
use crate::id::{BlobId, PackId, SnapshotId};
use crate::index::{Avoid, Index, IndexBuilder, IndexPack, PackInfo};
use crate::repository::{pack_kind, Repository, RepositoryError};
use crate::retrieve::{RetrievalHook, RetrievalOptions, RetrievalReport};

/// Errors that stop a check before it can judge the repository.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Repository failure (listing, config).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage failure while listing.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// A `--read-data-subset` that means nothing.
    #[error("invalid data subset {0}")]
    BadSubset(String),
}

/// Check settings.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify every pack's content.
    pub read_data: bool,
    /// Progress: bytes of packs read so far.
    pub progress: Option<Arc<AtomicU64>>,
    /// Set, once the packs to read are chosen, to the bytes they hold.
    pub progress_total: Option<Arc<AtomicU64>>,
    /// With `read_data`, retrieve archived packs (as restore does) instead
    /// of only reporting them unread.
    pub retrieval: Option<RetrievalOptions>,
    /// Told what must be retrieved.
    pub on_retrieval: Option<Arc<RetrievalHook>>,
    /// With `read_data`, read only this share of the packs.
    pub subset: Option<DataSubset>,
    /// Check only what these snapshots reference: their trees, the packs
    /// holding their blobs and (with `read_data`) those packs' content.
    /// `None`: the whole repository.
    pub snapshots: Option<Vec<SnapshotId>>,
}

/// A snapshot and a path in it that depend on a damaged object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependent {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The file (or folder, when a tree is lost) in it.
    pub path: String,
}

/// One damaged or missing object, and everything that depends on it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The object, e.g. `data pack 1a2b…` or `tree 3f4e…` (full ids).
    pub object: String,
    /// What is wrong with it.
    pub problem: String,
    /// Every snapshot and path whose data needs it, in snapshot order
    /// (oldest first) and tree order.
    pub dependents: Vec<Dependent>,
}

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Problems that mean data is missing or damaged (each [`Problem`] is
    /// here too, as `object: problem`).
    pub errors: Vec<String>,
    /// Damaged objects with what depends on them.
    pub problems: Vec<Problem>,
    /// Things worth knowing that lose nothing (e.g. unindexed packs).
    pub warnings: Vec<String>,
    /// What to do about it; never anything that removes data.
    pub advice: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct trees checked.
    pub trees: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Blobs in the index.
    pub blobs: usize,
    /// Bytes of pack data read and verified.
    pub bytes_read: u64,
    /// Packs chosen for reading (all in scope, or the subset's share).
    pub packs_read: usize,
    /// The `read_data` subset, as given (`None`: every pack in scope).
    pub subset: Option<String>,
    /// Packs in archive storage that `read_data` could not read (yet).
    pub archived_unread: usize,
    /// What was asked of archive storage, when packs were archived.
    pub retrieval: Option<RetrievalReport>,
}

impl CheckReport {
    /// True when no error was found.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The damaged objects found so far, by what identifies them, so that the
/// tree phase can attribute each file and folder to them.
#[derive(Default)]
pub(crate) struct Damage {
    problems: Vec<Problem>,
    packs: HashMap<PackId, usize>,
    blobs: HashMap<BlobId, usize>,
    trees: HashMap<BlobId, usize>,
}

impl Damage {
    fn add(&mut self, object: String, problem: String) -> usize {
        self.problems.push(Problem {
            object,
            problem,
            dependents: Vec::new(),
        });
        self.problems.len() - 1
    }

    fn pack(&mut self, kind: ObjectKind, id: PackId, problem: String) {
        if !self.packs.contains_key(&id) {
            let i = self.add(format!("{kind} {id}"), problem);
            self.packs.insert(id, i);
        }
    }

    /// The problem a blob read through `index` runs into, if any: its pack
    /// is damaged or missing, or the blob itself is damaged or unindexed.
    fn of_blob(&mut self, index: &Index, id: &BlobId, what: &str) -> Option<usize> {
        if let Some(&i) = self.blobs.get(id) {
            return Some(i);
        }
        match index.get(id) {
            Some(loc) => self.packs.get(&loc.pack).copied(),
            None => {
                let i = self.add(format!("{what} blob {id}"), "is in no index object".into());
                self.blobs.insert(*id, i);
                Some(i)
            }
        }
    }
}

/// Checks the repository; problems go into the report, not the error.
///
/// Phases, each of which goes on past what it finds: keys, index objects,
/// packs against the index, with `read_data` every byte of every pack, and
/// snapshots and every tree they reach, naming what depends on each damaged
/// object.
pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let mut r = CheckReport::default();
    if let Err(e) = repo.list_keys() {
        r.errors.push(e.to_string());
    }
    let deletions = repo.load_deletions()?;
    r.errors.extend(deletions.damaged.iter().cloned());
    let doomed = deletions.doomed_packs();
    let Some(index) = check_index(repo, &doomed, &mut r)? else {
        return Ok(r);
    };
    let mut damage = Damage::default();
    // Per-blob lists only for the steps that compare blobs.
    let in_index = if opts.snapshots.is_some() || opts.read_data {
        blob_lists(repo)?
    } else {
        HashMap::new()
    };
    let scope = match &opts.snapshots {
        Some(ids) => Some(subset::packs_of(repo, &index, &in_index, ids)?),
        None => None,
    };
    let mut stored = check_packs(repo, &index, scope.as_ref(), &doomed, &mut damage, &mut r)?;
    if opts.read_data {
        if let Some(scope) = &scope {
            stored.retain(|id, _| scope.contains(id));
        }
        let chosen = subset::select(&stored, opts.subset)?;
        stored.retain(|id, _| chosen.contains(id));
        r.packs_read = stored.len();
        if let Some(t) = &opts.progress_total {
            t.store(
                stored.values().map(|p| p.size).sum(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        r.subset = opts.subset.map(|s| s.to_string());
        data::read_data(repo, &stored, &in_index, opts, &mut damage, &mut r)?;
    }
    // Where a blob has another copy, outside the damaged and missing packs,
    // readers use that one: so does the tree phase. Built as the first
    // time (objects in listing order, as every reader adds them); what the
    // objects themselves lack was reported then.
    let index = if damage.packs.is_empty() {
        index
    } else {
        let mut avoid = doomed.clone();
        avoid.extend(damage.packs.keys().copied());
        check_index(repo, &avoid, &mut CheckReport::default())?.unwrap_or(index)
    };
    trees::check_snapshots(repo, &index, opts.snapshots.as_deref(), &mut damage, &mut r)?;
    advise(&damage, &mut r);
    r.errors
        .extend(damage.problems.iter().map(|p| format!("{}: {}", p.object, p.problem)));
    r.problems = damage.problems;
    r.errors.sort();
    Ok(r)
}

/// Advice for what was found: how to heal, never what to remove.
fn advise(damage: &Damage, r: &mut CheckReport) {
    let unindexed = r.warnings.iter().any(|w| w.contains("not in any index"));
    if unindexed || !damage.blobs.is_empty() || r.errors.iter().any(|e| e.starts_with("index ")) {
        r.advice.push(
            "run `cairn repair index`: it rebuilds the index from the pack headers, so packs no index \
             object names (and the data in them) are found again"
                .into(),
        );
    }
    if damage
        .problems
        .iter()
        .any(|p| p.problem.contains("missing from storage"))
    {
        r.advice.push(
            "a pack the index names is missing: its data is lost unless a copy of the pack can be put \
             back; `cairn repair index` then takes it out of the index"
                .into(),
        );
    }
    if damage.problems.iter().any(|p| !p.dependents.is_empty()) {
        r.advice.push(
            "the files named above cannot be restored from those snapshots. If their source still \
             exists, `cairn backup` stores them again (it never reuses data whose pack is missing); \
             `cairn repair snapshots` then writes copies of the damaged snapshots without the lost \
             data (the originals are kept unless --forget)"
                .into(),
        );
    }
}

/// Index objects one by one, so one damaged object is named and the rest
/// still checked; the index prefers copies outside the packs in `avoid`.
/// `None` when no usable index can be built. Each object is added to the
/// index as it is decoded and then dropped: the decoded objects take about
/// twice the index's memory (1 GiB of a 10 M-blob check's 1.1 GiB), and
/// only `--read-data` and `--snapshots` need them again ([`blob_lists`]).
fn check_index(repo: &Repository, avoid: &HashSet<PackId>, r: &mut CheckReport) -> Result<Option<Index>, CheckError> {
    let mut b = IndexBuilder::default();
    let mut too_many = None;
    repo.each_index_file(|read| {
        match read {
            Ok(f) if too_many.is_none() => too_many = b.add_file(&f).err(),
            Ok(_) => {}
            Err(e) => r.errors.push(e.to_string()),
        }
        Ok(())
    })?;
    if let Some(e) = too_many {
        r.errors.push(e.to_string());
        return Ok(None);
    }
    // Trees are read from copies outside recorded packs where there are any,
    // as every reader does (R1).
    let index = b.build(avoid, Avoid::PreferOthers);
    r.packs = index.packs().len();
    r.blobs = index.len();
    Ok(Some(index))
}

/// Each pack as the readable index objects describe it, blob by blob: read
/// again for the steps that compare blobs (damage was reported on the
/// first reading).
fn blob_lists(repo: &Repository) -> Result<HashMap<PackId, IndexPack>, CheckError> {
    let mut packs = HashMap::new();
    repo.each_index_file(|read| {
        if let Ok(f) = read {
            packs.extend(f.packs.into_iter().map(|p| (p.id, p)));
        }
        Ok(())
    })?;
    Ok(packs)
}

/// A pack as listed by the storage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredPack {
    kind: ObjectKind,
    size: u64,
}

/// Every stored pack against the index: missing, wrong size, or unindexed.
/// With a `scope`, only the packs in it (unindexed packs are then no
/// concern: nothing in scope is in them).
fn check_packs(
    repo: &Repository,
    index: &Index,
    scope: Option<&HashSet<PackId>>,
    doomed: &HashSet<PackId>,
    damage: &mut Damage,
    r: &mut CheckReport,
) -> Result<HashMap<PackId, StoredPack>, CheckError> {
    let mut stored: HashMap<PackId, StoredPack> = HashMap::new();
    for kind in [ObjectKind::DataPack, ObjectKind::TreePack] {
        for o in repo.backend().list(kind)? {
            match PackId::from_hex(&o.name) {
                Ok(id) => {
                    stored.insert(id, StoredPack { kind, size: o.size });
                }
                Err(_) => r.warnings.push(format!("{kind} {}: not a pack name", o.name)),
            }
        }
    }
    let mut packs: Vec<&PackInfo> = index
        .packs()
        .iter()
        .filter(|p| scope.is_none_or(|s| s.contains(&p.id)))
        .collect();
    packs.sort_by_key(|p| p.id);
    for p in packs {
        let (id, want, size) = (p.id, pack_kind(p.blob_type), p.size);
        match stored.get(&id) {
            // A prune removed it, as a deletion record says (R2).
            None if doomed.contains(&id) => {}
            None => damage.pack(want, id, "is in the index but missing from storage".into()),
            Some(s) if s.kind != want || s.size != size => damage.pack(
                want,
                id,
                format!(
                    "stored as a {} of {} bytes; the index says {want} of {size}",
                    s.kind, s.size
                ),
            ),
            _ => {}
        }
    }
    let mut unindexed: Vec<String> = stored
        .iter()
        .filter(|(id, _)| scope.is_none() && index.pack_size(id).is_none() && !doomed.contains(id))
        .map(|(id, s)| {
            format!(
                "{} {id} is not in any index (left by an interrupted backup, or its index object is lost; \
                 `cairn repair index` indexes it)",
                s.kind
            )
        })
        .collect();
    unindexed.sort();
    r.warnings.extend(unindexed);
    Ok(stored)
}
