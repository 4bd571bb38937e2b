//! The repository configuration object.

use serde::{Deserialize, Serialize};

/// Current repository format version. Bumped when old repositories would
/// read differently (see format-spec change log).
pub const FORMAT_VERSION: u32 = 1;
/// Version byte of the encoded config object.
pub const CONFIG_VERSION: u8 = 1;

/// FastCDC parameters. The seed is secret (the config is encrypted) so chunk
/// boundaries do not leak file contents through chunk sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Seed of the gear table.
    pub seed: u64,
    /// Smallest chunk (except a file's last).
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

impl ChunkerParams {
    /// Defaults: 512 KiB / 1 MiB / 4 MiB; see format-spec "Chunking" for why.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }

    /// Whether fastcdc accepts these sizes.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes {min}/{avg}/{max} are outside what FastCDC supports"
            ))
        }
    }
}

/// The repository configuration, stored encrypted as the object `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
