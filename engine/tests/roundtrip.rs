//! Backup and restore of a tree full of edge cases, compared entry by entry.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use cairn_engine::{backup, restore, BackupOptions, BackupSource, LocalBackend, Repository, RestoreOptions};
use cairn_test_support::engine::{cheap_init, CHUNKER as CHUNK};
use cairn_test_support::pseudo_random;
use cairn_test_support::tree::{assert_same_tree, manifest, Entry};

#[test]
fn restore_reproduces_edge_cases_exactly() {
    let src_parent = tempfile::tempdir().unwrap();
    let src = src_parent.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("one-byte"), b"x").unwrap();
    for (name, len) in [
        ("min", CHUNK.min_size),
        ("avg", CHUNK.avg_size),
        ("max", CHUNK.max_size),
    ] {
        let n = len as usize;
        fs::write(src.join(format!("exact-{name}")), pseudo_random(n, n as u64)).unwrap();
        fs::write(src.join(format!("plus-one-{name}")), pseudo_random(n + 1, n as u64 + 7)).unwrap();
    }
    fs::write(
        src.join("text.sql"),
        b"INSERT INTO t VALUES (1, 'abc');\n".repeat(50_000),
    )
    .unwrap();
    // A 2 GB sparse file with data in the middle and at the end.
    let sparse = fs::File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(2 * 1024 * 1024 * 1024).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"middle", 1024 * 1024 * 1024).unwrap();
    sparse.write_all_at(b"end", 2 * 1024 * 1024 * 1024 - 3).unwrap();
    drop(sparse);
    std::os::unix::fs::symlink("one-byte", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    fs::write(src.join("hard-a"), b"shared by two names").unwrap();
    fs::hard_link(src.join("hard-a"), src.join("hard-b")).unwrap();
    fs::create_dir_all(src.join("empty-dir")).unwrap();
    fs::create_dir_all(src.join("deep/er/still")).unwrap();
    fs::write(src.join("deep/er/still/leaf"), b"leaf").unwrap();
    let bad_utf8 = OsStr::from_bytes(b"not-utf8-\xff\xfe");
    fs::write(src.join(bad_utf8), b"bytes name").unwrap();
    fs::write(src.join("ünïcødé-名前-🗂"), b"unicode name").unwrap();
    fs::write(src.join("odd-perms"), b"perm").unwrap();
    fs::set_permissions(src.join("odd-perms"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(src.join("empty-dir"), fs::Permissions::from_mode(0o700)).unwrap();

    let repo_dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(Arc::new(LocalBackend::new(repo_dir.path())), b"pw", cheap_init(CHUNK)).unwrap();
    let out = backup(&repo, BackupSource::Paths(vec![src.clone()]), &BackupOptions::default()).unwrap();
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    let snap = repo.load_snapshot(&out.id.unwrap()).unwrap();

    let target = tempfile::tempdir().unwrap();
    let sub = src.to_string_lossy().into_owned();
    let summary = restore(
        &repo,
        &snap,
        target.path(),
        &RestoreOptions {
            subpath: Some(sub),
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(summary.files_verified > 0);
    let restored = target.path().join("src");
    // A restore drops set-id bits unless asked to keep them (root only).
    let mut expected = manifest(&src);
    match expected.get_mut(Path::new("odd-perms")) {
        Some(Entry::File { mode, .. }) => *mode &= !0o6000,
        other => panic!("odd-perms is not a file in the manifest: {other:?}"),
    }
    assert_same_tree(&expected, &manifest(&restored));
    // The sparse file came back sparse: far fewer blocks than its size.
    let m = fs::metadata(restored.join("sparse.img")).unwrap();
    assert_eq!(m.len(), 2 * 1024 * 1024 * 1024);
    assert!(
        m.blocks() * 512 < 64 * 1024 * 1024,
        "sparse file restored with {} blocks",
        m.blocks()
    );
    // Hard links are links again.
    assert_eq!(
        fs::metadata(restored.join("hard-a")).unwrap().ino(),
        fs::metadata(restored.join("hard-b")).unwrap().ino()
    );
}

#[test]
fn second_backup_reads_nothing_unchanged_and_follows_hard_links_across_paths() {
    let src = tempfile::tempdir().unwrap();
    let live = src.path().join("live");
    fs::create_dir(&live).unwrap();
    fs::write(live.join("nb-1-big-Data.db"), pseudo_random(3_000_000, 1)).unwrap();
    fs::write(live.join("nb-2-big-Data.db"), pseudo_random(1_000_000, 2)).unwrap();
    let snapdir = |tag: &str| {
        let d = src.path().join("snapshots").join(tag);
        fs::create_dir_all(&d).unwrap();
        for f in ["nb-1-big-Data.db", "nb-2-big-Data.db"] {
            fs::hard_link(live.join(f), d.join(f)).unwrap();
        }
    };
    snapdir("night-1");
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(Arc::new(LocalBackend::new(repo_dir.path())), b"pw", cheap_init(CHUNK)).unwrap();
    let paths = vec![src.path().join("snapshots")];
    let first = backup(&repo, BackupSource::Paths(paths.clone()), &BackupOptions::default()).unwrap();
    assert_eq!(first.snapshot.summary.files_new, 2);
    assert_eq!(first.snapshot.summary.bytes_read, 4_000_000);

    // Night 2: the old tag folder is cleared, a new one hard-links the same files.
    fs::remove_dir_all(src.path().join("snapshots/night-1")).unwrap();
    snapdir("night-2");
    let second = backup(&repo, BackupSource::Paths(paths), &BackupOptions::default()).unwrap();
    let s = &second.snapshot.summary;
    assert_eq!(second.snapshot.parent, first.id);
    assert_eq!(
        (s.files_new, s.files_changed, s.files_unchanged, s.bytes_read),
        (0, 0, 2, 0),
        "{s:?}"
    );
    assert_eq!(s.data_blobs_added, 0);
}

#[test]
fn dry_run_writes_nothing() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), pseudo_random(500_000, 9)).unwrap();
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(Arc::new(LocalBackend::new(repo_dir.path())), b"pw", cheap_init(CHUNK)).unwrap();
    let opts = BackupOptions {
        dry_run: true,
        ..Default::default()
    };
    let out = backup(&repo, BackupSource::Paths(vec![src.path().to_path_buf()]), &opts).unwrap();
    assert!(out.id.is_none());
    assert!(out.snapshot.summary.data_blobs_added > 0);
    assert!(repo.list_snapshots().unwrap().is_empty());
    assert_eq!(repo.load_index().unwrap().len(), 0);
}

#[test]
fn xattrs_are_recorded_anew_whenever_they_may_have_changed() {
    let src = tempfile::tempdir().unwrap();
    let (a, b) = (src.path().join("a"), src.path().join("b"));
    fs::write(&a, b"with an attribute").unwrap();
    fs::write(&b, b"without").unwrap();
    xattr::set(&a, "user.k", b"v1").unwrap();
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(Arc::new(LocalBackend::new(repo_dir.path())), b"pw", cheap_init(CHUNK)).unwrap();
    let paths = vec![src.path().to_path_buf()];
    let attrs = |snap: &cairn_engine::Snapshot, p: &Path| -> Vec<(Vec<u8>, Vec<u8>)> {
        let index = repo.load_index().unwrap();
        let node = cairn_engine::node_at(&repo, &index, snap, &p.to_string_lossy()).unwrap();
        node.xattrs.into_iter().map(|x| (x.name, x.value)).collect()
    };
    let v = |s: &str| s.as_bytes().to_vec();
    backup(&repo, BackupSource::Paths(paths.clone()), &BackupOptions::default()).unwrap();

    // Unchanged: b's (none) comes from the parent, a's is read again.
    let second = backup(&repo, BackupSource::Paths(paths.clone()), &BackupOptions::default()).unwrap();
    assert_eq!(second.snapshot.summary.files_unchanged, 2);
    assert_eq!(attrs(&second.snapshot, &a), [(v("user.k"), v("v1"))]);
    assert!(attrs(&second.snapshot, &b).is_empty());

    // Attributes set or changed (the content not): both are seen, since
    // setting one moves the ctime past the parent's.
    std::thread::sleep(std::time::Duration::from_millis(50));
    xattr::set(&b, "user.added", b"new").unwrap();
    xattr::set(&a, "user.k", b"v2").unwrap();
    let third = backup(&repo, BackupSource::Paths(paths), &BackupOptions::default()).unwrap();
    assert_eq!(attrs(&third.snapshot, &a), [(v("user.k"), v("v2"))]);
    assert_eq!(attrs(&third.snapshot, &b), [(v("user.added"), v("new"))]);
}
