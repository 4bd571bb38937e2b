//! The second phase of the two-phase delete: carrying out deletion records
//! whose grace period is over (M3), and removing the records themselves one
//! grace period later (M4).
//!
//! Order, so that a kill at any point is finished by the next prune: the
//! index of packs kept back is written first, then the executed record
//! (exactly what goes), then the original record is removed, then the packs,
//! then the superseded index objects. An executed record is acted on again
//! by every prune until its own grace period is over, and removing what is
//! already gone is success.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use super::mark::{key_of, BlobKey, BlobSet};
use super::plan::PackCount;
use super::record::{DeletionRecord, RecordedPack};
use super::retained::{RetainedReport, Retention};
use super::{ensure, PruneError, PruneOptions, State};
use crate::backend::{BackendError, ObjectKind};
use crate::id::PackId;
use crate::index::IndexPack;
use crate::lock::MaintenanceLock;
use crate::repository::{pack_kind, Repository};

/// What became of earlier prunes' deletion records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DueReport {
    /// Records whose grace period was over, carried out now.
    pub records_due: usize,
    /// Records still in their grace period.
    pub records_waiting: usize,
    /// Packs those records list that are still waiting.
    pub waiting: PackCount,
    /// Packs removed.
    pub removed: PackCount,
    /// Packs a snapshot written since the record still needs: kept (M3).
    pub kept_back: usize,
    /// Superseded index objects removed.
    pub index_objects_removed: usize,
    /// Executed records removed after their second grace period (M4).
    pub records_finished: usize,
    /// The earliest time (Unix ns) a waiting record becomes due.
    pub next_due_ns: Option<i64>,
    /// Packs of due records the storage refuses to delete yet (Object Lock
    /// retention): kept, and left out of the executed record; a prune after
    /// their date removes them as unused or unindexed packs.
    pub retained: RetainedReport,
}

impl DueReport {
    /// True when anything was removed or written.
    pub(crate) fn changed(&self) -> bool {
        self.records_due > 0 || self.records_finished > 0 || self.removed.packs > 0 || self.index_objects_removed > 0
    }
}

/// Carries out every record that is due at `now`.
pub(crate) fn carry_out_due(
    repo: &Repository,
    state: &State,
    used: &BlobSet,
    now: i64,
    opts: &PruneOptions,
    lock: Option<&MaintenanceLock>,
) -> Result<DueReport, PruneError> {
    let mut r = DueReport::default();
    let mut due = Vec::new();
    let mut finished = Vec::new();
    for (name, rec) in &state.deletions.records {
        // --instant-delete says nothing else writes: no grace is needed.
        let is_due = rec.due_ns() <= now || opts.instant_delete;
        match (rec.executed_ns, is_due) {
            (None, true) => due.push((name, rec)),
            (Some(_), true) => finished.push((name, rec)),
            (None, false) => {
                r.records_waiting += 1;
                for p in &rec.packs {
                    r.waiting.add(p.size);
                }
                r.next_due_ns = Some(r.next_due_ns.map_or(rec.due_ns(), |n: i64| n.min(rec.due_ns())));
            }
            // An executed record in its second grace period: its removals
            // may have been cut short by a kill, so they are repeated.
            (Some(_), false) => finished.push((name, rec)),
        }
    }
    r.records_due = due.len();
    // One removal set for the run: the packs of the due records and what
    // executed records list and a killed prune left stored. A pack of this
    // set is no other pack's "other copy".
    let removal: HashMap<PackId, RecordedPack> = due
        .iter()
        .flat_map(|(_, rec)| rec.packs.iter().map(|p| (p.id, *p)))
        .chain(
            finished
                .iter()
                .flat_map(|(_, rec)| rec.packs.iter().filter(|p| state.stored.contains_key(&p.id)))
                .map(|p| (p.id, *p)),
        )
        .collect();
    let kept_back = kept_back(state, &removal, used);
    r.kept_back = kept_back.len();
    // M3 is judged with these packs in the removal set: a blob only they
    // hold gets its description written below like any kept-back pack's.
    let held = state.retention.held(removal.keys(), &state.stored);
    let keep: HashSet<PackId> = kept_back.iter().chain(held.keys()).copied().collect();
    for (id, p) in &removal {
        if let Some(&until) = held.get(id) {
            r.retained.pack(p.size, until);
        } else if !kept_back.contains(id) {
            r.removed.add(p.size);
        }
    }
    for (_, rec) in &due {
        r.index_objects_removed += rec.indexes.len();
    }
    if opts.dry_run {
        return Ok(r);
    }
    if !kept_back.is_empty() {
        // Their descriptions may live only in index objects about to go.
        let descs: HashMap<PackId, IndexPack> = state
            .files
            .iter()
            .flat_map(|(_, f)| &f.packs)
            .filter(|d| kept_back.contains(&d.id))
            .map(|d| (d.id, d.clone()))
            .collect();
        ensure(lock)?;
        super::repack::write_index(repo, descs.into_values().collect())?;
        tracing::warn!(
            "{} recorded pack(s) are kept: snapshots written since the prune that recorded them use their data",
            kept_back.len()
        );
    }
    // Every pack an executed record lists, once removed: index objects
    // that still describe one are rewritten without it (below).
    let mut gone: HashSet<PackId> = HashSet::new();
    let mut listed_indexes: HashSet<String> = HashSet::new();
    for (name, rec) in due {
        let mut executed = rec.clone();
        executed.packs.retain(|p| !keep.contains(&p.id));
        executed
            .indexes
            .retain(|i| !state.retention.index_retained(&i.to_hex()));
        executed.executed_ns = Some(now);
        ensure(lock)?;
        let (executed_name, _) = repo.save_file(&executed)?;
        crate::failpoint::hit("prune-after-executed-record");
        remove(repo, ObjectKind::Deletion, name)?;
        remove_listed(repo, &executed, &keep, &state.retention, lock)?;
        gone.extend(executed.packs.iter().map(|p| p.id));
        listed_indexes.extend(executed.indexes.iter().map(|i| i.to_hex()));
        if opts.instant_delete {
            // Nothing else writes, so no backup needs to see it (M4).
            remove(repo, ObjectKind::Deletion, &executed_name.to_hex())?;
            r.records_finished += 1;
        }
    }
    let index_names: HashSet<&str> = state.files.iter().map(|(n, _)| n.as_str()).collect();
    for (name, rec) in finished {
        let leftover = rec.packs.iter().any(|p| state.stored.contains_key(&p.id))
            || rec.indexes.iter().any(|i| index_names.contains(i.to_hex().as_str()));
        ensure(lock)?;
        if leftover {
            remove_listed(repo, rec, &keep, &state.retention, lock)?;
        }
        gone.extend(rec.packs.iter().map(|p| p.id).filter(|p| !keep.contains(p)));
        listed_indexes.extend(rec.indexes.iter().map(|i| i.to_hex()));
        if rec.due_ns() <= now || opts.instant_delete {
            remove(repo, ObjectKind::Deletion, name)?;
            r.records_finished += 1;
        }
    }
    r.index_objects_removed += drop_descriptions(repo, state, &gone, &listed_indexes, lock)?;
    Ok(r)
}

/// Rewrites every index object that still describes a removed pack without
/// it (the replacement stored first, then the old object removed), so no
/// index names a pack that is gone once its record expires (R2). Index
/// objects the records list are removed by them. Returns how many went.
fn drop_descriptions(
    repo: &Repository,
    state: &State,
    gone: &HashSet<PackId>,
    listed: &HashSet<String>,
    lock: Option<&MaintenanceLock>,
) -> Result<usize, PruneError> {
    if gone.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for (name, file) in &state.files {
        if listed.contains(name) || !file.packs.iter().any(|p| gone.contains(&p.id)) {
            continue;
        }
        let rest: Vec<IndexPack> = file.packs.iter().filter(|p| !gone.contains(&p.id)).cloned().collect();
        ensure(lock)?;
        super::repack::write_index(repo, rest)?;
        remove(repo, ObjectKind::Index, name)?;
        n += 1;
    }
    Ok(n)
}

/// Carries out a record this very run wrote (`--instant-delete`): the
/// snapshots are the ones it was decided with, so nothing is kept back. The
/// record goes too, once its packs and index objects are gone.
pub(crate) fn carry_out_now(
    repo: &Repository,
    name: &str,
    rec: &DeletionRecord,
    lock: Option<&MaintenanceLock>,
) -> Result<PackCount, PruneError> {
    ensure(lock)?;
    remove_listed(repo, rec, &HashSet::new(), &Retention::default(), lock)?;
    remove(repo, ObjectKind::Deletion, name)?;
    let mut n = PackCount::default();
    for p in &rec.packs {
        n.add(p.size);
    }
    Ok(n)
}

/// The packs among `removal` holding a used blob that has no copy in any
/// stored pack outside `removal` (M3: a snapshot the record does not name
/// needs it).
fn kept_back(state: &State, removal: &HashMap<PackId, RecordedPack>, used: &BlobSet) -> HashSet<PackId> {
    if removal.is_empty() {
        return HashSet::new();
    }
    let mut at_risk: HashMap<BlobKey, Vec<PackId>> = HashMap::new();
    let packs = || state.files.iter().flat_map(|(_, f)| &f.packs);
    for d in packs().filter(|d| removal.contains_key(&d.id)) {
        for b in &d.blobs {
            let k = key_of(&b.id);
            if used.contains(&k) {
                at_risk.entry(k).or_default().push(d.id);
            }
        }
    }
    for d in packs().filter(|d| !removal.contains_key(&d.id) && state.stored.contains_key(&d.id)) {
        if at_risk.is_empty() {
            break;
        }
        for b in &d.blobs {
            at_risk.remove(&key_of(&b.id));
        }
    }
    at_risk.into_values().flatten().collect()
}

/// Removes every pack (but those in `keep`) and index object (but those
/// under retention, which pin their packs) a record lists (in parallel).
fn remove_listed(
    repo: &Repository,
    rec: &DeletionRecord,
    keep: &HashSet<PackId>,
    retention: &Retention,
    lock: Option<&MaintenanceLock>,
) -> Result<(), PruneError> {
    rec.packs
        .par_iter()
        .filter(|p| !keep.contains(&p.id))
        .try_for_each(|p| remove(repo, pack_kind(p.blob_type), &p.id.to_hex()))?;
    crate::failpoint::hit("prune-before-index-removal");
    ensure(lock)?;
    rec.indexes
        .par_iter()
        .map(|i| i.to_hex())
        .filter(|i| !retention.index_retained(i))
        .try_for_each(|i| remove(repo, ObjectKind::Index, &i))?;
    Ok(())
}

/// Removes an object; one already gone counts as removed.
fn remove(repo: &Repository, kind: ObjectKind, name: &str) -> Result<(), PruneError> {
    match repo.backend().remove(kind, name) {
        Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
