//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and the inputs of
//! crashes found by fuzzing (`fuzz/regressions/<target>/`) through the same
//! entry points the fuzz targets call (`cairn_engine::fuzz`): every input
//! must be accepted or refused with an error, never panic. Runs in the
//! ordinary test suite, without libFuzzer.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_engine::fuzz::{Outcome, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

/// Runs `entry` on `path`; the panic, if any, as a message naming the file.
fn replay(entry: fn(&[u8]) -> Outcome, path: &Path) -> Result<Outcome, String> {
    let bytes = fs::read(path).unwrap();
    let started = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| entry(&bytes)))
        .map_err(|_| format!("{} panicked (see the message above)", path.display()))?;
    // Every input is small; a decoder that takes seconds on one is a hang.
    let took = started.elapsed();
    if took > Duration::from_secs(10) {
        return Err(format!("{} took {took:?}", path.display()));
    }
    Ok(r)
}

#[test]
fn every_corpus_and_regression_input_is_accepted_or_refused_without_panicking() {
    let mut failures = Vec::new();
    for (name, entry) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is empty or missing: the target would be replayed with nothing"
        );
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        let (mut ok, mut refused) = (0, 0);
        for path in corpus.iter().chain(&regressions) {
            match replay(entry, path) {
                Ok(Ok(())) => ok += 1,
                Ok(Err(_)) => refused += 1,
                Err(e) => failures.push(e),
            }
        }
        println!(
            "{name}: {} corpus and {} regression inputs, {ok} accepted, {refused} refused",
            corpus.len(),
            regressions.len()
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The fuzz crate has one target per entry point, and no other.
#[test]
fn every_entry_point_has_a_fuzz_target() {
    let mut targets: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(String::from))
        .collect();
    targets.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(targets, names);
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for n in &names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "fuzz/Cargo.toml lacks {n}"
        );
    }
}

/// Some real objects of the corpus are accepted: the replay reaches past
/// the first error on every kind of object it has a valid sample of. (A
/// real key object is refused by `key`, whose fixed password is wrong.)
#[test]
fn real_objects_in_the_corpus_are_accepted() {
    for name in ["tree", "snapshot", "index", "config", "recovery"] {
        let entry = TARGETS.iter().find(|(n, _)| *n == name).unwrap().1;
        let accepted = files(&fuzz_dir().join("corpus").join(name))
            .iter()
            .filter(|p| matches!(replay(entry, p), Ok(Ok(()))))
            .count();
        assert!(accepted > 0, "no input of fuzz/corpus/{name} is accepted");
    }
}

/// Writes the seed corpus: the plaintext of every object of the test
/// vectors' repository (sealed under the key the entry points use, so its
/// packs are seeds as stored), of a small repository backed up here, and a
/// few hand-made hostile inputs. The committed corpus is this, grown by
/// fuzzing and minimized with `cargo fuzz cmin` (scripts/fuzz-soak.sh).
#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand with --ignored when the formats change"]
fn write_seed_corpus() {
    seeds::write_all();
}

mod seeds {
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;

    use cairn_engine::blob::{self, Aad, BlobType, FLAG_RAW, FLAG_ZSTD};
    use cairn_engine::crypto::{KdfParams, Keys};
    use cairn_engine::encoding;
    use cairn_engine::fuzz::test_keys;
    use cairn_engine::pack;
    use cairn_engine::{
        backup, BackupOptions, BackupSource, KeyFile, LocalBackend, MemoryBackend, Node, NodeKind, ObjectKind,
        ParentChoice, Repository, Tree,
    };
    use cairn_test_support::engine as support;

    fn put(target: &str, name: &str, bytes: &[u8]) {
        let dir = super::fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }

    fn short(name: &str) -> &str {
        &name[..name.len().min(12)]
    }

    /// Every blob of a whole pack, as plaintext.
    fn pack_blobs(keys: &Keys, name: &str, bytes: &[u8]) -> Vec<(BlobType, Vec<u8>)> {
        pack::read_whole(keys, name, bytes)
            .unwrap()
            .iter()
            .map(|e| {
                let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                (
                    e.blob_type,
                    blob::open(keys, Aad::Blob(e.blob_type, &e.id), sealed).unwrap(),
                )
            })
            .collect()
    }

    fn payloads(plain: &[u8]) -> [Vec<u8>; 2] {
        let data = &plain[..plain.len().min(2048)];
        let raw = [&[FLAG_RAW][..], data].concat();
        let zstd = [&[FLAG_ZSTD][..], &zstd_frame(data)].concat();
        [raw, zstd]
    }

    fn zstd_frame(data: &[u8]) -> Vec<u8> {
        // Seal at level 3 and open the sealed bytes raw: the frame as stored.
        let keys = test_keys();
        let id = keys.blob_id(data);
        let sealed = blob::seal(
            &keys,
            Aad::Blob(BlobType::Data, &id),
            data,
            blob::Compression { level: 3 },
        )
        .unwrap();
        let mut plain = keys
            .open(&[b"cairn.blob".as_slice(), &[0], id.as_bytes()].concat(), &sealed)
            .unwrap();
        plain.remove(0);
        plain
    }

    fn vectors(keys: &Keys) {
        let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("../format-spec/test-vectors");
        let repo = v.join("repo");
        let mut packs = Vec::new();
        for sub in fs::read_dir(repo.join("data")).unwrap() {
            for p in fs::read_dir(sub.unwrap().path()).unwrap() {
                packs.push(p.unwrap().path());
            }
        }
        for p in fs::read_dir(repo.join("tree")).unwrap() {
            packs.push(p.unwrap().path());
        }
        for path in packs {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let bytes = fs::read(&path).unwrap();
            put("pack", &format!("vector-{}", short(&name)), &bytes);
            let (off, len) = pack::header_location(&name, bytes.len() as u64, &bytes[bytes.len() - 4..]).unwrap();
            let header = blob::open(
                keys,
                Aad::Object(pack::HEADER_KIND),
                &bytes[off as usize..(off + len) as usize],
            )
            .unwrap();
            put("pack", &format!("vector-header-{}", short(&name)), &header);
            for (i, (t, plain)) in pack_blobs(keys, &name, &bytes).into_iter().enumerate() {
                match t {
                    BlobType::Tree => put("tree", &format!("vector-{}-{i}", short(&name)), &plain),
                    BlobType::Data if i < 3 => {
                        for (j, p) in payloads(&plain).iter().enumerate() {
                            put("blob", &format!("vector-{}-{i}-{j}", short(&name)), p);
                        }
                    }
                    BlobType::Data => {}
                }
            }
        }
        let objects = [
            ("snapshot", "snapshots", "snapshot"),
            ("index", "index", "index"),
            ("lock", "../lock", "lock"),
            ("deletion", "../deletion", "deletion"),
        ];
        for (target, folder, aad) in objects {
            for p in fs::read_dir(repo.join(folder)).unwrap() {
                let path = p.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_string();
                if name.starts_with('.') {
                    continue;
                }
                let plain = blob::open(keys, Aad::Object(aad), &fs::read(&path).unwrap()).unwrap();
                put(target, &format!("vector-{}", short(&name)), &plain);
            }
        }
        for version in ["v2", "v3"] {
            let sealed = fs::read(v.join(format!("snapshot-{version}.bin"))).unwrap();
            let plain = blob::open(keys, Aad::Object("snapshot"), &sealed).unwrap();
            put("snapshot", &format!("vector-{version}"), &plain);
        }
        let config = blob::open(keys, Aad::Object("config"), &fs::read(repo.join("config")).unwrap()).unwrap();
        put("config", "vector", &config);
        for p in fs::read_dir(repo.join("keys")).unwrap() {
            let path = p.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if !name.starts_with('.') {
                put("key", &format!("vector-{}", short(&name)), &fs::read(&path).unwrap());
            }
        }
        let opened = Repository::open(Arc::new(LocalBackend::new(&repo)), b"cairn-test-vector-password").unwrap();
        let lines = opened.recovery_sheet_lines();
        let sheet = lines.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n");
        put("recovery", "vector", sheet.as_bytes());
        put("recovery", "vector-typo", sheet.replacen('A', "B", 1).as_bytes());
    }

    /// A small repository backed up here: symlinks, an empty file, a
    /// nested folder, odd names.
    fn backed_up() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("a/b")).unwrap();
        fs::write(s.join("a/b/text"), b"hello hello hello hello\n".repeat(100)).unwrap();
        fs::write(s.join("empty"), b"").unwrap();
        fs::write(s.join("caf\u{e9} \u{1f600}"), b"x").unwrap();
        std::os::unix::fs::symlink("a/b/text", s.join("link")).unwrap();
        let backend = Arc::new(MemoryBackend::new());
        let repo = Repository::init(backend.clone(), b"pw", support::cheap_init(support::CHUNKER)).unwrap();
        let opts = BackupOptions {
            parent: ParentChoice::None,
            ..Default::default()
        };
        let out = backup(&repo, BackupSource::Paths(vec![s.to_path_buf()]), &opts).unwrap();
        let snap = repo.load_snapshot(&out.id.unwrap()).unwrap();
        put("snapshot", "backup", &encoding::encode("snapshot", 2, &snap).unwrap());
        let keys = repo.master_key().derive();
        let mut files = Vec::new();
        for o in repo.load_index_files().unwrap() {
            files.push(o.file.unwrap());
        }
        put("index", "backup", &encoding::encode("index", 1, &files[0]).unwrap());
        use cairn_engine::Backend;
        for (i, p) in files.iter().flat_map(|f| &f.packs).enumerate() {
            if p.blob_type != BlobType::Tree {
                continue;
            }
            let bytes = backend.read(ObjectKind::TreePack, &p.id.to_hex()).unwrap();
            for (j, (_, plain)) in pack_blobs(&keys, "t", &bytes).into_iter().enumerate() {
                put("tree", &format!("backup-{i}-{j}"), &plain);
            }
        }
        let key = backend.list(ObjectKind::Key).unwrap().remove(0).name;
        put("key", "backup", &backend.read(ObjectKind::Key, &key).unwrap());
    }

    /// Inputs that break one rule each, as an attacker would write them.
    fn hostile() {
        let enc = |t: &Tree| encoding::encode("tree", 1, t).unwrap();
        let mut file = Node::new(b"x".to_vec(), NodeKind::File);
        file.mode = 0o777;
        let mut link = Node::new(b"x".to_vec(), NodeKind::Symlink);
        link.symlink_target = Some(b"/etc/passwd".to_vec());
        put(
            "tree",
            "hostile-file-and-symlink-x",
            &enc(&Tree {
                nodes: vec![file, link],
            }),
        );
        let dotdot = Node::new(b"..".to_vec(), NodeKind::File);
        put("tree", "hostile-dotdot", &enc(&Tree { nodes: vec![dotdot] }));
        // A string length of 2^60 right after the version byte.
        let mut huge = vec![1u8, 253];
        huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
        for t in ["tree", "snapshot", "index", "config", "key", "lock", "deletion"] {
            put(t, "hostile-huge-length", &huge);
        }
        let kf = KeyFile {
            created_ns: 0,
            host: "h".into(),
            user: "u".into(),
            kdf: KdfParams {
                memory_kib: 4 * 1024 * 1024,
                iterations: 64,
                parallelism: 1,
            },
            salt: vec![0; 32],
            sealed_master: vec![0; 72],
        };
        put(
            "key",
            "hostile-4gib-64-passes",
            &encoding::encode("key", 1, &kf).unwrap(),
        );
        // A pack header claiming 2^32 - 1 entries; a trailer claiming 4 GiB.
        put("pack", "hostile-count", &[1, 0xff, 0xff, 0xff, 0xff]);
        put("pack", "hostile-trailer", &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        // A zstd frame that claims 1 GiB of content.
        let mut bomb = vec![FLAG_ZSTD];
        bomb.extend_from_slice(&zstd_frame(&vec![0u8; 1 << 16]));
        put("blob", "hostile-zeros", &bomb);
    }

    pub fn write_all() {
        vectors(&test_keys());
        backed_up();
        hostile();
    }
}
