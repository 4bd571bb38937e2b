//! The config test vector `config-v2.bin`/`.json` (format-spec/test-vectors):
//! the committed vector repository's (version 1) config written again as
//! version 2 with a shared blob-id key (field 7), sealed under that
//! repository's master key exactly as stored in `config`. The ignored
//! `generate_config_vector` writes it with the engine's writer:
//! `CAIRN_WRITE_VECTORS=config cargo test -p cairn-engine --test vectors_config -- --ignored`
//!
//! The engine opens a repository with it and computes blob ids under the
//! shared key; an independent decoder written from format-spec/README.md
//! alone reads every field.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use cairn_engine::{BlobIdKey, LocalBackend, Repository};
use common::*;
use serde_json::{json, Value};

const JSON_FILE: &str = "config-v2.json";
const SEALED_FILE: &str = "config-v2.bin";
/// The shared blob-id key of the vector: any 32 bytes will do.
const SHARED_KEY: [u8; 32] = [0x4b; 32];

const HINT: &str = "\n\nThe config vector (format-spec/test-vectors/config-v2.*) no longer matches what this code \
reads. If the config format changed on purpose, regenerate it IN THE SAME COMMIT with\n    \
CAIRN_WRITE_VECTORS=config cargo test -p cairn-engine --test vectors_config -- --ignored\n\
and update format-spec/README.md (\"Config\" and the change log). Otherwise this is a compatibility break.";

/// The committed repository, copied to `dir` (tests must not change it).
fn repo_copy(dir: &Path) -> Repository {
    cairn_test_support::tree::copy_dir(&vectors_dir().join("repo"), dir);
    Repository::open(Arc::new(LocalBackend::new(dir)), PASSWORD.as_bytes()).unwrap()
}

fn vector() -> (Value, Vec<u8>) {
    let read = |name: &str| {
        let p = vectors_dir().join(name);
        fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}{HINT}", p.display()))
    };
    (serde_json::from_slice(&read(JSON_FILE)).unwrap(), read(SEALED_FILE))
}

#[test]
#[ignore = "writes format-spec/test-vectors/config-v2.*; run with CAIRN_WRITE_VECTORS=config and --ignored"]
fn generate_config_vector() {
    if std::env::var("CAIRN_WRITE_VECTORS").as_deref() != Ok("config") {
        eprintln!("CAIRN_WRITE_VECTORS=config is not set: not writing the vector");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_copy(dir.path());
    let mut config = repo.config().clone();
    config.blob_id_key = Some(BlobIdKey::from_bytes(SHARED_KEY));
    let sealed = repo.seal_config(&config).unwrap();
    fs::write(vectors_dir().join(SEALED_FILE), &sealed).unwrap();
    let c = &config.chunker;
    let doc = json!({
        "description": "The config object of version 2 (format-spec/README.md, \"Config\"), sealed under the \
            encryption key of manifest.json's master key with the AD \"cairn.object.config\", exactly as stored in \
            `config`: the vector repository's config with field 7 (blob_id_key) set. `id_of_hello` is the blob id \
            of the five bytes \"hello\" under that key: keyed BLAKE3 with blob_id_key as the key.",
        "regenerate": "CAIRN_WRITE_VECTORS=config cargo test -p cairn-engine --test vectors_config -- --ignored",
        "file": SEALED_FILE,
        "version": 2,
        "config": {
            "format_version": config.format_version,
            "repository_id": config.repository_id.to_hex(),
            "chunker": { "seed": c.seed, "min_size": c.min_size, "avg_size": c.avg_size, "max_size": c.max_size },
            "compression_level": config.compression_level,
            "pack_size": config.pack_size,
            "created_ns": config.created_ns,
            "blob_id_key": hex(&SHARED_KEY),
        },
        "id_of_hello": repo_with(&sealed).blob_id(b"hello").to_hex(),
    });
    fs::write(
        vectors_dir().join(JSON_FILE),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

/// The vector repository with its config replaced by `sealed`, opened.
fn repo_with(sealed: &[u8]) -> Repository {
    let dir = tempfile::tempdir().unwrap();
    cairn_test_support::tree::copy_dir(&vectors_dir().join("repo"), dir.path());
    fs::write(dir.path().join("config"), sealed).unwrap();
    let repo = Repository::open(Arc::new(LocalBackend::new(dir.path())), PASSWORD.as_bytes()).unwrap();
    // The repository object keeps no handle on the folder once open.
    drop(dir);
    repo
}

#[test]
fn engine_opens_config_v2_and_names_blobs_with_the_shared_key() {
    let (doc, sealed) = vector();
    let repo = repo_with(&sealed);
    let want = &doc["config"];
    let c = repo.config();
    assert_eq!(
        c.repository_id.to_hex(),
        want["repository_id"].as_str().unwrap(),
        "{HINT}"
    );
    assert_eq!(c.blob_id_key, Some(BlobIdKey::from_bytes(SHARED_KEY)), "{HINT}");
    assert_eq!(c.created_ns, want["created_ns"].as_i64().unwrap());
    let expected = blake3::keyed_hash(&SHARED_KEY, b"hello").to_hex().to_string();
    assert_eq!(repo.blob_id(b"hello").to_hex(), expected);
    assert_eq!(doc["id_of_hello"].as_str().unwrap(), expected, "{HINT}");
    // The version 1 config of the same repository derives its key instead.
    let dir = tempfile::tempdir().unwrap();
    let v1 = repo_copy(dir.path());
    assert_eq!(v1.config().blob_id_key, None);
    assert_ne!(v1.blob_id(b"hello").to_hex(), expected);
    assert!(!v1.same_blob_ids(&repo), "different blob-id keys");
}

#[test]
fn independent_decoder_reads_config_v2_vector() {
    let (doc, sealed) = vector();
    assert_eq!(doc["version"], 2);
    let master = unhex(manifest()["master_key"].as_str().unwrap());
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master);
    let (_, plain) = open_payload(&enc, &object_ad("config"), &sealed, "config");
    let mut b = Bin::new("config", &plain, 2);
    let got = json!({
        "format_version": b.u32(),
        "repository_id": hex(&b.id()),
        "chunker": { "seed": b.u64(), "min_size": b.u32(), "avg_size": b.u32(), "max_size": b.u32() },
        "compression_level": b.i32(),
        "pack_size": b.u32(),
        "created_ns": b.i64(),
        // Field 7: Option<[u8; 32]>: a fixed-size array, no length prefix.
        "blob_id_key": b.option(|b| hex(&b.id())),
    });
    b.finish();
    assert_eq!(got, doc["config"], "{HINT}");
    let key: [u8; 32] = unhex(got["blob_id_key"].as_str().unwrap()).try_into().unwrap();
    assert_eq!(
        blake3::keyed_hash(&key, b"hello").to_hex().as_str(),
        doc["id_of_hello"].as_str().unwrap()
    );
}
