//! Restore against hand-made hostile trees: whatever a tree says, restore
//! changes nothing outside its target.
//!
//! The trees are written straight into the repository (encoded, sealed,
//! packed and indexed as a backup would), bypassing every check a backup
//! makes, as an attacker with write access to the repository could.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use cairn_engine::blob::{self, Aad, BlobType};
use cairn_engine::pack::Packer;
use cairn_engine::{
    backup, restore, BackupOptions, BackupSource, IndexFile, LocalBackend, Node, NodeKind, ObjectKind, Repository,
    RestoreOptions, Snapshot, Tree, TreeId,
};
use cairn_test_support::engine as support;

/// Stores `tree` (exactly as given: unsorted, duplicate names and all) in a
/// tree pack of its own with an index object, and returns its id.
fn store_raw_tree(repo: &Repository, tree: &Tree) -> TreeId {
    let keys = repo.master_key().derive();
    let (tree_id, bytes) = tree.encode_blob(&keys).unwrap();
    let id = tree_id.blob();
    let sealed = blob::seal(&keys, Aad::Blob(BlobType::Tree, &id), &bytes, repo.compression()).unwrap();
    let mut packer = Packer::new(BlobType::Tree, 1 << 20);
    packer.add(id, &sealed, bytes.len()).unwrap();
    let pack = packer.finish(&keys).unwrap();
    repo.storage()
        .write(ObjectKind::TreePack, &pack.id.to_hex(), &pack.bytes)
        .unwrap();
    repo.save_index(&IndexFile {
        packs: vec![pack.index_entry()],
    })
    .unwrap();
    tree_id
}

struct Setup {
    _dir: tempfile::TempDir,
    repo: Repository,
    /// A snapshot of a folder holding one file, `x`.
    snap: Snapshot,
    /// `x`'s node.
    file: Node,
    /// A file outside any restore target, and its mode, content and mtime.
    outside: std::path::PathBuf,
    before: (u32, Vec<u8>, i64),
    target: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(
        Arc::new(LocalBackend::new(dir.path().join("repo"))),
        b"pw",
        support::cheap_init(support::CHUNKER),
    )
    .unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("x"), b"what the snapshot holds\n").unwrap();
    let out = backup(&repo, BackupSource::Paths(vec![src.clone()]), &BackupOptions::default()).unwrap();
    let snap = repo.load_snapshot(&out.id.unwrap()).unwrap();
    let index = repo.load_index().unwrap();
    let mut file = cairn_engine::node_at(&repo, &index, &snap, &format!("{}/x", src.display())).unwrap();
    // The mode a root restore would carry through a followed symlink.
    file.mode = 0o6777;
    let outside = dir.path().join("outside.conf");
    fs::write(&outside, b"outside the target\n").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
    let m = fs::metadata(&outside).unwrap();
    let before = (m.mode() & 0o7777, fs::read(&outside).unwrap(), m.mtime());
    let target = dir.path().join("target");
    Setup {
        _dir: dir,
        repo,
        snap,
        file,
        outside,
        before,
        target,
    }
}

fn outside_now(p: &Path) -> (u32, Vec<u8>, i64) {
    let m = fs::metadata(p).unwrap();
    (m.mode() & 0o7777, fs::read(p).unwrap(), m.mtime())
}

/// A tree with a file `x` and a symlink `x` to a file outside the target,
/// in both orders: the restore is refused or leaves out the duplicate, and
/// the outside file keeps its mode, content and time.
#[test]
fn a_file_and_a_symlink_of_the_same_name_cannot_reach_outside_the_target() {
    for link_first in [false, true] {
        let s = setup();
        let mut link = Node::new(b"x".to_vec(), NodeKind::Symlink);
        link.symlink_target = Some(s.outside.to_string_lossy().into_owned().into_bytes());
        link.mode = 0o777;
        link.mtime_ns = 86_400 * 1_000_000_000;
        let nodes = if link_first {
            vec![link, s.file.clone()]
        } else {
            vec![s.file.clone(), link]
        };
        let tree = store_raw_tree(&s.repo, &Tree { nodes });
        let mut snap = s.snap.clone();
        snap.tree = tree;
        let r = restore(&s.repo, &snap, &s.target, &RestoreOptions::default());
        let what = if link_first { "symlink first" } else { "file first" };
        assert!(
            r.is_err(),
            "{what}: a tree naming `x` twice must not restore cleanly: {r:?}"
        );
        assert_eq!(
            outside_now(&s.outside),
            s.before,
            "{what}: the file outside the target was changed (mode, content or time); restore said {r:?}"
        );
        // Whatever was restored stays inside the target.
        if let Ok(m) = fs::symlink_metadata(s.target.join("x")) {
            assert!(m.is_file() || m.file_type().is_symlink(), "{what}");
        }
    }
}

/// Names that would leave the target (`..`, `a/b`, empty) are not used,
/// and the rest of the tree is still restored.
#[test]
fn unsafe_names_are_left_out_and_the_rest_restored() {
    let s = setup();
    let mut nodes = Vec::new();
    for name in [&b""[..], b".", b"..", b"../escape"] {
        let mut n = s.file.clone();
        n.name = name.to_vec();
        n.mode = 0o644;
        nodes.push(n);
    }
    let mut good = s.file.clone();
    good.mode = 0o644;
    nodes.push(good);
    let tree = store_raw_tree(&s.repo, &Tree { nodes });
    let mut snap = s.snap.clone();
    snap.tree = tree;
    let target = s.target.join("deep");
    let r = restore(&s.repo, &snap, &target, &RestoreOptions::default());
    assert!(r.is_err(), "unsafe names must be reported: {r:?}");
    assert!(
        !s.target.join("escape").exists(),
        "a `../escape` entry was written outside"
    );
    if let Ok(entries) = fs::read_dir(&s.target) {
        let names: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
        assert!(
            names.iter().all(|n| n == "deep"),
            "nothing is written beside the target: {names:?}"
        );
    }
    assert_eq!(outside_now(&s.outside), s.before);
    // Either the tree is refused whole when read, or the one good entry
    // is restored.
    if let Ok(d) = fs::read(target.join("x")) {
        assert_eq!(d, b"what the snapshot holds\n");
    }
}
