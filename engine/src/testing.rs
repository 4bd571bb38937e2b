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

/// Bytes without repeats (xorshift from `x`, which must not be 0):
/// content-defined cuts vary and zstd cannot shrink them.
pub(crate) fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
