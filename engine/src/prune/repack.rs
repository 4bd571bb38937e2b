//! Copying the used blobs out of packs about to go, and writing the index
//! of what stays.
//!
//! Blobs are opened (which verifies them) and sealed again through the
//! backup's write pipeline, so a repacked blob is written exactly as a new
//! one would be, with a fresh nonce, into packs and index objects that are
//! durably stored before anything refers to their absence.

use std::sync::Arc;

use super::plan::{CopyFrom, Work};
use super::{PruneError, PruneOptions};
use crate::backend::BackendError;
use crate::backup::Saver;
use crate::id::PackId;
use crate::index::{Index, IndexFile, IndexPack};
use crate::repository::{pack_kind, Repository};
use crate::retrieve::{self, DriveOptions, PackRef, RetrievalReport};

/// Packs per index object prune writes for the packs it keeps.
const PACKS_PER_KEPT_INDEX: usize = 512;

/// What the copy achieved.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    /// Packs whose blobs could not be copied yet (archived, retrieval
    /// requested): they must not be deleted.
    pub pending: Vec<PackId>,
    /// The retrieval asked for, if any pack was archived.
    pub retrieval: Option<RetrievalReport>,
}

/// Copies the blobs of every pack to repack and every blob to rescue into
/// new packs, and returns once those and their index objects are stored.
pub(crate) fn copy(repo: &Repository, work: &Work, opts: &PruneOptions) -> Result<Copied, PruneError> {
    let sources: Vec<&CopyFrom> = work.repack.iter().chain(&work.rescue).collect();
    if sources.is_empty() {
        return Ok(Copied::default());
    }
    let refs: Vec<PackRef> = sources
        .iter()
        .map(|c| PackRef {
            kind: pack_kind(c.pack.blob_type),
            id: c.pack.id,
            size: c.pack.size,
        })
        .collect();
    // Every copy is stored, even of blobs other packs hold: those are the
    // copies being deleted or rescued.
    let saver = Saver::start(repo, Arc::new(Index::new()), opts.sealers);
    let read = |positions: &[usize]| -> Result<Vec<usize>, PruneError> {
        let mut refused = Vec::new();
        for &i in positions {
            let c = sources[i];
            let name = c.pack.id.to_hex();
            let bytes = match repo.backend().read(pack_kind(c.pack.blob_type), &name) {
                Ok(b) => b,
                Err(BackendError::Archived { .. }) => {
                    refused.push(i);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for b in &c.blobs {
                let (start, end) = (b.offset as usize, b.offset as usize + b.length as usize);
                let sealed = bytes.get(start..end).ok_or_else(|| {
                    PruneError::Damaged(format!(
                        "pack {name} is shorter than its index says (blob {} at {start}..{end})",
                        b.id.short()
                    ))
                })?;
                let plain = repo.open_blob(c.pack.blob_type, &b.id, &c.pack.id, sealed)?;
                saver.save(c.pack.blob_type, b.id, plain)?;
            }
            crate::failpoint::hit("prune-repacking");
            if saver.failed() {
                break;
            }
        }
        Ok(refused)
    };
    let drive = DriveOptions {
        retrieval: &opts.retrieval,
        ask_first: sources.iter().any(|c| c.archived),
        hook: opts.on_retrieval.as_deref(),
    };
    let result = retrieve::drive(repo, &refs, &drive, read);
    let finished = saver.finish();
    let done = result?;
    finished?;
    Ok(Copied {
        pending: done.pending.iter().map(|&i| sources[i].pack.id).collect(),
        retrieval: done.report,
    })
}

/// Writes index objects describing `packs` (as the old index did).
pub(crate) fn write_index(repo: &Repository, mut packs: Vec<IndexPack>) -> Result<(), PruneError> {
    packs.sort_by_key(|a| a.id);
    while !packs.is_empty() {
        let rest = packs.split_off(packs.len().min(PACKS_PER_KEPT_INDEX));
        repo.save_index(&IndexFile { packs })?;
        packs = rest;
    }
    Ok(())
}
