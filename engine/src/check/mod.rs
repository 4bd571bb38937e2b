//! Integrity checks: structure (index, packs, snapshots, trees) and, with
//! `read_data`, every byte of every pack.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::ObjectKind;
use crate::blob::BlobType;
use crate::id::{ObjectId, PackId, TreeId};
use crate::index::{Avoid, Index, IndexBlob, IndexFile, IndexPack};
use crate::pack;
use crate::repository::{pack_kind, Repository, RepositoryError};
use crate::retrieve::{self, DriveOptions, PackRef, RetrievalHook, RetrievalOptions, RetrievalReport};
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// Errors that stop a check before it can judge the repository.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Repository failure (listing, config).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage failure while listing.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
}

/// Check settings.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify every pack's content.
    pub read_data: bool,
    /// Progress: bytes of packs read so far.
    pub progress: Option<Arc<AtomicU64>>,
    /// With `read_data`, retrieve archived packs (as restore does) instead
    /// of only reporting them unread.
    pub retrieval: Option<RetrievalOptions>,
    /// Told what must be retrieved.
    pub on_retrieval: Option<Arc<RetrievalHook>>,
}

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Problems that mean data is missing or damaged.
    pub errors: Vec<String>,
    /// Things worth knowing that lose nothing (e.g. unreferenced packs).
    pub warnings: Vec<String>,
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

/// Checks the repository; problems go into the report, not the error.
///
/// Phases, each of which goes on past what it finds: keys, index objects,
/// packs against the index, snapshots and every tree they reach, and with
/// `read_data` every byte of every pack.
pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let mut r = CheckReport::default();
    if let Err(e) = repo.list_keys() {
        r.errors.push(e.to_string());
    }
    let deletions = repo.load_deletions()?;
    r.errors.extend(deletions.damaged.iter().cloned());
    let doomed = deletions.doomed_packs();
    let Some(IndexedPacks { index, in_index }) = check_index(repo, &doomed, &mut r)? else {
        return Ok(r);
    };
    let stored = check_packs(repo, &in_index, &doomed, &mut r)?;
    check_snapshots(repo, &index, &mut r)?;
    if opts.read_data {
        read_data(repo, &stored, &in_index, opts, &mut r)?;
    }
    r.errors.sort();
    Ok(r)
}

/// Index objects one by one, so one damaged object is named and the rest
/// still checked. `None` when no usable index can be built.
fn check_index(
    repo: &Repository,
    doomed: &HashSet<PackId>,
    r: &mut CheckReport,
) -> Result<Option<IndexedPacks>, CheckError> {
    let mut files: Vec<IndexFile> = Vec::new();
    for o in repo.load_index_files()? {
        match o.file {
            Ok(f) => files.push(f),
            // Removed by a prune after the listing (its replacement exists).
            Err(RepositoryError::Backend(crate::backend::BackendError::NotFound { .. })) => {}
            Err(e) => r.errors.push(e.to_string()),
        }
    }
    let in_index: HashMap<PackId, IndexPack> = files
        .iter()
        .flat_map(|f| f.packs.iter())
        .map(|p| (p.id, p.clone()))
        .collect();
    // Trees are read from copies outside recorded packs where there are any,
    // as every reader does (R1).
    let index = match Index::from_files_avoiding(&files, doomed, Avoid::PreferOthers) {
        Ok(i) => i,
        Err(e) => {
            r.errors.push(e.to_string());
            return Ok(None);
        }
    };
    r.packs = in_index.len();
    r.blobs = index.len();
    Ok(Some(IndexedPacks { index, in_index }))
}

/// The index, and each pack as the index describes it.
struct IndexedPacks {
    index: Index,
    in_index: HashMap<PackId, IndexPack>,
}

/// A pack as listed by the storage.
#[derive(Debug, Clone, Copy)]
struct StoredPack {
    kind: ObjectKind,
    size: u64,
}

/// Every stored pack against the index: missing, wrong size, or unindexed.
fn check_packs(
    repo: &Repository,
    in_index: &HashMap<PackId, IndexPack>,
    doomed: &HashSet<PackId>,
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
    for (id, p) in in_index {
        let want = pack_kind(p.blob_type);
        match stored.get(id) {
            // A prune removed it, as a deletion record says (R2).
            None if doomed.contains(id) => {}
            None => r
                .errors
                .push(format!("{want} {id} is in the index but missing from storage")),
            Some(s) if s.kind != want || s.size != p.size => r.errors.push(format!(
                "{} {id}: stored size {} differs from the index ({})",
                s.kind, s.size, p.size
            )),
            _ => {}
        }
    }
    for (id, s) in &stored {
        if !in_index.contains_key(id) && !doomed.contains(id) {
            r.warnings.push(format!(
                "{} {id} is not in any index (left by an interrupted backup; prune will remove it)",
                s.kind
            ));
        }
    }
    Ok(stored)
}

/// Every snapshot, and every distinct tree they reach (each once).
fn check_snapshots(repo: &Repository, index: &Index, r: &mut CheckReport) -> Result<(), CheckError> {
    let snaps = repo.backend().list(ObjectKind::Snapshot)?;
    let mut roots: Vec<TreeId> = Vec::new();
    for o in &snaps {
        match crate::id::SnapshotId::from_hex(&o.name)
            .map_err(|e| e.to_string())
            .and_then(|id| repo.load_snapshot(&id).map_err(|e| e.to_string()))
        {
            Ok(s) => roots.push(s.tree),
            Err(e) => r.errors.push(format!("snapshot {}: {e}", o.name)),
        }
    }
    r.snapshots = snaps.len();
    let mut trees = TreeCheck {
        index,
        seen: HashSet::new(),
        errors: Vec::new(),
    };
    for root in roots {
        if trees.seen.insert(root) {
            tree::walk(repo, index, &root, Path::new("/"), &mut trees)?;
        }
    }
    r.trees = trees.seen.len();
    r.errors.extend(trees.errors);
    Ok(())
}

/// The tree phase of a check: each tree once, damage recorded, never fatal.
struct TreeCheck<'a> {
    index: &'a Index,
    seen: HashSet<TreeId>,
    errors: Vec<String>,
}

impl Visitor for TreeCheck<'_> {
    type Error = CheckError;

    fn enter(&mut self, path: &Path, parent: &TreeId, n: &Node) -> Result<Descend, CheckError> {
        let at = || format!("{} (tree {})", path.display(), parent.short());
        match n.kind {
            NodeKind::Dir => match n.subtree {
                Some(s) if self.seen.insert(s) => return Ok(Descend::Yes),
                Some(_) => {}
                None => self.errors.push(format!("folder {}: has no subtree", at())),
            },
            NodeKind::File => {
                for c in &n.content {
                    if self.index.get(&c.id).is_none_or(|l| l.blob_type != BlobType::Data) {
                        self.errors
                            .push(format!("file {}: data blob {} is missing", at(), c.id.short()));
                    }
                }
                let sum: u64 = n.content.iter().map(|c| u64::from(c.length)).sum();
                if sum != n.size {
                    self.errors.push(format!(
                        "file {}: content adds up to {sum} bytes, size says {}",
                        at(),
                        n.size
                    ));
                }
            }
            _ => {}
        }
        Ok(Descend::No)
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, e: RepositoryError) -> Result<(), CheckError> {
        self.errors
            .push(format!("tree {} at {}: {e}", id.short(), path.display()));
        Ok(())
    }
}

/// Reads every stored pack, retrieving archived ones when asked to.
fn read_data(
    repo: &Repository,
    stored: &HashMap<PackId, StoredPack>,
    in_index: &HashMap<PackId, IndexPack>,
    opts: &CheckOptions,
    r: &mut CheckReport,
) -> Result<(), CheckError> {
    let errors = Mutex::new(Vec::new());
    let bytes_read = AtomicU64::new(0);
    let packs: Vec<PackRef> = stored
        .iter()
        .map(|(id, s)| PackRef {
            kind: s.kind,
            id: *id,
            size: s.size,
        })
        .collect();
    let read = |idx: &[usize]| -> Result<Vec<usize>, CheckError> {
        let archived = Mutex::new(Vec::new());
        idx.par_iter().for_each(|&i| {
            let p = &packs[i];
            let indexed = in_index.get(&p.id).map(|x| x.blobs.as_slice());
            match read_pack(repo, p, indexed, &bytes_read, opts.progress.as_deref()) {
                Ok(()) => {}
                Err(PackReadError::Archived) => archived.lock().unwrap_or_else(|p| p.into_inner()).push(i),
                Err(PackReadError::Damaged(e)) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(e),
            }
        });
        Ok(archived.into_inner().unwrap_or_else(|p| p.into_inner()))
    };
    let unread = match &opts.retrieval {
        // Archived packs are retrieved as a restore would (each once), then
        // read; or the check stops and says a retrieval is pending.
        Some(ro) => {
            let drive = DriveOptions {
                retrieval: ro,
                ask_first: false,
                hook: opts.on_retrieval.as_deref(),
            };
            let done = retrieve::drive(repo, &packs, &drive, read)?;
            r.retrieval = done.report;
            done.pending.len()
        }
        None => read(&(0..packs.len()).collect::<Vec<_>>())?.len(),
    };
    r.errors.extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    r.archived_unread = unread;
    if unread > 0 {
        r.warnings.push(format!(
            "{unread} pack(s) are in archive storage and were not read yet; their content is unverified{}",
            if r.retrieval.is_some() {
                ": their retrieval is requested; run the same check again once it is done"
            } else {
                ""
            }
        ));
    }
    r.bytes_read = bytes_read.load(Ordering::Relaxed);
    Ok(())
}

enum PackReadError {
    /// In an archive storage class: unread, not damaged.
    Archived,
    Damaged(String),
}

impl From<String> for PackReadError {
    fn from(s: String) -> Self {
        PackReadError::Damaged(s)
    }
}

fn read_pack(
    repo: &Repository,
    pack: &PackRef,
    indexed: Option<&[IndexBlob]>,
    read: &AtomicU64,
    progress: Option<&AtomicU64>,
) -> Result<(), PackReadError> {
    let (id, kind) = (pack.id, pack.kind);
    let name = id.to_hex();
    let mut bytes = match repo.backend().read(kind, &name) {
        Ok(b) => b,
        Err(crate::backend::BackendError::Archived { .. }) => return Err(PackReadError::Archived),
        Err(e) => return Err(e.to_string().into()),
    };
    read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if let Some(p) = progress {
        p.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    if ObjectId::of_bytes(&bytes) != ObjectId::from(id) {
        return Err(format!("{kind} {name}: content does not match its name (damaged or truncated)").into());
    }
    let entries = pack::read_whole(repo.keys(), &name, &bytes).map_err(|e| format!("{kind} {name}: {e}"))?;
    if let Some(ix) = indexed {
        let mut a: Vec<_> = ix.iter().map(|b| (b.id, b.offset, b.length)).collect();
        let mut h: Vec<_> = entries.iter().map(|e| (e.id, e.offset, e.length)).collect();
        a.sort();
        h.sort();
        if a != h {
            return Err(format!("{kind} {name}: header and index disagree").into());
        }
    }
    for e in &entries {
        let sealed = &mut bytes[e.offset as usize..(e.offset + e.length) as usize];
        let plain = repo
            .open_blob(e.blob_type, &e.id, &id, sealed)
            .map_err(|e| e.to_string())?;
        if plain.len() != e.raw_length as usize || repo.keys().blob_id(&plain) != e.id {
            return Err(format!("{kind} {name}: blob {} does not match its id", e.id.short()).into());
        }
    }
    Ok(())
}
