//! Helpers for the engine's unit tests.

use std::sync::Arc;

use crate::backend::memory::MemoryBackend;
use crate::crypto::KdfParams;
use crate::repository::{InitOptions, Repository, RepositoryError};

/// Argon2id at its cheapest: test repositories open at once.
pub(crate) const CHEAP_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// A new repository on `backend` with `password` and `kdf`, defaults otherwise.
pub(crate) fn init_with(
    backend: &Arc<MemoryBackend>,
    password: &[u8],
    kdf: KdfParams,
) -> Result<Repository, RepositoryError> {
    let opts = InitOptions {
        kdf,
        ..Default::default()
    };
    Repository::init(backend.clone(), password, opts)
}

/// A new in-memory repository with password `pw`.
pub(crate) fn memory_repo() -> Repository {
    init_with(&Arc::new(MemoryBackend::new()), b"pw", CHEAP_KDF).expect("a memory repository")
}
