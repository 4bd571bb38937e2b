//! `restore`: whole snapshots, one file, globs, existing files, --verify, --as-of.

use std::fs;

use crate::util::*;

#[test]
fn restore_of_everything_matches_the_source() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, true);
    let expected = manifest(&src);
    f.backup(&[&s(&src)]);

    let target = f.path("restored");
    let out = f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    let files = expected.values().filter(|e| matches!(e, Entry::File { .. })).count() as u64;
    assert_eq!(u64_at(&out, "/summary/files"), files, "{out:#}");

    // --verify re-reads what was written and agrees.
    let target2 = f.path("verified");
    let out = f
        .cairn()
        .args(["restore", "latest", "--verify", "--target", &s(&target2)])
        .json();
    assert_eq!(u64_at(&out, "/summary/files_verified"), files, "{out:#}");
    assert_same_tree(&expected, &manifest(&under(&target2, &src)));
}

#[test]
fn point_restore_of_one_file() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, true);
    f.backup(&[&s(&src)]);

    for rel in ["docs/nested/deep/notes.txt", "data/big.bin", "bin/run.sh"] {
        let file = src.join(rel);
        let name = file.file_name().unwrap();
        let target = f.path(&format!("point-{}", name.to_string_lossy()));
        f.cairn()
            .args(["restore", &format!("latest:{}", s(&file)), "--target", &s(&target)])
            .ok();
        let restored = manifest(&target);
        let only: Vec<_> = restored.keys().filter(|p| !p.as_os_str().is_empty()).collect();
        assert_eq!(
            only,
            vec![&std::path::PathBuf::from(name)],
            "only the one file is restored"
        );
        assert_eq!(entry(&target.join(name)), entry(&file), "{rel}");
    }
}

#[test]
fn include_glob_restores_only_matching_files() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    f.backup(&[&s(&src)]);

    let target = f.path("restored");
    f.cairn()
        .args(["restore", "latest", "--include", "*.txt", "--target", &s(&target)])
        .ok();
    let want: Vec<_> = manifest(&src)
        .into_iter()
        .filter(|(p, e)| matches!(e, Entry::File { .. }) && p.extension().is_some_and(|x| x == "txt"))
        .collect();
    assert!(want.len() >= 2, "the sample tree has .txt files");
    let got: Vec<_> = manifest(&under(&target, &src))
        .into_iter()
        .filter(|(_, e)| !matches!(e, Entry::Dir { .. }))
        .collect();
    assert_eq!(got, want, "exactly the .txt files, identical to the source");
}

#[test]
fn restore_refuses_to_replace_existing_files_without_overwrite() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    let expected = manifest(&src);
    f.backup(&[&s(&src)]);

    let target = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).ok();
    let root = under(&target, &src);
    let edited = root.join("hello.txt");
    write(&edited, "a local edit that must survive\n");
    let deleted = root.join("docs/readme.md");
    fs::remove_file(&deleted).unwrap();

    let r = f.cairn().args(["restore", "latest", "--target", &s(&target)]).fails();
    assert!(
        r.stderr().contains("--overwrite"),
        "the message points to --overwrite\n{r}"
    );
    assert_eq!(fs::read_to_string(&edited).unwrap(), "a local edit that must survive\n");
    assert!(!deleted.exists(), "a refused restore writes nothing");

    f.cairn()
        .args(["restore", "latest", "--overwrite", "--target", &s(&target)])
        .ok();
    assert_same_tree(&expected, &manifest(&root));

    // Restoring again over an identical tree with --overwrite --verify is fine too.
    f.cairn()
        .args(["restore", "latest", "--overwrite", "--verify", "--target", &s(&target)])
        .ok();
    assert_same_tree(&expected, &manifest(&root));
}

#[test]
fn as_of_restores_the_snapshot_current_at_that_time() {
    let f = Fixture::init();
    let src = f.path("src");
    let file = src.join("state.txt");
    write(&file, "January state\n");
    f.backup(&[&s(&src), "--time", "2026-01-01T00:00:00Z"]);
    write(&file, "February state, which is longer\n");
    f.backup(&[&s(&src), "--time", "2026-02-01T00:00:00Z"]);

    let restore_as_of = |t: &str| {
        let target = f.path(&format!("as-of-{t}").replace(':', "-"));
        f.cairn().args(["restore", "--as-of", t, "--target", &s(&target)]).ok();
        fs::read_to_string(under(&target, &file)).unwrap()
    };
    assert_eq!(restore_as_of("2026-01-15T00:00:00Z"), "January state\n");
    assert_eq!(
        restore_as_of("2026-01-01T00:00:00Z"),
        "January state\n",
        "at the time itself"
    );
    assert_eq!(
        restore_as_of("2026-03-01T00:00:00Z"),
        "February state, which is longer\n"
    );

    // Nothing existed yet on 2025-12-01.
    let target = f.path("too-early");
    f.cairn()
        .args(["restore", "--as-of", "2025-12-01T00:00:00Z", "--target", &s(&target)])
        .fails();
    assert!(!under(&target, &file).exists());
}

#[test]
fn restoring_what_is_not_there_fails_and_writes_nothing() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    f.backup(&[&s(&src)]);
    let target = f.path("never");
    let r = f
        .cairn()
        .args([
            "restore",
            &format!("latest:{}", s(&src.join("no/such/file"))),
            "--target",
            &s(&target),
        ])
        .fails();
    assert!(r.stderr().contains("not in the snapshot"), "{r}");
    f.cairn()
        .args(["restore", "0000000000", "--target", &s(&target)])
        .fails();
    assert!(!target.exists(), "no target folder is created for a failed restore");
    f.cairn().args(["dump", "latest", &s(&src.join("docs"))]).fails();
}
