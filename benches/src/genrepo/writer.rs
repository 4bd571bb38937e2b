//! Packing sealed blobs and storing the packs and their index objects, the
//! way the backup pipeline's packer and writer do (engine
//! `backup/saver.rs`): data and tree blobs in separate packs, an index
//! object every [`PACKS_PER_INDEX`] packs, each pack stored before the index
//! object naming it. Storing runs on its own thread so the fsyncs of the
//! local backend overlap the sealing.

use std::thread::JoinHandle;

use cairn_engine::blob::BlobType;
use cairn_engine::crypto::Keys;
use cairn_engine::id::BlobId;
use cairn_engine::pack::{FinishedPack, Packer};
use cairn_engine::{BackendError, IndexFile, ObjectKind, Repository};
use crossbeam_channel::{bounded, Sender};

use super::Result;

/// Packs per index object, as the backup pipeline writes them.
pub const PACKS_PER_INDEX: usize = 64;
/// Tree packs stay small, as in the backup pipeline: they are read whole.
const TREE_PACK_LIMIT: usize = 4 * 1024 * 1024;

/// What was stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stored {
    /// Data packs.
    pub data_packs: u64,
    /// Tree packs.
    pub tree_packs: u64,
    /// Index objects.
    pub index_objects: u64,
    /// Bytes of packs and index objects.
    pub bytes: u64,
}

/// Collects sealed blobs into packs of one type and hands full packs to the
/// storing thread.
pub struct PackSink {
    keys: Keys,
    blob_type: BlobType,
    limit: usize,
    max_blobs: Option<usize>,
    packer: Packer,
    count: usize,
    tx: Sender<FinishedPack>,
}

impl PackSink {
    /// Appends one sealed blob, closing the pack once it is full.
    pub fn add(&mut self, id: BlobId, sealed: &[u8], raw_len: usize) -> Result<()> {
        self.packer.add(id, sealed, raw_len)?;
        self.count += 1;
        if self.packer.size() >= self.limit || self.max_blobs.is_some_and(|m| self.count >= m) {
            self.flush()?;
        }
        Ok(())
    }

    /// Closes the open pack, if it holds anything.
    pub fn flush(&mut self) -> Result<()> {
        if self.packer.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(
            &mut self.packer,
            Packer::new(self.blob_type, self.limit + self.limit / 8),
        );
        self.count = 0;
        let pack = full.finish(&self.keys)?;
        self.tx
            .send(pack)
            .map_err(|_| "the pack writer stopped (its error follows)")?;
        Ok(())
    }
}

/// The storing thread and the senders feeding it.
pub struct Writer {
    tx: Option<Sender<FinishedPack>>,
    thread: JoinHandle<Result<Stored>>,
}

impl Writer {
    /// Starts the storing thread for `repo`.
    pub fn start(repo: &Repository) -> Result<Self> {
        // Two packs in flight: enough to overlap sealing with one fsync,
        // little enough to keep memory at a few pack sizes.
        let (tx, rx) = bounded::<FinishedPack>(2);
        let repo = repo.clone();
        let thread = std::thread::Builder::new()
            .name("gen-repo-write".into())
            .spawn(move || -> Result<Stored> {
                let mut stored = Stored::default();
                let mut pending = IndexFile::default();
                for p in rx {
                    store_pack(&repo, &p, &mut stored)?;
                    pending.packs.push(p.index_entry());
                    if pending.packs.len() >= PACKS_PER_INDEX {
                        save_index(&repo, &std::mem::take(&mut pending), &mut stored)?;
                    }
                }
                if !pending.packs.is_empty() {
                    save_index(&repo, &pending, &mut stored)?;
                }
                Ok(stored)
            })?;
        Ok(Self { tx: Some(tx), thread })
    }

    /// A sink for blobs of `blob_type`. Data packs close at the repository's
    /// pack size, or after `max_blobs` blobs when given; tree packs at
    /// `min(pack size, 4 MiB)`.
    pub fn sink(&self, repo: &Repository, blob_type: BlobType, max_blobs: Option<usize>) -> Result<PackSink> {
        let target = repo.config().pack_size as usize;
        let (limit, max_blobs) = match blob_type {
            BlobType::Data => (target, max_blobs),
            BlobType::Tree => (target.min(TREE_PACK_LIMIT), None),
        };
        let tx = self.tx.clone().ok_or("the pack writer is already finished")?;
        Ok(PackSink {
            keys: repo.master_key().derive(),
            blob_type,
            limit,
            max_blobs,
            packer: Packer::new(blob_type, limit + limit / 8),
            count: 0,
            tx,
        })
    }

    /// Waits until every pack sent so far and the last index object are
    /// stored. Every sink must have been flushed and dropped.
    pub fn finish(mut self) -> Result<Stored> {
        drop(self.tx.take());
        self.thread.join().map_err(|_| "the pack writer panicked")?
    }
}

fn store_pack(repo: &Repository, p: &FinishedPack, stored: &mut Stored) -> Result<()> {
    let kind = match p.blob_type {
        BlobType::Data => ObjectKind::DataPack,
        BlobType::Tree => ObjectKind::TreePack,
    };
    match repo.storage().write(kind, &p.id.to_hex(), &p.bytes) {
        // Same name, same bytes (cannot happen for fresh random nonces, but
        // it is what the backup pipeline accepts too).
        Ok(()) | Err(BackendError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    match p.blob_type {
        BlobType::Data => stored.data_packs += 1,
        BlobType::Tree => stored.tree_packs += 1,
    }
    stored.bytes += p.bytes.len() as u64;
    Ok(())
}

fn save_index(repo: &Repository, file: &IndexFile, stored: &mut Stored) -> Result<()> {
    let (_, n) = repo.save_index(file)?;
    stored.index_objects += 1;
    stored.bytes += n;
    Ok(())
}
