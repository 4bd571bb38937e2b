//! Key objects: the master key wrapped under a password.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, KdfParams, MasterKey};

/// Version byte of an encoded key object.
pub const KEY_VERSION: u8 = 1;
/// Authenticated data when sealing the master key under a key-encryption key.
pub const KEY_AAD: &[u8] = b"cairn.key.master";

/// A key object: stored unencrypted, but the master key inside is sealed
/// under Argon2id(password, salt).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Wraps `master` under `password`.
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
        let sealed_master = crypto::seal_with(&kek, KEY_AAD, master.expose().to_vec())?;
        Ok(Self {
            created_ns: crate::time::now_ns(),
            host,
            user,
            kdf,
            salt,
            sealed_master,
        })
    }

    /// Unwraps the master key; `Authentication` means a wrong password (or a
    /// modified key object).
    pub fn unwrap_master(&self, password: &[u8]) -> Result<MasterKey, CryptoError> {
        let kek = crypto::derive_kek(password, &self.salt, self.kdf)?;
        let plain = zeroize::Zeroizing::new(crypto::open_with(&kek, KEY_AAD, &self.sealed_master)?);
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| CryptoError::Authentication)?;
        Ok(MasterKey::from_bytes(bytes))
    }
}
