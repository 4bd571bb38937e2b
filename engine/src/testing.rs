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

/// A snapshot with every field empty or zero, for tests to fill in.
pub(crate) fn test_snapshot() -> crate::snapshot::Snapshot {
    crate::snapshot::Snapshot {
        time_ns: 0,
        host: String::new(),
        user: String::new(),
        uid: 0,
        gid: 0,
        tags: Vec::new(),
        paths: Vec::new(),
        excludes: Vec::new(),
        source: crate::snapshot::SourceKind::Files,
        tree: crate::id::TreeId::from_bytes([0; 32]),
        parent: None,
        program_version: String::new(),
        summary: Default::default(),
        rewritten_from: None,
        details: Default::default(),
        chunk_sizes: None,
        copied_from: None,
    }
}
