//! A repository: a backend plus the keys that open it. Creating, opening,
//! key management, and reading and writing of encrypted metadata objects.

pub mod config;
pub mod keys;

use std::sync::Arc;

use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Backend, BackendError, ObjectKind};
use crate::blob::{self, Aad, BlobError, BlobType, Compression};
use crate::crypto::{self, CryptoError, KdfParams, Keys, MasterKey};
use crate::encoding::{self, EncodingError};
use crate::id::{BlobId, ObjectId, PackId, SnapshotId, TreeId};
use crate::index::{Index, IndexError, IndexFile, INDEX_KIND, INDEX_VERSION};
use crate::pack::{self, PackError};
use crate::snapshot::{Snapshot, SNAPSHOT_KIND, SNAPSHOT_VERSION};
use crate::tree::{Tree, TREE_VERSION};

pub use config::{ChunkerParams, Config, FORMAT_VERSION};
pub use keys::KeyFile;

/// One index object by name: decoded, or why it could not be.
pub type IndexObject = (String, Result<IndexFile, RepositoryError>);

/// Readable snapshots (oldest first) and the errors of damaged ones.
pub type LenientSnapshots = (Vec<(SnapshotId, Snapshot)>, Vec<RepositoryError>);

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
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::default(),
            chunker: None,
            compression_level: Config::DEFAULT_COMPRESSION,
            pack_size: Config::DEFAULT_PACK_SIZE,
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

fn host_and_user() -> (String, String) {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    (host, user)
}

impl Repository {
    /// Creates a repository at an empty location, protected by `password`.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], opts: InitOptions) -> Result<Self, RepositoryError> {
        if backend.stat(ObjectKind::Config, "config")?.is_some() {
            return Err(RepositoryError::AlreadyExists {
                location: backend.location(),
            });
        }
        let chunker = match opts.chunker {
            Some(c) => c,
            None => {
                let mut seed = [0u8; 8];
                crypto::random_bytes(&mut seed)?;
                ChunkerParams::with_seed(u64::from_le_bytes(seed))
            }
        };
        chunker.validate().map_err(RepositoryError::InvalidOption)?;
        if opts.pack_size < 1024 * 1024 || opts.pack_size > Config::MAX_PACK_SIZE {
            return Err(RepositoryError::InvalidOption(format!(
                "pack size {} must be between 1 MiB and 1 GiB",
                opts.pack_size
            )));
        }
        if !(0..=22).contains(&opts.compression_level) {
            return Err(RepositoryError::InvalidOption(format!(
                "compression level {} must be 0 (off) to 22",
                opts.compression_level
            )));
        }
        let mut repository_id = [0u8; 32];
        crypto::random_bytes(&mut repository_id)?;
        let config = Config {
            format_version: FORMAT_VERSION,
            repository_id: crate::id::RepositoryId(repository_id),
            chunker,
            compression_level: opts.compression_level,
            pack_size: opts.pack_size,
            created_ns: crate::time::now_ns(),
        };
        let master = MasterKey::generate()?;
        let keys = master.derive();
        backend.create()?;
        let mut repo = Self {
            backend,
            master,
            keys,
            config,
            key_name: None,
        };
        // The key goes first: a config without a key could never be opened,
        // a key without a config is just an unfinished init.
        let name = repo.add_key(password, opts.kdf)?;
        repo.key_name = Some(name);
        let sealed = repo.seal_object(CONFIG_KIND, config::CONFIG_VERSION, &repo.config)?;
        repo.backend.write(ObjectKind::Config, "config", &sealed)?;
        Ok(repo)
    }

    /// Opens a repository with a password.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Self, RepositoryError> {
        let sealed_config = match backend.read(ObjectKind::Config, "config") {
            Ok(c) => c,
            Err(BackendError::NotFound { .. }) => {
                return Err(RepositoryError::NotARepository {
                    location: backend.location(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let key_objects = backend.list(ObjectKind::Key)?;
        if key_objects.is_empty() {
            return Err(RepositoryError::NoKeys {
                location: backend.location(),
            });
        }
        let mut damaged: Vec<(String, String)> = Vec::new();
        for k in &key_objects {
            let checked = Self::read_key_file(backend.as_ref(), &k.name).and_then(|kf| {
                kf.kdf.check_bounds().map_err(|detail| RepositoryError::Corrupt {
                    kind: ObjectKind::Key,
                    name: k.name.clone(),
                    detail,
                })?;
                Ok(kf)
            });
            let kf = match checked {
                Ok(kf) => kf,
                Err(e) => {
                    // One bad key object must not lock out the others.
                    tracing::warn!("skipping damaged key {}: {e}", k.name);
                    damaged.push((k.name.clone(), e.to_string()));
                    continue;
                }
            };
            match kf.unwrap_master(password) {
                Ok(master) => {
                    let mut repo = Self::open_with_master(backend.clone(), master, &sealed_config)?;
                    repo.key_name = Some(k.name.clone());
                    return Ok(repo);
                }
                Err(CryptoError::Authentication) => continue,
                Err(e) => {
                    tracing::warn!("skipping key {}: {e}", k.name);
                    damaged.push((k.name.clone(), e.to_string()));
                }
            }
        }
        let usable = key_objects.len() - damaged.len();
        if usable == 0 {
            // Nothing could even be tried: that is damage, not a wrong password.
            let (name, detail) = damaged.swap_remove(0);
            return Err(RepositoryError::Corrupt {
                kind: ObjectKind::Key,
                name,
                detail: format!("{detail}; no usable key is left (use `cairn key recover` with the recovery sheet)"),
            });
        }
        Err(RepositoryError::WrongPassword { keys: usable })
    }

    /// Opens with the master key itself (from a recovery sheet).
    pub fn open_with_recovery_key(backend: Arc<dyn Backend>, master: MasterKey) -> Result<Self, RepositoryError> {
        let sealed_config = match backend.read(ObjectKind::Config, "config") {
            Ok(c) => c,
            Err(BackendError::NotFound { .. }) => {
                return Err(RepositoryError::NotARepository {
                    location: backend.location(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        // Only a failure to decrypt means the key is wrong; anything after
        // that is damage and is reported as such.
        if blob::open(&master.derive(), Aad::Object(CONFIG_KIND), &sealed_config).is_err() {
            return Err(RepositoryError::WrongRecoveryKey);
        }
        Self::open_with_master(backend, master, &sealed_config)
    }

    fn open_with_master(
        backend: Arc<dyn Backend>,
        master: MasterKey,
        sealed_config: &[u8],
    ) -> Result<Self, RepositoryError> {
        let keys = master.derive();
        let corrupt = |detail: String| RepositoryError::Corrupt {
            kind: ObjectKind::Config,
            name: "config".into(),
            detail,
        };
        let plain = blob::open(&keys, Aad::Object(CONFIG_KIND), sealed_config).map_err(|e| corrupt(e.to_string()))?;
        let (_, config): (u8, Config) =
            encoding::decode("config", config::CONFIG_VERSION, &plain).map_err(|e| corrupt(e.to_string()))?;
        if config.format_version > FORMAT_VERSION {
            return Err(RepositoryError::UnsupportedFormat {
                found: config.format_version,
                supported: FORMAT_VERSION,
            });
        }
        config.chunker.validate().map_err(corrupt)?;
        Ok(Self {
            backend,
            master,
            keys,
            config,
            key_name: None,
        })
    }

    fn read_key_file(backend: &dyn Backend, name: &str) -> Result<KeyFile, RepositoryError> {
        let bytes = backend.read(ObjectKind::Key, name)?;
        let corrupt = |detail: String| RepositoryError::Corrupt {
            kind: ObjectKind::Key,
            name: name.to_string(),
            detail,
        };
        if ObjectId::of_bytes(&bytes).to_hex() != name {
            return Err(corrupt("content does not match its name".into()));
        }
        let (_, kf) = encoding::decode("key", keys::KEY_VERSION, &bytes).map_err(|e| corrupt(e.to_string()))?;
        Ok(kf)
    }

    /// The same repository with writes discarded (`--dry-run`).
    pub fn with_dry_run(&self) -> Self {
        let mut r = self.clone();
        r.backend = Arc::new(crate::backend::dryrun::DryRunBackend::new(self.backend.clone()));
        r
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Derived sub-keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The master key (for the recovery sheet only).
    pub fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// Name of the key object that opened the repository, if any.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Compression settings from the config.
    pub fn compression(&self) -> Compression {
        Compression {
            level: self.config.compression_level,
        }
    }

    /// Adds a key object for `password`; returns its name.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String, RepositoryError> {
        if password.is_empty() {
            return Err(RepositoryError::KeyRefused("an empty password is not allowed".into()));
        }
        let (host, user) = host_and_user();
        let kf = KeyFile::wrap(&self.master, password, kdf, host, user)?;
        let bytes = encoding::encode("key", keys::KEY_VERSION, &kf)?;
        let name = ObjectId::of_bytes(&bytes).to_hex();
        self.backend.write(ObjectKind::Key, &name, &bytes)?;
        Ok(name)
    }

    /// Every key object, by name.
    pub fn list_keys(&self) -> Result<Vec<(String, KeyFile)>, RepositoryError> {
        let mut out = Vec::new();
        for k in self.backend.list(ObjectKind::Key)? {
            let kf = Self::read_key_file(self.backend.as_ref(), &k.name)?;
            out.push((k.name, kf));
        }
        Ok(out)
    }

    /// Resolves a unique prefix of a key name.
    pub fn find_key(&self, prefix: &str) -> Result<String, RepositoryError> {
        let names: Vec<String> = self
            .backend
            .list(ObjectKind::Key)?
            .into_iter()
            .map(|o| o.name)
            .filter(|n| n.starts_with(prefix))
            .collect();
        match names.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(RepositoryError::KeyRefused(format!("no key starts with `{prefix}`"))),
            _ => Err(RepositoryError::KeyRefused(format!(
                "`{prefix}` matches {} keys; give more digits",
                names.len()
            ))),
        }
    }

    /// Removes a key object. Refuses the last key and the key in use.
    pub fn remove_key(&self, name: &str) -> Result<(), RepositoryError> {
        let all = self.backend.list(ObjectKind::Key)?;
        if all.len() <= 1 {
            return Err(RepositoryError::KeyRefused(
                "refusing to remove the last key: the repository could not be opened any more".into(),
            ));
        }
        if self.key_name.as_deref() == Some(name) {
            return Err(RepositoryError::KeyRefused(
                "refusing to remove the key in use; open with another password first".into(),
            ));
        }
        self.backend.remove(ObjectKind::Key, name)?;
        Ok(())
    }

    /// Seals a metadata value: version byte + bincode, compressed, encrypted.
    pub fn seal_object<T: Serialize>(
        &self,
        kind: &'static str,
        version: u8,
        value: &T,
    ) -> Result<Vec<u8>, RepositoryError> {
        let plain = encoding::encode(kind, version, value)?;
        blob::seal(&self.keys, Aad::Object(kind), &plain, self.compression()).map_err(|e| match e {
            BlobError::Crypto(c) => RepositoryError::Crypto(c),
            other => RepositoryError::InvalidOption(other.to_string()),
        })
    }

    /// Reads, verifies and decodes a content-named metadata object.
    pub fn load_object<T: DeserializeOwned>(
        &self,
        kind: ObjectKind,
        aad_kind: &'static str,
        version: u8,
        name: &str,
    ) -> Result<T, RepositoryError> {
        let bytes = self.backend.read(kind, name)?;
        let corrupt = |detail: String| RepositoryError::Corrupt {
            kind,
            name: name.to_string(),
            detail,
        };
        if ObjectId::of_bytes(&bytes).to_hex() != name {
            return Err(corrupt("content does not match its name (damaged or truncated)".into()));
        }
        let plain = blob::open(&self.keys, Aad::Object(aad_kind), &bytes).map_err(|e| corrupt(e.to_string()))?;
        let (_, v) = encoding::decode(aad_kind, version, &plain).map_err(|e| corrupt(e.to_string()))?;
        Ok(v)
    }

    /// Seals and stores a metadata object under its content hash.
    pub fn save_object<T: Serialize>(
        &self,
        kind: ObjectKind,
        aad_kind: &'static str,
        version: u8,
        value: &T,
    ) -> Result<(ObjectId, u64), RepositoryError> {
        let sealed = self.seal_object(aad_kind, version, value)?;
        let id = ObjectId::of_bytes(&sealed);
        match self.backend.write(kind, &id.to_hex(), &sealed) {
            // Same name means same bytes: already durably stored.
            Ok(()) | Err(BackendError::AlreadyExists { .. }) => Ok((id, sealed.len() as u64)),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a snapshot. Callers must have stored everything it references.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId, RepositoryError> {
        let (id, _) = self.save_object(ObjectKind::Snapshot, SNAPSHOT_KIND, SNAPSHOT_VERSION, snap)?;
        Ok(SnapshotId(id.0))
    }

    /// Loads one snapshot.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot, RepositoryError> {
        self.load_object(ObjectKind::Snapshot, SNAPSHOT_KIND, SNAPSHOT_VERSION, &id.to_hex())
    }

    /// Every readable snapshot, oldest first, and the errors of those that
    /// are not: one damaged snapshot must not stop new backups.
    pub fn list_snapshots_lenient(&self) -> Result<LenientSnapshots, RepositoryError> {
        let names = self.backend.list(ObjectKind::Snapshot)?;
        let results: Vec<Result<(SnapshotId, Snapshot), RepositoryError>> = names
            .par_iter()
            .map(|o| {
                let id = SnapshotId::from_hex(&o.name).map_err(|e| RepositoryError::Corrupt {
                    kind: ObjectKind::Snapshot,
                    name: o.name.clone(),
                    detail: e.to_string(),
                })?;
                Ok((id, self.load_snapshot(&id)?))
            })
            .collect();
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for r in results {
            match r {
                Ok(v) => ok.push(v),
                Err(e @ RepositoryError::Corrupt { .. }) => bad.push(e),
                Err(e) => return Err(e),
            }
        }
        ok.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok((ok, bad))
    }

    /// Every snapshot, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>, RepositoryError> {
        let (ok, mut damaged) = self.list_snapshots_lenient()?;
        match damaged.pop() {
            // Commands that list snapshots for the user must not hide damage.
            Some(e) => Err(e),
            None => Ok(ok),
        }
    }

    /// Every index object by name, read in parallel, each decoded or with
    /// its own error (so one damaged object can be skipped or named).
    pub fn load_index_files(&self) -> Result<Vec<IndexObject>, RepositoryError> {
        let names = self.backend.list(ObjectKind::Index)?;
        Ok(names
            .par_iter()
            .map(|o| {
                (
                    o.name.clone(),
                    self.load_object(ObjectKind::Index, INDEX_KIND, INDEX_VERSION, &o.name),
                )
            })
            .collect())
    }

    /// Stores an index object.
    pub fn save_index(&self, file: &IndexFile) -> Result<(ObjectId, u64), RepositoryError> {
        self.save_object(ObjectKind::Index, INDEX_KIND, INDEX_VERSION, file)
    }

    /// Reads every index object (in parallel) and builds the in-memory index.
    ///
    /// A damaged index object is skipped with a warning: its blobs then count
    /// as unknown, so a backup stores them again and a restore that needs
    /// them fails naming the blob; `check` reports the object itself.
    pub fn load_index(&self) -> Result<Index, RepositoryError> {
        let results = self.load_index_files()?;
        let mut files = Vec::with_capacity(results.len());
        for (_, r) in results {
            match r {
                Ok(f) => files.push(f),
                Err(e @ RepositoryError::Corrupt { .. }) => tracing::warn!("ignoring {e}; run `cairn check`"),
                Err(e) => return Err(e),
            }
        }
        Ok(Index::from_files(files)?)
    }

    /// Opens a sealed blob read from its pack.
    pub fn open_blob(
        &self,
        blob_type: BlobType,
        id: &BlobId,
        pack: &PackId,
        sealed: &[u8],
    ) -> Result<Vec<u8>, RepositoryError> {
        let kind = pack_kind(blob_type);
        blob::open(&self.keys, Aad::Blob(blob_type, id), sealed).map_err(|e| RepositoryError::Corrupt {
            kind,
            name: pack.to_hex(),
            detail: format!("blob {}: {e}", id.short()),
        })
    }

    /// Opens a sealed blob inside a buffer the caller owns (see
    /// [`blob::open_in_place`]).
    pub fn open_blob_in_place<'a>(
        &self,
        blob_type: BlobType,
        id: &BlobId,
        pack: &PackId,
        sealed: &'a mut [u8],
    ) -> Result<blob::Plain<'a>, RepositoryError> {
        let kind = pack_kind(blob_type);
        blob::open_in_place(&self.keys, Aad::Blob(blob_type, id), sealed).map_err(|e| RepositoryError::Corrupt {
            kind,
            name: pack.to_hex(),
            detail: format!("blob {}: {e}", id.short()),
        })
    }

    /// Reads one blob through the index.
    pub fn read_blob(&self, index: &Index, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        let loc = index.get(id).ok_or(RepositoryError::MissingBlob { id: *id })?;
        let sealed = self.backend.read_range(
            pack_kind(loc.blob_type),
            &loc.pack.to_hex(),
            u64::from(loc.offset),
            u64::from(loc.length),
        )?;
        self.open_blob(loc.blob_type, id, &loc.pack, &sealed)
    }

    /// Reads and decodes a tree.
    pub fn load_tree(&self, index: &Index, id: &TreeId) -> Result<Tree, RepositoryError> {
        let plain = self.read_blob(index, id)?;
        let (_, tree) = encoding::decode("tree", TREE_VERSION, &plain).map_err(|e| RepositoryError::Corrupt {
            kind: ObjectKind::TreePack,
            name: index.get(id).map(|l| l.pack.to_hex()).unwrap_or_default(),
            detail: format!("tree {}: {e}", id.short()),
        })?;
        Ok(tree)
    }

    /// Reads a whole pack and lists its blobs from the header.
    pub fn read_pack_header(&self, kind: ObjectKind, name: &str) -> Result<Vec<pack::PackEntry>, RepositoryError> {
        let size = self
            .backend
            .stat(kind, name)?
            .ok_or_else(|| BackendError::NotFound { path: kind.path(name) })?;
        if size < 4 {
            return Err(RepositoryError::Corrupt {
                kind,
                name: name.into(),
                detail: "shorter than its trailer".into(),
            });
        }
        let trailer = self.backend.read_range(kind, name, size - 4, 4)?;
        let pe = |e: PackError| RepositoryError::Corrupt {
            kind,
            name: name.into(),
            detail: e.to_string(),
        };
        let (off, len) = pack::header_location(name, size, &trailer).map_err(pe)?;
        let sealed = self.backend.read_range(kind, name, off, len)?;
        pack::parse_header(&self.keys, name, &sealed, off).map_err(pe)
    }
}

/// The object kind of packs holding blobs of `t`.
pub fn pack_kind(t: BlobType) -> ObjectKind {
    match t {
        BlobType::Data => ObjectKind::DataPack,
        BlobType::Tree => ObjectKind::TreePack,
    }
}
