//! The walk's folder handling, through whole backups.

use std::fs;

use crate::backup::{backup, BackupOptions, BackupSource};
use crate::id::TreeId;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::testing::memory_repo;

/// The tree of the backed-up folder `src` in `snap`: the snapshot's own
/// root also records the folders above it (`/tmp`), which other tests
/// change meanwhile.
fn tree_of(repo: &Repository, snap: &Snapshot, src: &std::path::Path) -> TreeId {
    let index = repo.load_index().unwrap();
    let node = crate::tree::resolve_path(repo, &index, &snap.tree, src).unwrap();
    node.and_then(|n| n.subtree).unwrap()
}

/// Folders stored as soon as the walk finishes them (every entry
/// complete: the unchanged backup, and folders holding no file to
/// read) make the same trees and counts as folders stored at the end.
#[test]
fn folders_stored_early_make_the_same_trees() {
    let src = tempfile::tempdir().unwrap();
    let p = src.path();
    for d in ["x/y", "x/empty", "z", "links/deep"] {
        fs::create_dir_all(p.join(d)).unwrap();
    }
    for (f, body) in [("x/y/f1", "one"), ("x/y/f2", "two"), ("z/f3", "three"), ("g", "g")] {
        fs::write(p.join(f), body).unwrap();
    }
    std::os::unix::fs::symlink("../g", p.join("links/deep/to-g")).unwrap();
    let repo = memory_repo();
    let go = || {
        backup(
            &repo,
            BackupSource::Paths(vec![p.to_path_buf()]),
            &BackupOptions::default(),
        )
        .unwrap()
    };
    let first = go();
    let second = go();
    assert_eq!(
        second.snapshot.summary.files_unchanged, 4,
        "the second backup read nothing"
    );
    assert_eq!(tree_of(&repo, &second.snapshot, p), tree_of(&repo, &first.snapshot, p));
    assert_eq!(second.snapshot.summary.dirs, first.snapshot.summary.dirs);
    assert!(first.snapshot.summary.dirs >= 7, "every folder counted once");
    // A new file below a settled folder's sibling changes only its branch.
    fs::write(p.join("z/f4"), "four").unwrap();
    let third = go();
    assert_ne!(tree_of(&repo, &third.snapshot, p), tree_of(&repo, &second.snapshot, p));
    assert_eq!(third.snapshot.summary.dirs, first.snapshot.summary.dirs);
}

/// Sibling folders left waiting for their readers are stored as later
/// ones finish, and each keeps every file: a second backup finds all
/// of them unchanged in the first one's trees, and counts agree.
#[test]
fn sibling_folders_stored_while_the_walk_goes_on_keep_every_file() {
    let src = tempfile::tempdir().unwrap();
    let (folders, files) = (40, 12);
    for d in 0..folders {
        let dir = src.path().join(format!("d{d:02}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..files {
            fs::write(dir.join(format!("f{f:02}")), format!("{d} {f}").repeat(100)).unwrap();
        }
    }
    let repo = memory_repo();
    let go = || {
        let src = BackupSource::Paths(vec![src.path().to_path_buf()]);
        backup(&repo, src, &BackupOptions::default()).unwrap().snapshot
    };
    let first = go();
    let second = go();
    let all = (folders * files) as u64;
    assert_eq!(first.summary.files_new, all);
    assert_eq!(
        second.summary.files_unchanged, all,
        "a file missing from a stored folder is read again"
    );
    assert_eq!(tree_of(&repo, &second, src.path()), tree_of(&repo, &first, src.path()));
    assert_eq!(first.summary.dirs, second.summary.dirs);
    assert!(first.summary.dirs > folders as u64, "{}", first.summary.dirs);
}

/// Several paths, an excluded folder and a symlink to a folder: the walk,
/// fed by the folder lister, keeps what it keeps without one (the lister
/// out of step with the walk fails a debug build's assertion).
#[test]
fn walk_with_the_lister_keeps_every_path_and_leaves_out_the_excluded() {
    let src = tempfile::tempdir().unwrap();
    let p = src.path();
    for d in ["one/a/b", "one/skip/deep", "one/Z", "two"] {
        fs::create_dir_all(p.join(d)).unwrap();
    }
    for f in ["one/a/b/f", "one/skip/deep/f", "one/Z/f", "two/f", "lone"] {
        fs::write(p.join(f), f).unwrap();
    }
    std::os::unix::fs::symlink("a", p.join("one/link")).unwrap();
    let repo = memory_repo();
    let opts = BackupOptions {
        excludes: vec!["skip".into()],
        ..BackupOptions::default()
    };
    let paths = vec![p.join("one"), p.join("lone"), p.join("two")];
    let go = || {
        backup(&repo, BackupSource::Paths(paths.clone()), &opts)
            .unwrap()
            .snapshot
    };
    let first = go();
    let second = go();
    assert_eq!(first.summary.files_new, 4);
    assert_eq!(second.summary.files_unchanged, 4);
    let index = repo.load_index().unwrap();
    let at = |rel: &str| crate::tree::resolve_path(&repo, &index, &second.tree, p.join(rel)).unwrap();
    for kept in ["one/a/b/f", "one/Z/f", "one/link", "two/f", "lone"] {
        assert!(at(kept).is_some(), "{kept} kept");
    }
    assert!(at("one/skip").is_none(), "excluded folder left out");
    assert!(at("one/link/b").is_none(), "the symlink was not followed");
}
