//! Key objects: the master key wrapped under a password.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, KdfParams, MasterKey};

/// Version byte of an encoded key object.
pub const KEY_VERSION: u8 = 1;
/// The most bytes a key object's decoder may claim (format-spec "Decoder
/// bounds"): a salt, a sealed key and two names, far below 64 KiB. Key
/// objects are not authenticated, so this bound meets hostile bytes first.
pub const KEY_LIMIT: crate::encoding::Limit = crate::encoding::Limit::Kib64;
/// Authenticated data when sealing the master key under a key-encryption key.
pub const KEY_AAD: &[u8] = b"cairn.key.master";

/// A key object: stored unencrypted, but the master key inside is sealed
/// under Argon2id(password, salt).
#[derive(Debug, Clone, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct KeyFile {
    /// When the key was added, Unix nanoseconds.
    pub created_ns: i64,
    /// Host that added it (informational).
    pub host: String,
    /// User that added it (informational).
    pub user: String,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt (32 random bytes).
    pub salt: Vec<u8>,
    /// nonce || E(master key) || tag.
    pub sealed_master: Vec<u8>,
}

impl KeyFile {
    /// Wraps `master` under `password`. Parameters outside
    /// [`KdfParams::check_bounds`] fail with `CryptoError::KdfOutOfBounds`
    /// (checked by `crypto::derive_kek`), so no key object that readers would
    /// refuse is ever made.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        kdf: KdfParams,
        host: String,
        user: String,
    ) -> Result<Self, CryptoError> {
        let mut salt = vec![0u8; 32];
        crypto::random_bytes(&mut salt)?;
        let kek = crypto::derive_kek(password, &salt, kdf)?;
        let sealed_master = crypto::seal_with(&kek, KEY_AAD, master.expose())?;
        Ok(Self {
            created_ns: crate::time::now_ns(),
            host,
            user,
            kdf,
            salt,
            sealed_master,
        })
    }

    /// Decodes a key object's stored bytes (version byte + bincode, at most
    /// [`KEY_LIMIT`] claimed). The KDF bounds are checked by whoever runs
    /// Argon2 ([`KeyFile::unwrap_master`] through `derive_kek`), and first
    /// by `Repository::open`, which reports such a key as damaged.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::encoding::EncodingError> {
        Ok(crate::encoding::decode("key", KEY_VERSION, KEY_LIMIT, bytes)?.1)
    }

    /// Unwraps the master key; `Authentication` means a wrong password (or a
    /// modified key object).
    pub fn unwrap_master(&self, password: &[u8]) -> Result<MasterKey, CryptoError> {
        let kek = crypto::derive_kek(password, &self.salt, self.kdf)?;
        let plain = zeroize::Zeroizing::new(crypto::open_with(&kek, KEY_AAD, &self.sealed_master)?);
        // Straight from the wiped-on-drop plaintext into the key: no
        // intermediate array is left behind.
        MasterKey::from_slice(&plain).ok_or(CryptoError::Authentication)
    }
}

/// Orders key objects for trying a password: cheapest Argon2id first (by
/// work, memory × passes; by name among equals). A planted key object
/// costlier than the right one is then never run for the right password,
/// and one that is cheaper adds at most the right one's work: opening does
/// at most twice the work. In wall time a one-lane planted key can cost up
/// to twice a two-lane right key of the same work (lanes run on threads),
/// so opening takes at most about three times as long on two cores.
pub(crate) fn cheapest_first(keys: &mut [(String, KeyFile)]) {
    keys.sort_by(|a, b| a.1.kdf.cost().cmp(&b.1.kdf.cost()).then_with(|| a.0.cmp(&b.0)));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{Backend, ObjectKind};
    use crate::repository::{Repository, RepositoryError};

    use crate::testing::{init_with, CHEAP_KDF as CHEAP};

    /// Accepted by Argon2 itself, refused by every reader (more than 64 passes).
    const TOO_MANY_PASSES: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 65,
        parallelism: 1,
    };

    fn is_out_of_bounds(e: &RepositoryError) -> bool {
        matches!(e, RepositoryError::Crypto(CryptoError::KdfOutOfBounds(_)))
    }

    #[test]
    fn keys_are_tried_cheapest_first() {
        let master = MasterKey::from_bytes([4; 32]);
        let kf = |memory_kib, iterations| {
            let kdf = KdfParams {
                memory_kib,
                iterations,
                parallelism: 1,
            };
            KeyFile::wrap(&master, b"pw", kdf, "h".into(), "u".into()).unwrap()
        };
        let mut keys = vec![
            ("a".to_string(), kf(256, 4)),
            ("b".to_string(), kf(64, 2)),
            ("c".to_string(), kf(128, 1)),
            ("d".to_string(), kf(1024, 1)),
        ];
        cheapest_first(&mut keys);
        let order: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        assert_eq!(order, ["b", "c", "a", "d"]);
    }

    #[test]
    fn wrap_and_unwrap_round_trip() {
        let master = MasterKey::from_bytes([4; 32]);
        let kf = KeyFile::wrap(&master, b"pw", CHEAP, "h".into(), "u".into()).unwrap();
        assert_eq!(kf.sealed_master.len(), 32 + crypto::SEAL_OVERHEAD);
        assert_eq!(kf.unwrap_master(b"pw").unwrap().expose(), master.expose());
        assert!(matches!(kf.unwrap_master(b"other"), Err(CryptoError::Authentication)));
    }

    /// Regression (issue 8): `init` and `key add` accepted Argon2 parameters
    /// that `open` then refused, so a repository could be created whose only
    /// key could not open it.
    #[test]
    fn wrapping_with_out_of_bounds_kdf_params_fails() {
        let master = MasterKey::from_bytes([4; 32]);
        let r = KeyFile::wrap(&master, b"pw", TOO_MANY_PASSES, "h".into(), "u".into());
        let Err(CryptoError::KdfOutOfBounds(msg)) = r else {
            panic!("expected KdfOutOfBounds, got {r:?}");
        };
        assert!(msg.contains("65 passes"), "{msg}");
    }

    #[test]
    fn add_key_with_out_of_bounds_kdf_params_writes_nothing() {
        let backend = Arc::new(MemoryBackend::new());
        let repo = init_with(&backend, b"pw", CHEAP).unwrap();
        let before = backend.list(ObjectKind::Key).unwrap();
        let e = repo.add_key(b"second", TOO_MANY_PASSES).unwrap_err();
        assert!(is_out_of_bounds(&e), "{e}");
        assert!(e.to_string().starts_with("invalid option"), "{e}");
        let after: Vec<String> = backend
            .list(ObjectKind::Key)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(after, before.into_iter().map(|o| o.name).collect::<Vec<_>>());
        assert!(Repository::open(backend, b"second").is_err());
    }

    #[test]
    fn init_with_out_of_bounds_kdf_params_writes_no_key_and_no_config() {
        let backend = Arc::new(MemoryBackend::new());
        let e = init_with(&backend, b"pw", TOO_MANY_PASSES).unwrap_err();
        assert!(is_out_of_bounds(&e), "{e}");
        assert!(backend.list(ObjectKind::Key).unwrap().is_empty());
        assert!(backend.list(ObjectKind::Config).unwrap().is_empty());
    }
}
