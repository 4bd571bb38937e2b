//! A repository: a backend plus the keys that open it.
//!
//! By file: [`open`](self) creating and opening, and the key objects that
//! hold the master key; `objects` the sealed, content-named metadata objects
//! (snapshots, index objects) behind one [`RepoFile`] description each;
//! `blobs` blobs and trees read through the index, and pack headers.

mod blobs;
pub mod config;
pub mod keys;
mod objects;
mod open;

use std::sync::Arc;

use crate::backend::{Backend, BackendError, ObjectKind};
use crate::blob::{BlobType, Compression};
use crate::crypto::{BlobIdKey, CryptoError, KdfParams, Keys, MasterKey};
use crate::encoding::EncodingError;
use crate::id::{BlobId, PrefixError};
use crate::index::IndexError;

pub use crate::chunker::ChunkerParams;
pub use config::{Config, FORMAT_VERSION};
pub use keys::KeyFile;
pub use objects::{IndexObject, RepoFile, SnapshotList};
pub(crate) use open::host_and_user;

/// Object kind bound into the config's authenticated data.
pub const CONFIG_KIND: &str = "config";

/// Errors of opening and using a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// No config object at the location.
    #[error("{location} is not a cairn repository (no config object); create one with `cairn init`")]
    NotARepository {
        /// Where we looked.
        location: String,
    },
    /// `init` on a location that already holds a repository.
    #[error("{location} already holds a cairn repository")]
    AlreadyExists {
        /// Where.
        location: String,
    },
    /// `init` on a location without a config that still holds objects of a
    /// repository (its config lost, or an unfinished init): a new
    /// repository there would mix with, or hide, the old one.
    #[error("{location} holds {what} of a cairn repository but no config (the config may be lost); refusing to create a new repository over it. Its data can still be read with the original config (from a copy of the repository); to create a repository here anyway, empty the location first")]
    NotEmpty {
        /// Where.
        location: String,
        /// What was found, e.g. `2 key object(s)`.
        what: String,
    },
    /// No key object opens with the password.
    #[error("wrong password: none of the {keys} key(s) of the repository opens with it")]
    WrongPassword {
        /// Number of key objects tried.
        keys: usize,
    },
    /// The repository has no key objects at all.
    #[error("{location} has no key objects; restore access with `cairn key recover`")]
    NoKeys {
        /// Where.
        location: String,
    },
    /// A stored object failed to decrypt, decode, or match its name.
    #[error("{kind} {name} is damaged: {detail}")]
    Corrupt {
        /// Kind of object.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A blob the repository refers to is not in the index.
    #[error(
        "blob {id} is not in the index (the repository is missing data; `cairn check` lists what else is affected)"
    )]
    MissingBlob {
        /// The blob.
        id: BlobId,
    },
    /// A key operation that would lock everyone out.
    #[error("{0}")]
    KeyRefused(String),
    /// The master key from a recovery sheet does not open the config.
    #[error("the recovery key does not open this repository")]
    WrongRecoveryKey,
    /// The config is from a newer format.
    #[error("repository format version {found} is newer than this cairn supports ({supported}); upgrade cairn")]
    UnsupportedFormat {
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// Invalid options.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Storage failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Cipher or key-derivation failure.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Encoding failure (of our own values).
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// Index failure.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A recovery sheet that does not parse.
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
    /// An id prefix names no single object.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
}

/// Options for a new repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Argon2id cost of the first key.
    pub kdf: KdfParams,
    /// Chunker parameters; `None` for defaults with a random seed. Copying
    /// another repository's makes the two deduplicate alike.
    pub chunker: Option<ChunkerParams>,
    /// zstd level.
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Another repository's blob-id key ([`Repository::blob_id_key`]), so
    /// both name the same content with the same ids; `None`: derived from
    /// the new master key. See [`InitOptions::dedup_like`].
    pub blob_id_key: Option<BlobIdKey>,
}

impl InitOptions {
    /// Makes the new repository chunk and name content exactly as `other`
    /// does (chunker seed and sizes, blob-id key), so copies between the
    /// two keep every blob and tree as it is (`cairn copy`'s fast path).
    pub fn dedup_like(&mut self, other: &Repository) {
        self.chunker = Some(other.config.chunker);
        self.blob_id_key = Some(other.blob_id_key());
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::default(),
            chunker: None,
            compression_level: Config::DEFAULT_COMPRESSION,
            pack_size: Config::DEFAULT_PACK_SIZE,
            blob_id_key: None,
        }
    }
}

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    master: MasterKey,
    keys: Keys,
    config: Config,
    key_name: Option<String>,
}

impl Repository {
    /// The same repository with writes discarded (`--dry-run`).
    pub fn with_dry_run(&self) -> Self {
        let mut r = self.clone();
        r.backend = Arc::new(crate::backend::dryrun::DryRunBackend::new(self.backend.clone()));
        r
    }

    /// The backend.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Derived sub-keys.
    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The recovery sheet: the master key as five lines with check
    /// characters (see `recovery`). Whoever holds it can read everything;
    /// the lines are wiped from memory when dropped.
    pub fn recovery_sheet_lines(&self) -> Vec<zeroize::Zeroizing<String>> {
        crate::recovery::sheet_lines(&self.master)
    }

    /// Name of the key object that opened the repository, if any.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// The key blob ids are computed with: the config's shared one, or the
    /// one the master key derives.
    pub fn blob_id_key(&self) -> BlobIdKey {
        self.config
            .blob_id_key
            .clone()
            .unwrap_or_else(|| self.master.derived_blob_id_key())
    }

    /// The id of a blob with this plaintext in this repository.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        self.keys.blob_id(data)
    }

    /// Whether `other` cuts and names content exactly as this repository
    /// does (same blob-id key, same chunker seed and sizes): then a blob or
    /// tree id means the same plaintext in both, and a copy between them
    /// moves blobs and trees as they are instead of re-chunking files.
    pub fn same_blob_ids(&self, other: &Repository) -> bool {
        self.config.chunker == other.config.chunker && self.blob_id_key() == other.blob_id_key()
    }

    /// Compression settings from the config.
    pub fn compression(&self) -> Compression {
        Compression {
            level: self.config.compression_level,
        }
    }
}

impl RepositoryError {
    /// Damage found in object `name` of `kind`.
    pub(crate) fn corrupt(kind: ObjectKind, name: &str, detail: impl Into<String>) -> Self {
        RepositoryError::Corrupt {
            kind,
            name: name.to_string(),
            detail: detail.into(),
        }
    }
}

/// The bytes of a content-named object, checked against their name: a
/// damaged or truncated object is refused before anything decodes it.
pub(crate) fn read_content_named(
    backend: &dyn Backend,
    kind: ObjectKind,
    name: &str,
) -> Result<Vec<u8>, RepositoryError> {
    let bytes = backend.read(kind, name)?;
    if crate::id::ObjectId::of_bytes(&bytes).to_hex() != name {
        return Err(RepositoryError::corrupt(
            kind,
            name,
            "content does not match its name (damaged or truncated)",
        ));
    }
    Ok(bytes)
}

/// The object kind of packs holding blobs of `t`.
pub fn pack_kind(t: BlobType) -> ObjectKind {
    match t {
        BlobType::Data => ObjectKind::DataPack,
        BlobType::Tree => ObjectKind::TreePack,
    }
}

#[cfg(feature = "testing")]
impl Repository {
    /// The storage under the repository, for tests that damage or decode
    /// objects behind its back.
    pub fn storage(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Opens with the master key itself, as a recovery sheet does.
    pub fn open_with_master_key(backend: Arc<dyn Backend>, master: MasterKey) -> Result<Self, RepositoryError> {
        Self::open_with_recovery_key(backend, master)
    }

    /// The master key, for tests that decode objects independently.
    pub fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// `config` sealed as this repository stores its config object, for the
    /// config test vectors.
    pub fn seal_config(&self, config: &Config) -> Result<Vec<u8>, RepositoryError> {
        self.seal_file(config)
    }
}
