//! Copy: snapshots from one repository into another (`cairn copy`), for
//! off-site and cold copies.
//!
//! Two paths. When both repositories name content with the same ids and cut
//! it with the same chunker (`Repository::same_blob_ids`, a destination made
//! with `init --chunker-params-from`), blobs and trees are copied verbatim:
//! opened (which verifies them) and sealed again with the destination's
//! keys, into new packs (the fast path). Otherwise every file is re-chunked
//! for the destination (`rechunk`), so that it deduplicates on its own.
//!
//! Order of durable writes (format-spec "Crash consistency"): packs, then
//! the index objects naming them (written every few packs, so a killed copy
//! keeps what it stored), then each snapshot, only once everything it
//! references is stored. A copy run again skips the snapshots copied before
//! (recorded in each copy's `copied_from`) and the blobs stored before.
//!
//! Locks: none. A copy is a reader of the source (R3) and a backup-like
//! writer of the destination (B1: a writer takes no lock), so it runs
//! alongside backups, restores and checks on either side; the engine takes
//! no lock and the CLI must not either.

#[allow(dead_code)] // until copy calls it
pub(crate) mod rechunk;
#[cfg(test)]
mod rechunk_tests;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::BackendError;
use crate::backup::BackupError;
use crate::id::SnapshotId;
use crate::repository::{Repository, RepositoryError};
use crate::retrieve::{RetrievalHook, RetrievalOptions, RetrievalReport};
use crate::snapshot::Snapshot;

/// Errors of a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading either repository failed (missing or damaged data included).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Storing into the destination failed.
    #[error(transparent)]
    Save(#[from] BackupError),
    /// A pack of the source holds less than its index says.
    #[error("{0}")]
    Damaged(String),
    /// Packs of the source are being retrieved from archive storage: what
    /// was readable is copied, the snapshots needing the rest are not.
    #[error("{packs} pack(s) ({bytes} bytes) of the source are being retrieved from archive storage; {snapshots} snapshot(s) wait for them. Run the same copy again once they are readable (typically {typical}); it resumes where it stopped")]
    RetrievalPending {
        /// Packs not yet readable.
        packs: usize,
        /// Their bytes.
        bytes: u64,
        /// Snapshots not copied because of them.
        snapshots: usize,
        /// Typical time for the tier used.
        typical: String,
    },
    /// Stopped on request ([`CopyOptions::cancel`]): the snapshots copied so
    /// far are complete, and packs stored since are indexed and not copied
    /// again by the next run.
    #[error("interrupted: the copy stopped; {copied} snapshot(s) were copied, and what was stored since is reused by the next copy")]
    Interrupted {
        /// Snapshots fully copied before the stop.
        copied: usize,
    },
    /// Not done yet (while this module is being built).
    #[error("copy: {0}")]
    Internal(&'static str),
}

/// How to copy.
#[derive(Default)]
pub struct CopyOptions {
    /// Plan and report only: write nothing, request no retrieval.
    pub dry_run: bool,
    /// Threads sealing blobs for the destination (0 = default).
    pub sealers: usize,
    /// How archived packs of the source are retrieved (as restore does).
    pub retrieval: RetrievalOptions,
    /// Told what must be retrieved (once) and how many packs are ready.
    pub retrieval_hook: Option<RetrievalHook>,
    /// Called as the copy advances.
    pub progress: Option<Arc<dyn Fn(&CopyProgress) + Send + Sync>>,
    /// Set (from Ctrl-C) to stop cleanly: what is stored gets indexed, no
    /// incomplete snapshot is written, and [`CopyError::Interrupted`] comes back.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// How far a copy is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyProgress {
    /// Snapshots written to the destination so far.
    pub snapshots_done: usize,
    /// Snapshots to copy (skipped ones not counted).
    pub snapshots_total: usize,
    /// Bytes of source packs read (fast path) or of file content processed
    /// (re-chunk path) so far.
    pub bytes_done: u64,
    /// The bytes to read in all (an estimate on the re-chunk path).
    pub bytes_total: u64,
}

/// Which way the data went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyPath {
    /// Same blob ids and chunker: blobs re-encrypted and re-packed only.
    Fast,
    /// Different chunker or ids: every file re-chunked for the destination.
    Rechunk,
}

/// One snapshot copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CopiedSnapshot {
    /// Its id in the source.
    pub source: SnapshotId,
    /// The id of its copy in the destination (in a dry run, the id it
    /// would not get: the source's).
    pub destination: SnapshotId,
}

/// What a copy did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The path taken.
    pub path: CopyPath,
    /// Snapshots copied (would be, in a dry run), oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Selected snapshots the destination holds already.
    pub skipped: usize,
    /// Blobs read from source packs.
    pub blobs_read: u64,
    /// Bytes read from source packs.
    pub bytes_read: u64,
    /// Blobs written to the destination.
    pub blobs_written: u64,
    /// Bytes stored in the destination (packs and index objects).
    pub bytes_written: u64,
    /// Source packs read.
    pub packs_read: u64,
    /// What archive storage was asked for, when any pack was archived.
    pub retrieval: Option<RetrievalReport>,
    /// Archived source packs not waited for: the snapshots needing them
    /// were not copied (the CLI exits 14, see [`CopyReport::pending_error`]).
    pub pending_packs: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl CopyReport {
    /// The error to exit with when archived packs are still pending
    /// (kind `RetrievalPending`), after printing the report.
    pub fn pending_error(&self) -> Option<CopyError> {
        let _ = self;
        None
    }
}

/// Copies the snapshots of `selected` (from `src`, oldest first) that `dst`
/// does not hold yet, with everything they reference.
pub fn copy(
    src: &Repository,
    dst: &Repository,
    selected: &[(SnapshotId, Snapshot)],
    opts: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let _ = (src, dst, selected, opts);
    Err(CopyError::Internal("not implemented yet"))
}
