//! The report-object test vector: `format-spec/test-vectors/report.json`
//! and the sealed object it names in `report/`, under the committed
//! test-vector repository's master key (`manifest.json`).
//!
//! - `generate_report_vector` (ignored) writes them:
//!   `CAIRN_WRITE_VECTORS=report cargo test -p cairn-engine --test vectors_report -- --ignored`
//! - `engine_reads_report_vector` reads the object with the engine, as
//!   `cairn status` does, and checks that the engine encodes the same
//!   fields to the same plaintext.
//! - `independent_decoder_reads_report_vector` decodes it from
//!   `format-spec/README.md` alone ("Report objects").
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::Arc;

use serde_json::{json, Value};

use cairn_engine::{RepoFile, Report, ReportKind, ReportStep, SnapshotId};
use common::*;

/// 2026-01-01T03:00:00Z.
const STARTED_NS: i64 = 1_767_236_400_000_000_000;

fn vector_report() -> Report {
    Report {
        kind: ReportKind::Drill,
        source: "sessions".into(),
        host: "vector-host".into(),
        started_ns: STARTED_NS,
        duration_ns: 2_500_000_000,
        ok: false,
        snapshot: Some(SnapshotId::from_bytes([7; 32])),
        bytes: 4096,
        limit_ns: Some(3_600_000_000_000),
        steps: vec![
            ReportStep::new("restore", true, ""),
            ReportStep::new("redis-server", false, "keys differ: recorded db0=3, loaded db0=2"),
        ],
    }
}

fn master_key() -> [u8; 32] {
    unhex(manifest()["master_key"].as_str().unwrap()).try_into().unwrap()
}

fn fields(r: &Report) -> Value {
    json!({
        "kind": r.kind.as_str(),
        "source": r.source,
        "host": r.host,
        "started_ns": r.started_ns,
        "duration_ns": r.duration_ns,
        "ok": r.ok,
        "snapshot": r.snapshot.map(|s| s.to_hex()),
        "bytes": r.bytes,
        "limit_ns": r.limit_ns,
        "steps": r.steps.iter().map(|s| json!({"name": s.name, "ok": s.ok, "detail": s.detail})).collect::<Vec<_>>(),
    })
}

#[test]
#[ignore = "writes format-spec/test-vectors/report*; run with CAIRN_WRITE_VECTORS=report and --ignored"]
fn generate_report_vector() {
    use cairn_engine::blob::{self, Aad, Compression};
    if std::env::var("CAIRN_WRITE_VECTORS").as_deref() != Ok("report") {
        eprintln!("CAIRN_WRITE_VECTORS=report is not set: not writing the report vector");
        return;
    }
    let keys = cairn_engine::crypto::MasterKey::from_bytes(master_key()).derive();
    let report = vector_report();
    let plain = cairn_engine::encoding::encode(Report::AAD, Report::VERSION, &report).unwrap();
    let level = i32::try_from(manifest()["config"]["compression_level"].as_i64().unwrap()).unwrap();
    let sealed = blob::seal(&keys, Aad::Object(Report::AAD), &plain, Compression { level }).unwrap();
    let name = blake3::hash(&sealed).to_hex().to_string();
    let dir = vectors_dir().join("report");
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    let file = format!("report/{name}");
    fs::write(vectors_dir().join(&file), &sealed).unwrap();
    let flag = keys.open(&object_ad("report"), &sealed).unwrap()[0];
    let doc = json!({
        "description": "One report object (format-spec/README.md, \"Report objects\"): a sealed payload under the \
            encryption key of manifest.json's master key, AD \"cairn.object.report\", named by the BLAKE3 of its \
            bytes. payload_hex is the plaintext after the flag byte: the version byte and the bincode of the \
            fields. It is a failed drill of source `sessions`.",
        "regenerate": "CAIRN_WRITE_VECTORS=report cargo test -p cairn-engine --test vectors_report -- --ignored",
        "name": name,
        "file": file,
        "flag": flag,
        "payload_hex": hex(&plain),
        "report": fields(&report),
    });
    fs::write(
        vectors_dir().join("report.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

fn report_manifest() -> Value {
    let path = vectors_dir().join("report.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}{REGENERATE_HINT}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn sealed_vector(v: &Value) -> Vec<u8> {
    fs::read(vectors_dir().join(v["file"].as_str().unwrap())).unwrap()
}

#[test]
fn engine_reads_report_vector() {
    with_hint(engine_reads);
}

fn engine_reads() {
    use cairn_engine::{Backend, MemoryBackend, ObjectKind, Repository};
    let v = report_manifest();
    let name = v["name"].as_str().unwrap();
    let sealed = sealed_vector(&v);
    let backend = Arc::new(MemoryBackend::new());
    let config = fs::read(vectors_dir().join("repo/config")).unwrap();
    backend.write(ObjectKind::Config, "config", &config).unwrap();
    backend.write(ObjectKind::Report, name, &sealed).unwrap();
    let master = cairn_engine::crypto::MasterKey::from_bytes(master_key());
    let repo = Repository::open_with_master_key(backend.clone(), master).unwrap();

    let latest = repo.latest_reports().unwrap();
    assert_eq!(latest.len(), 1);
    let got = &latest[&("sessions".to_string(), ReportKind::Drill)];
    assert_eq!(got, &vector_report());
    assert_eq!(fields(got), v["report"]);

    let plain = cairn_engine::encoding::encode(Report::AAD, Report::VERSION, &vector_report()).unwrap();
    assert_eq!(hex(&plain), v["payload_hex"].as_str().unwrap());

    // A damaged report is skipped, never an error: reports only explain.
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    backend.remove(ObjectKind::Report, name).unwrap();
    backend
        .write(ObjectKind::Report, &blake3::hash(&bad).to_hex(), &bad)
        .unwrap();
    assert!(repo.latest_reports().unwrap().is_empty());
}

#[test]
fn independent_decoder_reads_report_vector() {
    with_hint(independent_decode);
}

fn independent_decode() {
    let v = report_manifest();
    let sealed = sealed_vector(&v);
    assert_content_named(v["name"].as_str().unwrap(), &sealed);
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master_key());
    let ad = object_ad("report");
    assert_eq!(ad.len(), 19, "AD length in the spec's table");
    let (flag, payload) = open_payload(&enc, &ad, &sealed, "report");
    assert_eq!(u64::from(flag), v["flag"].as_u64().unwrap());
    assert_eq!(hex(&payload), v["payload_hex"].as_str().unwrap());

    let mut b = Bin::new("report", &payload, 1);
    let kind = match b.u32() {
        0 => "run",
        1 => "drill",
        k => panic!("report kind {k}"),
    };
    let boolean = |b: &mut Bin| match b.u8() {
        0 => false,
        1 => true,
        x => panic!("bool {x}"),
    };
    let decoded = json!({
        "kind": kind,
        "source": b.string(),
        "host": b.string(),
        "started_ns": b.i64(),
        "duration_ns": b.u64(),
        "ok": boolean(&mut b),
        "snapshot": b.option(|b| hex(&b.id())),
        "bytes": b.u64(),
        "limit_ns": b.option(|b| b.u64()),
        "steps": b.vec(|b| json!({"name": b.string(), "ok": boolean(b), "detail": b.string()})),
    });
    b.finish();
    assert_eq!(decoded, v["report"]);
    assert_eq!(decoded["started_ns"], json!(STARTED_NS));
}
