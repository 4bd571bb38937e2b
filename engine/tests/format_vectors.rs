//! Format test vectors: a tiny committed repository in
//! `format-spec/test-vectors/repo`, described by `manifest.json`.
//!
//! - `generate_vectors` (ignored) writes them:
//!   `CAIRN_WRITE_VECTORS=1 cargo test -p cairn-engine --test format_vectors -- --ignored`
//! - `engine_reads_committed_vectors` opens them with the engine and compares
//!   what it decodes with the manifest.
//! - `independent_decoder_reads_committed_vectors` decodes them from
//!   `format-spec/README.md` alone, with blake3, argon2, chacha20poly1305,
//!   zstd and a hand-written bincode reader (cross-checked with bincode
//!   itself): no engine code is used, so it proves the spec matches the bytes.
//!
//! - `blobs.json` and `blobs/` hold single sealed blobs under the same master
//!   key, at the edges of the compression rules: a blob zstd does not make
//!   shorter (stored raw), one it makes one byte shorter (stored compressed),
//!   and flag-1 payloads with data after the zstd frame that readers MUST
//!   refuse. `engine_reads_blob_vectors` and `independent_decoder_reads_blob_vectors`
//!   read them; `CAIRN_WRITE_VECTORS=blobs` rewrites only these.
//!
//! If the format changes, the vectors MUST be regenerated in the same commit
//! (and a change-log entry added to format-spec/README.md).
#![allow(clippy::unwrap_used)]

mod common;

use cairn_test_support::pseudo_random;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use common::*;

/// 2026-01-01T00:00:00Z.
const SNAPSHOT_TIME_NS: i64 = 1_767_225_600_000_000_000;
const HOST: &str = "vector-host";
/// 2025-12-31T12:00:00Z, the mtime of every source file and folder.
const SOURCE_MTIME_S: u64 = 1_767_182_400;

// ---------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------

/// Compressible but not trivially repetitive text, so that it splits into
/// several chunks and is stored as zstd frames.
fn words(n: usize, seed: u64) -> Vec<u8> {
    const VOCAB: [&str; 16] = [
        "cairn", "backup", "pack", "blob", "index", "snapshot", "tree", "chunk", "key", "nonce", "zstd", "seal",
        "prune", "restore", "host", "stone",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(VOCAB[(x >> 40) as usize % VOCAB.len()].as_bytes());
        out.push(if matches!((x >> 20) % 11, 0) { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

fn set_mtime(p: &Path) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(SOURCE_MTIME_S);
    fs::File::open(p).unwrap().set_modified(t).unwrap();
}

/// Writes the source tree: small files (one empty), two identical files,
/// symlinks, nested folders; fixed mtimes.
fn make_source(root: &Path) {
    let text = words(48 * 1024, 7);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("hello.txt", b"Hello, Cairn!\n".to_vec()),
        ("empty", Vec::new()),
        ("docs/words.txt", text.clone()),
        // Same content as docs/words.txt: same blobs, stored once.
        ("docs/copy-of-words.txt", text),
        ("docs/deep/nested/random.bin", pseudo_random(64 * 1024 + 123, 99)),
        (
            "docs/deep/nested/short.txt",
            b"a short line of text that is longer than sixty-four bytes, \
so the compressor is tried\n"
                .to_vec(),
        ),
    ];
    for (rel, data) in &files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        set_mtime(&p);
    }
    std::os::unix::fs::symlink("hello.txt", root.join("link-to-hello")).unwrap();
    std::os::unix::fs::symlink("../hello.txt", root.join("docs/link-up")).unwrap();
    for d in ["docs/deep/nested", "docs/deep", "docs", ""] {
        set_mtime(&root.join(d));
    }
}

/// Every entry under `root`, sorted by relative path.
fn list_source(root: &Path) -> Vec<(String, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, m));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
#[ignore = "writes format-spec/test-vectors; run with CAIRN_WRITE_VECTORS=1 and --ignored"]
fn generate_vectors() {
    use cairn_engine::crypto::KdfParams;
    use cairn_engine::ChunkerParams;
    use cairn_engine::ParentChoice;
    use cairn_engine::{backup, BackupOptions, BackupSource, InitOptions, LocalBackend, Repository};

    match std::env::var("CAIRN_WRITE_VECTORS").as_deref() {
        Ok("1") => {}
        Ok("blobs") => {
            // Only the single-blob vectors, under the committed repository's key.
            let master: [u8; 32] = unhex(manifest()["master_key"].as_str().unwrap()).try_into().unwrap();
            write_blob_vectors(&master);
            return;
        }
        _ => {
            eprintln!("CAIRN_WRITE_VECTORS=1 (or =blobs) is not set: not writing the vectors");
            return;
        }
    }
    let out_dir = vectors_dir();
    let repo_dir = out_dir.join("repo");
    if repo_dir.exists() {
        fs::remove_dir_all(&repo_dir).unwrap();
    }
    fs::create_dir_all(&out_dir).unwrap();

    let src_parent = tempfile::Builder::new().prefix("cairn-vectors-").tempdir().unwrap();
    let src = src_parent.path().join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src);

    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let chunker = ChunkerParams {
        seed: 0x0123_4567_89ab_cdef,
        min_size: 4096,
        avg_size: 16384,
        max_size: 65536,
    };
    let repo = Repository::init(
        Arc::new(LocalBackend::new(&repo_dir)),
        PASSWORD.as_bytes(),
        InitOptions {
            kdf,
            chunker: Some(chunker),
            compression_level: 1,
            pack_size: 1024 * 1024,
            blob_id_key: None,
        },
    )
    .unwrap();
    let outcome = backup(
        &repo,
        BackupSource::Paths(vec![src.clone()]),
        &BackupOptions {
            host: Some(HOST.into()),
            time_ns: Some(SNAPSHOT_TIME_NS),
            tags: vec!["test-vector".into()],
            parent: ParentChoice::None,
            readers: 1,
            sealers: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    let snap_id = outcome.id.unwrap();
    let snap = repo.load_snapshot(&snap_id).unwrap();
    let index = repo.load_index().unwrap();
    let src_str = src.to_string_lossy().into_owned();

    let mut files = Vec::new();
    let mut total = 0u64;
    for (rel, m) in list_source(&src) {
        let node = cairn_engine::node_at(&repo, &index, &snap, &format!("{src_str}/{rel}")).unwrap();
        let ft = m.file_type();
        let entry = if ft.is_symlink() {
            json!({
                "path": rel,
                "kind": "symlink",
                "target": fs::read_link(src.join(&rel)).unwrap().to_string_lossy(),
            })
        } else if ft.is_dir() {
            json!({ "path": rel, "kind": "dir", "subtree": node.subtree.unwrap().to_hex() })
        } else {
            let data = fs::read(src.join(&rel)).unwrap();
            total += data.len() as u64;
            json!({
                "path": rel,
                "kind": "file",
                "size": data.len(),
                "blake3": blake3::hash(&data).to_hex().as_str(),
                "blobs": node.content.iter().map(|c| json!({"id": c.id.to_hex(), "length": c.length})).collect::<Vec<_>>(),
            })
        };
        files.push(entry);
    }
    assert!(total < 200_000, "the vectors must stay small ({total} bytes)");
    let root_node = cairn_engine::node_at(&repo, &index, &snap, &src_str).unwrap();

    let master = repo.master_key().expose();
    let enc_key = blake3::derive_key(cairn_engine::crypto::CONTEXT_ENCRYPTION, master);
    let id_key = blake3::derive_key(cairn_engine::crypto::CONTEXT_BLOB_ID, master);
    let cfg = repo.config();
    let backend = repo.storage();
    let names =
        |k: cairn_engine::ObjectKind| -> Vec<String> { backend.list(k).unwrap().into_iter().map(|o| o.name).collect() };
    use cairn_engine::ObjectKind as K;
    let manifest = json!({
        "description": "A tiny Cairn repository (format version 1) for testing decoders. See format-spec/README.md.",
        "regenerate": "CAIRN_WRITE_VECTORS=1 cargo test -p cairn-engine --test format_vectors -- --ignored",
        "notes": [
            "The Argon2id parameters (64 KiB, 1 pass, 1 lane) are far below the default (64 MiB, 3 passes) so that tests are fast; never use them for a real repository.",
            "Nonces, salts, the master key and the repository id are random, so regenerating produces different bytes: the vectors are this committed instance, not a reproducible build.",
            "The key object's host and user, and the nodes' uid, gid, user, group, inode, device, ctime and nlink, are those of the machine that generated the vectors.",
            "Files whose names begin with '.' (e.g. .gitkeep in otherwise empty folders, which git cannot store) are not part of the format; readers ignore them.",
            "The backed-up folder is snapshot.paths[0]; the snapshot's root tree also holds the folders leading to it.",
        ],
        "password": PASSWORD,
        "kdf": { "memory_kib": kdf.memory_kib, "iterations": kdf.iterations, "parallelism": kdf.parallelism },
        "master_key": hex(master),
        "subkeys": { "encryption": hex(&enc_key), "blob_id": hex(&id_key) },
        "config": {
            "format_version": cfg.format_version,
            "repository_id": cfg.id_hex(),
            "chunker": {
                "seed": cfg.chunker.seed,
                "seed_hex": format!("{:#018x}", cfg.chunker.seed),
                "min_size": cfg.chunker.min_size,
                "avg_size": cfg.chunker.avg_size,
                "max_size": cfg.chunker.max_size,
            },
            "compression_level": cfg.compression_level,
            "pack_size": cfg.pack_size,
            "created_ns": cfg.created_ns,
        },
        "snapshot": {
            "id": snap_id.to_hex(),
            "time_ns": snap.time_ns,
            "host": snap.host,
            "user": snap.user,
            "uid": snap.uid,
            "gid": snap.gid,
            "tags": snap.tags,
            "paths": snap.paths,
            "excludes": snap.excludes,
            "source": "Files",
            "tree": snap.tree.to_hex(),
            "parent": null,
            "program_version": snap.program_version,
            "summary": serde_json::to_value(&snap.summary).unwrap(),
            "backed_up_tree": root_node.subtree.unwrap().to_hex(),
        },
        "objects": {
            "config": names(K::Config),
            "keys": names(K::Key),
            "snapshots": names(K::Snapshot),
            "index": names(K::Index),
            "data_packs": names(K::DataPack),
            "tree_packs": names(K::TreePack),
        },
        "files": files,
    });
    fs::write(
        out_dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    // git stores no empty folders; keep the layout whole.
    for d in ["locks", "deletions", "tmp"] {
        let dir = repo_dir.join(d);
        if fs::read_dir(&dir).unwrap().next().is_none() {
            fs::write(dir.join(".gitkeep"), b"").unwrap();
        }
    }
    let master: [u8; 32] = *master;
    write_blob_vectors(&master);
    eprintln!("wrote {}", out_dir.display());
}

// ---------------------------------------------------------------------------
// Single-blob vectors: the edges of the compression rules
// ---------------------------------------------------------------------------

/// The level every blob vector is written and checked at (the test
/// repository's config level).
const BLOB_VECTOR_LEVEL: i32 = 1;

/// `flag || payload` of the blob vectors, by name.
struct BlobVector {
    name: &'static str,
    /// The plaintext whose id the AD carries.
    plain: Vec<u8>,
    /// Plaintext of the sealed payload (flag byte first); `None` lets the
    /// engine's writer choose (the vector then also pins the writer's rule).
    payload: Option<Vec<u8>>,
    expect_ok: bool,
    why: &'static str,
}

fn zstd_len(data: &[u8]) -> usize {
    zstd::bulk::compress(data, BLOB_VECTOR_LEVEL).unwrap().len()
}

/// Shannon entropy in bits per byte of the whole of `data` (the writer samples
/// the whole blob when it is at most 32 KiB, as these are).
fn entropy(data: &[u8]) -> f64 {
    let mut hist = [0u32; 256];
    for &b in data {
        hist[b as usize] += 1;
    }
    let n = data.len() as f64;
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) / n)
        .map(|p| -p * p.log2())
        .sum()
}

/// A blob whose zstd frame is exactly `shorter_by` bytes shorter than the
/// blob: pseudo-random bytes (incompressible) ending in a copy of their own
/// start (which zstd turns into one match), the lengths searched for. Short
/// (at most 255 bytes), because zstd only emits a compressed block that
/// saves at least `(size >> 6) + 2` bytes over a raw one, and for longer
/// blobs that gap jumps over the edge. Below the writer's entropy threshold,
/// so zstd is really tried.
fn blob_with_frame_length(shorter_by: usize) -> Vec<u8> {
    for len in (64..=255).rev() {
        for seed in 1..16u64 {
            for k in 4..len / 2 {
                let mut data = pseudo_random(len - k, seed);
                data.extend_from_within(..k);
                if zstd_len(&data) + shorter_by == len {
                    assert!(entropy(&data) < 7.97, "the writer would not try zstd");
                    return data;
                }
            }
        }
    }
    panic!("no blob whose zstd frame is {shorter_by} bytes shorter");
}

/// A skippable frame (RFC 8878 §3.1.2) with a 4-byte body.
fn skippable_frame() -> Vec<u8> {
    [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, b'c', b'a', b'i', b'r'].to_vec()
}

fn blob_vectors() -> Vec<BlobVector> {
    let text = words(2000, 11);
    let frame = zstd::bulk::compress(&text, BLOB_VECTOR_LEVEL).unwrap();
    let flagged = |parts: &[&[u8]]| -> Option<Vec<u8>> { Some([&[1u8][..], &parts.concat()].concat()) };
    let empty_frame = zstd::bulk::compress(b"", BLOB_VECTOR_LEVEL).unwrap();
    let second_frame = zstd::bulk::compress(b"more", BLOB_VECTOR_LEVEL).unwrap();
    vec![
        BlobVector {
            name: "zstd-same-length-stored-raw",
            plain: blob_with_frame_length(0),
            payload: None,
            expect_ok: true,
            why: "its zstd frame is exactly as long as the blob: a writer MUST store it raw (flag 0)",
        },
        BlobVector {
            name: "zstd-one-byte-shorter-stored-compressed",
            plain: blob_with_frame_length(1),
            payload: None,
            expect_ok: true,
            why: "its zstd frame is one byte shorter than the blob: stored compressed (flag 1)",
        },
        BlobVector {
            name: "one-zstd-frame",
            plain: text.clone(),
            payload: flagged(&[&frame]),
            expect_ok: true,
            why: "exactly one zstd frame: the control for the corrupt vectors below, which add to it",
        },
        BlobVector {
            name: "trailing-bytes-after-frame",
            plain: text.clone(),
            payload: flagged(&[&frame, b"junk"]),
            expect_ok: false,
            why: "four bytes after the zstd frame",
        },
        BlobVector {
            name: "trailing-empty-frame",
            plain: text.clone(),
            payload: flagged(&[&frame, &empty_frame]),
            expect_ok: false,
            why: "a second, empty zstd frame after the first (zstd alone would decode both)",
        },
        BlobVector {
            name: "trailing-second-frame",
            plain: text.clone(),
            payload: flagged(&[&frame, &second_frame]),
            expect_ok: false,
            why: "a second zstd frame with content after the first",
        },
        BlobVector {
            name: "trailing-skippable-frame",
            plain: text.clone(),
            payload: flagged(&[&frame, &skippable_frame()]),
            expect_ok: false,
            why: "a skippable frame after the zstd frame (zstd alone would skip it)",
        },
        BlobVector {
            name: "skippable-frame-first",
            plain: text,
            payload: flagged(&[&skippable_frame(), &frame]),
            expect_ok: false,
            why: "a skippable frame before the zstd frame: the payload does not start with a zstd frame",
        },
    ]
}

/// Writes `blobs/` and `blobs.json`, sealing each vector as a data blob under
/// `master` (the test repository's key, so one key opens everything).
fn write_blob_vectors(master: &[u8; 32]) {
    use cairn_engine::blob::{self, Aad, BlobType, Compression};
    let keys = cairn_engine::crypto::MasterKey::from_bytes(*master).derive();
    let dir = vectors_dir().join("blobs");
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    let mut entries = Vec::new();
    for v in blob_vectors() {
        let id = keys.blob_id(&v.plain);
        let sealed = match &v.payload {
            None => blob::seal(
                &keys,
                Aad::Blob(BlobType::Data, &id),
                &v.plain,
                Compression {
                    level: BLOB_VECTOR_LEVEL,
                },
            )
            .unwrap(),
            Some(p) => {
                let mut buf = vec![0u8; cairn_engine::crypto::NONCE_LEN];
                buf.extend_from_slice(p);
                keys.seal_in_place(&blob_ad(0, id.as_bytes()), buf).unwrap()
            }
        };
        let file = format!("blobs/{}", v.name);
        fs::write(vectors_dir().join(&file), &sealed).unwrap();
        let flag = keys.open(&blob_ad(0, id.as_bytes()), &sealed).unwrap()[0];
        entries.push(json!({
            "name": v.name,
            "file": file,
            "type": 0,
            "id": id.to_hex(),
            "plaintext_hex": hex(&v.plain),
            "plaintext_length": v.plain.len(),
            "zstd_level_1_frame_length": zstd_len(&v.plain),
            "flag": flag,
            "expect": if v.expect_ok { "ok" } else { "corrupt" },
            "why": v.why,
        }));
    }
    let doc = json!({
        "description": "Single sealed data blobs at the edges of the compression rules (format-spec/README.md, \
            \"Sealed payload\" and \"Compression\"). Each file is a sealed payload under the encryption key of \
            manifest.json's master key, with the AD of a data blob with the given id (the keyed BLAKE3 of the \
            plaintext). \"ok\": readers MUST return the plaintext. \"corrupt\": the payload authenticates, but \
            readers MUST refuse it as corruption.",
        "regenerate": "CAIRN_WRITE_VECTORS=blobs cargo test -p cairn-engine --test format_vectors -- --ignored",
        "zstd": "zstd_level_1_frame_length is what zstd 1.5.7 (zstd-sys 2.1.3) makes of the plaintext at level 1 \
            with the content size recorded, as the writer calls it; a different zstd may differ, which only moves \
            the first two vectors off the edge they test.",
        "vectors": entries,
    });
    fs::write(
        vectors_dir().join("blobs.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

fn blob_manifest() -> Vec<Value> {
    let path = vectors_dir().join("blobs.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}{REGENERATE_HINT}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let vectors = v["vectors"].as_array().unwrap().clone();
    assert!(vectors.len() >= 8, "blobs.json lists {} vectors", vectors.len());
    vectors
}

#[test]
fn engine_reads_blob_vectors() {
    with_hint(engine_reads_blobs);
}

fn engine_reads_blobs() {
    use cairn_engine::blob::{self, Aad, BlobError, BlobType, Compression};
    let master: [u8; 32] = unhex(manifest()["master_key"].as_str().unwrap()).try_into().unwrap();
    let keys = cairn_engine::crypto::MasterKey::from_bytes(master).derive();
    for v in blob_manifest() {
        let name = v["name"].as_str().unwrap();
        let plain = unhex(v["plaintext_hex"].as_str().unwrap());
        let id = keys.blob_id(&plain);
        assert_eq!(id.to_hex(), v["id"].as_str().unwrap(), "{name}: id");
        let ty = BlobType::from_tag(u8::try_from(v["type"].as_u64().unwrap()).unwrap()).unwrap();
        let aad = Aad::Blob(ty, &id);
        let sealed = fs::read(vectors_dir().join(v["file"].as_str().unwrap())).unwrap();
        let mut in_place = sealed.clone();
        let read = blob::open(&keys, aad, &sealed);
        let read_in_place = blob::open_in_place(&keys, aad, &mut in_place).map(|p| p.into_owned());
        if v["expect"] == "ok" {
            assert_eq!(read.unwrap(), plain, "{name}");
            assert_eq!(read_in_place.unwrap(), plain, "{name} (in place)");
        } else {
            // It authenticates: the refusal is the payload's, not the cipher's.
            let read = read.map(|p| p.len());
            let read_in_place = read_in_place.map(|p| p.len());
            assert!(matches!(read, Err(BlobError::Corrupt(_))), "{name}: {read:?}");
            assert!(
                matches!(read_in_place, Err(BlobError::Corrupt(_))),
                "{name} (in place): {read_in_place:?}"
            );
        }
    }
    // The writer's rule at its edge: compressed only when strictly shorter.
    for (name, want_flag) in [
        ("zstd-same-length-stored-raw", 0u8),
        ("zstd-one-byte-shorter-stored-compressed", 1),
    ] {
        let v = blob_manifest().into_iter().find(|v| v["name"] == name).unwrap();
        let plain = unhex(v["plaintext_hex"].as_str().unwrap());
        assert_eq!(v["flag"].as_u64(), Some(u64::from(want_flag)), "{name}: committed flag");
        let id = keys.blob_id(&plain);
        let sealed = blob::seal(
            &keys,
            Aad::Blob(BlobType::Data, &id),
            &plain,
            Compression {
                level: BLOB_VECTOR_LEVEL,
            },
        )
        .unwrap();
        let opened = keys.open(&blob_ad(0, id.as_bytes()), &sealed).unwrap();
        assert_eq!(opened[0], want_flag, "{name}: the writer's flag");
        let stored = if want_flag == 0 { plain.len() } else { plain.len() - 1 };
        assert_eq!(sealed.len(), 1 + stored + 40, "{name}: sealed length");
    }
}

// ---------------------------------------------------------------------------
// With the engine
// ---------------------------------------------------------------------------

#[test]
fn engine_reads_committed_vectors() {
    with_hint(engine_reads);
}

fn engine_reads() {
    use cairn_engine::{check, CheckOptions};
    use cairn_engine::{restore, LocalBackend, Repository, RestoreOptions, SnapshotId};

    let m = manifest();
    let repo_dir = vectors_dir().join("repo");
    let repo = Repository::open(Arc::new(LocalBackend::new(&repo_dir)), PASSWORD.as_bytes()).unwrap();
    assert_eq!(hex(repo.master_key().expose()), m["master_key"].as_str().unwrap());

    let c = repo.config();
    let mc = &m["config"];
    assert_eq!(u64::from(c.format_version), mc["format_version"].as_u64().unwrap());
    assert_eq!(c.format_version, cairn_engine::FORMAT_VERSION);
    assert_eq!(c.id_hex(), mc["repository_id"].as_str().unwrap());
    assert_eq!(c.chunker.seed, mc["chunker"]["seed"].as_u64().unwrap());
    assert_eq!(
        u64::from(c.chunker.min_size),
        mc["chunker"]["min_size"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(c.chunker.avg_size),
        mc["chunker"]["avg_size"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(c.chunker.max_size),
        mc["chunker"]["max_size"].as_u64().unwrap()
    );
    assert_eq!(
        i64::from(c.compression_level),
        mc["compression_level"].as_i64().unwrap()
    );
    assert_eq!(u64::from(c.pack_size), mc["pack_size"].as_u64().unwrap());
    assert_eq!(c.created_ns, mc["created_ns"].as_i64().unwrap());

    let ms = &m["snapshot"];
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let id = SnapshotId::from_hex(ms["id"].as_str().unwrap()).unwrap();
    assert_eq!(snaps[0].0, id);
    let snap = repo.load_snapshot(&id).unwrap();
    assert_eq!(snap.time_ns, ms["time_ns"].as_i64().unwrap());
    assert_eq!(snap.time_ns, SNAPSHOT_TIME_NS);
    assert_eq!(snap.host, ms["host"].as_str().unwrap());
    assert_eq!(snap.host, HOST);
    assert_eq!(snap.user, ms["user"].as_str().unwrap());
    assert_eq!(u64::from(snap.uid), ms["uid"].as_u64().unwrap());
    assert_eq!(u64::from(snap.gid), ms["gid"].as_u64().unwrap());
    assert_eq!(serde_json::to_value(&snap.tags).unwrap(), ms["tags"]);
    assert_eq!(serde_json::to_value(&snap.paths).unwrap(), ms["paths"]);
    assert_eq!(serde_json::to_value(&snap.excludes).unwrap(), ms["excludes"]);
    assert_eq!(snap.source, cairn_engine::SourceKind::Files);
    assert_eq!(snap.tree.to_hex(), ms["tree"].as_str().unwrap());
    assert!(snap.parent.is_none());
    assert_eq!(snap.program_version, ms["program_version"].as_str().unwrap());
    assert_eq!(serde_json::to_value(&snap.summary).unwrap(), ms["summary"]);

    // Blob ids of every file, through the trees.
    let index = repo.load_index().unwrap();
    let base = snap.paths[0].clone();
    for f in m["files"].as_array().unwrap() {
        let rel = f["path"].as_str().unwrap();
        let node = cairn_engine::node_at(&repo, &index, &snap, &format!("{base}/{rel}")).unwrap();
        match f["kind"].as_str().unwrap() {
            "file" => {
                assert_eq!(node.kind, cairn_engine::NodeKind::File, "{rel}");
                assert_eq!(node.size, f["size"].as_u64().unwrap(), "{rel}");
                let ids: Vec<String> = node.content.iter().map(|c| c.id.to_hex()).collect();
                let want: Vec<String> = f["blobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["id"].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(ids, want, "blob ids of {rel}");
            }
            "dir" => {
                assert_eq!(node.kind, cairn_engine::NodeKind::Dir, "{rel}");
                assert_eq!(node.subtree.unwrap().to_hex(), f["subtree"].as_str().unwrap(), "{rel}");
            }
            "symlink" => {
                assert_eq!(node.kind, cairn_engine::NodeKind::Symlink, "{rel}");
                assert_eq!(
                    node.symlink_target.as_deref(),
                    Some(f["target"].as_str().unwrap().as_bytes()),
                    "{rel}"
                );
            }
            k => panic!("unknown kind {k}"),
        }
    }

    // Restore and compare.
    let target = tempfile::tempdir().unwrap();
    restore(
        &repo,
        &snap,
        target.path(),
        &RestoreOptions {
            subpath: Some(base.clone()),
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    let name = Path::new(&base).file_name().unwrap();
    let restored = target.path().join(name);
    let mut seen = 0;
    for f in m["files"].as_array().unwrap() {
        let p = restored.join(f["path"].as_str().unwrap());
        let md = fs::symlink_metadata(&p).unwrap();
        match f["kind"].as_str().unwrap() {
            "file" => {
                let data = fs::read(&p).unwrap();
                assert_eq!(data.len() as u64, f["size"].as_u64().unwrap());
                assert_eq!(blake3::hash(&data).to_hex().as_str(), f["blake3"].as_str().unwrap());
            }
            "dir" => assert!(md.is_dir()),
            "symlink" => assert_eq!(
                fs::read_link(&p).unwrap().as_os_str().as_bytes(),
                f["target"].as_str().unwrap().as_bytes()
            ),
            _ => unreachable!(),
        }
        seen += 1;
    }
    assert_eq!(
        seen,
        list_source(&restored).len(),
        "restore made entries the manifest does not list"
    );

    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

// ---------------------------------------------------------------------------
// Independent decoder, written from format-spec/README.md
// ---------------------------------------------------------------------------

#[test]
fn independent_decoder_reads_blob_vectors() {
    with_hint(independent_decode_blobs);
}

fn independent_decode_blobs() {
    let m = manifest();
    let master = unhex(m["master_key"].as_str().unwrap());
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master);
    let idk = blake3::derive_key("cairn 2026-11 v1 blob id key", &master);
    let mut outcomes = BTreeMap::new();
    for v in blob_manifest() {
        let name = v["name"].as_str().unwrap().to_string();
        let plain = unhex(v["plaintext_hex"].as_str().unwrap());
        let id = *blake3::keyed_hash(&idk, &plain).as_bytes();
        assert_eq!(hex(&id), v["id"].as_str().unwrap(), "{name}: id = keyed BLAKE3");
        let t = u8::try_from(v["type"].as_u64().unwrap()).unwrap();
        let sealed = fs::read(vectors_dir().join(v["file"].as_str().unwrap())).unwrap();
        // Every vector authenticates; only its payload may be wrong.
        let decrypted = aead_open(&enc, &blob_ad(t, &id), &sealed, &name);
        assert_eq!(u64::from(decrypted[0]), v["flag"].as_u64().unwrap(), "{name}: flag");
        let r = decode_payload(&decrypted);
        match v["expect"].as_str().unwrap() {
            "ok" => {
                let (flag, out) = r.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(out, plain, "{name}");
                assert_eq!(sealed.len(), 40 + decrypted.len());
                if flag == 0 {
                    assert_eq!(decrypted.len(), 1 + plain.len(), "{name}: raw");
                }
            }
            "corrupt" => assert!(
                r.is_err(),
                "{name} must be refused, decoded {} bytes",
                r.unwrap().1.len()
            ),
            e => panic!("{name}: unknown expectation {e}"),
        }
        outcomes.insert(
            name,
            (
                v["flag"].as_u64().unwrap(),
                v["zstd_level_1_frame_length"].as_u64().unwrap(),
                plain,
            ),
        );
    }
    // The first two sit on the edge of the writer's rule (spec "Compression",
    // rule 3): compressed only when the frame is strictly shorter than the blob.
    let (flag, frame_len, plain) = &outcomes["zstd-same-length-stored-raw"];
    assert_eq!((*flag, *frame_len), (0, plain.len() as u64));
    assert_eq!(
        zstd::bulk::compress(plain, BLOB_VECTOR_LEVEL).unwrap().len(),
        plain.len(),
        "zstd here no longer makes a frame of the same length"
    );
    let (flag, frame_len, plain) = &outcomes["zstd-one-byte-shorter-stored-compressed"];
    assert_eq!((*flag, *frame_len), (1, plain.len() as u64 - 1));
}

/// Files of a folder of the repository (names not starting with '.').
fn objects_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else { return out };
    for e in rd {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            // data/xx/<name>
            assert_eq!(name.len(), 2, "unexpected folder {}", e.path().display());
            for (n, b) in objects_in(&e.path()) {
                assert!(n.starts_with(&name), "{n} is in fan-out folder {name}");
                out.push((n, b));
            }
        } else {
            out.push((name, fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone, PartialEq)]
struct IndexBlob {
    id: [u8; 32],
    offset: u32,
    length: u32,
    raw_length: u32,
}

#[derive(Debug)]
struct IndexPack {
    blob_type: u32,
    size: u64,
    blobs: Vec<IndexBlob>,
}

#[derive(Debug, Clone)]
struct TreeNode {
    name: Vec<u8>,
    kind: u32,
    size: u64,
    symlink_target: Option<Vec<u8>>,
    content: Vec<([u8; 32], u32)>,
    subtree: Option<[u8; 32]>,
}

fn decode_tree(plain: &[u8]) -> Vec<TreeNode> {
    let mut b = Bin::new("tree", plain, 1);
    let nodes = b.vec(|b| {
        let name = b.bytes();
        let kind = b.u32();
        assert!(kind <= 6, "node kind {kind}");
        let _mode = b.u32();
        let _uid = b.u32();
        let _gid = b.u32();
        let _user = b.string();
        let _group = b.string();
        let _mtime_ns = b.i64();
        let _ctime_ns = b.i64();
        let _inode = b.u64();
        let _device = b.u64();
        let _nlink = b.u64();
        let _rdev = b.u64();
        let size = b.u64();
        let symlink_target = b.option(|b| b.bytes());
        let _xattrs = b.vec(|b| (b.bytes(), b.bytes()));
        let content = b.vec(|b| (b.id(), b.u32()));
        let subtree = b.option(|b| b.id());
        TreeNode {
            name,
            kind,
            size,
            symlink_target,
            content,
            subtree,
        }
    });
    b.finish();
    for w in nodes.windows(2) {
        assert!(w[0].name < w[1].name, "tree entries sorted by name, no duplicates");
    }
    nodes
}

/// A mirror of the snapshot, as the spec describes it, for a cross-check
/// with bincode itself.
mod mirror {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    pub enum SourceKind {
        Files,
        Stdin { filename: String },
        Command { argv: Vec<String>, filename: String },
        Redis,
        Cassandra,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    pub struct Snapshot {
        pub time_ns: i64,
        pub host: String,
        pub user: String,
        pub uid: u32,
        pub gid: u32,
        pub tags: Vec<String>,
        pub paths: Vec<String>,
        pub excludes: Vec<String>,
        pub source: SourceKind,
        pub tree: [u8; 32],
        pub parent: Option<[u8; 32]>,
        pub program_version: String,
        pub summary: [u64; 14],
    }

    #[derive(Debug, Deserialize, PartialEq)]
    pub struct Chunker {
        pub seed: u64,
        pub min_size: u32,
        pub avg_size: u32,
        pub max_size: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    pub struct Config {
        pub format_version: u32,
        pub repository_id: [u8; 32],
        pub chunker: Chunker,
        pub compression_level: i32,
        pub pack_size: u32,
        pub created_ns: i64,
    }
}

fn bincode_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    let (v, used) = bincode::serde::decode_from_slice(&bytes[1..], bincode::config::standard()).unwrap();
    assert_eq!(used, bytes.len() - 1, "trailing bytes");
    v
}

#[test]
fn independent_decoder_reads_committed_vectors() {
    with_hint(independent_decode);
}

fn independent_decode() {
    let m = manifest();
    let repo = vectors_dir().join("repo");

    // Local layout.
    for d in [
        "keys",
        "snapshots",
        "index",
        "data",
        "tree",
        "locks",
        "deletions",
        "tmp",
    ] {
        assert!(repo.join(d).is_dir(), "folder {d}/ missing");
    }
    assert!(repo.join("config").is_file());

    // Key object: version 1, bincode KeyFile, not encrypted.
    let keys = objects_in(&repo.join("keys"));
    assert_eq!(keys.len(), 1);
    let (key_name, key_bytes) = &keys[0];
    assert_content_named(key_name, key_bytes);
    let mut b = Bin::new("key", key_bytes, 1);
    let _created_ns = b.i64();
    let _host = b.string();
    let _user = b.string();
    let (mem, iters, lanes) = (b.u32(), b.u32(), b.u32());
    let salt = b.bytes();
    let sealed_master = b.bytes();
    b.finish();
    assert_eq!(mem as u64, m["kdf"]["memory_kib"].as_u64().unwrap());
    assert_eq!(iters as u64, m["kdf"]["iterations"].as_u64().unwrap());
    assert_eq!(lanes as u64, m["kdf"]["parallelism"].as_u64().unwrap());
    assert_eq!(salt.len(), 32);
    assert_eq!(sealed_master.len(), 24 + 32 + 16);
    let mut kek = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(mem, iters, lanes, Some(32)).unwrap(),
    )
    .hash_password_into(m["password"].as_str().unwrap().as_bytes(), &salt, &mut kek)
    .unwrap();
    // The master key is sealed without a flag byte.
    let master: [u8; 32] = aead_open(&kek, b"cairn.key.master", &sealed_master, "key")
        .try_into()
        .unwrap();
    assert_eq!(hex(&master), m["master_key"].as_str().unwrap());

    // Sub-keys.
    let enc = blake3::derive_key("cairn 2026-11 v1 encryption key", &master);
    let idk = blake3::derive_key("cairn 2026-11 v1 blob id key", &master);
    assert_eq!(hex(&enc), m["subkeys"]["encryption"].as_str().unwrap());
    assert_eq!(hex(&idk), m["subkeys"]["blob_id"].as_str().unwrap());

    // Config.
    let sealed = fs::read(repo.join("config")).unwrap();
    let (_, plain) = open_payload(&enc, &object_ad("config"), &sealed, "config");
    let mut b = Bin::new("config", &plain, 1);
    let format_version = b.u32();
    let repository_id = b.id();
    let (seed, min, avg, max) = (b.u64(), b.u32(), b.u32(), b.u32());
    let level = b.i32();
    let pack_size = b.u32();
    let created_ns = b.i64();
    b.finish();
    let mc = &m["config"];
    assert_eq!(format_version, 1);
    assert_eq!(u64::from(format_version), mc["format_version"].as_u64().unwrap());
    assert_eq!(hex(&repository_id), mc["repository_id"].as_str().unwrap());
    assert_eq!(seed, mc["chunker"]["seed"].as_u64().unwrap());
    assert_eq!(seed, 0x0123_4567_89ab_cdef);
    assert_eq!(
        (u64::from(min), u64::from(avg), u64::from(max)),
        (
            mc["chunker"]["min_size"].as_u64().unwrap(),
            mc["chunker"]["avg_size"].as_u64().unwrap(),
            mc["chunker"]["max_size"].as_u64().unwrap()
        )
    );
    assert_eq!(i64::from(level), mc["compression_level"].as_i64().unwrap());
    assert_eq!(u64::from(pack_size), mc["pack_size"].as_u64().unwrap());
    assert_eq!(created_ns, mc["created_ns"].as_i64().unwrap());
    let cfg: mirror::Config = bincode_decode(&plain);
    assert_eq!(
        cfg,
        mirror::Config {
            format_version,
            repository_id,
            chunker: mirror::Chunker {
                seed,
                min_size: min,
                avg_size: avg,
                max_size: max
            },
            compression_level: level,
            pack_size,
            created_ns,
        }
    );

    // Index objects.
    let mut indexed: BTreeMap<String, IndexPack> = BTreeMap::new();
    let index_objects = objects_in(&repo.join("index"));
    assert!(!index_objects.is_empty());
    for (name, bytes) in &index_objects {
        assert_content_named(name, bytes);
        let (_, plain) = open_payload(&enc, &object_ad("index"), bytes, "index");
        let mut b = Bin::new("index", &plain, 1);
        let packs = b.vec(|b| {
            let id = b.id();
            let blob_type = b.u32();
            let size = b.u64();
            let blobs = b.vec(|b| IndexBlob {
                id: b.id(),
                offset: b.u32(),
                length: b.u32(),
                raw_length: b.u32(),
            });
            (hex(&id), IndexPack { blob_type, size, blobs })
        });
        b.finish();
        for (id, p) in packs {
            assert!(
                indexed.insert(id.clone(), p).is_none(),
                "pack {id} in two index objects"
            );
        }
    }

    // Packs: trailer, header, blobs.
    let mut blobs: HashMap<[u8; 32], (u8, Vec<u8>)> = HashMap::new();
    let mut flags_seen = [0usize; 2];
    let mut packs_seen = 0;
    for (dir, want_type) in [("data", 0u8), ("tree", 1u8)] {
        let packs = objects_in(&repo.join(dir));
        assert!(!packs.is_empty(), "no {dir} packs");
        for (name, bytes) in &packs {
            packs_seen += 1;
            assert_content_named(name, bytes);
            let n = bytes.len();
            let hlen = u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()) as usize;
            let hstart = n - 4 - hlen;
            let (flag, header) = open_payload(&enc, &object_ad("pack-header"), &bytes[hstart..n - 4], "pack header");
            assert_eq!(flag, 0, "pack headers are stored raw");
            assert_eq!(header[0], 1, "pack header version");
            let count = u32::from_le_bytes(header[1..5].try_into().unwrap()) as usize;
            assert_eq!(header.len(), 5 + 45 * count);
            let ix = indexed
                .get(name)
                .unwrap_or_else(|| panic!("pack {name} is in no index object"));
            assert_eq!(ix.size, n as u64, "pack size in the index");
            assert_eq!(ix.blob_type, u32::from(want_type), "pack {name} is under {dir}/");
            assert_eq!(ix.blobs.len(), count);
            let mut next = 0u32;
            for (i, e) in header[5..].chunks_exact(45).enumerate() {
                let t = e[0];
                let id: [u8; 32] = e[1..33].try_into().unwrap();
                let u = |o: usize| u32::from_le_bytes(e[o..o + 4].try_into().unwrap());
                let (offset, length, raw_length) = (u(33), u(37), u(41));
                assert_eq!(t, want_type);
                assert_eq!(
                    ix.blobs[i],
                    IndexBlob {
                        id,
                        offset,
                        length,
                        raw_length
                    },
                    "index and header agree"
                );
                // This writer packs blobs back to back from offset 0.
                assert_eq!(offset, next);
                next = offset + length;
                let sealed = &bytes[offset as usize..(offset + length) as usize];
                let (flag, plain) = open_payload(&enc, &blob_ad(t, &id), sealed, "blob");
                flags_seen[flag as usize] += 1;
                assert_eq!(plain.len(), raw_length as usize);
                assert_eq!(
                    *blake3::keyed_hash(&idk, &plain).as_bytes(),
                    id,
                    "blob id = keyed BLAKE3"
                );
                blobs.insert(id, (t, plain));
            }
            assert_eq!(next as usize, hstart, "header follows the last blob");
        }
    }
    assert_eq!(packs_seen, indexed.len(), "every indexed pack is stored");
    assert!(
        flags_seen[0] > 0 && flags_seen[1] > 0,
        "vectors hold raw and zstd blobs: {flags_seen:?}"
    );

    // Snapshot.
    let ms = &m["snapshot"];
    let snaps = objects_in(&repo.join("snapshots"));
    assert_eq!(snaps.len(), 1);
    let (snap_name, snap_bytes) = &snaps[0];
    assert_content_named(snap_name, snap_bytes);
    assert_eq!(snap_name, ms["id"].as_str().unwrap());
    let (_, plain) = open_payload(&enc, &object_ad("snapshot"), snap_bytes, "snapshot");
    let mut b = Bin::new("snapshot", &plain, 1);
    let time_ns = b.i64();
    let host = b.string();
    let user = b.string();
    let uid = b.u32();
    let gid = b.u32();
    let tags = b.strings();
    let paths = b.strings();
    let excludes = b.strings();
    let source = b.u32();
    assert_eq!(source, 0, "source kind Files");
    let tree = b.id();
    let parent = b.option(|b| b.id());
    let program_version = b.string();
    let summary: Vec<u64> = (0..14).map(|_| b.u64()).collect();
    b.finish();
    assert_eq!(time_ns, ms["time_ns"].as_i64().unwrap());
    assert_eq!(host, ms["host"].as_str().unwrap());
    assert_eq!(user, ms["user"].as_str().unwrap());
    assert_eq!(u64::from(uid), ms["uid"].as_u64().unwrap());
    assert_eq!(u64::from(gid), ms["gid"].as_u64().unwrap());
    assert_eq!(json!(tags), ms["tags"]);
    assert_eq!(json!(paths), ms["paths"]);
    assert_eq!(json!(excludes), ms["excludes"]);
    assert_eq!(hex(&tree), ms["tree"].as_str().unwrap());
    assert!(parent.is_none());
    assert_eq!(program_version, ms["program_version"].as_str().unwrap());
    for (v, n) in summary.iter().zip(SUMMARY_FIELDS) {
        assert_eq!(*v, ms["summary"][n].as_u64().unwrap(), "summary.{n}");
    }
    let mirrored: mirror::Snapshot = bincode_decode(&plain);
    assert_eq!(
        mirrored,
        mirror::Snapshot {
            time_ns,
            host,
            user,
            uid,
            gid,
            tags,
            paths: paths.clone(),
            excludes,
            source: mirror::SourceKind::Files,
            tree,
            parent,
            program_version,
            summary: summary.try_into().unwrap(),
        }
    );

    // Trees: walk from the root down to the backed-up folder, then every file.
    let load_tree = |id: &[u8; 32]| -> Vec<TreeNode> {
        let (t, plain) = blobs
            .get(id)
            .unwrap_or_else(|| panic!("tree blob {} not stored", hex(id)));
        assert_eq!(*t, 1, "tree blobs have type 1");
        decode_tree(plain)
    };
    let mut dir = tree;
    for comp in Path::new(&paths[0]).components().skip(1) {
        let name = comp.as_os_str().as_bytes();
        let nodes = load_tree(&dir);
        let n = nodes.iter().find(|n| n.name == name).unwrap();
        assert_eq!(n.kind, 1, "folder");
        dir = n.subtree.unwrap();
    }
    assert_eq!(hex(&dir), ms["backed_up_tree"].as_str().unwrap());
    let mut found: BTreeMap<String, TreeNode> = BTreeMap::new();
    let mut stack = vec![(String::new(), dir)];
    while let Some((prefix, t)) = stack.pop() {
        for n in load_tree(&t) {
            let rel = format!("{prefix}{}", String::from_utf8(n.name.clone()).unwrap());
            if n.kind == 1 {
                stack.push((format!("{rel}/"), n.subtree.unwrap()));
            }
            found.insert(rel, n);
        }
    }
    let files = m["files"].as_array().unwrap();
    assert_eq!(
        found.len(),
        files.len(),
        "entries: {:?}",
        found.keys().collect::<Vec<_>>()
    );
    for f in files {
        let rel = f["path"].as_str().unwrap();
        let n = found.get(rel).unwrap_or_else(|| panic!("{rel} not in the trees"));
        match f["kind"].as_str().unwrap() {
            "file" => {
                assert_eq!(n.kind, 0, "{rel}");
                let mut data = Vec::new();
                for (i, (id, len)) in n.content.iter().enumerate() {
                    assert_eq!(hex(id), f["blobs"][i]["id"].as_str().unwrap(), "{rel} blob {i}");
                    let (t, plain) = blobs.get(id).unwrap();
                    assert_eq!(*t, 0, "data blobs have type 0");
                    assert_eq!(plain.len(), *len as usize);
                    data.extend_from_slice(plain);
                }
                assert_eq!(n.content.len(), f["blobs"].as_array().unwrap().len());
                assert_eq!(n.size, data.len() as u64);
                assert_eq!(n.size, f["size"].as_u64().unwrap());
                assert_eq!(
                    blake3::hash(&data).to_hex().as_str(),
                    f["blake3"].as_str().unwrap(),
                    "{rel}"
                );
            }
            "dir" => {
                assert_eq!(n.kind, 1);
                assert_eq!(hex(&n.subtree.unwrap()), f["subtree"].as_str().unwrap());
            }
            "symlink" => {
                assert_eq!(n.kind, 2);
                assert_eq!(
                    n.symlink_target.as_deref(),
                    Some(f["target"].as_str().unwrap().as_bytes())
                );
            }
            _ => unreachable!(),
        }
    }
    // Deduplication: the two identical files share their blobs.
    let words = &found["docs/words.txt"].content;
    assert!(words.len() > 1, "docs/words.txt should span several chunks");
    assert_eq!(words, &found["docs/copy-of-words.txt"].content);
}
