//! The engine's top-level error and the one classification of every
//! module's errors, so the CLI maps failures to exit codes by asking
//! [`Error::kind`] (or [`ErrorKind::of`] on any error in a chain) instead of
//! knowing how the module errors nest.

use crate::backend::BackendError;
use crate::backup::BackupError;
use crate::blob::BlobError;
use crate::browse::BrowseError;
use crate::check::CheckError;
use crate::copy::{CopyError, RechunkError};
use crate::crypto::CryptoError;
use crate::id::{ParseIdError, PrefixError};
use crate::import::restic::ResticError;
use crate::import::ImportError;
use crate::index::IndexError;
use crate::lock::LockError;
use crate::mount::MountError;
use crate::prune::PruneError;
use crate::recovery::RecoveryError;
use crate::repair::RepairError;
use crate::repository::RepositoryError;
use crate::restore::RestoreError;
use crate::rewrite::RewriteError;
use crate::select::SelectError;
use crate::sources::SourceError;
use crate::stats::StatsError;
use crate::tag::TagError;

/// Any engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Repository, keys, metadata.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storage.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Backup.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// Restore.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Snapshot selection.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// Check.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// Rewrite.
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// Tag changes.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// Browsing (ls, find, diff, dump).
    #[error(transparent)]
    Browse(#[from] BrowseError),
    /// Stream sources.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Recovery sheet.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The maintenance lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// An id that does not parse.
    #[error(transparent)]
    Id(#[from] ParseIdError),
    /// Prune.
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// Repair.
    #[error(transparent)]
    Repair(#[from] RepairError),
    /// Copy.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// Stats.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// Mount.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Import from another tool's repository.
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// The result type of the engine's public functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an error is: what a caller (a person, a script, the
/// CLI's exit code) can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No key opens with the password (or the recovery key is wrong).
    WrongPassword,
    /// The location holds no repository.
    NotARepository,
    /// Another process holds the repository's lock.
    Locked,
    /// Data is in archive storage; its retrieval is requested, not finished.
    RetrievalPending,
    /// Stored data is damaged or missing.
    Damaged,
    /// The request itself is wrong: bad option, pattern, id, path, name.
    InvalidInput,
    /// What was asked for (snapshot, path, key, object) does not exist.
    NotFound,
    /// The storage failed (temporary or permanent) or refused access.
    Storage,
    /// Reading or writing local files failed.
    Io,
    /// A command whose output was being backed up failed.
    CommandFailed {
        /// Its exit status, when it exited.
        code: Option<i32>,
    },
    /// Stopped on request (a signal): nothing was finished, nothing lost.
    Interrupted,
    /// A bug or an unexpected failure of the engine itself.
    Internal,
}

impl ErrorKind {
    /// The kind of `e` if it is one of the engine's errors (for walking an
    /// error chain whose links the caller does not know).
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
        macro_rules! try_each {
            ($($t:ty),*) => {
                $(if let Some(x) = e.downcast_ref::<$t>() { return Some(x.kind()); })*
            };
        }
        try_each!(
            Error,
            RepositoryError,
            BackendError,
            BackupError,
            RestoreError,
            SelectError,
            CheckError,
            RewriteError,
            TagError,
            BrowseError,
            SourceError,
            RecoveryError,
            LockError,
            ParseIdError,
            PrefixError,
            PruneError,
            RepairError,
            CopyError,
            StatsError,
            MountError,
            ImportError,
            ResticError
        );
        None
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Repository(e) => e.kind(),
            Error::Backend(e) => e.kind(),
            Error::Backup(e) => e.kind(),
            Error::Restore(e) => e.kind(),
            Error::Select(e) => e.kind(),
            Error::Check(e) => e.kind(),
            Error::Rewrite(e) => e.kind(),
            Error::Tag(e) => e.kind(),
            Error::Browse(e) => e.kind(),
            Error::Source(e) => e.kind(),
            Error::Recovery(e) => e.kind(),
            Error::Lock(e) => e.kind(),
            Error::Id(e) => e.kind(),
            Error::Prune(e) => e.kind(),
            Error::Repair(e) => e.kind(),
            Error::Copy(e) => e.kind(),
            Error::Stats(e) => e.kind(),
            Error::Mount(e) => e.kind(),
            Error::Import(e) => e.kind(),
        }
    }

    /// True when the failure is a wrong password.
    pub fn is_wrong_password(&self) -> bool {
        self.kind() == ErrorKind::WrongPassword
    }
}

impl RepositoryError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use RepositoryError as E;
        match self {
            E::NotARepository { .. } => ErrorKind::NotARepository,
            E::AlreadyExists { .. } | E::NotEmpty { .. } | E::KeyRefused(_) | E::InvalidOption(_) => {
                ErrorKind::InvalidInput
            }
            E::WrongPassword { .. } | E::WrongRecoveryKey => ErrorKind::WrongPassword,
            E::NoKeys { .. } | E::Corrupt { .. } | E::MissingBlob { .. } => ErrorKind::Damaged,
            E::UnsupportedFormat { .. } => ErrorKind::InvalidInput,
            E::Backend(b) => b.kind(),
            E::Crypto(c) => crypto_kind(c),
            E::Encoding(_) => ErrorKind::Internal,
            E::Index(i) => index_kind(i),
            E::Prefix(p) => p.kind(),
            E::Recovery(r) => r.kind(),
        }
    }
}

impl BackendError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::NotFound { .. } => ErrorKind::Damaged,
            BackendError::Archived { .. } => ErrorKind::RetrievalPending,
            BackendError::AlreadyExists { .. }
            | BackendError::OutOfRange { .. }
            | BackendError::Denied { .. }
            | BackendError::Retained { .. }
            | BackendError::NoSpace { .. }
            | BackendError::Transient { .. }
            | BackendError::Other { .. } => ErrorKind::Storage,
        }
    }
}

impl BackupError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Source { .. } => ErrorKind::Io,
            BackupError::BadPattern { .. } | BackupError::Invalid(_) => ErrorKind::InvalidInput,
            BackupError::Stream(s) => s.kind(),
            BackupError::Backend(b) => b.kind(),
            BackupError::Repository(r) => r.kind(),
            BackupError::Blob(b) => blob_kind(b),
            BackupError::Pack(_) | BackupError::Encoding(_) => ErrorKind::Internal,
            BackupError::PipelineStopped | BackupError::Thread(_) | BackupError::ThreadPanicked => ErrorKind::Internal,
            BackupError::ReusedDataDeleted { .. } => ErrorKind::Storage,
            BackupError::Interrupted => ErrorKind::Interrupted,
            BackupError::Cassandra(c) => c.kind(),
        }
    }
}

impl RestoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RestoreError::TargetExists { .. } | RestoreError::BadPattern { .. } => ErrorKind::InvalidInput,
            RestoreError::PathNotFound(_) => ErrorKind::NotFound,
            RestoreError::Incomplete { damaged: true, .. } => ErrorKind::Damaged,
            RestoreError::PreserveSpecialNeedsRoot => ErrorKind::InvalidInput,
            RestoreError::Io { .. } | RestoreError::Incomplete { damaged: false, .. } => ErrorKind::Io,
            RestoreError::RetrievalPending { .. } => ErrorKind::RetrievalPending,
            RestoreError::Repository(r) => r.kind(),
            RestoreError::Backend(b) => b.kind(),
            RestoreError::Cassandra(c) => c.kind(),
        }
    }
}

impl SelectError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SelectError::NotFound(_) => ErrorKind::NotFound,
            SelectError::Ambiguous(..) => ErrorKind::InvalidInput,
            SelectError::Damaged { .. } => ErrorKind::Damaged,
            SelectError::Repository(r) => r.kind(),
        }
    }
}

impl CheckError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CheckError::Repository(r) => r.kind(),
            CheckError::Backend(b) => b.kind(),
            CheckError::BadSubset(_) => ErrorKind::InvalidInput,
        }
    }
}

impl RepairError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RepairError::Repository(e) => e.kind(),
            RepairError::Backend(e) => e.kind(),
            RepairError::Lock(e) => e.kind(),
            RepairError::Save(e) => e.kind(),
            RepairError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl CopyError {
    /// What kind of failure this is: pending retrievals are what restore
    /// reports them as (exit 14 in the CLI).
    pub fn kind(&self) -> ErrorKind {
        match self {
            CopyError::Repository(e) => e.kind(),
            CopyError::Backend(e) => e.kind(),
            CopyError::Save(e) => e.kind(),
            CopyError::Rechunk(e) => rechunk_kind(e),
            CopyError::Damaged(_) | CopyError::SourceDamaged { .. } => ErrorKind::Damaged,
            CopyError::RetrievalPending { .. } => ErrorKind::RetrievalPending,
            CopyError::Interrupted { .. } => ErrorKind::Interrupted,
            CopyError::Thread(_) => ErrorKind::Internal,
            CopyError::Unsupported(_) => ErrorKind::InvalidInput,
        }
    }
}

/// Unreadable source data keeps its own kind (missing, damaged, archived,
/// storage); content that contradicts its tree is damage.
fn rechunk_kind(e: &RechunkError) -> ErrorKind {
    match e {
        RechunkError::Content { source, .. } | RechunkError::Tree { source, .. } => source.kind(),
        RechunkError::Length { .. } | RechunkError::Size { .. } => ErrorKind::Damaged,
        RechunkError::Read { .. } => ErrorKind::Io,
        RechunkError::Save(e) => e.kind(),
        RechunkError::Repository(e) => e.kind(),
    }
}

impl RewriteError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RewriteError::NoPatterns => ErrorKind::InvalidInput,
            RewriteError::Pattern(e) => e.kind(),
            RewriteError::Repository(e) => e.kind(),
            RewriteError::Save(e) => e.kind(),
            RewriteError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl TagError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TagError::NoChange | TagError::SetWithAddOrRemove | TagError::EmptyTag { .. } => ErrorKind::InvalidInput,
            TagError::Repository(e) => e.kind(),
            TagError::Verify(e) => e.kind(),
        }
    }
}

impl StatsError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StatsError::Repository(e) => e.kind(),
        }
    }
}

impl MountError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MountError::Mountpoint(_) => ErrorKind::InvalidInput,
            MountError::Mount { .. } | MountError::Unmount { .. } => ErrorKind::Io,
            MountError::Repository(e) => e.kind(),
        }
    }
}

impl BrowseError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BrowseError::Path(_) => ErrorKind::NotFound,
            BrowseError::Pattern(..) => ErrorKind::InvalidInput,
            BrowseError::Output(_) => ErrorKind::Io,
            BrowseError::Repository(r) | BrowseError::Unreadable { error: r, .. } => r.kind(),
        }
    }
}

impl SourceError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SourceError::Spawn { .. } => ErrorKind::InvalidInput,
            SourceError::CommandFailed { code, .. } => ErrorKind::CommandFailed { code: *code },
            SourceError::Read { .. } => ErrorKind::Io,
        }
    }
}

impl RecoveryError {
    /// What kind of failure this is: a mistyped sheet is bad input.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl LockError {
    /// What kind of failure this is: a lock held by another process, or
    /// lost to one, is `Locked` (try again later).
    pub fn kind(&self) -> ErrorKind {
        match self {
            LockError::Held { .. } | LockError::Lost { .. } => ErrorKind::Locked,
            LockError::Repository(r) => r.kind(),
            LockError::Backend(b) => b.kind(),
            LockError::Thread(_) => ErrorKind::Internal,
        }
    }
}

impl ParseIdError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl PrefixError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PrefixError::NotFound { .. } => ErrorKind::NotFound,
            PrefixError::Ambiguous { .. } => ErrorKind::InvalidInput,
        }
    }
}

fn crypto_kind(e: &CryptoError) -> ErrorKind {
    match e {
        CryptoError::Authentication | CryptoError::Truncated { .. } => ErrorKind::Damaged,
        CryptoError::KdfOutOfBounds(_) => ErrorKind::InvalidInput,
        CryptoError::Random(_) | CryptoError::Kdf(_) => ErrorKind::Internal,
    }
}

fn blob_kind(e: &BlobError) -> ErrorKind {
    match e {
        BlobError::Crypto(c) => crypto_kind(c),
        BlobError::Compress(_) => ErrorKind::Internal,
        BlobError::Corrupt(_) => ErrorKind::Damaged,
    }
}

fn index_kind(e: &IndexError) -> ErrorKind {
    match e {
        IndexError::TooManyPacks => ErrorKind::InvalidInput,
    }
}
