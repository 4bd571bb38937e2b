//! The deletion-record test vector: `format-spec/test-vectors/deletion.json`
//! and the sealed object it names in `deletion/`, under the committed
//! test-vector repository's master key (`manifest.json`).
//!
//! - `generate_deletion_vector` (ignored) writes them:
//!   `CAIRN_WRITE_VECTORS=deletion cargo test -p cairn-engine --test vectors_deletion -- --ignored`
//! - `engine_reads_deletion_vector` reads the record as every command does
//!   (prune, and backups and readers for rules B3 and R1), and checks that
//!   the engine encodes the same fields to the same plaintext.
//! - `independent_decoder_reads_deletion_vector` decodes it from
//!   `format-spec/README.md` alone ("Locks and deletion records").
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::Arc;

use serde_json::{json, Value};

use cairn_engine::{BlobType, DeletionRecord, ObjectId, PackId, RecordedPack, RepoFile, SnapshotId};
use common::*;

/// 2026-01-01T00:00:00Z.
const CREATED_NS: i64 = 1_767_225_600_000_000_000;
const DAY_NS: i64 = 86_400_000_000_000;

fn id(b: u8) -> [u8; 32] {
    *blake3::hash(&[b]).as_bytes()
}

/// A waiting record (not yet carried out) and the same record executed.
fn vector_records() -> [DeletionRecord; 2] {
    let waiting = DeletionRecord {
        created_ns: CREATED_NS,
        grace_ns: DAY_NS,
        host: "vector-host".into(),
        snapshots: vec![SnapshotId::from_bytes(id(1)), SnapshotId::from_bytes(id(2))],
        packs: vec![
            RecordedPack {
                id: PackId::from_bytes(id(3)),
                blob_type: BlobType::Data,
                size: 16_777_216,
            },
            RecordedPack {
                id: PackId::from_bytes(id(4)),
                blob_type: BlobType::Tree,
                size: 4096,
            },
        ],
        indexes: vec![ObjectId::from_bytes(id(5))],
        executed_ns: None,
    };
    let mut executed = waiting.clone();
    executed.packs.truncate(1);
    executed.executed_ns = Some(CREATED_NS + DAY_NS + 60_000_000_000);
    [waiting, executed]
}

fn master_key() -> [u8; 32] {
    unhex(manifest()["master_key"].as_str().unwrap()).try_into().unwrap()
}

fn record_json(r: &DeletionRecord) -> Value {
    json!({
        "created_ns": r.created_ns,
        "grace_ns": r.grace_ns,
        "host": r.host,
        "snapshots": r.snapshots.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
        "packs": r.packs.iter().map(|p| json!({
            "id": p.id.to_hex(),
            "blob_type": match p.blob_type { BlobType::Data => 0, BlobType::Tree => 1 },
            "size": p.size,
        })).collect::<Vec<_>>(),
        "indexes": r.indexes.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "executed_ns": r.executed_ns,
    })
}

#[test]
#[ignore = "writes format-spec/test-vectors/deletion*; run with CAIRN_WRITE_VECTORS=deletion and --ignored"]
fn generate_deletion_vector() {
    use cairn_engine::blob::{self, Aad, Compression};
    if std::env::var("CAIRN_WRITE_VECTORS").as_deref() != Ok("deletion") {
        eprintln!("CAIRN_WRITE_VECTORS=deletion is not set: not writing the deletion-record vector");
        return;
    }
    let keys = cairn_engine::crypto::MasterKey::from_bytes(master_key()).derive();
    let level = i32::try_from(manifest()["config"]["compression_level"].as_i64().unwrap()).unwrap();
    let dir = vectors_dir().join("deletion");
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    let mut records = Vec::new();
    for r in vector_records() {
        let plain = cairn_engine::encoding::encode(DeletionRecord::AAD, DeletionRecord::VERSION, &r).unwrap();
        let sealed = blob::seal(&keys, Aad::Object(DeletionRecord::AAD), &plain, Compression { level }).unwrap();
        let name = blake3::hash(&sealed).to_hex().to_string();
        let file = format!("deletion/{name}");
        fs::write(vectors_dir().join(&file), &sealed).unwrap();
        let flag = keys.open(&object_ad("deletion"), &sealed).unwrap()[0];
        records.push(json!({
            "name": name,
            "file": file,
            "flag": flag,
            "payload_hex": hex(&plain),
            "record": record_json(&r),
        }));
    }
    let doc = json!({
        "description": "Two deletion records (format-spec/README.md, \"Locks and deletion records\"): a waiting \
            one and the same record carried out (one pack left, executed_ns set). Each is a sealed payload under \
            the encryption key of manifest.json's master key, AD \"cairn.object.deletion\", named by the BLAKE3 of \
            its bytes; payload_hex is the plaintext after the flag byte: the version byte and the bincode of the \
            fields.",
        "regenerate": "CAIRN_WRITE_VECTORS=deletion cargo test -p cairn-engine --test vectors_deletion -- --ignored",
        "records": records,
    });
    fs::write(
        vectors_dir().join("deletion.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

fn deletion_manifest() -> Value {
    let path = vectors_dir().join("deletion.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}{REGENERATE_HINT}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn sealed_vector(v: &Value) -> Vec<u8> {
    fs::read(vectors_dir().join(v["file"].as_str().unwrap())).unwrap()
}

#[test]
fn engine_reads_deletion_vector() {
    with_hint(engine_reads);
}

fn engine_reads() {
    use cairn_engine::{Backend, MemoryBackend, ObjectKind, Repository};
    let v = deletion_manifest();
    let backend = Arc::new(MemoryBackend::new());
    let config = fs::read(vectors_dir().join("repo/config")).unwrap();
    backend.write(ObjectKind::Config, "config", &config).unwrap();
    let vectors = v["records"].as_array().unwrap();
    for r in vectors {
        backend
            .write(ObjectKind::Deletion, r["name"].as_str().unwrap(), &sealed_vector(r))
            .unwrap();
    }
    let master = cairn_engine::crypto::MasterKey::from_bytes(master_key());
    let repo = Repository::open_with_master_key(backend.clone(), master).unwrap();
    let d = repo.load_deletions().unwrap();
    assert!(d.damaged.is_empty(), "{:?}", d.damaged);
    let want = vector_records();
    for (r, expected) in vectors.iter().zip(&want) {
        let (_, got) = d
            .records
            .iter()
            .find(|(n, _)| n == r["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(got, expected);
        assert_eq!(record_json(got), r["record"]);
        // The writer's encoding of the same fields is the committed payload.
        let plain = cairn_engine::encoding::encode(DeletionRecord::AAD, DeletionRecord::VERSION, expected).unwrap();
        assert_eq!(hex(&plain), r["payload_hex"].as_str().unwrap());
    }
    assert_eq!(want[0].due_ns(), CREATED_NS + DAY_NS);
    assert_eq!(want[1].due_ns(), CREATED_NS + 2 * DAY_NS + 60_000_000_000);
    // Both packs of the waiting record are recorded: readers avoid them,
    // backups do not deduplicate against them.
    let doomed = d.doomed_packs();
    assert!(doomed.contains(&PackId::from_bytes(id(3))) && doomed.contains(&PackId::from_bytes(id(4))));

    // One flipped byte: the record is named as damaged and otherwise ignored.
    let first = &vectors[0];
    let mut bad = sealed_vector(first);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    backend
        .remove(ObjectKind::Deletion, first["name"].as_str().unwrap())
        .unwrap();
    backend
        .write(ObjectKind::Deletion, blake3::hash(&bad).to_hex().as_ref(), &bad)
        .unwrap();
    let d = repo.load_deletions().unwrap();
    assert_eq!((d.records.len(), d.damaged.len()), (1, 1), "{:?}", d.damaged);
}

#[test]
fn independent_decoder_reads_deletion_vector() {
    with_hint(independent_decode);
}

fn independent_decode() {
    let v = deletion_manifest();
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master_key());
    let ad = object_ad("deletion");
    assert_eq!(ad.len(), "cairn.object.deletion".len());
    for r in v["records"].as_array().unwrap() {
        let sealed = sealed_vector(r);
        assert_content_named(r["name"].as_str().unwrap(), &sealed);
        let (flag, payload) = open_payload(&enc, &ad, &sealed, "deletion record");
        assert_eq!(u64::from(flag), r["flag"].as_u64().unwrap());
        assert_eq!(hex(&payload), r["payload_hex"].as_str().unwrap());
        let mut b = Bin::new("deletion record", &payload, 1);
        let decoded = json!({
            "created_ns": b.i64(),
            "grace_ns": b.i64(),
            "host": b.string(),
            "snapshots": b.vec(|b| hex(&b.id())),
            "packs": b.vec(|b| json!({"id": hex(&b.id()), "blob_type": b.varint(), "size": b.u64()})),
            "indexes": b.vec(|b| hex(&b.id())),
            "executed_ns": b.option(|b| b.i64()),
        });
        b.finish();
        assert_eq!(decoded, r["record"]);
    }
}
