//! The write side of a backup: sealing blobs in parallel, packing them,
//! storing packs and index objects. Every queue is bounded, so a slow backend
//! slows the readers instead of filling memory.
//!
//! ```text
//! callers ──SealJob──▶ sealers (N threads) ──Sealed──▶ packer ──FinishedPack──▶ writer
//!                                                                  (stores pack, then index)
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::BackupError;
use crate::backend::BackendError;
use crate::blob::{self, Aad, BlobType};
use crate::id::BlobId;
use crate::index::{Index, IndexFile};
use crate::pack::{FinishedPack, Packer};
use crate::repository::{pack_kind, Repository};

/// Packs per index object: an index object is written at least this often,
/// so a crash loses at most this many packs' worth of index (the packs
/// themselves stay and are found by `check`/repair).
const PACKS_PER_INDEX: usize = 64;

struct SealJob {
    blob_type: BlobType,
    id: BlobId,
    data: Vec<u8>,
}

struct Sealed {
    blob_type: BlobType,
    id: BlobId,
    sealed: Vec<u8>,
    raw_len: usize,
}

/// Counters shared with the caller, for progress and the summary.
#[derive(Debug, Default)]
pub struct SaverStats {
    /// Data blobs sealed.
    pub data_blobs: AtomicU64,
    /// Tree blobs sealed.
    pub tree_blobs: AtomicU64,
    /// Plaintext bytes sealed.
    pub raw_bytes: AtomicU64,
    /// Bytes stored (packs + index objects).
    pub stored_bytes: AtomicU64,
    /// Plaintext bytes of data blobs offered that the repository held
    /// already (in its index when the backup started).
    pub data_bytes_known: AtomicU64,
    /// Plaintext bytes of data blobs offered that this backup had queued
    /// already (content repeated within the backup).
    pub data_bytes_repeated: AtomicU64,
    /// Plaintext bytes of data blobs offered that were new and queued.
    pub data_bytes_new: AtomicU64,
}

/// Handle to the running write pipeline.
pub(crate) struct Saver {
    known: Arc<Index>,
    queued: Mutex<HashSet<BlobId>>,
    tx: Option<Sender<SealJob>>,
    threads: Vec<JoinHandle<Result<(), BackupError>>>,
    failed: Arc<AtomicBool>,
    cancel: Option<Arc<AtomicBool>>,
    pub(crate) stats: Arc<SaverStats>,
}

/// True once `cancel` is set: the stages stop at the next blob or pack.
fn cancelled(cancel: &Option<Arc<AtomicBool>>) -> bool {
    cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
}

impl Saver {
    /// Starts the pipeline. `known` is the repository's index at the start.
    pub(crate) fn start(repo: &Repository, known: Arc<Index>, sealers: usize) -> Self {
        Self::start_cancellable(repo, known, sealers, None)
    }

    /// [`Saver::start`], stopping early once `cancel` is set: no open pack
    /// is finished, no pack not yet stored is stored, and the packs stored
    /// already are indexed (so the next backup reuses them). [`Saver::finish`]
    /// then fails with [`BackupError::Interrupted`].
    pub(crate) fn start_cancellable(
        repo: &Repository,
        known: Arc<Index>,
        sealers: usize,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Self {
        Self::start_with(repo, known, sealers, cancel, PACKS_PER_INDEX)
    }

    /// [`Saver::start_cancellable`], writing an index object at least every
    /// `packs_per_index` packs (copy indexes more often than a backup, so a
    /// copy killed part-way keeps nearly every pack it stored).
    pub(crate) fn start_with(
        repo: &Repository,
        known: Arc<Index>,
        sealers: usize,
        cancel: Option<Arc<AtomicBool>>,
        packs_per_index: usize,
    ) -> Self {
        let packs_per_index = packs_per_index.max(1);
        let sealers = sealers.max(1);
        let (job_tx, job_rx) = bounded::<SealJob>(sealers);
        let (sealed_tx, sealed_rx) = bounded::<Sealed>(sealers);
        let (pack_tx, pack_rx) = bounded::<FinishedPack>(0);
        let stats = Arc::new(SaverStats::default());
        let failed = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..sealers {
            let rx = job_rx.clone();
            let tx = sealed_tx.clone();
            let repo = repo.clone();
            let stats = stats.clone();
            let cancel = cancel.clone();
            threads.push(spawn(&format!("cairn-seal-{i}"), failed.clone(), move || {
                seal_loop(&repo, rx, tx, &stats, &cancel)
            }));
        }
        drop(sealed_tx);
        // Stored packs' buffers go back to the packer: two pack buffers
        // circulate instead of a new 16 MiB allocation per pack, which the
        // allocator kept around as fragments (peak RSS).
        let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(2);
        {
            let repo = repo.clone();
            let cancel = cancel.clone();
            threads.push(spawn("cairn-pack", failed.clone(), move || {
                pack_loop(&repo, sealed_rx, pack_tx, recycle_rx, &cancel)
            }));
        }
        {
            let repo = repo.clone();
            let stats = stats.clone();
            let cancel = cancel.clone();
            threads.push(spawn("cairn-write", failed.clone(), move || {
                write_loop(&repo, pack_rx, &stats, recycle_tx, &cancel, packs_per_index)
            }));
        }
        Self {
            known,
            queued: Mutex::new(HashSet::new()),
            tx: Some(job_tx),
            threads,
            failed,
            cancel,
            stats,
        }
    }

    /// True once any stage failed or the saver was cancelled; callers should
    /// stop feeding and call [`Saver::finish`] to get the error.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || cancelled(&self.cancel)
    }

    /// Queues a blob unless the repository or this session already has it.
    /// Returns true when it was new. The id must be the keyed hash of `data`.
    pub(crate) fn save(&self, blob_type: BlobType, id: BlobId, data: Vec<u8>) -> Result<bool, BackupError> {
        // Counted where the decision is made, so the deduplication share
        // the summary reports is of content only (trees are not in it).
        let count = |c: &AtomicU64| {
            if blob_type == BlobType::Data {
                c.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        };
        if self.known.contains(&id) {
            count(&self.stats.data_bytes_known);
            return Ok(false);
        }
        {
            let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
            if !q.insert(id) {
                drop(q);
                count(&self.stats.data_bytes_repeated);
                return Ok(false);
            }
        }
        count(&self.stats.data_bytes_new);
        let tx = self.tx.as_ref().ok_or(BackupError::PipelineStopped)?;
        tx.send(SealJob { blob_type, id, data })
            .map_err(|_| BackupError::PipelineStopped)?;
        Ok(true)
    }

    /// Flushes every open pack, stores it and the final index object, and
    /// returns once all of it is durably stored.
    pub(crate) fn finish(mut self) -> Result<(), BackupError> {
        drop(self.tx.take());
        let mut first: Option<BackupError> = None;
        for t in self.threads.drain(..) {
            let r = t.join().unwrap_or(Err(BackupError::ThreadPanicked));
            if let Err(e) = r {
                // The real cause, not the "stopped" echoes of other stages.
                if first.as_ref().is_none_or(|f| matches!(f, BackupError::PipelineStopped)) {
                    first = Some(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn spawn(
    name: &str,
    failed: Arc<AtomicBool>,
    f: impl FnOnce() -> Result<(), BackupError> + Send + 'static,
) -> JoinHandle<Result<(), BackupError>> {
    let run = move || {
        let r = f();
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        r
    };
    match std::thread::Builder::new().name(name.to_string()).spawn(run) {
        Ok(h) => h,
        // Spawning only fails when the OS is out of threads; report it as a
        // pipeline error through a thread that cannot fail to exist.
        Err(e) => {
            let msg = e.to_string();
            std::thread::spawn(move || Err(BackupError::Thread(msg)))
        }
    }
}

fn seal_loop(
    repo: &Repository,
    rx: Receiver<SealJob>,
    tx: Sender<Sealed>,
    stats: &SaverStats,
    cancel: &Option<Arc<AtomicBool>>,
) -> Result<(), BackupError> {
    let comp = repo.compression();
    for job in rx {
        if cancelled(cancel) {
            return Err(BackupError::Interrupted);
        }
        let sealed = blob::seal(repo.keys(), Aad::Blob(job.blob_type, &job.id), &job.data, comp)?;
        match job.blob_type {
            BlobType::Data => stats.data_blobs.fetch_add(1, Ordering::Relaxed),
            BlobType::Tree => stats.tree_blobs.fetch_add(1, Ordering::Relaxed),
        };
        stats.raw_bytes.fetch_add(job.data.len() as u64, Ordering::Relaxed);
        let raw_len = job.data.len();
        drop(job.data);
        tx.send(Sealed {
            blob_type: job.blob_type,
            id: job.id,
            sealed,
            raw_len,
        })
        .map_err(|_| BackupError::PipelineStopped)?;
    }
    Ok(())
}

fn pack_loop(
    repo: &Repository,
    rx: Receiver<Sealed>,
    tx: Sender<FinishedPack>,
    recycled: Receiver<Vec<u8>>,
    cancel: &Option<Arc<AtomicBool>>,
) -> Result<(), BackupError> {
    let target = repo.config().pack_size as usize;
    // Tree packs stay small: they are read whole by every ls/diff/restore.
    let tree_target = target.min(4 * 1024 * 1024);
    let mut data = Packer::new(BlobType::Data, target + target / 8);
    let mut tree = Packer::new(BlobType::Tree, tree_target);
    for s in rx {
        if cancelled(cancel) {
            return Err(BackupError::Interrupted);
        }
        let (packer, limit) = match s.blob_type {
            BlobType::Data => (&mut data, target),
            BlobType::Tree => (&mut tree, tree_target),
        };
        packer.add(s.id, &s.sealed, s.raw_len)?;
        if packer.size() >= limit {
            let next = match recycled.try_recv() {
                Ok(buf) if s.blob_type == BlobType::Data => Packer::with_buffer(s.blob_type, buf),
                _ => Packer::new(s.blob_type, limit + limit / 8),
            };
            let full = std::mem::replace(packer, next);
            tx.send(full.finish(repo.keys())?)
                .map_err(|_| BackupError::PipelineStopped)?;
        }
    }
    // Cancelled: the open packs are dropped, not finished and stored.
    if cancelled(cancel) {
        return Err(BackupError::Interrupted);
    }
    for p in [data, tree] {
        if !p.is_empty() {
            tx.send(p.finish(repo.keys())?)
                .map_err(|_| BackupError::PipelineStopped)?;
        }
    }
    Ok(())
}

fn write_loop(
    repo: &Repository,
    rx: Receiver<FinishedPack>,
    stats: &SaverStats,
    recycle: Sender<Vec<u8>>,
    cancel: &Option<Arc<AtomicBool>>,
    packs_per_index: usize,
) -> Result<(), BackupError> {
    let mut pending = IndexFile::default();
    for p in rx {
        // Cancelled: packs not yet stored are dropped; those stored are
        // indexed below, so the next backup reuses them.
        if cancelled(cancel) {
            break;
        }
        match repo.backend().write(pack_kind(p.blob_type), &p.id.to_hex(), &p.bytes) {
            // Same name, same bytes: another writer stored it already.
            Ok(()) | Err(BackendError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        stats.stored_bytes.fetch_add(p.bytes.len() as u64, Ordering::Relaxed);
        pending.packs.push(p.index_entry());
        if p.blob_type == BlobType::Data {
            let mut buf = p.bytes;
            buf.clear();
            // A full return queue just means the buffer is freed instead.
            let _ = recycle.try_send(buf);
        }
        if pending.packs.len() >= packs_per_index {
            let (_, n) = repo.save_index(&std::mem::take(&mut pending))?;
            stats.stored_bytes.fetch_add(n, Ordering::Relaxed);
        }
    }
    if !pending.packs.is_empty() {
        let (_, n) = repo.save_index(&pending)?;
        stats.stored_bytes.fetch_add(n, Ordering::Relaxed);
    }
    if cancelled(cancel) {
        return Err(BackupError::Interrupted);
    }
    Ok(())
}
