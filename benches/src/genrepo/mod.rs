//! gen-repo: builds a large, valid repository directly, without reading any
//! files, for measuring prune (and check, forget, ...) at scale: a million
//! data blobs and a thousand snapshots in minutes.
//!
//! Everything goes through the engine's own pieces, as a backup would
//! write it: blobs sealed with [`blob::seal`] under their keyed ids, packed
//! by [`cairn_engine::pack::Packer`] (data and tree blobs in separate
//! packs), packs stored through the [`LocalBackend`], an index object every
//! 64 packs, trees encoded as backup encodes them, and snapshots stored
//! last. The shape of the data (what each snapshot references) is
//! described in [`shape`].

pub mod shape;
mod trees;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cairn_engine::blob::{self, Aad, BlobType};
use cairn_engine::id::BlobId;
use cairn_engine::{InitOptions, KdfParams, LocalBackend, Repository};
use rayon::prelude::*;

use shape::Shape;
use trees::TreeBuilder;
use writer::Writer;

/// Errors of the generator (engine errors, I/O, bad options).
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The generator's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Data blobs sealed per parallel batch: large enough to keep every core
/// busy, small enough that the batch's sealed copies stay a few MiB.
const SEAL_BATCH: u64 = 16 * 1024;
/// Largest `--blob-size`: the generator is about blob counts, not bytes.
const MAX_BLOB_SIZE: u32 = 1024 * 1024;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Repository directory (created; must not hold a repository).
    pub repo: PathBuf,
    /// Password of the repository's one key.
    pub password: Vec<u8>,
    /// Data blobs in the repository.
    pub blobs: u64,
    /// Snapshots (one per night).
    pub snapshots: u64,
    /// Files in each snapshot (about).
    pub files_per_snapshot: u64,
    /// Plaintext bytes of each data blob.
    pub blob_size: u32,
    /// Share of all blobs one snapshot references, in %.
    pub window_percent: u64,
    /// Close data packs after this many blobs instead of at the pack size.
    pub blobs_per_pack: Option<usize>,
    /// Seed of the blob contents.
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Report {
    /// Data blobs.
    pub data_blobs: u64,
    /// Tree blobs.
    pub tree_blobs: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Data packs.
    pub data_packs: u64,
    /// Tree packs.
    pub tree_packs: u64,
    /// Index objects.
    pub index_objects: u64,
    /// Bytes of everything under the repository directory.
    pub bytes: u64,
    /// Blobs each snapshot's window covers.
    pub window: u64,
    /// Blobs per file.
    pub file_blobs: u64,
    /// Blobs only the older half of the snapshots reference: unused after
    /// `forget --keep-last <snapshots/2>`.
    pub older_half_only: u64,
    /// Wall time of the generation.
    pub seconds: f64,
}

impl Report {
    /// One JSON object.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "data_blobs": self.data_blobs,
            "tree_blobs": self.tree_blobs,
            "snapshots": self.snapshots,
            "data_packs": self.data_packs,
            "tree_packs": self.tree_packs,
            "index_objects": self.index_objects,
            "bytes": self.bytes,
            "window_blobs": self.window,
            "file_blobs": self.file_blobs,
            "older_half_only_blobs": self.older_half_only,
            "seconds": self.seconds,
        })
        .to_string()
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let pct = |n: u64| 100.0 * n as f64 / self.data_blobs.max(1) as f64;
        format!(
            "data blobs    {}\n\
             tree blobs    {}\n\
             snapshots     {}\n\
             packs         {} data, {} tree; {} index objects\n\
             bytes         {} ({:.1} MiB)\n\
             per snapshot  {} blobs ({:.1} %) in files of {} blobs\n\
             older half    {} blobs ({:.1} %) are referenced only by the older half of the snapshots\n\
             seconds       {:.1}",
            self.data_blobs,
            self.tree_blobs,
            self.snapshots,
            self.data_packs,
            self.tree_packs,
            self.index_objects,
            self.bytes,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.window,
            pct(self.window),
            self.file_blobs,
            self.older_half_only,
            pct(self.older_half_only),
            self.seconds,
        )
    }
}

/// The repository password as the `cairn` CLI finds it: the first line of
/// `CAIRN_PASSWORD_FILE`, else `CAIRN_PASSWORD`.
pub fn password_from_env() -> Result<Vec<u8>> {
    if let Some(f) = std::env::var_os("CAIRN_PASSWORD_FILE") {
        let bytes = std::fs::read(&f).map_err(|e| format!("reading password file {}: {e}", Path::new(&f).display()))?;
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        return Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
    }
    if let Ok(p) = std::env::var("CAIRN_PASSWORD") {
        return Ok(p.into_bytes());
    }
    Err("no password given: set CAIRN_PASSWORD_FILE (or CAIRN_PASSWORD)".into())
}

/// Generates the repository.
pub fn run(cfg: &Config) -> Result<Report> {
    let started = Instant::now();
    let shape = Shape::new(cfg.blobs, cfg.snapshots, cfg.window_percent, cfg.files_per_snapshot)?;
    if cfg.blob_size == 0 || cfg.blob_size > MAX_BLOB_SIZE {
        return Err(format!("--blob-size {} must be 1 to {MAX_BLOB_SIZE}", cfg.blob_size).into());
    }
    if cfg.blobs_per_pack == Some(0) {
        return Err("--blobs-per-pack must be at least 1".into());
    }
    let opts = InitOptions {
        // The cheapest key derivation: opening the repository then costs
        // nothing, so a prune measured on it shows prune's own memory and
        // time, not Argon2's.
        kdf: KdfParams {
            memory_kib: KdfParams::MIN_MEMORY_KIB,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    let repo = Repository::init(Arc::new(LocalBackend::new(&cfg.repo)), &cfg.password, opts)?;
    let keys = repo.master_key().derive();
    let writer = Writer::start(&repo)?;

    let ids = write_data(&repo, &writer, cfg)?;
    let mut builder = TreeBuilder::new(shape, &ids, cfg.blob_size, &keys, repo.compression());
    let mut sink = writer.sink(&repo, BlobType::Tree, None)?;
    let mut snapshots = Vec::with_capacity(cfg.snapshots as usize);
    for i in 0..cfg.snapshots {
        snapshots.push(builder.snapshot(i, &mut sink)?);
    }
    sink.flush()?;
    drop(sink);
    let tree_blobs = builder.tree_blobs;
    drop(builder);
    drop(ids);
    // Snapshots only once every pack and index object they need is stored.
    let stored = writer.finish()?;
    let mut parent = None;
    for mut s in snapshots {
        s.parent = parent;
        parent = Some(repo.save_snapshot(&s)?);
    }
    Ok(Report {
        data_blobs: cfg.blobs,
        tree_blobs,
        snapshots: cfg.snapshots,
        data_packs: stored.data_packs,
        tree_packs: stored.tree_packs,
        index_objects: stored.index_objects,
        bytes: dir_bytes(&cfg.repo)?,
        window: shape.window,
        file_blobs: shape.file_blobs,
        older_half_only: shape.blobs_only_before(cfg.snapshots / 2),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Seals and packs every data blob, in parallel batches; returns the ids by
/// blob number.
fn write_data(repo: &Repository, writer: &Writer, cfg: &Config) -> Result<Vec<BlobId>> {
    let keys = repo.master_key().derive();
    let comp = repo.compression();
    let size = cfg.blob_size as usize;
    let mut sink = writer.sink(repo, BlobType::Data, cfg.blobs_per_pack)?;
    let mut ids = Vec::with_capacity(cfg.blobs as usize);
    let mut a = 0;
    while a < cfg.blobs {
        let b = (a + SEAL_BATCH).min(cfg.blobs);
        let sealed = (a..b)
            .into_par_iter()
            .map(|j| {
                let data = payload(cfg.seed, j, size);
                let id = keys.blob_id(&data);
                Ok((id, blob::seal(&keys, Aad::Blob(BlobType::Data, &id), &data, comp)?))
            })
            .collect::<Result<Vec<(BlobId, Vec<u8>)>>>()?;
        for (id, s) in sealed {
            sink.add(id, &s, size)?;
            ids.push(id);
        }
        a = b;
    }
    sink.flush()?;
    Ok(ids)
}

/// The plaintext of data blob `j`: `len` pseudo-random bytes from the seed
/// and the blob's number, so every blob (and so every id) differs.
fn payload(seed: u64, j: u64, len: usize) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn gen-repo payload v1");
    h.update(&seed.to_le_bytes());
    h.update(&j.to_le_bytes());
    let mut out = vec![0; len];
    h.finalize_xof().fill(&mut out);
    out
}

/// Apparent bytes of all files under `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            total += dir_bytes(&e.path())?;
        } else {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_by_number_and_seed() {
        assert_ne!(payload(1, 0, 64), payload(1, 1, 64));
        assert_ne!(payload(1, 0, 64), payload(2, 0, 64));
        assert_eq!(payload(1, 5, 64), payload(1, 5, 64));
    }

    #[test]
    fn generates_a_repository_that_opens() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            repo: dir.path().join("repo"),
            password: b"pw".to_vec(),
            blobs: 3000,
            snapshots: 10,
            files_per_snapshot: 20,
            blob_size: 64,
            window_percent: 25,
            blobs_per_pack: Some(500),
            seed: 7,
        };
        let r = run(&cfg).unwrap();
        assert_eq!(r.data_packs, 6);
        let repo = Repository::open(Arc::new(LocalBackend::new(&cfg.repo)), b"pw").unwrap();
        assert_eq!(repo.list_snapshots().unwrap().len(), 10);
        let index = repo.load_index().unwrap();
        assert_eq!(index.len() as u64, 3000 + r.tree_blobs);
        let report = cairn_engine::check(&repo, &cairn_engine::CheckOptions::default()).unwrap();
        assert!(report.ok(), "{report:?}");
    }
}
