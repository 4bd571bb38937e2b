//! Damaged repositories: for every kind of stored object, one flipped byte
//! or a truncation must be reported by opening, `check` or restore, with
//! the object's name (or id prefix) in the message; nothing may panic, and a
//! restore that succeeds must produce exactly the original files.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_engine::crypto::{KdfParams, MasterKey};
use cairn_engine::ChunkerParams;
use cairn_engine::ParentChoice;
use cairn_engine::{
    backup, restore, BackupOptions, BackupSource, InitOptions, LocalBackend, Repository, RepositoryError,
    RestoreOptions, Snapshot, SnapshotId,
};
use cairn_engine::{check, CheckOptions, CheckReport};
use cairn_test_support::engine as support;
use cairn_test_support::pseudo_random;
use cairn_test_support::tree::{copy_dir, manifest, Manifest};
use tempfile::TempDir;

const PASSWORD: &[u8] = b"corruption-test-password";

fn cheap_init() -> InitOptions {
    InitOptions {
        compression_level: 1,
        ..support::cheap_init(ChunkerParams {
            seed: 7,
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        })
    }
}

/// A small repository with one snapshot, made fresh for each test.
struct Fixture {
    _src_parent: TempDir,
    repo_dir: TempDir,
    src: PathBuf,
    expected: Manifest,
    snapshot_id: SnapshotId,
    master: MasterKey,
}

impl Fixture {
    fn new() -> Self {
        let src_parent = tempfile::tempdir().unwrap();
        let src = src_parent.path().join("src");
        fs::create_dir_all(src.join("a/b/c")).unwrap();
        fs::write(src.join("random.bin"), pseudo_random(150_000, 1)).unwrap();
        fs::write(
            src.join("a/text.sql"),
            b"INSERT INTO t VALUES (42, 'forty-two');\n".repeat(1500),
        )
        .unwrap();
        fs::write(src.join("a/b/c/leaf.txt"), b"a leaf").unwrap();
        fs::write(src.join("a/b/more.bin"), pseudo_random(40_000, 2)).unwrap();
        fs::write(src.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("a/text.sql", src.join("link")).unwrap();

        let repo_dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(Arc::new(LocalBackend::new(repo_dir.path())), PASSWORD, cheap_init()).unwrap();
        let out = backup(
            &repo,
            BackupSource::Paths(vec![src.clone()]),
            &BackupOptions {
                host: Some("corruption-host".into()),
                parent: ParentChoice::None,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(out.skipped.is_empty());
        let expected = manifest(&src);
        Self {
            _src_parent: src_parent,
            repo_dir,
            src,
            expected,
            snapshot_id: out.id.unwrap(),
            master: repo.master_key().clone(),
        }
    }

    fn open_pristine(&self) -> Repository {
        Repository::open(Arc::new(LocalBackend::new(self.repo_dir.path())), PASSWORD).unwrap()
    }

    /// A copy of the repository.
    fn copy(&self) -> TempDir {
        let dst = tempfile::tempdir().unwrap();
        copy_dir(self.repo_dir.path(), dst.path());
        dst
    }

    /// Objects of a folder of the repository, as (name, path).
    fn objects(&self, root: &Path, folder: &str) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let mut stack = vec![root.join(folder)];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
                }
            }
        }
        out.sort();
        out
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// XOR 0x01 into the byte at this offset.
    Flip(usize),
    /// Keep only this many bytes.
    Truncate(usize),
}

fn damage(path: &Path, d: Damage) {
    let mut b = fs::read(path).unwrap();
    match d {
        Damage::Flip(i) => b[i] ^= 0x01,
        Damage::Truncate(n) => b.truncate(n),
    }
    fs::write(path, b).unwrap();
}

/// Flipped bytes at the start, middle and end, and truncations to half, to
/// one byte less and to nothing.
fn standard_damage(len: usize) -> Vec<Damage> {
    vec![
        Damage::Flip(0),
        Damage::Flip(len / 2),
        Damage::Flip(len - 1),
        Damage::Truncate(len / 2),
        Damage::Truncate(len - 1),
        Damage::Truncate(0),
    ]
}

/// Whether `msg` names the object: its whole name or its 8-digit prefix.
fn names(msg: &str, name: &str) -> bool {
    msg.contains(name) || msg.contains(&name[..8.min(name.len())])
}

/// Everything the engine says about a (damaged) repository.
struct Outcome {
    open: Result<Repository, String>,
    snapshot: Option<Result<Snapshot, String>>,
    check: Option<Result<CheckReport, String>>,
    /// Ok(()) when the restore succeeded and produced identical files.
    restore: Option<Result<(), String>>,
}

impl Outcome {
    fn check_report(&self) -> &CheckReport {
        match &self.check {
            Some(Ok(r)) => r,
            other => panic!(
                "check did not produce a report: {:?}",
                other.as_ref().map(|r| r.as_ref().err())
            ),
        }
    }

    /// The check found an error naming one of `objects`.
    fn check_names(&self, objects: &[&str]) -> bool {
        let r = self.check_report();
        !r.ok() && r.errors.iter().any(|e| objects.iter().any(|o| names(e, o)))
    }

    fn restore_failed_naming(&self, objects: &[&str]) -> bool {
        matches!(&self.restore, Some(Err(e)) if objects.iter().any(|o| names(e, o)))
    }
}

/// Opens `dir` (with the password, or with the master key when given), then
/// loads the snapshot, checks with `read_data`, and restores. Panics inside
/// the engine are caught and reported as test failures, and a restore that
/// succeeds with different files fails the test.
fn observe(fx: &Fixture, dir: &Path, master: Option<&MasterKey>, what: &str) -> Outcome {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let backend = Arc::new(LocalBackend::new(dir));
        let open = match master {
            Some(k) => Repository::open_with_master_key(backend, k.clone()),
            None => Repository::open(backend, PASSWORD),
        }
        .map_err(|e| e.to_string());
        let mut out = Outcome {
            open,
            snapshot: None,
            check: None,
            restore: None,
        };
        let Ok(repo) = &out.open else { return out };
        out.check = Some(
            check(
                repo,
                &CheckOptions {
                    read_data: true,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string()),
        );
        let snap = repo.load_snapshot(&fx.snapshot_id).map_err(|e| e.to_string());
        if let Ok(s) = &snap {
            let target = tempfile::tempdir().unwrap();
            let r = restore(
                repo,
                s,
                target.path(),
                &RestoreOptions {
                    subpath: Some(fx.src.to_string_lossy().into_owned()),
                    ..Default::default()
                },
            );
            out.restore = Some(match r {
                Ok(_) => {
                    let got = manifest(&target.path().join("src"));
                    assert!(
                        got == fx.expected,
                        "{what}: restore succeeded but produced different files (wrong data returned)"
                    );
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            });
        }
        out.snapshot = Some(snap);
        out
    }));
    match r {
        Ok(o) => o,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: the engine panicked: {msg}");
        }
    }
}

fn describe_outcome(o: &Outcome) -> String {
    format!(
        "open: {:?}\nsnapshot: {:?}\ncheck: {:?}\nrestore: {:?}",
        o.open.as_ref().err(),
        o.snapshot.as_ref().map(|s| s.as_ref().err()),
        o.check.as_ref().map(|c| c.as_ref().map(|r| &r.errors)),
        o.restore
    )
}

// ---------------------------------------------------------------------------
// Per object kind
// ---------------------------------------------------------------------------

#[test]
fn damaged_config_fails_open_naming_it() {
    let fx = Fixture::new();
    let len = fs::metadata(fx.repo_dir.path().join("config")).unwrap().len() as usize;
    for d in standard_damage(len) {
        let copy = fx.copy();
        damage(&copy.path().join("config"), d);
        let what = format!("config {d:?}");
        let o = observe(&fx, copy.path(), None, &what);
        match &o.open {
            Err(e) => assert!(
                e.contains("config") && !e.contains("wrong password"),
                "{what}: open error does not name the config: {e}"
            ),
            Ok(_) => panic!("{what}: opened a repository with a damaged config"),
        }
    }
}

#[test]
fn damaged_key_fails_open_and_check_names_it() {
    let fx = Fixture::new();
    let (name, path) = fx.objects(fx.repo_dir.path(), "keys").remove(0);
    let len = fs::metadata(&path).unwrap().len() as usize;
    for d in standard_damage(len) {
        let copy = fx.copy();
        let (_, p) = fx.objects(copy.path(), "keys").remove(0);
        damage(&p, d);
        let what = format!("key {d:?}");
        // With the password: the only key is damaged, so nothing opens.
        let o = observe(&fx, copy.path(), None, &what);
        assert!(o.open.is_err(), "{what}: opened with a damaged key");
        // With the recovery key: check names the damaged key object.
        let o = observe(&fx, copy.path(), Some(&fx.master), &what);
        assert!(o.open.is_ok(), "{what}: {}", describe_outcome(&o));
        assert!(o.check_names(&[&name]), "{what}: {}", describe_outcome(&o));
        assert_eq!(o.restore, Some(Ok(())), "{what}: data must still restore");
    }
}

#[test]
fn damaged_snapshot_is_named_by_load_and_check() {
    let fx = Fixture::new();
    let (name, path) = fx.objects(fx.repo_dir.path(), "snapshots").remove(0);
    let len = fs::metadata(&path).unwrap().len() as usize;
    for d in standard_damage(len) {
        let copy = fx.copy();
        let (_, p) = fx.objects(copy.path(), "snapshots").remove(0);
        damage(&p, d);
        let what = format!("snapshot {d:?}");
        let o = observe(&fx, copy.path(), None, &what);
        assert!(o.open.is_ok(), "{what}: {}", describe_outcome(&o));
        match &o.snapshot {
            Some(Err(e)) => assert!(names(e, &name), "{what}: {e}"),
            _ => panic!("{what}: a damaged snapshot loaded"),
        }
        assert!(o.check_names(&[&name]), "{what}: {}", describe_outcome(&o));
    }
}

#[test]
fn damaged_index_is_named_by_check_and_restore() {
    let fx = Fixture::new();
    let (name, path) = fx.objects(fx.repo_dir.path(), "index").remove(0);
    let len = fs::metadata(&path).unwrap().len() as usize;
    for d in standard_damage(len) {
        let copy = fx.copy();
        let (_, p) = fx.objects(copy.path(), "index").remove(0);
        damage(&p, d);
        let what = format!("index {d:?}");
        let o = observe(&fx, copy.path(), None, &what);
        assert!(o.open.is_ok(), "{what}: {}", describe_outcome(&o));
        assert!(o.check_names(&[&name]), "{what}: {}", describe_outcome(&o));
        // A damaged index object is skipped when loading (so it cannot stop
        // backups); a restore that needs its blobs then fails naming the
        // missing blob, and check names the object.
        assert!(
            o.restore_failed_naming(&[&name, "is not in the index"]),
            "{what}: {}",
            describe_outcome(&o)
        );
    }
}

/// Pack damage: `check --read-data` names the pack; a restore fails naming
/// it, or (when the damage is outside what it reads) restores exact files.
fn pack_case(folder: &str, extra: impl Fn(&Path, usize) -> Vec<Damage>) {
    let fx = Fixture::new();
    let packs = fx.objects(fx.repo_dir.path(), folder);
    assert_eq!(packs.len(), 1, "the fixture should make one {folder} pack");
    let (name, path) = &packs[0];
    let len = fs::metadata(path).unwrap().len() as usize;
    let mut all = standard_damage(len);
    all.extend(extra(path, len));
    let mut restore_failures = 0;
    for d in all {
        let copy = fx.copy();
        let (_, p) = fx.objects(copy.path(), folder).remove(0);
        damage(&p, d);
        let what = format!("{folder} pack {d:?}");
        let o = observe(&fx, copy.path(), None, &what);
        assert!(o.open.is_ok(), "{what}: {}", describe_outcome(&o));
        assert!(o.check_names(&[name]), "{what}: {}", describe_outcome(&o));
        match &o.restore {
            Some(Ok(())) => {}
            Some(Err(_)) => {
                assert!(o.restore_failed_naming(&[name]), "{what}: {}", describe_outcome(&o));
                restore_failures += 1;
            }
            None => panic!("{what}: the snapshot did not load: {}", describe_outcome(&o)),
        }
    }
    assert!(restore_failures > 0, "no damage to the {folder} pack made restore fail");
}

/// Offsets inside the pack's sealed header and its 4-byte trailer.
fn header_damage(path: &Path, len: usize) -> Vec<Damage> {
    let b = fs::read(path).unwrap();
    let hlen = u32::from_le_bytes(b[len - 4..].try_into().unwrap()) as usize;
    let hstart = len - 4 - hlen;
    vec![
        Damage::Flip(hstart),
        Damage::Flip(hstart + hlen / 2),
        Damage::Flip(len - 4),
        Damage::Flip(len - 2),
        Damage::Truncate(hstart),
        Damage::Truncate(len - 4),
    ]
}

#[test]
fn damaged_data_pack_is_named_and_never_restores_wrong_data() {
    pack_case("data", header_damage);
}

#[test]
fn damaged_tree_pack_is_named_and_never_restores_wrong_data() {
    pack_case("tree", header_damage);
}

/// A byte flipped inside one tree blob (the snapshot's root tree, and the
/// deepest folder's tree): loading that tree fails, naming the pack.
#[test]
fn damaged_tree_blob_is_named_by_check_and_restore() {
    let fx = Fixture::new();
    let repo = fx.open_pristine();
    let snap = repo.load_snapshot(&fx.snapshot_id).unwrap();
    let index = repo.load_index().unwrap();
    let deep = format!("{}/a/b/c", fx.src.display());
    let leaf = cairn_engine::node_at(&repo, &index, &snap, &deep).unwrap();
    for tree_id in [snap.tree, leaf.subtree.unwrap()] {
        let loc = index.get(&tree_id.blob()).unwrap();
        let pack = loc.pack.to_hex();
        for at in [0, loc.length / 2, loc.length - 1] {
            let copy = fx.copy();
            let p = copy.path().join("tree").join(&pack);
            damage(&p, Damage::Flip((loc.offset + at) as usize));
            let what = format!("tree blob {} byte {at}", tree_id.short());
            let o = observe(&fx, copy.path(), None, &what);
            assert!(o.open.is_ok(), "{what}: {}", describe_outcome(&o));
            let objects = [pack.as_str(), &tree_id.to_hex()];
            assert!(o.check_names(&objects), "{what}: {}", describe_outcome(&o));
            assert!(o.restore_failed_naming(&objects), "{what}: {}", describe_outcome(&o));
        }
    }
}

/// A byte flipped inside each data blob: restore fails naming the pack.
#[test]
fn damaged_data_blob_fails_restore_naming_the_pack() {
    let fx = Fixture::new();
    let repo = fx.open_pristine();
    let files = repo.load_index_files().unwrap();
    let mut n = 0;
    for o in files {
        let f = o.file.unwrap();
        for p in f
            .packs
            .iter()
            .filter(|p| p.blob_type == cairn_engine::blob::BlobType::Data)
        {
            let pack = p.id.to_hex();
            for b in &p.blobs {
                let copy = fx.copy();
                let path = copy.path().join("data").join(&pack[..2]).join(&pack);
                damage(&path, Damage::Flip((b.offset + b.length / 2) as usize));
                let what = format!("data blob {}", b.id.short());
                let o = observe(&fx, copy.path(), None, &what);
                assert!(o.check_names(&[&pack]), "{what}: {}", describe_outcome(&o));
                assert!(o.restore_failed_naming(&[&pack]), "{what}: {}", describe_outcome(&o));
                n += 1;
            }
        }
    }
    assert!(n > 5, "the fixture should hold several data blobs ({n})");
}

// ---------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------

#[test]
fn wrong_password_is_wrong_password() {
    let fx = Fixture::new();
    let r = Repository::open(Arc::new(LocalBackend::new(fx.repo_dir.path())), b"not the password");
    assert!(
        matches!(r, Err(RepositoryError::WrongPassword { keys: 1 })),
        "{:?}",
        r.err()
    );
}

#[test]
fn a_folder_that_is_not_a_repository_is_not_a_repository() {
    let empty = tempfile::tempdir().unwrap();
    let r = Repository::open(Arc::new(LocalBackend::new(empty.path())), PASSWORD);
    assert!(
        matches!(r, Err(RepositoryError::NotARepository { .. })),
        "{:?}",
        r.err()
    );

    let missing = empty.path().join("does-not-exist");
    let r = Repository::open(Arc::new(LocalBackend::new(&missing)), PASSWORD);
    assert!(
        matches!(r, Err(RepositoryError::NotARepository { .. })),
        "{:?}",
        r.err()
    );

    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("notes.txt"), b"not a repository").unwrap();
    fs::create_dir(other.path().join("keys")).unwrap();
    let r = Repository::open(Arc::new(LocalBackend::new(other.path())), PASSWORD);
    assert!(
        matches!(r, Err(RepositoryError::NotARepository { .. })),
        "{:?}",
        r.err()
    );
}

/// When the only key object is damaged, the error should say so (and name
/// it) instead of blaming the password.
#[test]
fn damaged_only_key_is_reported_as_damaged_not_as_wrong_password() {
    let fx = Fixture::new();
    let copy = fx.copy();
    let (name, p) = fx.objects(copy.path(), "keys").remove(0);
    damage(&p, Damage::Flip(3));
    let r = Repository::open(Arc::new(LocalBackend::new(copy.path())), PASSWORD);
    let e = r.err().unwrap();
    assert!(!matches!(e, RepositoryError::WrongPassword { .. }), "{e}");
    assert!(names(&e.to_string(), &name), "{e}");
}

/// A key object whose Argon2 parameters Argon2 rejects (here 0 lanes) must
/// not stop the other keys from being tried.
#[test]
fn one_malformed_key_does_not_lock_out_the_others() {
    use cairn_engine::KeyFile;
    let fx = Fixture::new();
    let copy = fx.copy();
    let (good, _) = fx.objects(copy.path(), "keys").remove(0);
    // A well-formed, correctly named key object that sorts before the good one.
    for i in 0u32.. {
        let kf = KeyFile {
            created_ns: 0,
            host: "h".into(),
            user: "u".into(),
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 0,
            },
            salt: i.to_le_bytes().repeat(8),
            sealed_master: vec![0; 72],
        };
        let bytes = cairn_engine::encoding::encode("key", 1, &kf).unwrap();
        let name = blake3::hash(&bytes).to_hex().to_string();
        if name < good {
            fs::write(copy.path().join("keys").join(&name), &bytes).unwrap();
            break;
        }
    }
    let r = Repository::open(Arc::new(LocalBackend::new(copy.path())), PASSWORD);
    assert!(r.is_ok(), "{:?}", r.err());
}

/// A damaged snapshot should not stop new backups (they only need the
/// other snapshots to pick a parent).
#[test]
fn damaged_snapshot_does_not_block_new_backups() {
    let fx = Fixture::new();
    let copy = fx.copy();
    let (_, p) = fx.objects(copy.path(), "snapshots").remove(0);
    damage(&p, Damage::Flip(10));
    let repo = Repository::open(Arc::new(LocalBackend::new(copy.path())), PASSWORD).unwrap();
    let r = backup(
        &repo,
        BackupSource::Paths(vec![fx.src.clone()]),
        &BackupOptions::default(),
    );
    assert!(r.is_ok(), "{:?}", r.err());
}
