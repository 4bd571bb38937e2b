//! Restore: plan what to write from the snapshot's trees and the index, then
//! execute the plan pack by pack.
//!
//! Order (so that nothing is written outside the target, and symlinks made by
//! the restore cannot redirect its own writes): folders, file data, hard
//! links, symlinks and special files, then folder metadata deepest first.
//!
//! Best effort: damage (a blob the index does not know, a pack that is gone
//! or unreadable, a blob that fails authentication) costs only the files
//! that need it. Each file is written under a temporary name in its folder
//! and renamed into place once all its data is there, so a file that could
//! not be restored leaves nothing under its name; every such file is named,
//! with its reason, in [`RestoreSummary::failed`], and the restore ends with
//! [`RestoreError::Incomplete`] after restoring everything else.

mod files;
mod layout;
mod meta;
mod plan;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use crate::retrieve::{RetrievalHook, RetrievalOptions, RetrievalReport};
pub use layout::{Placement, RestoreLayout};
pub use plan::RestorePlan;

use crate::backend::BackendError;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;

/// Errors of a restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Files exist in the target and `--overwrite` was not given.
    #[error("{count} file(s) already exist in the target, e.g. {first}; nothing was written (use --overwrite to replace them)")]
    TargetExists {
        /// How many.
        count: usize,
        /// One of them.
        first: PathBuf,
    },
    /// The path asked for is not in the snapshot.
    #[error("{0} is not in the snapshot")]
    PathNotFound(String),
    /// Writing to the target failed.
    #[error("{path}: {source}")]
    Io {
        /// Path in the target.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// An include/exclude pattern does not parse.
    #[error("bad pattern `{pattern}`: {detail}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        detail: String,
    },
    /// Some entries could not be restored (damaged or missing data, or a
    /// failure writing them); everything else was. The summary names each
    /// one with its reason.
    #[error("{count} item(s) could not be restored, e.g. {first}; everything else was restored (the same command again retries them)")]
    Incomplete {
        /// How many entries.
        count: usize,
        /// The first, with its reason.
        first: String,
        /// Whether any reason is damage in the repository (rather than
        /// only failures writing the target).
        damaged: bool,
        /// What was restored, and the list of what was not.
        summary: Box<RestoreSummary>,
    },
    /// `--preserve-special` was asked for by a user who is not root.
    #[error(
        "--preserve-special restores set-id bits and device nodes, which only root may do; run as root or leave it out"
    )]
    PreserveSpecialNeedsRoot,
    /// Archived packs were requested from archive storage and are not
    /// readable yet (`wait` was not set). Running the same restore again
    /// resumes: nothing is requested twice and finished files are kept.
    #[error("{objects} pack(s) ({bytes} bytes) are being retrieved from archive storage; run the same restore again once they are readable (typically {typical}); it resumes where it stopped")]
    RetrievalPending {
        /// Packs not yet readable.
        objects: usize,
        /// Their bytes.
        bytes: u64,
        /// Typical time for the tier used.
        typical: String,
        /// The full report.
        report: Box<RetrievalReport>,
    },
    /// Repository failure (missing or damaged data).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A Cassandra restore layout that cannot be made.
    #[error(transparent)]
    Cassandra(#[from] crate::sources::cassandra::CassandraError),
}

impl RestoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RestoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// Bytes of file content to restore.
    pub bytes_total: AtomicU64,
    /// Bytes restored (written, or found already correct).
    pub bytes_done: AtomicU64,
    /// Files to restore.
    pub files_total: AtomicU64,
    /// Files finished.
    pub files_done: AtomicU64,
}

/// Restore settings.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore only this path of the snapshot (a file or a folder): it is
    /// written as `target/<its name>`.
    pub subpath: Option<String>,
    /// Only paths matching one of these globs (and folders leading to them).
    pub include: Vec<String>,
    /// Leave out paths matching these globs.
    pub exclude: Vec<String>,
    /// Replace existing files.
    pub overwrite: bool,
    /// Re-read everything written and compare with the snapshot.
    pub verify: bool,
    /// Restore set-uid/set-gid bits and create device nodes (root only).
    /// Without it, set-id bits are dropped and device nodes are left out
    /// (each named in a warning).
    pub preserve_special: bool,
    /// Leave extended attributes out.
    pub no_xattrs: bool,
    /// Parallel pack readers (default: 2 × CPUs).
    pub threads: usize,
    /// Progress counters.
    pub progress: Option<Arc<RestoreProgress>>,
    /// Ask the backend up front which needed packs are archived (S3). Even
    /// without it, a pack found archived while reading is retrieved, never
    /// reported as damage.
    pub check_archive_first: bool,
    /// How archived packs are retrieved.
    pub retrieval: RetrievalOptions,
    /// Told what must be retrieved (once) and how many packs are ready (on
    /// every poll), for the CLI to print.
    pub on_retrieval: Option<Arc<RetrievalHook>>,
    /// Place snapshot folders elsewhere in the target (a source's restore
    /// layout); `subpath` is then ignored.
    pub layout: Option<RestoreLayout>,
}

/// Name of the file that marks an unfinished restore in the target.
pub const IN_PROGRESS_MARKER: &str = ".cairn-restore-in-progress";

/// Prefix of the temporary name a file is written under in its folder until
/// all its data is there. A restore that resumes removes leftovers.
pub const PART_PREFIX: &str = ".cairn-restore-part-";

/// An entry a restore could not restore.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedEntry {
    /// Its path in the target.
    pub path: String,
    /// Why: the blob, tree or pack at fault, or the error writing it.
    pub reason: String,
    /// True when the cause is damaged or missing data in the repository,
    /// false when writing the target failed.
    pub damaged: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// Files restored.
    pub files: u64,
    /// Folders restored.
    pub dirs: u64,
    /// Symlinks and special files.
    pub others: u64,
    /// Content bytes of restored files.
    pub bytes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes found already correct in the target and not rewritten.
    pub bytes_unchanged: u64,
    /// Packs read.
    pub packs_read: u64,
    /// Bytes read from the repository.
    pub bytes_downloaded: u64,
    /// Files checked by `verify`.
    pub files_verified: u64,
    /// Metadata that could not be applied (e.g. ownership as non-root), and
    /// entries left out on purpose (device nodes, sockets).
    pub warnings: Vec<String>,
    /// Entries that could not be restored, each with its reason. Nothing is
    /// left under their names (an existing file replaced with
    /// `--overwrite` may be left as it was, or partly updated when the
    /// reason says so).
    pub failed: Vec<FailedEntry>,
}

/// Restores `snapshot` (or part of it) into `target`.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    if opts.preserve_special && !nix::unistd::geteuid().is_root() {
        return Err(RestoreError::PreserveSpecialNeedsRoot);
    }
    let index = repo.load_index()?;
    let marker = target.join(IN_PROGRESS_MARKER);
    // A restore that was stopped (killed, waiting for archive retrieval, or
    // ended with entries it could not restore) leaves this marker; running
    // it again continues over its own files.
    let earlier = std::fs::read_to_string(&marker).ok();
    let resuming = earlier.as_deref().is_some_and(|s| s.trim() == snapshot.tree.to_hex());
    let mut opts = opts.clone();
    opts.overwrite |= resuming;
    let plan = RestorePlan::build(repo, &index, snapshot, target, &opts)?;
    std::fs::create_dir_all(target).map_err(|e| RestoreError::io(target, e))?;
    if earlier.is_some() {
        // Files a stopped run was still writing, under temporary names.
        files::remove_leftover_parts(&plan);
    }
    std::fs::write(&marker, snapshot.tree.to_hex()).map_err(|e| RestoreError::io(&marker, e))?;
    let summary = write::execute(repo, plan, &opts)?;
    if let Some(first) = summary.failed.first() {
        let damaged = summary.failed.iter().any(|f| f.damaged);
        return Err(RestoreError::Incomplete {
            count: summary.failed.len(),
            first: format!("{}: {}", first.path, first.reason),
            damaged,
            summary: Box::new(summary),
        });
    }
    std::fs::remove_file(&marker).map_err(|e| RestoreError::io(&marker, e))?;
    Ok(summary)
}
