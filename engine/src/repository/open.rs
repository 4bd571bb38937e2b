//! Creating and opening a repository, and the key objects that hold its
//! master key under each password.

use std::sync::Arc;

use super::{keys, InitOptions, KeyFile, Repository, RepositoryError, CONFIG_KIND};
use crate::backend::{Backend, BackendError, ObjectKind};
use crate::blob::{self, Aad};
use crate::chunker::ChunkerParams;
use crate::crypto::{self, CryptoError, KdfParams, MasterKey};
use crate::encoding;
use crate::id::{self, ObjectId};
use crate::repository::config::{Config, FORMAT_VERSION};

/// This host's name and this process's user name (empty when unknown),
/// as recorded in key and lock objects.
pub(crate) fn host_and_user() -> (String, String) {
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

/// The sealed config object; its absence means there is no repository.
fn read_sealed_config(backend: &dyn Backend) -> Result<Vec<u8>, RepositoryError> {
    match backend.read(ObjectKind::Config, "config") {
        Ok(c) => Ok(c),
        Err(BackendError::NotFound { .. }) => Err(RepositoryError::NotARepository {
            location: backend.location(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Refuses a location that holds keys, snapshots, index objects or packs:
/// a repository whose `config` alone was lost must not be overwritten by a
/// new one (its keys would no longer open anything written after).
fn refuse_leftovers(backend: &dyn Backend) -> Result<(), RepositoryError> {
    for kind in [
        ObjectKind::Key,
        ObjectKind::Snapshot,
        ObjectKind::Index,
        ObjectKind::TreePack,
        ObjectKind::DataPack,
    ] {
        let n = backend.list(kind)?.len();
        if n > 0 {
            return Err(RepositoryError::NotEmpty {
                location: backend.location(),
                what: format!("{n} {kind} object(s)"),
            });
        }
    }
    Ok(())
}

/// The sub-keys with the config's shared blob-id key, if it names one.
fn with_config_keys(keys: crate::crypto::Keys, config: &Config) -> crate::crypto::Keys {
    match &config.blob_id_key {
        Some(k) => keys.with_blob_id_key(k),
        None => keys,
    }
}

impl Repository {
    /// Creates a repository at an empty location, protected by `password`.
    /// A location holding any key, snapshot, index object or pack is refused.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], opts: InitOptions) -> Result<Self, RepositoryError> {
        if backend.stat(ObjectKind::Config, "config")?.is_some() {
            return Err(RepositoryError::AlreadyExists {
                location: backend.location(),
            });
        }
        refuse_leftovers(backend.as_ref())?;
        let chunker = match opts.chunker {
            Some(c) => c,
            None => {
                let mut seed = [0u8; 8];
                crypto::random_bytes(&mut seed)?;
                ChunkerParams::with_seed(u64::from_le_bytes(seed))
            }
        };
        chunker.validate().map_err(RepositoryError::InvalidOption)?;
        // Checked here too, before anything is created: a refused init leaves
        // the location as it was.
        opts.kdf.check_bounds().map_err(CryptoError::KdfOutOfBounds)?;
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
            repository_id: id::RepositoryId::from_bytes(repository_id),
            chunker,
            compression_level: opts.compression_level,
            pack_size: opts.pack_size,
            created_ns: crate::time::now_ns(),
            blob_id_key: opts.blob_id_key,
        };
        let master = MasterKey::generate()?;
        let keys = with_config_keys(master.derive(), &config);
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
        let sealed = repo.seal_file(&repo.config)?;
        repo.backend.write(ObjectKind::Config, "config", &sealed)?;
        Ok(repo)
    }

    /// Opens a repository with a password.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Self, RepositoryError> {
        let sealed_config = read_sealed_config(backend.as_ref())?;
        let key_objects = backend.list(ObjectKind::Key)?;
        if key_objects.is_empty() {
            return Err(RepositoryError::NoKeys {
                location: backend.location(),
            });
        }
        let mut damaged: Vec<(String, String)> = Vec::new();
        let mut candidates = Vec::new();
        for k in &key_objects {
            let checked = Self::read_key_file(backend.as_ref(), &k.name).and_then(|kf| {
                kf.kdf.check_bounds().map_err(|detail| RepositoryError::Corrupt {
                    kind: ObjectKind::Key,
                    name: k.name.clone(),
                    detail,
                })?;
                Ok(kf)
            });
            match checked {
                Ok(kf) => candidates.push((k.name.clone(), kf)),
                Err(e) => {
                    // One bad key object must not lock out the others.
                    tracing::warn!("skipping damaged key {}: {e}", k.name);
                    damaged.push((k.name.clone(), e.to_string()));
                }
            }
        }
        keys::cheapest_first(&mut candidates);
        for (name, kf) in candidates {
            match kf.unwrap_master(password) {
                Ok(master) => {
                    let mut repo = Self::open_with_master(backend.clone(), master, &sealed_config)?;
                    repo.key_name = Some(name);
                    return Ok(repo);
                }
                Err(CryptoError::Authentication) => continue,
                Err(e) => {
                    tracing::warn!("skipping key {name}: {e}");
                    damaged.push((name, e.to_string()));
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

    /// Opens with the recovery sheet's text (the five lines, as typed).
    pub fn open_with_recovery_sheet(backend: Arc<dyn Backend>, sheet: &str) -> Result<Self, RepositoryError> {
        let master = crate::recovery::parse_sheet(sheet)?;
        Self::open_with_recovery_key(backend, master)
    }

    /// Opens with the master key itself (from a recovery sheet).
    pub(crate) fn open_with_recovery_key(
        backend: Arc<dyn Backend>,
        master: MasterKey,
    ) -> Result<Self, RepositoryError> {
        let sealed_config = read_sealed_config(backend.as_ref())?;
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
        let config = <Config as super::RepoFile>::decode(&plain).map_err(|e| corrupt(e.to_string()))?;
        if config.format_version > FORMAT_VERSION {
            return Err(RepositoryError::UnsupportedFormat {
                found: config.format_version,
                supported: FORMAT_VERSION,
            });
        }
        config.chunker.validate().map_err(corrupt)?;
        let keys = with_config_keys(keys, &config);
        Ok(Self {
            backend,
            master,
            keys,
            config,
            key_name: None,
        })
    }

    fn read_key_file(backend: &dyn Backend, name: &str) -> Result<KeyFile, RepositoryError> {
        let bytes = super::read_content_named(backend, ObjectKind::Key, name)?;
        KeyFile::decode(&bytes).map_err(|e| RepositoryError::corrupt(ObjectKind::Key, name, e.to_string()))
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

    /// One key object, by its full name.
    pub fn key_file(&self, name: &str) -> Result<KeyFile, RepositoryError> {
        Self::read_key_file(self.backend.as_ref(), name)
    }

    /// Resolves a prefix of a key name (case-insensitive).
    pub fn find_key(&self, prefix: &str) -> Result<String, RepositoryError> {
        self.find_object(ObjectKind::Key, prefix)
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

    /// Replaces the password of the key in use: stores a new key object for
    /// `new_password` (same Argon2 cost as the current one), and only once
    /// that is durable removes the old one. Returns the new key's name; the
    /// repository stays open under it.
    pub fn change_password(&mut self, new_password: &[u8]) -> Result<String, RepositoryError> {
        let old = self.key_name.clone().ok_or_else(|| {
            RepositoryError::KeyRefused("the repository was not opened with a password; use `cairn key add`".into())
        })?;
        let kdf = Self::read_key_file(self.backend.as_ref(), &old)?.kdf;
        let name = self.add_key(new_password, kdf)?;
        self.key_name = Some(name.clone());
        // The guard in remove_key now sees the new key in use, not the old one.
        self.remove_key(&old)?;
        Ok(name)
    }

    /// The Argon2 cost of the key in use (defaults when opened without one).
    pub fn current_kdf(&self) -> Result<KdfParams, RepositoryError> {
        match &self.key_name {
            Some(n) => Ok(Self::read_key_file(self.backend.as_ref(), n)?.kdf),
            None => Ok(KdfParams::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    use crate::testing::{init_with, CHEAP_KDF as CHEAP};

    fn keys(backend: &MemoryBackend) -> Vec<String> {
        backend
            .list(ObjectKind::Key)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    }

    /// `key passwd` used to remove the key in use by going around
    /// `remove_key`'s guard; now it is one engine call that keeps the guard.
    #[test]
    fn change_password_replaces_the_key_in_use_and_keeps_the_others() {
        let backend = Arc::new(MemoryBackend::new());
        let first = init_with(&backend, b"old", CHEAP).unwrap();
        let other = first.add_key(b"other", CHEAP).unwrap();
        let mut repo = Repository::open(backend.clone(), b"old").unwrap();
        let old = repo.key_name().unwrap().to_string();
        let new = repo.change_password(b"new").unwrap();
        assert_eq!(repo.key_name(), Some(new.as_str()));
        let mut now = keys(&backend);
        now.sort();
        let mut want = vec![new.clone(), other];
        want.sort();
        assert_eq!(now, want, "the old key {old} goes, the others stay");
        assert_eq!(
            repo.key_file(&new).unwrap().kdf,
            CHEAP,
            "the new key costs what the old one did"
        );
        assert!(matches!(
            Repository::open(backend.clone(), b"old"),
            Err(RepositoryError::WrongPassword { .. })
        ));
        assert!(Repository::open(backend.clone(), b"new").is_ok());
        // The guard still holds for the key now in use.
        assert!(matches!(repo.remove_key(&new), Err(RepositoryError::KeyRefused(_))));
    }

    #[test]
    fn change_password_needs_a_key_in_use() {
        let backend = Arc::new(MemoryBackend::new());
        let repo = init_with(&backend, b"pw", CHEAP).unwrap();
        let sheet = repo
            .recovery_sheet_lines()
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let mut recovered = Repository::open_with_recovery_sheet(backend.clone(), &sheet).unwrap();
        assert!(matches!(
            recovered.change_password(b"new"),
            Err(RepositoryError::KeyRefused(_))
        ));
        assert_eq!(keys(&backend).len(), 1);
    }

    /// `init --chunker-params-from`: the new repository names content as
    /// the other does (and keeps doing so once reopened), while its master
    /// key and so its encryption stay its own.
    #[test]
    fn dedup_like_shares_blob_ids_but_not_the_master_key() {
        let first = crate::testing::memory_repo();
        let backend = Arc::new(MemoryBackend::new());
        let mut opts = InitOptions {
            kdf: CHEAP,
            ..Default::default()
        };
        opts.dedup_like(&first);
        Repository::init(backend.clone(), b"second", opts).unwrap();
        let second = Repository::open(backend, b"second").unwrap();
        assert!(second.same_blob_ids(&first) && first.same_blob_ids(&second));
        assert_eq!(second.blob_id(b"content"), first.blob_id(b"content"));
        assert_ne!(second.master_key().expose(), first.master_key().expose());
        // A repository made without it names the same bytes differently.
        let third = crate::testing::memory_repo();
        assert!(!third.same_blob_ids(&first));
        assert_ne!(third.blob_id(b"content"), first.blob_id(b"content"));
    }
}
