//! Criterion micro-benchmarks of each pipeline stage on Data.db-like data:
//! chunker, keyed BLAKE3, zstd (configured level), XChaCha20-Poly1305, seal,
//! pack encode/decode and index lookup.

use std::hint::black_box;

use cairn_benches::nights::cassandra::sample_data_db;
use cairn_engine::blob::{self, Aad, BlobType, Compression};
use cairn_engine::chunker::ChunkBuffer;
use cairn_engine::crypto::MasterKey;
use cairn_engine::id::{BlobId, PackId};
use cairn_engine::index::{Index, IndexBlob, IndexFile, IndexPack};
use cairn_engine::pack::{self, Packer};
use cairn_engine::{ChunkerParams, Config};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn stages(c: &mut Criterion) {
    let data = sample_data_db(42, 16 * 1_000_000);
    let p = ChunkerParams::with_seed(7);
    let keys = MasterKey::from_bytes([5; 32]).derive();
    let level = Config::DEFAULT_COMPRESSION;
    let chunks: Vec<Vec<u8>> = ChunkBuffer::new(&p)
        .chunks(&data[..])
        .map(|c| c.unwrap_or_default())
        .collect();
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("fastcdc", |b| {
        let mut cb = ChunkBuffer::new(&p);
        b.iter(|| cb.chunks(&data[..]).count())
    });
    g.bench_function("keyed_blake3", |b| {
        b.iter(|| chunks.iter().fold(0u8, |a, c| a ^ keys.blob_id(c).as_bytes()[0]))
    });
    g.bench_function("zstd_compress", |b| {
        b.iter(|| {
            chunks
                .iter()
                .map(|c| zstd::bulk::compress(c, level).map(|v| v.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    let id = keys.blob_id(&chunks[0]);
    g.bench_function("seal", |b| {
        b.iter(|| {
            chunks
                .iter()
                .map(|c| {
                    blob::seal(&keys, Aad::Blob(BlobType::Data, &id), c, Compression { level })
                        .map(|v| v.len())
                        .unwrap_or(0)
                })
                .sum::<usize>()
        })
    });
    let sealed: Vec<(BlobId, Vec<u8>)> = chunks
        .iter()
        .map(|c| {
            let id = keys.blob_id(c);
            (
                id,
                blob::seal(&keys, Aad::Blob(BlobType::Data, &id), c, Compression { level }).unwrap_or_default(),
            )
        })
        .collect();
    g.bench_function("open", |b| {
        b.iter(|| {
            sealed
                .iter()
                .map(|(id, s)| {
                    blob::open(&keys, Aad::Blob(BlobType::Data, id), s)
                        .map(|v| v.len())
                        .unwrap_or(0)
                })
                .sum::<usize>()
        })
    });
    g.bench_function("pack_encode_decode", |b| {
        b.iter(|| {
            let mut pk = Packer::new(BlobType::Data, 20 << 20);
            for ((id, s), c) in sealed.iter().zip(&chunks) {
                let _ = pk.add(*id, s, c.len());
            }
            let f = pk.finish(&keys).ok();
            f.map(|f| pack::read_whole(&keys, "bench", &f.bytes).map(|e| e.len()).unwrap_or(0))
        })
    });
    g.finish();

    // Index: one million blobs, random lookups.
    let n = 1_000_000u64;
    let ids: Vec<BlobId> = (0..n)
        .map(|i| BlobId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let packs: Vec<IndexPack> = ids
        .chunks(16)
        .enumerate()
        .map(|(i, ch)| IndexPack {
            id: PackId::from_bytes(*blake3::hash(&(i as u64).to_be_bytes()).as_bytes()),
            blob_type: BlobType::Data,
            size: 16 << 20,
            blobs: ch
                .iter()
                .enumerate()
                .map(|(j, id)| IndexBlob {
                    id: *id,
                    offset: j as u32 * 1000,
                    length: 1000,
                    raw_length: 1000,
                })
                .collect(),
        })
        .collect();
    let index = Index::from_files(vec![IndexFile { packs }]).unwrap_or_default();
    println!(
        "index of {n} blobs: {} bytes in memory, {:.1} bytes per blob",
        index.memory_bytes(),
        index.memory_bytes() as f64 / n as f64
    );
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("lookup_1000_of_1M", |b| {
        let mut k = 0usize;
        b.iter(|| {
            let mut hits = 0;
            for _ in 0..1000 {
                k = (k + 7919) % ids.len();
                hits += usize::from(index.contains(black_box(&ids[k])));
            }
            hits
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
