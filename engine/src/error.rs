//! The engine's top-level error, wrapping each module's own.

/// Any engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Repository, keys, metadata.
    #[error(transparent)]
    Repository(#[from] crate::repository::RepositoryError),
    /// Storage.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// Backup.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// Restore.
    #[error(transparent)]
    Restore(#[from] crate::restore::RestoreError),
    /// Snapshot selection.
    #[error(transparent)]
    Select(#[from] crate::select::SelectError),
    /// Check.
    #[error(transparent)]
    Check(#[from] crate::check::CheckError),
    /// Browsing (ls, find, diff, dump).
    #[error(transparent)]
    Browse(#[from] crate::browse::BrowseError),
    /// Stream sources.
    #[error(transparent)]
    Source(#[from] crate::sources::SourceError),
    /// Recovery sheet.
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
}

impl Error {
    /// True when the failure is a wrong password (the CLI gives it its own exit code).
    pub fn is_wrong_password(&self) -> bool {
        matches!(
            self,
            Error::Repository(crate::repository::RepositoryError::WrongPassword { .. })
        )
    }
}
