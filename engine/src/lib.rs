//! Cairn's engine: a content-addressed, encrypted, deduplicating backup
//! repository. The pipeline, by module:
//!
//! sources → [`chunker`] → [`blob`] (seal: zstd + XChaCha20-Poly1305) →
//! [`pack`] → [`backend`], with [`index`] recording where each blob went, and
//! [`tree`] / [`snapshot`] describing what was backed up. [`backup`] and
//! [`restore`] drive it; [`check`] verifies it.
#![warn(missing_docs)]

pub mod backend;
pub mod backup;
pub mod blob;
pub mod browse;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod encoding;
pub mod error;
pub mod id;
pub mod index;
pub mod pack;
pub mod recovery;
pub mod repository;
pub mod restore;
pub mod retrieve;
pub mod select;
pub mod snapshot;
pub mod sources;
pub mod time;
pub mod tree;

pub use backend::{local::LocalBackend, memory::MemoryBackend, Backend, BackendError, ObjectKind};
pub use backup::{backup, BackupOptions, BackupSource};
pub use error::Error;
pub use id::{BlobId, ObjectId, PackId, SnapshotId, TreeId};
pub use repository::{InitOptions, Repository, RepositoryError};
pub use restore::{restore, RestoreOptions};
pub use snapshot::{Snapshot, SourceKind, Summary};

/// This program's version, recorded in snapshots.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
