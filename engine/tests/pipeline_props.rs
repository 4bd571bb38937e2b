//! Property tests: whatever goes in through chunk → seal → pack → index
//! comes back out unchanged.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use cairn_engine::blob::{self, Aad, BlobType, Compression};
use cairn_engine::chunker::ChunkBuffer;
use cairn_engine::crypto::MasterKey;
use cairn_engine::index::{Index, IndexBlob, IndexFile, IndexPack};
use cairn_engine::pack::{self, Packer};
use cairn_engine::ChunkerParams;
use cairn_engine::Stream;
use cairn_engine::{
    backup, restore, BackupOptions, BackupSource, MemoryBackend, Repository, RestoreOptions, SourceKind,
};
use cairn_test_support::engine::cheap_init;
use proptest::prelude::*;

fn params(seed: u64) -> ChunkerParams {
    ChunkerParams {
        seed,
        min_size: 256,
        avg_size: 1024,
        max_size: 4096,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn chunk_seal_pack_index_read_back(data in proptest::collection::vec(any::<u8>(), 0..40_000), repeat in 1usize..4, seed: u64, level in 0i32..4) {
        // Repetition makes duplicate chunks, so dedup paths are exercised.
        let data = data.repeat(repeat);
        let keys = MasterKey::from_bytes([seed as u8; 32]).derive();
        let chunks: Vec<Vec<u8>> = ChunkBuffer::new(&params(seed)).chunks(&data[..]).map(|c| c.unwrap()).collect();
        prop_assert_eq!(chunks.concat(), data.clone());
        let mut packer = Packer::new(BlobType::Data, 1 << 20);
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for c in &chunks {
            let id = keys.blob_id(c);
            order.push(id);
            if seen.insert(id) {
                let sealed = blob::seal(&keys, Aad::Blob(BlobType::Data, &id), c, Compression { level }).unwrap();
                packer.add(id, &sealed, c.len()).unwrap();
            }
        }
        let finished = packer.finish(&keys).unwrap();
        let entries = pack::read_whole(&keys, "p", &finished.bytes).unwrap();
        let file = IndexFile { packs: vec![IndexPack {
            id: finished.id,
            blob_type: BlobType::Data,
            size: finished.bytes.len() as u64,
            blobs: entries.iter().map(|e| IndexBlob { id: e.id, offset: e.offset, length: e.length, raw_length: e.raw_length }).collect(),
        }]};
        let index = Index::from_files(vec![file]).unwrap();
        let mut out = Vec::new();
        for id in &order {
            let loc = index.get(id).unwrap();
            let sealed = &finished.bytes[loc.offset as usize..(loc.offset + loc.length) as usize];
            out.extend(blob::open(&keys, Aad::Blob(BlobType::Data, id), sealed).unwrap());
        }
        prop_assert_eq!(out, data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn stream_backup_restores_identically(data in proptest::collection::vec(any::<u8>(), 0..300_000), seed: u64) {
        let repo = Repository::init(Arc::new(MemoryBackend::new()), b"pw", cheap_init(params(seed))).unwrap();
        let src = BackupSource::Stream {
            stream: Stream::from_reader(Box::new(std::io::Cursor::new(data.clone()))),
            filename: "dump.sql".into(),
            kind: SourceKind::Stdin { filename: "dump.sql".into() },
        };
        let out = backup(&repo, src, &BackupOptions::default()).unwrap();
        let snap = repo.load_snapshot(&out.id.unwrap()).unwrap();
        let target = tempfile::tempdir().unwrap();
        restore(&repo, &snap, target.path(), &RestoreOptions::default()).unwrap();
        prop_assert_eq!(std::fs::read(target.path().join("dump.sql")).unwrap(), data);
    }
}
