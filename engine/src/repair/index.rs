//! `repair index`: a new index built from the pack headers.
//!
//! Order, so that a crash at any point loses nothing: list the index
//! objects, then the packs (a pack an index object names was stored before
//! it, so the listing has it), read every pack's header, store the new index
//! objects, and only then remove the old ones. A backup running meanwhile
//! (it takes no lock, B1) only adds index objects after the first listing,
//! and those are kept.
//!
//! Packs listed in a deletion record are left to the index objects that
//! record supersedes (which stay until the prune removes them together with
//! the packs): a new index object naming them would outlive the packs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::RepairError;
use crate::backend::{BackendError, ObjectKind};
use crate::blob::BlobType;
use crate::id::PackId;
use crate::index::{IndexBlob, IndexFile, IndexPack};
use crate::lock::{self, LockOptions};
use crate::repository::{Repository, RepositoryError};

/// Packs per new index object.
const PACKS_PER_INDEX: usize = 256;

/// Settings of `repair index`.
#[derive(Debug, Clone, Default)]
pub struct RepairIndexOptions {
    /// How the maintenance lock is taken.
    pub lock: LockOptions,
    /// Live counters for a progress display.
    pub progress: Option<Arc<RepairProgress>>,
}

/// Live counters of `repair index`.
#[derive(Debug, Default)]
pub struct RepairProgress {
    /// Packs whose header is to be read.
    pub packs_total: AtomicU64,
    /// Packs whose header was read so far.
    pub packs_done: AtomicU64,
}

/// A pack whose header could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedPack {
    /// Its name.
    pub pack: PackId,
    /// `data` or `tree`.
    #[serde(rename = "type")]
    pub blob_type: &'static str,
    /// What is wrong.
    pub error: String,
    /// Whether it was indexed anyway, as an old index object described it
    /// (its blobs are authenticated one by one when read).
    pub kept_from_old_index: bool,
}

/// What `repair index` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexRepairReport {
    /// Packs the new index names.
    pub packs_indexed: usize,
    /// Blobs the new index names.
    pub blobs_indexed: usize,
    /// Packs no readable old index object named, found and indexed.
    pub packs_found: usize,
    /// Packs old index objects named that the storage does not have.
    pub packs_missing: Vec<PackId>,
    /// Packs whose header could not be read.
    pub packs_damaged: Vec<DamagedPack>,
    /// Packs in archive storage that no old index object described: they
    /// could not be read, so they are not indexed (retrieve them, then run
    /// `repair index` again).
    pub packs_archived_unindexed: Vec<PackId>,
    /// Packs listed in deletion records, left to the index objects those
    /// records supersede.
    pub packs_recorded: usize,
    /// Old index objects that could not be read.
    pub index_objects_damaged: Vec<String>,
    /// New index objects stored.
    pub index_objects_written: Vec<String>,
    /// Old index objects removed (after the new ones were stored).
    pub index_objects_removed: usize,
    /// Old index objects kept because a deletion record lists them.
    pub index_objects_kept: usize,
}

/// Rebuilds the index from the header of every data and tree pack in
/// storage, under the maintenance lock; packs no index object names are
/// found and indexed. The new index objects are stored before any old one
/// is removed.
pub fn repair_index(repo: &Repository, opts: &RepairIndexOptions) -> crate::error::Result<IndexRepairReport> {
    let lock = lock::acquire(repo, "repair index", &opts.lock).map_err(RepairError::from)?;
    let r = run(repo, opts, &lock);
    let released = lock.release();
    let report = r?;
    released.map_err(RepairError::from)?;
    Ok(report)
}

/// One pack as the storage lists it.
struct Listed {
    kind: ObjectKind,
    blob_type: BlobType,
    id: PackId,
    size: u64,
}

fn run(
    repo: &Repository,
    opts: &RepairIndexOptions,
    lock: &lock::MaintenanceLock,
) -> Result<IndexRepairReport, RepairError> {
    let mut report = IndexRepairReport::default();
    let deletions = repo.load_deletions()?;
    let doomed = deletions.doomed_packs();
    let superseded: HashSet<String> = deletions
        .records
        .iter()
        .flat_map(|(_, r)| r.indexes.iter().map(|i| i.to_hex()))
        .collect();
    // Index objects first: see the module's note on order.
    let old = repo.load_index_files()?;
    let mut old_packs: HashMap<PackId, IndexPack> = HashMap::new();
    for o in &old {
        match &o.file {
            Ok(f) => old_packs.extend(f.packs.iter().map(|p| (p.id, p.clone()))),
            Err(RepositoryError::Backend(BackendError::NotFound { .. })) => {}
            Err(e) => {
                tracing::warn!("{e}");
                report.index_objects_damaged.push(o.name.clone());
            }
        }
    }
    let mut listed = Vec::new();
    for (kind, blob_type) in [
        (ObjectKind::DataPack, BlobType::Data),
        (ObjectKind::TreePack, BlobType::Tree),
    ] {
        for o in repo.backend().list(kind)? {
            match PackId::from_hex(&o.name) {
                Ok(id) if doomed.contains(&id) => report.packs_recorded += 1,
                Ok(id) => listed.push(Listed {
                    kind,
                    blob_type,
                    id,
                    size: o.size,
                }),
                Err(_) => tracing::warn!("{kind} {}: not a pack name; left alone", o.name),
            }
        }
    }
    let present: HashSet<PackId> = listed.iter().map(|p| p.id).collect();
    report.packs_missing = old_packs
        .keys()
        .filter(|id| !present.contains(id) && !doomed.contains(id))
        .copied()
        .collect();
    report.packs_missing.sort();
    if let Some(p) = &opts.progress {
        p.packs_total.store(listed.len() as u64, Ordering::Relaxed);
    }
    let read: Vec<Result<IndexPack, Unread>> = listed
        .par_iter()
        .map(|p| {
            let r = read_pack(repo, p, old_packs.get(&p.id));
            if let Some(pr) = &opts.progress {
                pr.packs_done.fetch_add(1, Ordering::Relaxed);
            }
            r
        })
        .collect();
    let mut packs = Vec::with_capacity(read.len());
    for (p, r) in listed.iter().zip(read) {
        match r {
            Ok(ip) => {
                if !old_packs.contains_key(&p.id) {
                    report.packs_found += 1;
                }
                packs.push(ip);
            }
            Err(Unread::Archived) => report.packs_archived_unindexed.push(p.id),
            Err(Unread::Damaged { error, kept }) => {
                report.packs_damaged.push(DamagedPack {
                    pack: p.id,
                    blob_type: type_name(p.blob_type),
                    error,
                    kept_from_old_index: kept.is_some(),
                });
                packs.extend(kept);
            }
        }
    }
    packs.sort_by_key(|a| a.id);
    report.packs_indexed = packs.len();
    report.blobs_indexed = packs.iter().map(|p| p.blobs.len()).sum();
    lock.ensure_held()?;
    let mut written = HashSet::new();
    for chunk in packs.chunks(PACKS_PER_INDEX) {
        let (name, _) = repo.save_index(&IndexFile { packs: chunk.to_vec() })?;
        written.insert(name.to_hex());
        report.index_objects_written.push(name.to_hex());
    }
    // Every new object is durably stored: the old ones may go.
    for o in &old {
        if written.contains(&o.name) {
            continue;
        }
        if superseded.contains(&o.name) {
            report.index_objects_kept += 1;
            continue;
        }
        lock.ensure_held()?;
        match repo.backend().remove(ObjectKind::Index, &o.name) {
            Ok(()) | Err(BackendError::NotFound { .. }) => report.index_objects_removed += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// Why a pack is not indexed from its own header.
enum Unread {
    /// In archive storage: cannot be read now.
    Archived,
    /// The header is damaged; `kept` is the old index's description when
    /// it has one of the same size.
    Damaged { error: String, kept: Option<IndexPack> },
}

fn read_pack(repo: &Repository, p: &Listed, old: Option<&IndexPack>) -> Result<IndexPack, Unread> {
    let from_old = || old.filter(|o| o.size == p.size && o.blob_type == p.blob_type).cloned();
    let entries = match repo.read_pack_header(p.kind, &p.id.to_hex()) {
        Ok(e) => e,
        Err(RepositoryError::Backend(BackendError::Archived { .. })) => {
            return from_old().ok_or(Unread::Archived);
        }
        Err(e) => {
            return Err(Unread::Damaged {
                error: e.to_string(),
                kept: from_old(),
            })
        }
    };
    if let Some(e) = entries.iter().find(|e| e.blob_type != p.blob_type) {
        return Err(Unread::Damaged {
            error: format!("holds {} blob {} in a {}", type_name(e.blob_type), e.id.short(), p.kind),
            kept: from_old(),
        });
    }
    Ok(IndexPack {
        id: p.id,
        blob_type: p.blob_type,
        size: p.size,
        blobs: entries
            .iter()
            .map(|e| IndexBlob {
                id: e.id,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            })
            .collect(),
    })
}

fn type_name(t: BlobType) -> &'static str {
    match t {
        BlobType::Data => "data",
        BlobType::Tree => "tree",
    }
}
