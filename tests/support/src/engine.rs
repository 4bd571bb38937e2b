//! Engine settings for tests (the `engine` feature): repositories that are
//! quick to create and open, and S3 backends for the test servers.

use cairn_engine::backend::s3::{S3Backend, S3Credentials, S3Options};
use cairn_engine::{ChunkerParams, InitOptions, KdfParams};

use crate::s3::Server;

/// One mebibyte.
pub const MIB: usize = 1024 * 1024;

/// The chunker most tests use: 64 KiB / 256 KiB / 1 MiB, a fixed seed.
pub const CHUNKER: ChunkerParams = ChunkerParams {
    seed: 42,
    min_size: 64 * 1024,
    avg_size: 256 * 1024,
    max_size: 1024 * 1024,
};

/// Argon2id at its cheapest: opening a test repository costs nothing.
pub fn cheap_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

/// `init` options with the cheap KDF, `chunker` and 1 MiB packs (so small
/// test trees still make several packs); the rest default.
pub fn cheap_init(chunker: ChunkerParams) -> InitOptions {
    InitOptions {
        kdf: cheap_kdf(),
        chunker: Some(chunker),
        pack_size: MIB as u32,
        ..Default::default()
    }
}

impl Server {
    /// S3 options with this server's credentials (from a file, as a user
    /// would give them) and `tune` applied; keep the file while it is used.
    pub fn options(&self, tune: impl FnOnce(&mut S3Options)) -> (S3Options, tempfile::NamedTempFile) {
        let f = self.creds_file();
        let mut o = S3Options {
            credentials: S3Credentials::File(f.path().to_path_buf()),
            ..Default::default()
        };
        tune(&mut o);
        (o, f)
    }

    /// An S3 backend on `prefix` of this server's bucket. The credentials
    /// are read when it opens, so their file may go afterwards.
    pub fn backend(&self, prefix: &str, tune: impl FnOnce(&mut S3Options)) -> S3Backend {
        let (o, _f) = self.options(tune);
        S3Backend::open(&self.location(prefix), &o).unwrap_or_else(|e| panic!("opening {}: {e}", self.location(prefix)))
    }
}
