//! Backup: walk a source, store what is new, write a snapshot last.
//!
//! Order of durable writes (format-spec "Crash consistency"): packs, then
//! the index objects naming them, then the snapshot. A crash at any point
//! leaves at worst unreferenced packs, never a snapshot pointing at missing
//! data.

mod content;
mod dir;
mod meta;
mod parent;
mod saver;
mod sizes;
mod sources;
mod verify;
mod walk;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(crate) use content::{save_content, ContentError};
pub(crate) use dir::DirBuilder;
pub(crate) use saver::Saver;
pub use saver::SaverStats;
pub use sizes::{ChunkSizeChoice, DedupStats};
use sources::{stream_root, Files};
pub(crate) use verify::verify_reuse;
pub(crate) use walk::lexically_clean;

use crate::backend::BackendError;
use crate::blob::{BlobError, BlobType};
use crate::encoding::{self, EncodingError};
use crate::id::{SnapshotId, TreeId};
use crate::pack::PackError;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::{CommandDetails, Snapshot, SourceDetails, SourceKind, Summary};
use crate::sources::{S3Source, SourceError, Stream};
use crate::tree::{Tree, TREE_VERSION};

/// Errors of a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A path given to back up cannot be read at all.
    #[error("{path}: {source}")]
    Source {
        /// The path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// An exclude pattern does not parse.
    #[error("bad exclude pattern `{pattern}`: {detail}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        detail: String,
    },
    /// A stream source failed (a command exited non-zero, ...).
    #[error(transparent)]
    Stream(#[from] SourceError),
    /// Storage failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Repository failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Sealing failure.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Packing failure.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// Encoding failure.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// A pipeline stage stopped (the cause is reported by that stage).
    #[error("the backup pipeline stopped early")]
    PipelineStopped,
    /// A worker thread could not start.
    #[error("cannot start a worker thread: {0}")]
    Thread(String),
    /// A worker thread panicked (a bug).
    #[error("a backup worker thread panicked")]
    ThreadPanicked,
    /// A prune recorded for deletion data this backup reused, while it ran
    /// (format-spec B4); running the backup again stores that data anew.
    #[error("a prune that ran meanwhile recorded for deletion {blobs} blob(s) this backup reused; no snapshot was written, run the backup again")]
    ReusedDataDeleted {
        /// How many reused blobs (or trees) lost their last live copy.
        blobs: usize,
    },
    /// Invalid options.
    #[error("{0}")]
    Invalid(String),
    /// The Cassandra source found nothing to back up, or cannot read.
    #[error(transparent)]
    Cassandra(#[from] crate::sources::cassandra::CassandraError),
    /// Stopped on request ([`BackupOptions::cancel`]): no snapshot was
    /// written; packs stored so far are indexed and reused by the next backup.
    #[error("interrupted: the backup stopped before writing a snapshot (what it stored is reused by the next backup)")]
    Interrupted,
}

/// What to back up.
pub enum BackupSource {
    /// Files and folders (absolute or relative to the current directory).
    Paths(Vec<PathBuf>),
    /// A stream stored as one file named `filename` (e.g. `crdb.sql`).
    Stream {
        /// The data.
        stream: Stream,
        /// File name in the snapshot.
        filename: String,
        /// Recorded source kind (`Stdin` or `Command`).
        kind: SourceKind,
    },
    /// A Redis dump, checked as it is read (`--redis`, `--redis-rdb`,
    /// `--redis-data-dir`).
    Redis(crate::sources::redis::RedisSource),
    /// Cassandra snapshot folders of one tag, walked as files; the
    /// snapshot's paths are the data folders (`sources::cassandra`).
    Cassandra(crate::sources::cassandra::CassandraSource),
    /// The objects of an S3 bucket as files (`sources::s3`).
    S3(S3Source),
}

/// Which snapshot to compare against for change detection.
#[derive(Debug, Clone, Default)]
pub enum ParentChoice {
    /// The newest snapshot with the same host, paths and kind of source (a
    /// Cassandra backup's paths are its data folders, whatever the tag).
    #[default]
    Auto,
    /// None: read everything.
    None,
    /// This one.
    Id(SnapshotId),
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct BackupProgress {
    /// Files found so far.
    pub files_total: AtomicU64,
    /// Bytes of files found so far.
    pub bytes_total: AtomicU64,
    /// Files done (read or found unchanged).
    pub files_done: AtomicU64,
    /// Bytes done.
    pub bytes_done: AtomicU64,
    /// Set when the walk has found everything.
    pub walk_finished: AtomicBool,
}

/// Backup settings.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Host name recorded (default: this machine's).
    pub host: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Snapshot time, Unix ns (default: now).
    pub time_ns: Option<i64>,
    /// Glob patterns of paths to leave out.
    pub excludes: Vec<String>,
    /// Do not descend into other file systems.
    pub one_file_system: bool,
    /// Read and hash, but write nothing.
    pub dry_run: bool,
    /// Parent for change detection.
    pub parent: ParentChoice,
    /// Progress counters to update.
    pub progress: Option<Arc<BackupProgress>>,
    /// Files read at once.
    pub readers: usize,
    /// Threads that compress and encrypt.
    pub sealers: usize,
    /// Set from outside (a signal handler) to stop the backup at the next
    /// file, chunk, blob or pack: it then fails with
    /// [`BackupError::Interrupted`] and writes no snapshot.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Chunk sizes for the contents read (recorded in the snapshot).
    pub chunk_sizes: ChunkSizeChoice,
}

impl BackupOptions {
    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

impl Default for BackupOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self {
            host: None,
            tags: Vec::new(),
            time_ns: None,
            excludes: Vec::new(),
            one_file_system: false,
            dry_run: false,
            parent: ParentChoice::Auto,
            progress: None,
            readers: 2,
            sealers: cpus,
            cancel: None,
            chunk_sizes: ChunkSizeChoice::Parent,
        }
    }
}

/// A file or folder that could not be read and was left out.
#[derive(Debug, Clone)]
pub struct SkippedEntry {
    /// Its path.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// The result of a backup.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The snapshot's id (`None` for a dry run).
    pub id: Option<SnapshotId>,
    /// The snapshot (as saved, or as it would have been).
    pub snapshot: Snapshot,
    /// Entries skipped because they could not be read.
    pub skipped: Vec<SkippedEntry>,
    /// How much of the content read the repository held already.
    pub dedup: DedupStats,
}

pub(crate) fn default_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Backs up `source` into `repo` and saves a snapshot, unless a dry run.
///
/// When a prune records for deletion data the backup reused while it ran
/// (B4), a backup of paths runs once more, storing that data again; a
/// stream cannot be read twice, so its backup fails instead.
pub fn backup(repo: &Repository, source: BackupSource, opts: &BackupOptions) -> Result<BackupOutcome, BackupError> {
    let again = match &source {
        BackupSource::Paths(p) => Some(BackupSource::Paths(p.clone())),
        BackupSource::Cassandra(c) => Some(BackupSource::Cassandra(c.clone())),
        BackupSource::Stream { .. } | BackupSource::Redis(_) | BackupSource::S3(_) => None,
    };
    let r = match (backup_once(repo, source, opts), again) {
        (Err(BackupError::ReusedDataDeleted { blobs }), Some(source)) if !opts.cancelled() => {
            tracing::warn!(
                "a prune recorded {blobs} reused blob(s) for deletion while the backup ran; backing up again"
            );
            backup_once(repo, source, opts)
        }
        (r, _) => r,
    };
    match r {
        // The stages a cancellation stopped report it as a stopped pipeline.
        Err(BackupError::PipelineStopped) if opts.cancelled() => Err(BackupError::Interrupted),
        r => r,
    }
}

fn backup_once(repo: &Repository, source: BackupSource, opts: &BackupOptions) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    // The snapshot is dated when the backup starts, as restic does: that is
    // the moment its data describes, and what --as-of compares against.
    let started_ns = crate::time::now_ns();
    let repo = if opts.dry_run {
        repo.with_dry_run()
    } else {
        repo.clone()
    };
    let host = opts.host.clone().unwrap_or_else(default_host);
    let mut details = SourceDetails::None;
    let mut recorded_paths = None;
    let (paths, source_kind) = match &source {
        BackupSource::Paths(p) => (walk::absolute_paths(p)?, SourceKind::Files),
        BackupSource::Cassandra(c) => {
            let found = crate::sources::cassandra::discover(c)?;
            details = SourceDetails::Cassandra(found.details);
            recorded_paths = Some(found.data_dirs);
            (found.folders, SourceKind::Cassandra)
        }
        BackupSource::Stream { filename, kind, .. } => (
            vec![PathBuf::from(format!("/{}", filename.trim_start_matches('/')))],
            kind.clone(),
        ),
        BackupSource::Redis(r) => (r.paths().to_vec(), SourceKind::Redis),
        BackupSource::S3(src) => (vec![PathBuf::from(src.root_path())], SourceKind::S3),
    };
    // The same bucket through the same endpoint: paths alone cannot say it.
    let s3_url = match &source {
        BackupSource::S3(src) => Some(src.url()),
        _ => None,
    };
    let path_strings: Vec<String> = recorded_paths
        .as_ref()
        .unwrap_or(&paths)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let crate::repository::SnapshotList { snapshots, damaged } = repo.list_snapshots_lenient()?;
    for e in &damaged {
        tracing::warn!("ignoring {e} when choosing the parent; run `cairn check`");
    }
    let parent_id = match &opts.parent {
        ParentChoice::None => None,
        ParentChoice::Id(id) => Some(*id),
        ParentChoice::Auto => snapshots
            .iter()
            .rev()
            .find(|(_, s)| {
                s.host == host
                    && s.paths == path_strings
                    && std::mem::discriminant(&s.source) == std::mem::discriminant(&source_kind)
                    && match (&s3_url, &s.details) {
                        (None, _) => true,
                        (Some(url), SourceDetails::S3(d)) => &d.url == url,
                        (Some(_), _) => false,
                    }
            })
            .map(|(id, _)| *id),
    };
    let parent_sizes = match (&opts.chunk_sizes, &parent_id) {
        (sizes::ChunkSizeChoice::Parent, Some(id)) => match snapshots.iter().find(|(i, _)| i == id) {
            Some((_, s)) => s.chunk_sizes,
            None => repo.load_snapshot(id)?.chunk_sizes,
        },
        _ => None,
    };
    let (chunker, chunk_sizes) = sizes::resolve(opts.chunk_sizes, &repo.config().chunker, parent_sizes);
    let (index, deletions) = repo.load_index_for_backup()?;
    let index = Arc::new(index);
    let saver = saver::Saver::start_cancellable(&repo, index.clone(), opts.sealers, opts.cancel.clone());
    let mut summary = Summary::default();
    let mut skipped = Vec::new();

    let root = match source {
        BackupSource::Paths(_) | BackupSource::Cassandra(_) => {
            let files = Files {
                repo: &repo,
                saver: &saver,
                chunker: &chunker,
                index: &index,
            };
            match files.walk(parent_id.as_ref(), &paths, opts, &mut summary, &mut skipped) {
                Ok(root) => root,
                Err(e) => return Err(first_cause(e, saver)),
            }
        }
        BackupSource::Stream { stream, .. } => {
            match stream_root(&repo, &saver, &chunker, stream, &paths[0], opts, &mut summary) {
                Ok((root, exit_code)) => {
                    if let Some(exit_code) = exit_code {
                        details = SourceDetails::Command(CommandDetails { exit_code });
                    }
                    root
                }
                Err(e) => return Err(first_cause(e, saver)),
            }
        }
        BackupSource::Redis(mut redis) => {
            let root = match redis.take_stream() {
                Some(stream) => {
                    stream_root(&repo, &saver, &chunker, stream, &paths[0], opts, &mut summary).map(|(root, _)| root)
                }
                None => {
                    let files = Files {
                        repo: &repo,
                        saver: &saver,
                        chunker: &chunker,
                        index: &index,
                    };
                    files
                        .walk(parent_id.as_ref(), &paths, opts, &mut summary, &mut skipped)
                        .and_then(|root| match skipped.first() {
                            // A data folder with a file missing is no restorable data folder.
                            Some(k) => Err(BackupError::Source {
                                path: k.path.clone(),
                                source: std::io::Error::other(k.error.clone()),
                            }),
                            None => Ok(root),
                        })
                }
            };
            let root = match root {
                Ok(root) => root,
                Err(e) => return Err(first_cause(e, saver)),
            };
            match redis.finish() {
                Ok(d) => details = SourceDetails::Redis(d),
                Err(e) => {
                    let _ = saver.finish();
                    return Err(e.into());
                }
            }
            root
        }
        BackupSource::S3(src) => {
            let r = crate::sources::s3::backup_bucket(
                &repo,
                &index,
                &saver,
                &src,
                parent_id.as_ref(),
                opts,
                &mut summary,
                &mut skipped,
            );
            match r {
                Ok((root, d)) => {
                    details = SourceDetails::S3(d);
                    root
                }
                Err(e) => return Err(first_cause(e, saver)),
            }
        }
    };
    let stats = saver.stats.clone();
    saver.finish()?;
    summary.data_blobs_added = stats.data_blobs.load(Ordering::Relaxed);
    summary.tree_blobs_added = stats.tree_blobs.load(Ordering::Relaxed);
    summary.bytes_added_raw = stats.raw_bytes.load(Ordering::Relaxed);
    summary.bytes_added_stored = stats.stored_bytes.load(Ordering::Relaxed);
    let dedup = DedupStats::from_saver(&stats);
    summary.errors = skipped.len() as u64;
    summary.duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let (user, uid, gid) = current_user();
    let snapshot = Snapshot {
        time_ns: opts.time_ns.unwrap_or(started_ns),
        host,
        user,
        uid,
        gid,
        tags: opts.tags.clone(),
        paths: path_strings,
        excludes: opts.excludes.clone(),
        source: source_kind,
        tree: root,
        parent: parent_id,
        program_version: crate::VERSION.to_string(),
        summary,
        rewritten_from: None,
        details,
        chunk_sizes,
        copied_from: None,
    };
    // Everything the snapshot references is stored (saver.finish returned),
    // so it may now be written.
    let id = if opts.dry_run {
        None
    } else {
        verify::verify_reuse(&repo, &deletions, started.elapsed(), &snapshot.tree)?;
        // The last moment a cancellation can still keep the snapshot out.
        if opts.cancelled() {
            return Err(BackupError::Interrupted);
        }
        Some(repo.save_snapshot(&snapshot)?)
    };
    Ok(BackupOutcome {
        id,
        snapshot,
        skipped,
        dedup,
    })
}

/// Stops the saver after the walk failed with `e`: when `e` only says the
/// pipeline stopped, the saver's own error is the cause (a full disk, a
/// refused write), and that is what the user must see.
fn first_cause(e: BackupError, saver: saver::Saver) -> BackupError {
    match (e, saver.finish()) {
        (BackupError::PipelineStopped, Err(cause)) => cause,
        (e, _) => e,
    }
}

fn current_user() -> (String, u32, u32) {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    (name, uid.as_raw(), nix::unistd::getgid().as_raw())
}

/// Encodes a tree and queues it as a tree blob; returns its id.
pub(crate) fn store_tree(repo: &Repository, saver: &saver::Saver, tree: &Tree) -> Result<TreeId, BackupError> {
    let bytes = encoding::encode("tree", TREE_VERSION, tree)?;
    let id = repo.keys().blob_id(&bytes);
    saver.save(BlobType::Tree, id, bytes)?;
    Ok(TreeId::of_stored_tree(id))
}
