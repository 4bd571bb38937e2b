//! The repository configuration object.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::crypto::BlobIdKey;
use crate::encoding::{self, EncodingError};

/// Current repository format version. Bumped when old repositories would
/// read differently (see format-spec change log).
pub const FORMAT_VERSION: u32 = 1;
/// Version byte of the encoded config object. Version 1 (without
/// `blob_id_key`) is still read.
pub const CONFIG_VERSION: u8 = 2;
/// The most bytes the config's decoder may claim (format-spec "Decoder
/// bounds"): it is about a hundred.
pub const CONFIG_LIMIT: crate::encoding::Limit = crate::encoding::Limit::Kib4;

/// The repository configuration, stored encrypted as the object `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Config {
    /// Repository format version ([`FORMAT_VERSION`] when written by this program).
    pub format_version: u32,
    /// Random id naming this repository (for caches and messages).
    pub repository_id: crate::id::RepositoryId,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// zstd level for blobs; 0 disables compression.
    pub compression_level: i32,
    /// Target size of a pack in bytes.
    pub pack_size: u32,
    /// Creation time, Unix nanoseconds.
    pub created_ns: i64,
    /// The key blob ids are computed with when it is shared with another
    /// repository (`init --chunker-params-from`); `None`: derived from the
    /// master key, as in every version 1 config.
    pub blob_id_key: Option<BlobIdKey>,
}

/// A version 1 config: [`Config`] without its last field (bincode writes no
/// field count, so the layouts differ).
#[derive(bincode::Decode)]
struct ConfigV1 {
    format_version: u32,
    repository_id: crate::id::RepositoryId,
    chunker: ChunkerParams,
    compression_level: i32,
    pack_size: u32,
    created_ns: i64,
}

/// Decodes a config object's plaintext of version 1 or 2.
pub(crate) fn decode(plain: &[u8]) -> Result<Config, EncodingError> {
    if plain.first() == Some(&1) {
        let (_, v1) = encoding::decode::<ConfigV1>(super::CONFIG_KIND, 1, CONFIG_LIMIT, plain)?;
        return Ok(Config {
            format_version: v1.format_version,
            repository_id: v1.repository_id,
            chunker: v1.chunker,
            compression_level: v1.compression_level,
            pack_size: v1.pack_size,
            created_ns: v1.created_ns,
            blob_id_key: None,
        });
    }
    Ok(encoding::decode(super::CONFIG_KIND, CONFIG_VERSION, CONFIG_LIMIT, plain)?.1)
}

impl Config {
    /// Default zstd level. Level 1: on SSTable-like data level 3 gains ~9 %
    /// but runs at a quarter of the speed (see format-spec "Compression").
    pub const DEFAULT_COMPRESSION: i32 = 1;
    /// Default pack size: 16 MiB.
    pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
    /// Largest pack size accepted (offsets in pack headers are 32-bit).
    pub const MAX_PACK_SIZE: u32 = 1024 * 1024 * 1024;

    /// Hex form of the repository id.
    pub fn id_hex(&self) -> String {
        self.repository_id.to_hex()
    }
}
