use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::backend::ObjectKind;
use crate::backup::{backup, BackupOptions, BackupSource};
use crate::browse::{dump, node_at, walk};
use crate::check::{check, CheckOptions};
use crate::error::ErrorKind;
use crate::testing::memory_repo;

/// A source folder; `files` are (relative path, content).
fn source(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, data) in files {
        let p = dir.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    dir
}

fn back_up(repo: &Repository, src: &Path) -> (SnapshotId, Snapshot) {
    let opts = BackupOptions {
        tags: vec!["nightly".into()],
        host: Some("node-1".into()),
        ..Default::default()
    };
    let out = backup(repo, BackupSource::Paths(vec![src.to_path_buf()]), &opts).unwrap();
    (out.id.unwrap(), out.snapshot)
}

fn run(repo: &Repository, snaps: &[(SnapshotId, Snapshot)], excludes: &[&str], forget: bool) -> RewriteReport {
    let opts = RewriteOptions {
        excludes: excludes.iter().map(|s| s.to_string()).collect(),
        forget,
        dry_run: false,
    };
    rewrite_snapshots(repo, snaps, &opts).unwrap()
}

/// Every path in `snap`, in walk order.
fn paths(repo: &Repository, snap: &Snapshot) -> Vec<PathBuf> {
    let index = repo.load_index().unwrap();
    let mut out = Vec::new();
    walk(repo, &index, snap, "/", true, &mut |p, _| out.push(p.to_path_buf())).unwrap();
    out
}

fn at(src: &Path, rel: &str) -> String {
    format!("{}/{rel}", src.display())
}

#[test]
fn a_file_deep_in_the_tree_goes_and_untouched_folders_keep_their_trees() {
    let src = source(&[
        ("a/b/c/secret.txt", b"the secret"),
        ("a/b/c/keep.txt", b"kept"),
        ("other/x", b"x"),
    ]);
    let repo = memory_repo();
    let original = back_up(&repo, src.path());
    let report = run(&repo, std::slice::from_ref(&original), &["secret.txt"], false);

    let done = &report.snapshots[0];
    assert_eq!(done.original, original.0);
    let secret = at(src.path(), "a/b/c/secret.txt");
    assert_eq!(
        done.removed,
        [RemovedPath {
            path: secret.clone(),
            kind: "file",
            files: 1,
            bytes: 10
        }]
    );
    assert_eq!((done.files_removed, done.bytes_removed), (1, 10));
    // The root, and each folder on the way down to c/, are new trees.
    let depth = Path::new(&secret).components().count() - 1;
    assert_eq!(report.tree_blobs_added, depth as u64);

    let new_id = done.rewritten.unwrap();
    let copy = repo.load_snapshot(&new_id).unwrap();
    assert_eq!(copy.rewritten_from, Some(original.0));
    let orig = &original.1;
    assert_eq!(
        (
            copy.time_ns,
            &copy.host,
            &copy.user,
            &copy.tags,
            &copy.paths,
            copy.parent
        ),
        (
            orig.time_ns,
            &orig.host,
            &orig.user,
            &orig.tags,
            &orig.paths,
            orig.parent
        )
    );
    assert_eq!(copy.source, orig.source);
    assert_eq!(copy.summary, orig.summary);
    assert_eq!(copy.excludes, ["secret.txt"]);
    assert_ne!(copy.tree, orig.tree);

    let kept = paths(&repo, &copy);
    assert!(!kept.contains(&PathBuf::from(&secret)), "{kept:?}");
    let mut without: Vec<PathBuf> = paths(&repo, orig);
    without.retain(|p| p != Path::new(&secret));
    assert_eq!(kept, without, "everything else is still there");

    let index = repo.load_index().unwrap();
    let node = |s: &Snapshot, rel: &str| node_at(&repo, &index, s, &at(src.path(), rel)).unwrap();
    assert_eq!(node(&copy, "other").subtree, node(orig, "other").subtree);
    assert_ne!(node(&copy, "a/b/c").subtree, node(orig, "a/b/c").subtree);
    assert_eq!(node(&copy, "a/b/c/keep.txt"), node(orig, "a/b/c/keep.txt"));
    // Without --forget the original stays.
    assert_eq!(repo.list_snapshots().unwrap().len(), 2);
}

#[test]
fn a_matching_folder_goes_with_everything_below_it() {
    let src = source(&[
        ("home/alice/a.txt", b"12345"),
        ("home/alice/deep/b.txt", b"678"),
        ("home/bob/c", b"c"),
    ]);
    let repo = memory_repo();
    let first = back_up(&repo, src.path());
    fs::write(src.path().join("home/bob/c"), b"changed").unwrap();
    let second = back_up(&repo, src.path());
    let alice = at(src.path(), "home/alice");
    // The second snapshot's alice/ is the first one's tree: its counts are
    // taken from the first walk.
    let report = run(&repo, &[first, second], &[&alice], false);
    for done in &report.snapshots {
        assert_eq!(
            done.removed,
            [RemovedPath {
                path: alice.clone(),
                kind: "dir",
                files: 2,
                bytes: 8
            }]
        );
        let copy = repo.load_snapshot(&done.rewritten.unwrap()).unwrap();
        let left = paths(&repo, &copy);
        assert!(!left.iter().any(|p| p.starts_with(&alice)), "{left:?}");
        assert!(left.contains(&PathBuf::from(at(src.path(), "home/bob/c"))));
    }
}

#[test]
fn a_name_pattern_matches_at_any_depth_and_a_path_pattern_one_path() {
    let src = source(&[
        ("x.log", b"1"),
        ("d/x.log", b"22"),
        ("d/e/x.log", b"333"),
        ("d/y", b"y"),
    ]);
    let repo = memory_repo();
    let original = back_up(&repo, src.path());

    let by_name = run(&repo, std::slice::from_ref(&original), &["x.log"], false);
    let removed: Vec<&str> = by_name.snapshots[0].removed.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        removed,
        [
            at(src.path(), "d/e/x.log"),
            at(src.path(), "d/x.log"),
            at(src.path(), "x.log")
        ]
    );

    let one = at(src.path(), "d/x.log");
    let by_path = run(&repo, std::slice::from_ref(&original), &[&one], false);
    let removed: Vec<&str> = by_path.snapshots[0].removed.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(removed, [one.as_str()]);
    let copy = repo.load_snapshot(&by_path.snapshots[0].rewritten.unwrap()).unwrap();
    let left = paths(&repo, &copy);
    for kept in ["x.log", "d/e/x.log", "d/y"] {
        assert!(left.contains(&PathBuf::from(at(src.path(), kept))), "{kept}: {left:?}");
    }
}

#[test]
fn a_snapshot_nothing_matches_is_left_alone() {
    let src = source(&[("a", b"a")]);
    let repo = memory_repo();
    let original = back_up(&repo, src.path());
    let trees = repo.backend().list(ObjectKind::TreePack).unwrap().len();
    let report = run(
        &repo,
        std::slice::from_ref(&original),
        &["nothing-is-called-this"],
        true,
    );
    let done = &report.snapshots[0];
    assert!(!done.changed());
    assert_eq!((done.rewritten, done.forgotten), (None, false));
    assert_eq!(report.tree_blobs_added, 0);
    assert_eq!(repo.list_snapshots().unwrap(), [original]);
    assert_eq!(repo.backend().list(ObjectKind::TreePack).unwrap().len(), trees);
}

/// The removed file's content is also another file's (a hard link, an
/// identical copy): rewrite changes trees only, so the others still read.
#[test]
fn content_shared_with_kept_files_stays_readable() {
    let data = cairn_test_support::pseudo_random(300_000, 5);
    let src = source(&[("secret.bin", &data), ("copy.bin", &data)]);
    fs::hard_link(src.path().join("secret.bin"), src.path().join("link.bin")).unwrap();
    let repo = memory_repo();
    let original = back_up(&repo, src.path());
    let report = run(&repo, &[original], &["secret.bin"], true);
    let copy = repo.load_snapshot(&report.snapshots[0].rewritten.unwrap()).unwrap();
    let index = repo.load_index().unwrap();
    for kept in ["copy.bin", "link.bin"] {
        let mut out = Vec::new();
        dump(&repo, &index, &copy, &at(src.path(), kept), &mut out).unwrap();
        assert!(out == data, "{kept} differs");
    }
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.errors);
}

/// The folder holding the secret is the same tree in both snapshots: it is
/// rebuilt once (the second snapshot takes the first one's result) and goes
/// from both.
#[test]
fn forget_replaces_every_original_by_its_copy() {
    let src = source(&[("d/secret.txt", b"s"), ("d/kept", b"d"), ("k", b"k")]);
    let repo = memory_repo();
    let first = back_up(&repo, src.path());
    fs::write(src.path().join("k"), b"changed").unwrap();
    let second = back_up(&repo, src.path());
    let report = run(&repo, &[first.clone(), second.clone()], &["secret.txt"], true);
    assert!(report.snapshots.iter().all(|s| s.forgotten));
    let secret = at(src.path(), "d/secret.txt");
    for s in &report.snapshots {
        let removed: Vec<(&str, u64)> = s.removed.iter().map(|r| (r.path.as_str(), r.files)).collect();
        assert_eq!(removed, [(secret.as_str(), 1)]);
    }

    let left = repo.list_snapshots().unwrap();
    let from: Vec<Option<SnapshotId>> = left.iter().map(|(_, s)| s.rewritten_from).collect();
    assert_eq!(from, [Some(first.0), Some(second.0)]);
    let ids: Vec<SnapshotId> = left.iter().map(|(id, _)| *id).collect();
    let copies: Vec<SnapshotId> = report.snapshots.iter().filter_map(|s| s.rewritten).collect();
    assert_eq!(ids, copies);
    let index = repo.load_index().unwrap();
    let d: Vec<_> = left
        .iter()
        .map(|(_, s)| node_at(&repo, &index, s, &at(src.path(), "d")).unwrap().subtree)
        .collect();
    assert_eq!(d[0], d[1]);
    for (_, s) in &left {
        let all = paths(&repo, s);
        assert!(!all.contains(&PathBuf::from(&secret)), "{all:?}");
        assert!(all.contains(&PathBuf::from(at(src.path(), "d/kept"))), "{all:?}");
    }
}

#[test]
fn a_dry_run_reports_and_stores_nothing() {
    let src = source(&[("secret.txt", b"s"), ("k", b"k")]);
    let repo = memory_repo();
    let original = back_up(&repo, src.path());
    let before: Vec<_> = [ObjectKind::Snapshot, ObjectKind::TreePack, ObjectKind::Index]
        .map(|k| repo.backend().list(k).unwrap().len())
        .into();
    let opts = RewriteOptions {
        excludes: vec!["secret.txt".into()],
        forget: true,
        dry_run: true,
    };
    let report = rewrite_snapshots(&repo, std::slice::from_ref(&original), &opts).unwrap();
    assert!(report.dry_run);
    assert_eq!(report.snapshots[0].removed.len(), 1);
    assert_eq!(
        (report.snapshots[0].rewritten, report.snapshots[0].forgotten),
        (None, false)
    );
    let after: Vec<_> = [ObjectKind::Snapshot, ObjectKind::TreePack, ObjectKind::Index]
        .map(|k| repo.backend().list(k).unwrap().len())
        .into();
    assert_eq!(before, after);
    assert_eq!(repo.list_snapshots().unwrap(), [original]);
}

#[test]
fn bad_or_missing_patterns_are_refused_before_anything_is_read() {
    let repo = memory_repo();
    let refuse = |excludes: Vec<String>| {
        let opts = RewriteOptions {
            excludes,
            ..Default::default()
        };
        rewrite_snapshots(&repo, &[], &opts).unwrap_err().kind()
    };
    assert_eq!(refuse(Vec::new()), ErrorKind::InvalidInput);
    assert_eq!(refuse(vec!["a[".into()]), ErrorKind::InvalidInput);
}
