//! The write side of a backup: sealing blobs in parallel, packing them,
//! storing packs and index objects. Every queue is bounded, so a slow backend
//! slows the readers instead of filling memory.
//!
//! ```text
//! callers ──SealJob──▶ sealers (N threads) ──┐
//!    └── small blobs sealed in place ────────┴─▶ open packs ──FinishedPack──▶ writers
//!                                               (a mutex)       (store packs, then index)
//! ```
//!
//! A blob is added to the open pack by the thread that sealed it, under a
//! lock, rather than handed to a packing thread: for 100,000 small files
//! that hand-off (a wake-up and a context switch per blob) cost more than
//! the copy it delivered. Small blobs are sealed by the caller for the same
//! reason; large ones still go to the sealers, so one large file is
//! compressed on every core while it is read.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::writer::{write_loop, writer_threads, Unindexed};
use super::BackupError;
use crate::blob::{self, Aad, BlobType};
use crate::id::BlobId;
use crate::index::Index;
use crate::pack::{FinishedPack, Packer};
use crate::repository::Repository;

/// Packs per index object: an index object is written at least this often,
/// so a crash loses at most this many packs' worth of index (the packs
/// themselves stay and are found by `check`/repair).
const PACKS_PER_INDEX: usize = 64;

struct SealJob {
    blob_type: BlobType,
    id: BlobId,
    data: Vec<u8>,
}

/// Blobs up to this size are sealed by the thread that offers them: a
/// small-file tree's blobs, and trees. Compressing one takes well under a
/// millisecond, less than handing it to a sealer costs.
const SEAL_IN_PLACE: usize = 128 * 1024;

/// The open packs and what filling them needs, shared by every thread that
/// seals.
struct Packing {
    repo: Repository,
    open: Mutex<OpenPacks>,
    cancel: Option<Arc<AtomicBool>>,
    stats: Arc<SaverStats>,
    target: usize,
    tree_target: usize,
    /// The first failure in a caller's thread (see [`Packing::failed_with`]).
    error: Mutex<Option<BackupError>>,
}

struct OpenPacks {
    data: Packer,
    tree: Packer,
    /// Stored packs' buffers come back from the writer: two pack buffers
    /// circulate instead of a new 16 MiB allocation per pack, which the
    /// allocator kept around as fragments (peak RSS).
    recycled: Receiver<Vec<u8>>,
    /// Full packs go to the writer; `None` once the saver closed.
    to_writer: Option<Sender<FinishedPack>>,
}

impl Packing {
    /// Seals `plain` and adds it to the open pack of its type; a pack that
    /// is full is finished and handed to the writer.
    fn seal_and_add(&self, blob_type: BlobType, id: BlobId, plain: &[u8]) -> Result<(), BackupError> {
        if cancelled(&self.cancel) {
            return Err(BackupError::Interrupted);
        }
        let sealed = blob::seal(
            self.repo.keys(),
            Aad::Blob(blob_type, &id),
            plain,
            self.repo.compression(),
        )?;
        match blob_type {
            BlobType::Data => self.stats.data_blobs.fetch_add(1, Ordering::Relaxed),
            BlobType::Tree => self.stats.tree_blobs.fetch_add(1, Ordering::Relaxed),
        };
        self.stats.raw_bytes.fetch_add(plain.len() as u64, Ordering::Relaxed);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let OpenPacks {
            data,
            tree,
            recycled,
            to_writer,
        } = &mut *open;
        let (packer, limit) = match blob_type {
            BlobType::Data => (data, self.target),
            BlobType::Tree => (tree, self.tree_target),
        };
        packer.add(id, &sealed, plain.len())?;
        if packer.size() < limit {
            return Ok(());
        }
        let recycled = match blob_type {
            BlobType::Data => recycled.try_recv().ok(),
            BlobType::Tree => None,
        };
        let next = match recycled {
            Some(buf) => Packer::with_buffer(blob_type, buf),
            None => Packer::new(blob_type, limit + limit / 8),
        };
        let full = std::mem::replace(packer, next);
        // Handed over with the lock held: while every writer is busy, nobody
        // fills another pack, so at most one full pack waits for them
        // whatever the number of threads sealing.
        self.send(to_writer, full)
    }

    /// Keeps the first failure of a blob sealed in a caller's thread for
    /// [`Saver::finish`], as a stage thread's result would be kept, and
    /// tells the caller the pipeline stopped.
    fn failed_with(&self, e: BackupError) -> BackupError {
        let mut first = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
        BackupError::PipelineStopped
    }

    fn send(&self, to_writer: &Option<Sender<FinishedPack>>, full: Packer) -> Result<(), BackupError> {
        let finished = full.finish(self.repo.keys())?;
        to_writer
            .as_ref()
            .ok_or(BackupError::PipelineStopped)?
            .send(finished)
            .map_err(|_| BackupError::PipelineStopped)
    }

    /// Finishes the packs still open (none when cancelled: they are dropped,
    /// not stored) and closes the writer's queue.
    fn close(&self) -> Result<(), BackupError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let to_writer = open.to_writer.take();
        if cancelled(&self.cancel) {
            return Ok(());
        }
        let data = std::mem::replace(&mut open.data, Packer::new(BlobType::Data, 0));
        let tree = std::mem::replace(&mut open.tree, Packer::new(BlobType::Tree, 0));
        [data, tree]
            .into_iter()
            .filter(|p| !p.is_empty())
            .try_for_each(|p| self.send(&to_writer, p))
        // `to_writer` is dropped here: the writers end after the last pack.
    }
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
    packing: Arc<Packing>,
    sealers: Vec<JoinHandle<Result<(), BackupError>>>,
    writers: Vec<JoinHandle<Result<(), BackupError>>>,
    unindexed: Arc<Unindexed>,
    failed: Arc<AtomicBool>,
    cancel: Option<Arc<AtomicBool>>,
    pub(crate) stats: Arc<SaverStats>,
}

/// True once `cancel` is set: the stages stop at the next blob or pack.
pub(super) fn cancelled(cancel: &Option<Arc<AtomicBool>>) -> bool {
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
        let (pack_tx, pack_rx) = bounded::<FinishedPack>(0);
        let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(2);
        let stats = Arc::new(SaverStats::default());
        let failed = Arc::new(AtomicBool::new(false));
        let target = repo.config().pack_size as usize;
        // Tree packs stay small: they are read whole by every ls/diff/restore.
        let tree_target = target.min(4 * 1024 * 1024);
        let packing = Arc::new(Packing {
            repo: repo.clone(),
            open: Mutex::new(OpenPacks {
                data: Packer::new(BlobType::Data, target + target / 8),
                tree: Packer::new(BlobType::Tree, tree_target),
                recycled: recycle_rx,
                to_writer: Some(pack_tx),
            }),
            cancel: cancel.clone(),
            stats: stats.clone(),
            target,
            tree_target,
            error: Mutex::new(None),
        });
        let sealer_threads = (0..sealers)
            .map(|i| {
                let rx = job_rx.clone();
                let packing = packing.clone();
                spawn(&format!("cairn-seal-{i}"), failed.clone(), move || {
                    seal_loop(&packing, rx)
                })
            })
            .collect();
        let unindexed = Arc::new(Unindexed::new(repo, stats.clone(), packs_per_index));
        let writers = (0..writer_threads(repo))
            .map(|i| {
                let (rx, recycle, cancel) = (pack_rx.clone(), recycle_tx.clone(), cancel.clone());
                let unindexed = unindexed.clone();
                spawn(&format!("cairn-write-{i}"), failed.clone(), move || {
                    write_loop(rx, &unindexed, recycle, &cancel)
                })
            })
            .collect();
        Self {
            known,
            queued: Mutex::new(HashSet::new()),
            tx: Some(job_tx),
            packing,
            sealers: sealer_threads,
            writers,
            unindexed,
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
        if data.len() <= SEAL_IN_PLACE {
            if let Err(e) = self.packing.seal_and_add(blob_type, id, &data) {
                self.failed.store(true, Ordering::Relaxed);
                return Err(self.packing.failed_with(e));
            }
            return Ok(true);
        }
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
        let mut note = |r: Result<(), BackupError>| {
            if let Err(e) = r {
                // The real cause, not the "stopped" echoes of other stages.
                if first.as_ref().is_none_or(|f| matches!(f, BackupError::PipelineStopped)) {
                    first = Some(e);
                }
            }
        };
        for t in self.sealers.drain(..) {
            note(t.join().unwrap_or(Err(BackupError::ThreadPanicked)));
        }
        // Every sealer is done and the callers have stopped offering blobs:
        // what is still open is complete, and is stored as a pack would have
        // been by the packing thread this replaced (so after a failure the
        // next backup still finds those blobs). The writers end once the
        // queue is closed.
        note(self.packing.close());
        let caller = self.packing.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        note(caller.map_or(Ok(()), Err));
        for w in self.writers.drain(..) {
            note(w.join().unwrap_or(Err(BackupError::ThreadPanicked)));
        }
        // Every writer has stopped: the packs they stored are indexed even
        // when something failed, so the next backup finds their blobs.
        note(self.unindexed.flush());
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

fn seal_loop(packing: &Packing, rx: Receiver<SealJob>) -> Result<(), BackupError> {
    for job in rx {
        packing.seal_and_add(job.blob_type, job.id, &job.data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{forward, Backend, BackendError, ObjectKind};
    use crate::backup::writer::MAX_WRITERS;
    use crate::repository::InitOptions;
    use crate::testing::{noise, CHEAP_KDF};

    /// A memory backend whose disk is full for packs.
    #[derive(Debug)]
    struct FullForPacks {
        inner: MemoryBackend,
    }

    impl Backend for FullForPacks {
        forward!(inner: transfers, location, create, list, read, read_into, read_range, remove, stat, archive_state, request_retrieval, remove_temporaries, extend_retention);

        fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
            self.write(kind, name, data)
        }

        fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            if kind == ObjectKind::DataPack {
                return Err(BackendError::NoSpace { path: name.into() });
            }
            self.inner.write(kind, name, data)
        }
    }

    /// Blobs sealed in the caller's thread and handed over under the lock:
    /// when their pack cannot be stored, the caller hears that the pipeline
    /// stopped (it does not hang) and `finish` names the real cause.
    #[test]
    fn a_pack_that_cannot_be_stored_fails_finish_with_its_cause() {
        let backend = Arc::new(FullForPacks {
            inner: MemoryBackend::new(),
        });
        let opts = InitOptions {
            kdf: CHEAP_KDF,
            pack_size: 1024 * 1024,
            ..Default::default()
        };
        let repo = Repository::init(backend, b"pw", opts).unwrap();
        let saver = Saver::start(&repo, Arc::new(Index::new()), 2);
        let mut stopped = false;
        // 64 KiB blobs (sealed in place) until a full 1 MiB pack meets the full disk.
        for i in 1..200u64 {
            let data = noise(64 * 1024, i);
            let id = repo.keys().blob_id(&data);
            match saver.save(BlobType::Data, id, data) {
                Ok(_) => {}
                Err(e) => {
                    assert!(matches!(e, BackupError::PipelineStopped), "{e}");
                    stopped = true;
                    break;
                }
            }
        }
        assert!(stopped, "the saver noticed the full disk while blobs were offered");
        let err = saver.finish().unwrap_err();
        assert!(
            err.to_string().contains("space") || format!("{err:?}").contains("NoSpace"),
            "{err:?}"
        );
    }

    /// A store like S3: each pack write waits, and up to eight may be in
    /// flight. Counts the writes in flight at once.
    #[derive(Debug, Default)]
    struct SlowStore {
        inner: MemoryBackend,
        in_flight: AtomicU64,
        peak: AtomicU64,
    }

    impl Backend for SlowStore {
        forward!(inner: location, create, list, read, read_into, read_range, remove, stat, archive_state, request_retrieval, remove_temporaries, extend_retention);

        fn transfers(&self) -> usize {
            8
        }

        fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
            self.write(kind, name, data)
        }

        fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            if kind != ObjectKind::DataPack {
                return self.inner.write(kind, name, data);
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(40));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.inner.write(kind, name, data)
        }
    }

    /// A backend that takes several transfers gets several writers, at most
    /// `MAX_WRITERS` of them, and their packs still go into shared index
    /// objects of `packs_per_index` packs each, with every blob indexed.
    #[test]
    fn several_writers_store_packs_at_once_and_index_every_blob() {
        let backend = Arc::new(SlowStore::default());
        let opts = InitOptions {
            kdf: CHEAP_KDF,
            pack_size: 1024 * 1024,
            ..Default::default()
        };
        let repo = Repository::init(backend.clone(), b"pw", opts).unwrap();
        let saver = Saver::start_with(&repo, Arc::new(Index::new()), 2, None, 4);
        let ids: Vec<BlobId> = (1..=200u64)
            .map(|i| {
                let data = noise(64 * 1024, i);
                let id = repo.keys().blob_id(&data);
                assert!(saver.save(BlobType::Data, id, data).unwrap());
                id
            })
            .collect();
        saver.finish().unwrap();

        assert_eq!(backend.peak.load(Ordering::SeqCst), MAX_WRITERS as u64);
        let packs = backend.inner.list(ObjectKind::DataPack).unwrap().len();
        let objects = repo.load_index_files().unwrap();
        let mut indexed = HashSet::new();
        let mut entries = 0;
        for o in &objects {
            let file = o.file.as_ref().unwrap();
            entries += file.packs.len();
            indexed.extend(file.packs.iter().flat_map(|p| p.blobs.iter().map(|b| b.id)));
        }
        assert!(packs >= 12, "{packs} packs");
        assert_eq!(entries, packs, "every stored pack is indexed once");
        assert_eq!(objects.len(), packs.div_ceil(4), "{packs} packs in objects of 4");
        assert!(ids.iter().all(|id| indexed.contains(id)));
    }
}
