//! What the engine's integration tests (`engine/tests/*`) and the
//! end-to-end tests (`tests/tests/e2e`) share, written once:
//!
//! - [`s3`]: the S3 test servers that `scripts/s3-servers.sh` starts (their
//!   settings from the environment, a loud notice when `CAIRN_SKIP_S3=1`,
//!   fresh prefixes, credential files, moto's restore progression);
//! - [`tree`]: a manifest of a file tree (content hash and metadata of every
//!   entry) to compare a restore with its source, and copying a tree;
//! - [`pseudo_random`]: test data that does not compress and is the same on
//!   every run;
//! - with the `engine` feature, [`engine`]: repository settings that make
//!   tests fast (cheap key derivation, small chunks and packs).
//!
//! Everything here panics with a message instead of returning errors: it
//! runs inside tests, where a panic is the report.

pub mod postgres;
pub mod redis;
pub mod s3;
pub mod tree;

#[cfg(feature = "engine")]
pub mod engine;

/// `n` pseudo-random bytes from `seed` (xorshift, one byte a step): data
/// that does not compress, the same on every run and on every machine.
///
/// The bytes are part of what `engine/tests/format_vectors.rs` commits as
/// test vectors: do not change the generator.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_is_stable_and_seeded() {
        // Pinned: format_vectors.rs derives committed bytes from this.
        assert_eq!(pseudo_random(8, 1), [0x40, 0x0c, 0x6e, 0x55, 0x90, 0xe5, 0xeb, 0x14]);
        assert_ne!(pseudo_random(64, 1), pseudo_random(64, 2));
        assert_eq!(pseudo_random(1000, 5).len(), 1000);
    }
}
