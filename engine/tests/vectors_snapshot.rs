//! The snapshot version 2 test vector: `format-spec/test-vectors/snapshot-v2.bin`
//! (a sealed snapshot object, as stored) described by `snapshot-v2.json`,
//! under the master key of the committed vector repository. It is a rewritten
//! copy of that repository's (version 1) snapshot: the same tree, one more
//! exclude pattern, and `rewritten_from` naming the original.
//!
//! - `generate_snapshot_vector` (ignored) writes it with the engine's own
//!   writer, into a copy of the repository:
//!   `CAIRN_WRITE_VECTORS=snapshot cargo test -p cairn-engine --test vectors_snapshot -- --ignored`
//! - `engine_reads_snapshot_v2_vector` puts it into a copy of the repository,
//!   where the engine lists both versions side by side, and checks that the
//!   engine encodes what it decoded to the same bytes.
//! - `independent_decoder_reads_snapshot_v2_vector` decodes it from
//!   format-spec/README.md alone (the shared decoder pieces in `common/`).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use cairn_engine::{LocalBackend, RepoFile, Repository, Snapshot, SnapshotId};
use common::*;
use serde_json::{json, Value};

const JSON_FILE: &str = "snapshot-v2.json";
const SEALED_FILE: &str = "snapshot-v2.bin";
/// The pattern the copy adds to the original's (empty) excludes.
const EXCLUDE: &str = "*.secret";

const HINT: &str = "\n\nThe snapshot version 2 vector (format-spec/test-vectors/snapshot-v2.*) no longer matches \
what this code reads. If the snapshot format changed on purpose, regenerate it IN THE SAME COMMIT with\n    \
CAIRN_WRITE_VECTORS=snapshot cargo test -p cairn-engine --test vectors_snapshot -- --ignored\n\
and update format-spec/README.md (\"Snapshots\" and the change log). Otherwise this is a compatibility break.";

fn vector() -> (Value, Vec<u8>) {
    let read = |name: &str| {
        let p = vectors_dir().join(name);
        fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}{HINT}", p.display()))
    };
    (serde_json::from_slice(&read(JSON_FILE)).unwrap(), read(SEALED_FILE))
}

/// The committed repository, copied to `dir` (tests must not change it).
fn repo_copy(dir: &Path) -> Repository {
    cairn_test_support::tree::copy_dir(&vectors_dir().join("repo"), dir);
    Repository::open(Arc::new(LocalBackend::new(dir)), PASSWORD.as_bytes()).unwrap()
}

fn original_id() -> SnapshotId {
    SnapshotId::from_hex(manifest()["snapshot"]["id"].as_str().unwrap()).unwrap()
}

#[test]
#[ignore = "writes format-spec/test-vectors/snapshot-v2.*; run with CAIRN_WRITE_VECTORS=snapshot and --ignored"]
fn generate_snapshot_vector() {
    if std::env::var("CAIRN_WRITE_VECTORS").as_deref() != Ok("snapshot") {
        eprintln!("CAIRN_WRITE_VECTORS=snapshot is not set: not writing the vector");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_copy(dir.path());
    let from = original_id();
    let original = repo.load_snapshot(&from).unwrap();
    let copy = Snapshot {
        excludes: vec![EXCLUDE.into()],
        rewritten_from: Some(from),
        ..original
    };
    let id = repo.save_snapshot(&copy).unwrap();
    let sealed = fs::read(dir.path().join("snapshots").join(id.to_hex())).unwrap();
    fs::write(vectors_dir().join(SEALED_FILE), &sealed).unwrap();
    let doc = json!({
        "description": "One snapshot object of version 2 (format-spec/README.md, \"Snapshots\"), sealed under the \
            encryption key of manifest.json's master key with the AD \"cairn.object.snapshot\", exactly as stored in \
            snapshots/<id>. A rewritten copy of manifest.json's snapshot: field 14 (rewritten_from) names it.",
        "regenerate": "CAIRN_WRITE_VECTORS=snapshot cargo test -p cairn-engine --test vectors_snapshot -- --ignored",
        "file": SEALED_FILE,
        "id": id.to_hex(),
        "version": <Snapshot as RepoFile>::VERSION,
        "snapshot": fields(&copy),
    });
    fs::write(
        vectors_dir().join(JSON_FILE),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
    eprintln!("wrote {}", vectors_dir().join(JSON_FILE).display());
}

/// The fields as the JSON document lists them, in format order.
fn fields(s: &Snapshot) -> Value {
    json!({
        "time_ns": s.time_ns,
        "host": s.host,
        "user": s.user,
        "uid": s.uid,
        "gid": s.gid,
        "tags": s.tags,
        "paths": s.paths,
        "excludes": s.excludes,
        "source": "Files",
        "tree": s.tree.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "program_version": s.program_version,
        "summary": serde_json::to_value(&s.summary).unwrap(),
        "rewritten_from": s.rewritten_from.map(|p| p.to_hex()),
    })
}

#[test]
fn engine_reads_snapshot_v2_vector() {
    let (doc, sealed) = vector();
    let id = blake3::hash(&sealed).to_hex().to_string();
    assert_eq!(
        id,
        doc["id"].as_str().unwrap(),
        "the object's name is the BLAKE3 of its bytes{HINT}"
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_copy(dir.path());
    fs::write(dir.path().join("snapshots").join(&id), &sealed).unwrap();

    let from = original_id();
    let list = repo.list_snapshots().unwrap();
    assert_eq!(list.len(), 2, "the version 1 and the version 2 snapshot");
    let original = list.iter().find(|(i, _)| *i == from).unwrap();
    assert_eq!(original.1.rewritten_from, None, "version 1 has no field 14");
    let copy = repo.load_snapshot(&SnapshotId::from_hex(&id).unwrap()).unwrap();
    assert_eq!(fields(&copy), doc["snapshot"], "{HINT}");
    assert_eq!(copy.rewritten_from, Some(from));
    assert_eq!(copy.tree, original.1.tree);
    assert_eq!(copy.excludes, [EXCLUDE]);

    // The writer's layout: encoding what was read gives the stored plaintext.
    use cairn_engine::blob::{self, Aad};
    let keys = repo.master_key().derive();
    let plain = blob::open(&keys, Aad::Object("snapshot"), &sealed).unwrap();
    let encoded = cairn_engine::encoding::encode("snapshot", <Snapshot as RepoFile>::VERSION, &copy).unwrap();
    assert_eq!(encoded, plain, "{HINT}");

    let report = cairn_engine::check(&repo, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
}

#[test]
fn independent_decoder_reads_snapshot_v2_vector() {
    let (doc, sealed) = vector();
    assert_eq!(doc["version"], 2);
    let master = unhex(manifest()["master_key"].as_str().unwrap());
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master);
    let (_, plain) = open_payload(&enc, &object_ad("snapshot"), &sealed, "snapshot v2");
    let mut b = Bin::new("snapshot", &plain, 2);
    let time_ns = b.i64();
    let (host, user) = (b.string(), b.string());
    let (uid, gid) = (b.u32(), b.u32());
    let (tags, paths, excludes) = (b.strings(), b.strings(), b.strings());
    assert_eq!(b.u32(), 0, "source kind Files");
    let tree = b.id();
    let parent = b.option(|b| b.id());
    let program_version = b.string();
    let summary: Vec<u64> = (0..14).map(|_| b.u64()).collect();
    // Field 14, the only difference from version 1.
    let rewritten_from = b.option(|b| b.id());
    b.finish();

    let want = &doc["snapshot"];
    assert_eq!(time_ns, want["time_ns"].as_i64().unwrap());
    assert_eq!(
        (host.as_str(), user.as_str()),
        (want["host"].as_str().unwrap(), want["user"].as_str().unwrap())
    );
    assert_eq!(
        (u64::from(uid), u64::from(gid)),
        (want["uid"].as_u64().unwrap(), want["gid"].as_u64().unwrap())
    );
    assert_eq!(json!(tags), want["tags"]);
    assert_eq!(json!(paths), want["paths"]);
    assert_eq!(json!(excludes), want["excludes"]);
    assert_eq!(excludes, [EXCLUDE]);
    assert_eq!(hex(&tree), want["tree"].as_str().unwrap());
    assert_eq!(parent.map(|p| hex(&p)), want["parent"].as_str().map(String::from));
    assert_eq!(program_version, want["program_version"].as_str().unwrap());
    for (v, n) in summary.iter().zip(SUMMARY_FIELDS) {
        assert_eq!(*v, want["summary"][n].as_u64().unwrap(), "summary.{n}");
    }
    // The copy names the committed version 1 snapshot, by the id of its bytes.
    let original = manifest()["snapshot"]["id"].as_str().unwrap().to_string();
    assert_eq!(rewritten_from.map(|p| hex(&p)), Some(original.clone()));
    assert_eq!(want["rewritten_from"].as_str(), Some(original.as_str()));
    assert_eq!(
        hex(&tree),
        manifest()["snapshot"]["tree"].as_str().unwrap(),
        "the same tree"
    );
}
