//! The writer threads of a backup: each stores full packs, and together
//! they write an index object for every few packs stored (see `saver`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::saver::{cancelled, SaverStats};
use super::BackupError;
use crate::backend::BackendError;
use crate::blob::BlobType;
use crate::index::{IndexFile, IndexPack};
use crate::pack::FinishedPack;
use crate::repository::{pack_kind, Repository};

/// Most packs stored at once. Each one in flight holds a pack buffer, so
/// this bounds what a backend with many connections adds to peak memory.
pub(super) const MAX_WRITERS: usize = 2;

/// Writer threads for the repository's backend: one for a local folder,
/// several for S3, where a pack upload mostly waits on the network.
pub(super) fn writer_threads(repo: &Repository) -> usize {
    repo.backend().transfers().clamp(1, MAX_WRITERS)
}

/// The index entries of stored packs not yet in an index object, shared by
/// the writer threads so that several writers still write one index object
/// per `packs_per_index` packs.
pub(super) struct Unindexed {
    repo: Repository,
    stats: Arc<SaverStats>,
    packs_per_index: usize,
    pending: Mutex<IndexFile>,
}

impl Unindexed {
    /// Nothing waiting yet; an index object every `packs_per_index` packs.
    pub(super) fn new(repo: &Repository, stats: Arc<SaverStats>, packs_per_index: usize) -> Self {
        Self {
            repo: repo.clone(),
            stats,
            packs_per_index,
            pending: Mutex::new(IndexFile::default()),
        }
    }

    /// Records a stored pack; writes an index object once enough are waiting.
    fn add(&self, entry: IndexPack) -> Result<(), BackupError> {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.packs.push(entry);
            (pending.packs.len() >= self.packs_per_index).then(|| std::mem::take(&mut *pending))
        };
        // Saved outside the lock, so other writers go on storing packs.
        full.map_or(Ok(()), |f| self.save(&f))
    }

    /// Writes an index object for whatever is still waiting.
    pub(super) fn flush(&self) -> Result<(), BackupError> {
        let rest = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if rest.packs.is_empty() {
            return Ok(());
        }
        self.save(&rest)
    }

    fn save(&self, file: &IndexFile) -> Result<(), BackupError> {
        let (_, n) = self.repo.save_index(file)?;
        self.stats.stored_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

pub(super) fn write_loop(
    rx: Receiver<FinishedPack>,
    unindexed: &Unindexed,
    recycle: Sender<Vec<u8>>,
    cancel: &Option<Arc<AtomicBool>>,
) -> Result<(), BackupError> {
    let repo = &unindexed.repo;
    for mut p in rx {
        // Cancelled: packs not yet stored are dropped; those stored are
        // indexed by `finish`, so the next backup reuses them.
        if cancelled(cancel) {
            break;
        }
        let entry = p.index_entry();
        // Shared, not copied, with a backend that keeps a request body.
        let bytes = bytes::Bytes::from(std::mem::take(&mut p.bytes));
        match repo
            .backend()
            .write_bytes(pack_kind(p.blob_type), &p.id.to_hex(), &bytes)
        {
            // Same name, same bytes: another writer stored it already.
            Ok(()) | Err(BackendError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        unindexed
            .stats
            .stored_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        unindexed.add(entry)?;
        // Back for the next pack unless the backend still holds it; a full
        // return queue just means it is freed instead.
        if p.blob_type == BlobType::Data {
            if let Ok(mut buf) = bytes.try_into_mut() {
                buf.clear();
                let _ = recycle.try_send(Vec::from(buf));
            }
        }
    }
    if cancelled(cancel) {
        return Err(BackupError::Interrupted);
    }
    Ok(())
}
