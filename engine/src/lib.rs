//! Cairn's engine: a content-addressed, encrypted, deduplicating backup
//! repository.
//!
//! The pipeline, by module: sources → `chunker` → `blob` (seal: zstd +
//! XChaCha20-Poly1305) → `pack` → `backend`, with `index` recording where
//! each blob went, and `tree` / `snapshot` describing what was backed up.
//! `backup` and `restore` drive it, `check` verifies it, `browse` reads
//! snapshots without restoring them, `forget` decides which snapshots a
//! retention policy keeps, `prune` removes the data no snapshot uses under
//! `lock`, the exclusive maintenance lock, `rewrite` copies snapshots
//! without the entries that exclude patterns match (erasure from existing
//! backups), `tag` replaces snapshots with copies that differ only in their
//! tags, and `retrieve` brings packs back from archive storage classes
//! for any of them; `repair` rebuilds the index from the packs and writes
//! copies of snapshots without the data that is lost.
//!
//! The modules are private: everything a program may use is re-exported
//! here, in one place. The operations ([`backup()`], [`restore()`],
//! [`check()`], the browsing functions) return the one top-level [`Error`],
//! whose [`Error::kind`] says what a caller can do about a failure; methods
//! of [`Repository`] return [`RepositoryError`], which has the same `kind`.
//!
//! The cargo feature `testing` additionally makes the pipeline's inner
//! modules public, for the engine's own integration tests, the shared backend
//! suite and the stage benchmarks; it is not a stable API.
#![warn(missing_docs)]

/// Declares modules that are private unless the `testing` feature is on.
macro_rules! internal {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$m])*
            #[cfg(feature = "testing")]
            #[doc(hidden)]
            pub mod $name;
            $(#[$m])*
            #[cfg(not(feature = "testing"))]
            mod $name;
        )*
    };
}

internal!(backend, blob, chunker, crypto, encoding, id, index, pack);

mod backup;
mod browse;
mod check;
mod copy;
mod drill;
mod error;
mod failpoint;
mod forget;
mod import;
mod inspect;
mod lock;
mod mount;
mod prune;
mod recovery;
mod repair;
mod report;
mod repository;
mod restore;
mod retrieve;
mod rewrite;
mod secrets;
mod select;
mod snapshot;
mod sources;
mod stats;
mod tag;
mod time;
mod tree;

#[cfg(test)]
mod testing;

/// Entry points of the fuzz targets and of their corpus replay test.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;

use std::path::Path;

pub use backend::cache::CacheOptions;
pub use backend::local::LocalBackend;
pub use backend::memory::MemoryBackend;
pub use backend::retry::RetryOptions;
pub use backend::s3::{DataStorageClass, ObjectLock, ObjectLockMode, S3Credentials, S3Options, S3OptionsError};
pub use backend::{
    open_location, open_location_with, ArchiveState, Backend, BackendError, BackendOptions, ObjectInfo, ObjectKind,
    RetrievalTier,
};
pub use backup::{
    BackupError, BackupOptions, BackupOutcome, BackupProgress, BackupSource, ChunkSizeChoice, DedupStats, ParentChoice,
    SaverStats, SkippedEntry,
};
pub use blob::BlobType;
pub use browse::{
    diff, dump, find, node_at, walk as walk_snapshot, BrowseError, Change, DiffEntry, FindHit, NameMatcher,
};
pub use check::{CheckError, CheckOptions, CheckReport, DataSubset, Dependent, Problem};
pub use chunker::ChunkerParams;
pub use copy::{
    copy, CopiedSnapshot, CopyError, CopyOptions, CopyPath, CopyProgress, CopyReport, FailedSnapshot,
    ProgressFn as CopyProgressFn,
};
pub use crypto::{BlobIdKey, KdfParams};
pub use drill::{
    find_postgres_bin, find_restored_file, verify_cassandra, verify_command, verify_redis, verify_sql_dump, DrillError,
    Verification,
};
pub use error::{Error, ErrorKind, Result};
pub use forget::{
    forget_snapshots, plan_forget, DurationError, ForgetGroup, ForgetOutcome, ForgetPlan, ForgetSnapshot, GroupBy,
    GroupKey, KeepReason, KeepRules, RetainedSnapshot, RetentionDuration,
};
pub use forget::{plan_retention, RetentionRule, RuleMatch};
pub use id::{BlobId, ObjectId, PackId, ParseIdError, PrefixError, RepositoryId, SnapshotId, TreeId};
pub use import::restic::{ResticError, ResticRepo};
pub use import::{
    import_restic, FailedImport, ImportError, ImportOptions, ImportProblem, ImportProgress, ImportReport,
    ImportedSnapshot, SkippedSnapshot,
};
pub use index::{Index, IndexBlob, IndexBuilder, IndexFile, IndexPack};
pub use inspect::{cat, CatObject, CatRequest, KeyInfo, PackBlob, PackInfo, SnapshotInfo};
#[cfg(feature = "testing")]
pub use lock::write_lock;
pub use lock::{acquire, list_locks, unlock, Lock, LockError, LockOptions, LockStatus, MaintenanceLock};
pub use mount::{mount, MountError, MountOptions, Mounted};
pub use pack::PackEntry;
pub use prune::{
    prune, ColdPack, DeletionRecord, Deletions, DueReport, MaxUnused, PackCount, PruneError, PruneOptions, PrunePlan,
    PruneReport, RecordedPack, DEFAULT_GRACE,
};
pub use prune::{ExtendedReport, RetainedReport};
pub use recovery::RecoveryError;
pub use repair::{
    repair_index, repair_snapshots, DamagedEntry, DamagedPack, IndexRepairReport, RepairAction, RepairError,
    RepairIndexOptions, RepairProgress, RepairSnapshotsOptions, SnapshotRepair, SnapshotsRepairReport, DAMAGED_SUFFIX,
    REPAIRED_TAG,
};
pub use report::{Report, ReportKind, ReportStep, REPORT_KIND, REPORT_VERSION};
pub use repository::{
    Config, IndexObject, InitOptions, KeyFile, RepoFile, Repository, RepositoryError, SnapshotList, FORMAT_VERSION,
};
pub use restore::{
    Placement, RestoreError, RestoreLayout, RestoreOptions, RestorePlan, RestoreProgress, RestoreSummary,
    IN_PROGRESS_MARKER,
};
pub use retrieve::{
    tier_name, RetrievalHook, RetrievalOptions, RetrievalReport, TierEstimate, DEFAULT_PRICES_DATE,
    DEFAULT_STORAGE_PRICES,
};
pub use rewrite::{rewrite_snapshots, RemovedPath, RewriteError, RewriteOptions, RewriteReport, SnapshotRewrite};
pub use secrets::{
    mask_argv, name_looks_secret, read_private_file, without_cairn_env, SecretsError, MASK, PRIVATE_FILE_MAX,
    SECRET_ENV_PREFIX,
};
pub use select::{SelectError, SnapshotFilter};
pub use snapshot::{
    CassandraDetails, CassandraTable, ChunkSizes, CommandDetails, CopyOrigin, RedisDetails, RedisKeyspace, S3Details,
    Snapshot, SourceDetails, SourceKind, Summary,
};
pub use sources::cassandra::{CassandraError, CassandraLayout, CassandraRestore, CassandraSource};
pub use sources::hooks::{HookError, HookResult, Hooked, Hooks};
pub use sources::redis::{PayloadKind as RedisPayloadKind, RedisError, RedisSource};
#[cfg(feature = "testing")]
pub use sources::s3::testing::{TestBucket, TestObject};
pub use sources::s3::{
    restore_to_s3, S3RestoreFailure, S3RestoreOptions, S3RestoreProgress, S3RestoreSummary, VERSIONS_SUFFIX,
};
pub use sources::{S3Source, SourceError, Stream};
pub use stats::{
    stats, ClassBytes, ClassCost, CostReport, Prices, RepositoryTotals, SourceCost, SourceStats, StatsError, StatsMode,
    StatsOptions, StatsReport, TagStats,
};
pub use tag::{tag_snapshots, SnapshotTagging, TagError, TagOptions, TagReport};
pub use time::{format_ns, now_ns};
pub use tree::{ContentRef, Node, NodeKind, Tree, TreeError, Xattr, SOURCE_XATTR_PREFIX};

/// This program's version, recorded in snapshots.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Backs up `source` into `repo` and saves a snapshot (unless a dry run).
/// The snapshot is written only after everything it references is stored.
pub fn backup(repo: &Repository, source: BackupSource, opts: &BackupOptions) -> Result<BackupOutcome> {
    Ok(backup::backup(repo, source, opts)?)
}

/// Restores `snapshot` (or the part `opts.subpath` names) into `target`.
pub fn restore(repo: &Repository, snapshot: &Snapshot, target: &Path, opts: &RestoreOptions) -> Result<RestoreSummary> {
    Ok(restore::restore(repo, snapshot, target, opts)?)
}

/// The restore layout (`nodetool refresh` or `sstableloader` folders) of
/// the part of a Cassandra snapshot `req` names; refused for other kinds.
pub fn cassandra_layout(snapshot: &Snapshot, req: &CassandraRestore) -> Result<RestoreLayout> {
    Ok(sources::cassandra::layout_for(snapshot, req).map_err(RestoreError::from)?)
}

/// Checks the repository; what is damaged goes into the report, and only a
/// failure to check at all is an error.
pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    Ok(check::check(repo, opts)?)
}

/// Resolves each of `specs` (`latest` or id prefixes) among the snapshots
/// passing `filter`, listing them once.
pub fn find_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    Ok(select::find_snapshots(repo, specs, filter)?)
}

/// Every snapshot passing `filter`, oldest first.
pub fn filter_snapshots(repo: &Repository, filter: &SnapshotFilter) -> Result<Vec<(SnapshotId, Snapshot)>> {
    Ok(select::filter_snapshots(repo, filter)?)
}

/// Resolves `spec` (`latest`, or an id prefix in any case) among the
/// snapshots passing `filter`.
pub fn find_snapshot(repo: &Repository, spec: &str, filter: &SnapshotFilter) -> Result<(SnapshotId, Snapshot)> {
    Ok(select::find_snapshot(repo, spec, filter)?)
}
