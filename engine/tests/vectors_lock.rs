//! The lock-object test vector: `format-spec/test-vectors/lock.json` and the
//! sealed object it names in `lock/`, under the committed test-vector
//! repository's master key (`manifest.json`).
//!
//! - `generate_lock_vector` (ignored) writes them:
//!   `CAIRN_WRITE_VECTORS=lock cargo test -p cairn-engine --test vectors_lock -- --ignored`
//! - `engine_reads_lock_vector` reads the object with the engine, as `cairn
//!   unlock` lists it, and checks that the engine encodes the same fields to
//!   the same plaintext.
//! - `independent_decoder_reads_lock_vector` decodes it from
//!   `format-spec/README.md` alone ("Lock objects").
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::Arc;

use serde_json::{json, Value};

use cairn_engine::{Lock, RepoFile};
use common::*;

/// 2026-01-01T00:00:00Z.
const CREATED_NS: i64 = 1_767_225_600_000_000_000;
/// Five minutes later: the first refresh.
const REFRESHED_NS: i64 = CREATED_NS + 300_000_000_000;

fn vector_lock() -> Lock {
    Lock {
        host: "vector-host".into(),
        pid: 4242,
        user: "vector-user".into(),
        operation: "prune".into(),
        created_ns: CREATED_NS,
        refreshed_ns: REFRESHED_NS,
    }
}

fn master_key() -> [u8; 32] {
    unhex(manifest()["master_key"].as_str().unwrap()).try_into().unwrap()
}

#[test]
#[ignore = "writes format-spec/test-vectors/lock*; run with CAIRN_WRITE_VECTORS=lock and --ignored"]
fn generate_lock_vector() {
    use cairn_engine::blob::{self, Aad, Compression};
    if std::env::var("CAIRN_WRITE_VECTORS").as_deref() != Ok("lock") {
        eprintln!("CAIRN_WRITE_VECTORS=lock is not set: not writing the lock vector");
        return;
    }
    let keys = cairn_engine::crypto::MasterKey::from_bytes(master_key()).derive();
    let lock = vector_lock();
    let plain = cairn_engine::encoding::encode(Lock::AAD, Lock::VERSION, &lock).unwrap();
    let level = i32::try_from(manifest()["config"]["compression_level"].as_i64().unwrap()).unwrap();
    let sealed = blob::seal(&keys, Aad::Object(Lock::AAD), &plain, Compression { level }).unwrap();
    let name = blake3::hash(&sealed).to_hex().to_string();
    let dir = vectors_dir().join("lock");
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    let file = format!("lock/{name}");
    fs::write(vectors_dir().join(&file), &sealed).unwrap();
    let flag = keys.open(&object_ad("lock"), &sealed).unwrap()[0];
    let doc = json!({
        "description": "One lock object (format-spec/README.md, \"Lock objects\"): a sealed payload under the \
            encryption key of manifest.json's master key, AD \"cairn.object.lock\", named by the BLAKE3 of its \
            bytes. payload_hex is the plaintext after the flag byte: the version byte and the bincode of the \
            fields. Its refreshed time is long past, so readers judge it stale.",
        "regenerate": "CAIRN_WRITE_VECTORS=lock cargo test -p cairn-engine --test vectors_lock -- --ignored",
        "name": name,
        "file": file,
        "flag": flag,
        "payload_hex": hex(&plain),
        "lock": {
            "host": lock.host,
            "pid": lock.pid,
            "user": lock.user,
            "operation": lock.operation,
            "created_ns": lock.created_ns,
            "refreshed_ns": lock.refreshed_ns,
        },
    });
    fs::write(
        vectors_dir().join("lock.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

fn lock_manifest() -> Value {
    let path = vectors_dir().join("lock.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}{REGENERATE_HINT}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn sealed_vector(v: &Value) -> Vec<u8> {
    fs::read(vectors_dir().join(v["file"].as_str().unwrap())).unwrap()
}

#[test]
fn engine_reads_lock_vector() {
    with_hint(engine_reads);
}

fn engine_reads() {
    use cairn_engine::{Backend, MemoryBackend, ObjectKind, Repository};
    let v = lock_manifest();
    let name = v["name"].as_str().unwrap();
    let sealed = sealed_vector(&v);
    // The committed repository's config, and the lock object in `locks/`.
    let backend = Arc::new(MemoryBackend::new());
    let config = fs::read(vectors_dir().join("repo/config")).unwrap();
    backend.write(ObjectKind::Config, "config", &config).unwrap();
    backend.write(ObjectKind::Lock, name, &sealed).unwrap();
    let master = cairn_engine::crypto::MasterKey::from_bytes(master_key());
    let repo = Repository::open_with_master_key(backend.clone(), master).unwrap();

    let locks = cairn_engine::list_locks(&repo).unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].name, name);
    assert_eq!(locks[0].lock.as_ref().unwrap(), &vector_lock());
    assert!(
        locks[0].stale,
        "refreshed in 2026-01 and never since: {}",
        locks[0].reason
    );
    assert!(locks[0].reason.contains("2026-01-01T00:05:00Z"), "{}", locks[0].reason);

    // The writer's encoding of the same fields is the committed payload.
    let plain = cairn_engine::encoding::encode(Lock::AAD, Lock::VERSION, &vector_lock()).unwrap();
    assert_eq!(hex(&plain), v["payload_hex"].as_str().unwrap());

    // One flipped byte: still content-named, no longer authentic, so the
    // lock is unreadable, which counts as held (never stale).
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let bad_name = blake3::hash(&bad).to_hex().to_string();
    backend.remove(ObjectKind::Lock, name).unwrap();
    backend.write(ObjectKind::Lock, &bad_name, &bad).unwrap();
    let locks = cairn_engine::list_locks(&repo).unwrap();
    assert!(locks[0].lock.is_err() && !locks[0].stale, "{:?}", locks[0]);
}

#[test]
fn independent_decoder_reads_lock_vector() {
    with_hint(independent_decode);
}

fn independent_decode() {
    let v = lock_manifest();
    let sealed = sealed_vector(&v);
    assert_content_named(v["name"].as_str().unwrap(), &sealed);
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master_key());
    let ad = object_ad("lock");
    assert_eq!(ad.len(), 17, "AD length in the spec's table");
    let (flag, payload) = open_payload(&enc, &ad, &sealed, "lock");
    assert_eq!(u64::from(flag), v["flag"].as_u64().unwrap());
    assert_eq!(hex(&payload), v["payload_hex"].as_str().unwrap());

    let mut b = Bin::new("lock", &payload, 1);
    let decoded = json!({
        "host": b.string(),
        "pid": b.u32(),
        "user": b.string(),
        "operation": b.string(),
        "created_ns": b.i64(),
        "refreshed_ns": b.i64(),
    });
    b.finish();
    assert_eq!(decoded, v["lock"]);
    // The fields the spec's example names.
    assert_eq!(decoded["created_ns"], json!(CREATED_NS));
    assert_eq!(decoded["refreshed_ns"], json!(REFRESHED_NS));
}
