//! Integrity checks: structure (index, packs, snapshots, trees) and, with
//! `read_data`, every byte of every pack.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::ObjectKind;
use crate::blob::BlobType;
use crate::id::{ObjectId, PackId, TreeId};
use crate::index::{Index, IndexFile};
use crate::pack;
use crate::repository::{pack_kind, Repository, RepositoryError};
use crate::restore::retrieve::{self, RetrievalOptions, RetrievalReport};
use crate::restore::RetrievalHook;
use crate::tree::NodeKind;

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
pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let mut r = CheckReport::default();
    if let Err(e) = repo.list_keys() {
        r.errors.push(e.to_string());
    }
    // Index objects one by one, so one damaged object is named and the rest still checked.
    let mut files: Vec<IndexFile> = Vec::new();
    let loaded = repo.load_index_files()?;
    for (_, l) in loaded {
        match l {
            Ok(f) => files.push(f),
            Err(e) => r.errors.push(e.to_string()),
        }
    }
    let mut in_index: HashMap<PackId, (BlobType, u64, Vec<crate::index::IndexBlob>)> = HashMap::new();
    for f in &files {
        for p in &f.packs {
            in_index.insert(p.id, (p.blob_type, p.size, p.blobs.clone()));
        }
    }
    let index = match Index::from_files(files) {
        Ok(i) => i,
        Err(e) => {
            r.errors.push(e.to_string());
            return Ok(r);
        }
    };
    r.packs = in_index.len();
    r.blobs = index.len();

    let mut stored: HashMap<PackId, (ObjectKind, u64)> = HashMap::new();
    for kind in [ObjectKind::DataPack, ObjectKind::TreePack] {
        for o in repo.backend().list(kind)? {
            match PackId::from_hex(&o.name) {
                Ok(id) => {
                    stored.insert(id, (kind, o.size));
                }
                Err(_) => r.warnings.push(format!("{kind} {}: not a pack name", o.name)),
            }
        }
    }
    for (id, (t, size, _)) in &in_index {
        match stored.get(id) {
            None => r.errors.push(format!(
                "{} {id} is in the index but missing from storage",
                pack_kind(*t)
            )),
            Some((kind, s)) if *kind != pack_kind(*t) || s != size => r
                .errors
                .push(format!("{kind} {id}: stored size {s} differs from the index ({size})")),
            _ => {}
        }
    }
    for (id, (kind, _)) in &stored {
        if !in_index.contains_key(id) {
            r.warnings.push(format!(
                "{kind} {id} is not in any index (left by an interrupted backup; prune will remove it)"
            ));
        }
    }

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
    let mut seen: HashSet<TreeId> = HashSet::new();
    let mut stack = roots;
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        match repo.load_tree(&index, &t) {
            Ok(tree) => {
                for n in &tree.nodes {
                    match n.kind {
                        NodeKind::Dir => match n.subtree {
                            Some(s) => stack.push(s),
                            None => {
                                r.errors
                                    .push(format!("tree {}: folder {} has no subtree", t.short(), n.name_lossy()))
                            }
                        },
                        NodeKind::File => {
                            for c in &n.content {
                                if index.get(&c.id).is_none_or(|l| l.blob_type != BlobType::Data) {
                                    r.errors.push(format!(
                                        "file {} (tree {}): data blob {} is missing",
                                        n.name_lossy(),
                                        t.short(),
                                        c.id.short()
                                    ));
                                }
                            }
                            let sum: u64 = n.content.iter().map(|c| u64::from(c.length)).sum();
                            if sum != n.size {
                                r.errors.push(format!(
                                    "file {} (tree {}): content adds up to {sum} bytes, size says {}",
                                    n.name_lossy(),
                                    t.short(),
                                    n.size
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => r.errors.push(format!("tree {}: {e}", t.short())),
        }
    }
    r.trees = seen.len();

    if opts.read_data {
        let errors = Mutex::new(Vec::new());
        let read = AtomicU64::new(0);
        let list: Vec<(PackId, ObjectKind, u64)> = stored.iter().map(|(id, (k, size))| (*id, *k, *size)).collect();
        let read_all = |packs: &[(PackId, ObjectKind, u64)]| -> Vec<(PackId, ObjectKind, u64)> {
            let archived = Mutex::new(Vec::new());
            packs.par_iter().for_each(|&(id, kind, size)| {
                match read_pack(
                    repo,
                    id,
                    kind,
                    in_index.get(&id).map(|x| &x.2),
                    &read,
                    opts.progress.as_deref(),
                ) {
                    Ok(()) => {}
                    Err(PackReadError::Archived) => archived
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((id, kind, size)),
                    Err(PackReadError::Damaged(e)) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                }
            });
            archived.into_inner().unwrap_or_else(|p| p.into_inner())
        };
        let mut waiting = read_all(&list);
        if let (false, Some(ro)) = (waiting.is_empty(), &opts.retrieval) {
            // Archived packs: retrieve them as a restore would (each once),
            // then read them; or stop and say a retrieval is pending.
            let packs: Vec<(PackId, u64)> = waiting.iter().map(|(id, _, size)| (*id, *size)).collect();
            let st = retrieve::states(repo, &packs).map_err(CheckError::Backend)?;
            let report = retrieve::request(repo, &packs, &st, ro).map_err(CheckError::Backend)?;
            if let Some(h) = &opts.on_retrieval {
                (h.0)(&report);
            }
            r.retrieval = Some(report);
            // Packs whose retrieval finished since the read are read now.
            let (ready, still) = retrieve::split_readable(&waiting, st);
            waiting = still;
            waiting.extend(read_all(&ready));
            let mut delay = ro.poll_initial;
            while ro.wait && !waiting.is_empty() {
                std::thread::sleep(delay);
                delay = (delay * 2).min(ro.poll_max);
                let packs: Vec<(PackId, u64)> = waiting.iter().map(|(id, _, size)| (*id, *size)).collect();
                let st = retrieve::states(repo, &packs).map_err(CheckError::Backend)?;
                let (ready, still) = retrieve::split_readable(&waiting, st);
                waiting = still;
                // A pack reported readable but still refusing the read waits another round.
                waiting.extend(read_all(&ready));
            }
        }
        r.errors.extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
        r.archived_unread = waiting.len();
        if r.archived_unread > 0 {
            r.warnings.push(format!(
                "{} pack(s) are in archive storage and were not read yet; their content is unverified{}",
                r.archived_unread,
                if r.retrieval.is_some() {
                    ": their retrieval is requested; run the same check again once it is done"
                } else {
                    ""
                }
            ));
        }
        r.bytes_read = read.load(Ordering::Relaxed);
    }
    r.errors.sort();
    Ok(r)
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
    id: PackId,
    kind: ObjectKind,
    indexed: Option<&Vec<crate::index::IndexBlob>>,
    read: &AtomicU64,
    progress: Option<&AtomicU64>,
) -> Result<(), PackReadError> {
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
    if ObjectId::of_bytes(&bytes).0 != id.0 {
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
