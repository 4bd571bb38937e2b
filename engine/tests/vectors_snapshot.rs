//! The snapshot test vectors, under the master key of the committed vector
//! repository (format-spec/test-vectors):
//! - `snapshot-v2.bin`/`.json`: a version 2 object, a rewritten copy of that
//!   repository's (version 1) snapshot: the same tree, one more exclude
//!   pattern, and `rewritten_from` naming the original. Written in 2026-12 by
//!   the version 2 writer and frozen since: this program writes version 3.
//! - `snapshot-v3.bin`/`.json`: a version 3 object, the same copy with source
//!   details (a Cassandra snapshot tag) and per-source chunk sizes. Written
//!   in 2026-12 by the version 3 writer and frozen since.
//! - `snapshot-v4.bin`/`.json`: a version 4 object, the version 3 copy with
//!   `copied_from` naming a source repository and the original snapshot. The
//!   ignored `generate_snapshot_vector` writes it with the engine's writer:
//!   `CAIRN_WRITE_VECTORS=snapshot cargo test -p cairn-engine --test vectors_snapshot -- --ignored`
//!
//! The engine reads all three beside the version 1 original and re-encodes
//! the version 4 object to the same bytes; an independent decoder written
//! from format-spec/README.md alone (the shared pieces in `common/`) reads
//! all three.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use cairn_engine::{
    CassandraDetails, CassandraTable, ChunkSizes, CopyOrigin, LocalBackend, RepoFile, Repository, RepositoryId,
    Snapshot, SnapshotId, SourceDetails, SourceKind,
};
use common::*;
use serde_json::{json, Value};

const V2_JSON: &str = "snapshot-v2.json";
const V2_SEALED: &str = "snapshot-v2.bin";
const V3_JSON: &str = "snapshot-v3.json";
const V3_SEALED: &str = "snapshot-v3.bin";
const JSON_FILE: &str = "snapshot-v4.json";
const SEALED_FILE: &str = "snapshot-v4.bin";
/// The source repository the version 4 vector names (any id will do: the
/// copy's source need not exist for the copy to be read).
const SOURCE_REPOSITORY: [u8; 32] = [0xc0; 32];
/// The pattern the copy adds to the original's (empty) excludes.
const EXCLUDE: &str = "*.secret";

const HINT: &str = "\n\nThe snapshot vectors (format-spec/test-vectors/snapshot-v*.*) no longer match \
what this code reads. snapshot-v2.* and snapshot-v3.* are frozen: readers must keep reading it. If the snapshot format changed on purpose, regenerate it IN THE SAME COMMIT with\n    \
CAIRN_WRITE_VECTORS=snapshot cargo test -p cairn-engine --test vectors_snapshot -- --ignored\n\
and update format-spec/README.md (\"Snapshots\" and the change log). Otherwise this is a compatibility break.";

fn vector(json_file: &str, sealed_file: &str) -> (Value, Vec<u8>) {
    let read = |name: &str| {
        let p = vectors_dir().join(name);
        fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}{HINT}", p.display()))
    };
    (serde_json::from_slice(&read(json_file)).unwrap(), read(sealed_file))
}

/// The version 3 vector's source details: a Cassandra tag of two tables.
fn details() -> SourceDetails {
    let table = |keyspace: &str, table: &str, id: &str, files, bytes| CassandraTable {
        keyspace: keyspace.into(),
        table: table.into(),
        table_id: id.into(),
        path: format!("/var/lib/cassandra/data/{keyspace}/{table}-{id}/snapshots/nightly"),
        files,
        bytes,
    };
    SourceDetails::Cassandra(CassandraDetails {
        tag: "nightly".into(),
        data_dirs: vec!["/var/lib/cassandra/data".into()],
        tables: vec![
            table("chat", "messages", "5a1c395e8a3c11ee9d0d1b5c3a0e6d41", 8, 1 << 20),
            table("chat", "call_logs", "0f3e0b2a8a3d11ee9d0d1b5c3a0e6d41", 9, 4096),
        ],
    })
}

fn chunk_sizes() -> ChunkSizes {
    ChunkSizes {
        min_size: 16 << 10,
        avg_size: 64 << 10,
        max_size: 512 << 10,
    }
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
#[ignore = "writes format-spec/test-vectors/snapshot-v4.*; run with CAIRN_WRITE_VECTORS=snapshot and --ignored"]
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
        source: SourceKind::Cassandra,
        details: details(),
        chunk_sizes: Some(chunk_sizes()),
        copied_from: Some(origin()),
        ..original
    };
    let id = repo.save_snapshot(&copy).unwrap();
    let sealed = fs::read(dir.path().join("snapshots").join(id.to_hex())).unwrap();
    fs::write(vectors_dir().join(SEALED_FILE), &sealed).unwrap();
    let doc = json!({
        "description": "One snapshot object of version 4 (format-spec/README.md, \"Snapshots\"), sealed under the \
            encryption key of manifest.json's master key with the AD \"cairn.object.snapshot\", exactly as stored in \
            snapshots/<id>. A rewritten copy of manifest.json's snapshot: field 14 (rewritten_from) names it; field 9 \
            is Cassandra, field 15 its details, field 16 per-source chunk sizes and field 17 (copied_from) a source \
            repository and the original snapshot.",
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
        "source": serde_json::to_value(&s.source).unwrap(),
        "tree": s.tree.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "program_version": s.program_version,
        "summary": serde_json::to_value(&s.summary).unwrap(),
        "rewritten_from": s.rewritten_from.map(|p| p.to_hex()),
        "details": serde_json::to_value(&s.details).unwrap(),
        "chunk_sizes": serde_json::to_value(s.chunk_sizes).unwrap(),
        "copied_from": s.copied_from.map(|c| json!({
            "repository": c.repository.to_hex(),
            "snapshot": c.snapshot.to_hex(),
        })),
    })
}

/// Field 17 of the version 4 vector.
fn origin() -> CopyOrigin {
    CopyOrigin {
        repository: RepositoryId::from_bytes(SOURCE_REPOSITORY),
        snapshot: original_id(),
    }
}

#[test]
fn engine_reads_snapshot_v2_v3_and_v4_vectors() {
    let (doc2, sealed2) = vector(V2_JSON, V2_SEALED);
    let (doc3, sealed3) = vector(V3_JSON, V3_SEALED);
    let (doc4, sealed4) = vector(JSON_FILE, SEALED_FILE);
    let id2 = blake3::hash(&sealed2).to_hex().to_string();
    let id3 = blake3::hash(&sealed3).to_hex().to_string();
    let id4 = blake3::hash(&sealed4).to_hex().to_string();
    for (id, doc) in [(&id2, &doc2), (&id3, &doc3), (&id4, &doc4)] {
        assert_eq!(
            id,
            doc["id"].as_str().unwrap(),
            "the object's name is the BLAKE3 of its bytes{HINT}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_copy(dir.path());
    fs::write(dir.path().join("snapshots").join(&id2), &sealed2).unwrap();
    fs::write(dir.path().join("snapshots").join(&id3), &sealed3).unwrap();
    fs::write(dir.path().join("snapshots").join(&id4), &sealed4).unwrap();

    let from = original_id();
    let list = repo.list_snapshots().unwrap();
    assert_eq!(list.len(), 4, "the version 1, 2, 3 and 4 snapshots");
    let original = list.iter().find(|(i, _)| *i == from).unwrap();
    assert_eq!(original.1.rewritten_from, None, "version 1 has no field 14");
    assert_eq!(original.1.details, SourceDetails::None, "version 1 has no field 15");

    let v2 = repo.load_snapshot(&SnapshotId::from_hex(&id2).unwrap()).unwrap();
    let mut v2_fields = fields(&v2);
    assert_eq!(v2_fields["details"], json!("None"), "version 2 has no field 15");
    assert_eq!(v2_fields["chunk_sizes"], Value::Null, "version 2 has no field 16");
    let obj = v2_fields.as_object_mut().unwrap();
    obj.remove("details");
    obj.remove("chunk_sizes");
    obj.remove("copied_from");
    assert_eq!(v2_fields, doc2["snapshot"], "{HINT}");
    assert_eq!(v2.rewritten_from, Some(from));

    let v3 = repo.load_snapshot(&SnapshotId::from_hex(&id3).unwrap()).unwrap();
    let mut v3_fields = fields(&v3);
    assert_eq!(v3_fields["copied_from"], Value::Null, "version 3 has no field 17");
    v3_fields.as_object_mut().unwrap().remove("copied_from");
    assert_eq!(v3_fields, doc3["snapshot"], "{HINT}");
    assert_eq!(v3.details, details());

    let copy = repo.load_snapshot(&SnapshotId::from_hex(&id4).unwrap()).unwrap();
    assert_eq!(fields(&copy), doc4["snapshot"], "{HINT}");
    assert_eq!(copy.copied_from, Some(origin()));
    assert_eq!(copy.rewritten_from, Some(from));
    assert_eq!(copy.tree, original.1.tree);
    assert_eq!(copy.excludes, [EXCLUDE]);
    assert_eq!(copy.details, details());
    assert_eq!(copy.chunk_sizes, Some(chunk_sizes()));

    // The writer's layout: encoding what was read gives the stored plaintext.
    use cairn_engine::blob::{self, Aad};
    let keys = repo.master_key().derive();
    let plain = blob::open(&keys, Aad::Object("snapshot"), &sealed4).unwrap();
    let encoded = cairn_engine::encoding::encode("snapshot", <Snapshot as RepoFile>::VERSION, &copy).unwrap();
    assert_eq!(encoded, plain, "{HINT}");

    let report = cairn_engine::check(&repo, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
}

#[test]
fn independent_decoder_reads_snapshot_v2_vector() {
    let (doc, sealed) = vector(V2_JSON, V2_SEALED);
    independent_decode(&doc, &sealed, 2);
}

#[test]
fn independent_decoder_reads_snapshot_v3_vector() {
    let (doc, sealed) = vector(V3_JSON, V3_SEALED);
    independent_decode(&doc, &sealed, 3);
}

#[test]
fn independent_decoder_reads_snapshot_v4_vector() {
    let (doc, sealed) = vector(JSON_FILE, SEALED_FILE);
    independent_decode(&doc, &sealed, 4);
}

fn independent_decode(doc: &Value, sealed: &[u8], version: u8) {
    assert_eq!(doc["version"], version);
    let master = unhex(manifest()["master_key"].as_str().unwrap());
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master);
    let (_, plain) = open_payload(&enc, &object_ad("snapshot"), sealed, "snapshot");
    let mut b = Bin::new("snapshot", &plain, version);
    let time_ns = b.i64();
    let (host, user) = (b.string(), b.string());
    let (uid, gid) = (b.u32(), b.u32());
    let (tags, paths, excludes) = (b.strings(), b.strings(), b.strings());
    let source = b.u32();
    let tree = b.id();
    let parent = b.option(|b| b.id());
    let program_version = b.string();
    let summary: Vec<u64> = (0..14).map(|_| b.u64()).collect();
    // Field 14, the only difference from version 1.
    let rewritten_from = b.option(|b| b.id());
    if version == 2 {
        assert_eq!(source, 0, "source kind Files");
        b.finish();
    } else {
        assert_eq!(source, 4, "source kind Cassandra");
        // Field 15: SourceDetails variant 3, Cassandra { tag, data_dirs, tables }.
        assert_eq!(b.u32(), 3, "details Cassandra");
        let want = &doc["snapshot"]["details"]["Cassandra"];
        assert_eq!(b.string(), want["tag"].as_str().unwrap());
        assert_eq!(json!(b.strings()), want["data_dirs"]);
        let tables = b.vec(|b| {
            json!({
                "keyspace": b.string(), "table": b.string(), "table_id": b.string(),
                "path": b.string(), "files": b.u64(), "bytes": b.u64(),
            })
        });
        assert_eq!(json!(tables), want["tables"]);
        // Field 16: Option<ChunkSizes { min_size, avg_size, max_size }>.
        let sizes = b.option(|b| json!({"min_size": b.u32(), "avg_size": b.u32(), "max_size": b.u32()}));
        assert_eq!(sizes.unwrap(), doc["snapshot"]["chunk_sizes"]);
        if version == 4 {
            // Field 17: Option<CopyOrigin { repository, snapshot }>.
            let origin = b.option(|b| json!({"repository": hex(&b.id()), "snapshot": hex(&b.id())}));
            assert_eq!(origin.unwrap(), doc["snapshot"]["copied_from"]);
        }
        b.finish();
    }

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
