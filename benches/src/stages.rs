//! Single-core speed of each backup and restore stage, on Data.db-like
//! data, and the 2-core limits they imply. Shared by the `limits` binary and
//! the criterion benchmarks.

use std::time::Instant;

use cairn_engine::blob::{self, Aad, BlobType, Compression};
use cairn_engine::chunker::ChunkBuffer;
use cairn_engine::crypto::{MasterKey, NONCE_LEN};
use cairn_engine::ChunkerParams;

/// Throughput of one stage in MB/s (10^6 bytes per second) on one core.
#[derive(Debug, Clone)]
pub struct StageSpeed {
    /// Stage name.
    pub stage: &'static str,
    /// MB/s.
    pub mb_s: f64,
}

fn time_mb_s(bytes: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up caches and lazily built tables
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    (bytes * reps) as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// Measures every stage over `data` with `level` as the zstd level.
pub fn measure(data: &[u8], level: i32) -> Vec<StageSpeed> {
    let reps = 3;
    let p = ChunkerParams::with_seed(7);
    let keys = MasterKey::from_bytes([5; 32]).derive();
    let chunks: Vec<Vec<u8>> = ChunkBuffer::new(&p)
        .chunks(data)
        .map(|c| c.unwrap_or_default())
        .collect();
    let mut out = Vec::new();
    out.push(StageSpeed {
        stage: "FastCDC chunking (streaming)",
        mb_s: time_mb_s(data.len(), reps, || {
            let n = ChunkBuffer::new(&p).chunks(data).count();
            std::hint::black_box(n);
        }),
    });
    out.push(StageSpeed {
        stage: "keyed BLAKE3 (blob ids)",
        mb_s: time_mb_s(data.len(), reps, || {
            for c in &chunks {
                std::hint::black_box(keys.blob_id(c));
            }
        }),
    });
    let mut compressed = Vec::new();
    out.push(StageSpeed {
        stage: "zstd compress (configured level)",
        mb_s: time_mb_s(data.len(), reps, || {
            compressed = chunks
                .iter()
                .map(|c| zstd::bulk::compress(c, level).unwrap_or_default())
                .collect::<Vec<_>>()
                .concat();
        }),
    });
    let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
    let frames: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| zstd::bulk::compress(c, level).unwrap_or_default())
        .collect();
    out.push(StageSpeed {
        stage: "zstd decompress",
        mb_s: time_mb_s(data.len(), reps, || {
            for (f, n) in frames.iter().zip(&sizes) {
                std::hint::black_box(zstd::bulk::decompress(f, *n).unwrap_or_default());
            }
        }),
    });
    // The engine's own seal, on 1 MiB pieces. It takes its buffer by value,
    // so each piece is copied in first; that copy is timed alone and taken
    // out, leaving the cipher's speed.
    let mut spare = Vec::with_capacity((1 << 20) + 64);
    let mut fill = |seal: bool| {
        let t = Instant::now();
        for _ in 0..reps {
            for c in data.chunks(1 << 20) {
                spare.clear();
                spare.resize(NONCE_LEN, 0);
                spare.extend_from_slice(c);
                if seal {
                    spare = keys.seal_in_place(b"", std::mem::take(&mut spare)).unwrap_or_default();
                }
                std::hint::black_box(&spare);
            }
        }
        t.elapsed().as_secs_f64()
    };
    fill(true);
    let copy = fill(false);
    let both = fill(true);
    out.push(StageSpeed {
        stage: "XChaCha20-Poly1305",
        mb_s: (data.len() * reps) as f64 / (both - copy).max(1e-9) / 1e6,
    });
    let id = keys.blob_id(&chunks[0]);
    out.push(StageSpeed {
        stage: "seal (entropy check + zstd + cipher), whole blob path",
        mb_s: time_mb_s(data.len(), reps, || {
            for c in &chunks {
                std::hint::black_box(
                    blob::seal(&keys, Aad::Blob(BlobType::Data, &id), c, Compression { level })
                        .map(|v| v.len())
                        .unwrap_or(0),
                );
            }
        }),
    });
    out
}

/// The 2-core limits (MB/s of source data) implied by single-core speeds:
/// backup of new data = chunk + hash + seal; restore = open (cipher +
/// decompress), with `cores` cores working in parallel.
pub fn limits(speeds: &[StageSpeed], cores: f64) -> (f64, f64) {
    let get = |name: &str| {
        speeds
            .iter()
            .find(|s| s.stage.starts_with(name))
            .map(|s| s.mb_s)
            .unwrap_or(f64::INFINITY)
    };
    let backup = 1.0 / (1.0 / get("FastCDC") + 1.0 / get("keyed") + 1.0 / get("seal"));
    let restore = 1.0 / (1.0 / get("XChaCha") + 1.0 / get("zstd decompress"));
    (backup * cores, restore * cores)
}
