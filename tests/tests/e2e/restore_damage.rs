//! Best-effort restore and dump: damaged or missing data costs only the
//! files that need it, each is named with its reason, nothing is left under
//! their names, and the command fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::*;

/// Every object file under `dir` (recursively).
fn objects(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(entries) = fs::read_dir(dir) else { return out };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(objects(&p));
        } else {
            out.insert(p);
        }
    }
    out
}

/// The one object a step added under `dir`.
fn added_by(dir: &Path, step: impl FnOnce()) -> PathBuf {
    let before = objects(dir);
    step();
    let new: Vec<PathBuf> = objects(dir).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "expected one new object under {}: {new:?}", dir.display());
    new.into_iter().next().unwrap()
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Three files backed up in three runs, so the data of each sits in a data
/// pack (and an index object) of its own.
struct ThreeFiles {
    f: Fixture,
    src: PathBuf,
    files: [PathBuf; 3],
    packs: [PathBuf; 3],
    indexes: [PathBuf; 3],
}

fn three_files() -> ThreeFiles {
    let f = Fixture::init();
    let src = f.path("src");
    fs::create_dir_all(&src).unwrap();
    let files = ["a.bin", "b.bin", "c.bin"].map(|n| src.join(n));
    let mut packs = Vec::new();
    let mut indexes = Vec::new();
    for (i, file) in files.iter().enumerate() {
        write(file, Rng::new(100 + i as u64).bytes(200_000));
        let mut index = PathBuf::new();
        let pack = added_by(&f.repo.join("data"), || {
            index = added_by(&f.repo.join("index"), || {
                f.backup(&[&s(&src)]);
            });
        });
        packs.push(pack);
        indexes.push(index);
    }
    ThreeFiles {
        f,
        src,
        files,
        packs: packs.try_into().unwrap(),
        indexes: indexes.try_into().unwrap(),
    }
}

/// No temporary file of a restore is left anywhere under `root`.
fn assert_no_parts(root: &Path) {
    let left: Vec<_> = objects(root)
        .into_iter()
        .filter(|p| name_of(p).starts_with(".cairn-restore-part-"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

/// Restores `latest` with --json into a fresh target, expecting failure
/// because of `bad` (by `reason_names`); checks that the other two files
/// are exact, the folder's metadata applied, and nothing is at `bad`'s name.
fn restore_expecting_only(t: &ThreeFiles, bad: usize, reason_names: &str) {
    let target = t.f.path(&format!("restored-{bad}"));
    let r =
        t.f.cairn()
            .args(["restore", "latest", "--json", "--target", &s(&target)])
            .fails();
    assert_eq!(r.code(), Some(1), "damage exits 1\n{r}");
    let out = r.json();
    let failed = out["summary"]["failed"].as_array().unwrap_or_else(|| panic!("{out:#}"));
    let bad_path = under(&target, &t.files[bad]);
    assert_eq!(failed.len(), 1, "exactly the damaged file is named: {out:#}");
    assert_eq!(failed[0]["path"], s(&bad_path), "{out:#}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(reason_names),
        "the reason names {reason_names}: {reason}"
    );
    assert_eq!(failed[0]["damaged"], true, "{out:#}");
    assert!(r.stderr().contains(&s(&bad_path)), "the message names the file\n{r}");
    assert_eq!(u64_at(&out, "/summary/files"), 2, "{out:#}");

    assert!(
        fs::symlink_metadata(&bad_path).is_err(),
        "nothing (no zero-filled stand-in) under the damaged file's name"
    );
    assert_no_parts(&target);
    let mut expected = manifest(&t.src);
    expected.remove(Path::new(&name_of(&t.files[bad])));
    assert_same_tree(&expected, &manifest(&under(&target, &t.src)));
}

#[test]
fn a_damaged_pack_costs_only_the_file_in_it() {
    let t = three_files();
    let pack = &t.packs[1];
    let mut bytes = fs::read(pack).unwrap();
    // The middle of the pack is the file's data (the header is at the end).
    let at = bytes.len() / 3;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5a;
    }
    fs::write(pack, bytes).unwrap();
    restore_expecting_only(&t, 1, &name_of(pack));

    // dump: the intact files as they are, the damaged one named, exit 1.
    assert_eq!(t.f.dump("latest", &s(&t.files[0])), fs::read(&t.files[0]).unwrap());
    let d = t.f.cairn().args(["dump", "latest", &s(&t.files[1])]).fails();
    assert_eq!(d.code(), Some(1), "{d}");
    assert!(d.stderr().contains(&s(&t.files[1])), "dump names the file\n{d}");
    assert!(d.stderr().contains(&name_of(pack)[..8]), "dump names the pack\n{d}");
}

#[test]
fn a_deleted_pack_costs_only_the_file_in_it() {
    let t = three_files();
    fs::remove_file(&t.packs[2]).unwrap();
    restore_expecting_only(&t, 2, &name_of(&t.packs[2]));
    let d = t.f.cairn().args(["dump", "latest", &s(&t.files[2])]).fails();
    assert!(d.stderr().contains(&s(&t.files[2])), "dump names the file\n{d}");
}

#[test]
fn a_blob_missing_from_the_index_costs_only_its_file() {
    let t = three_files();
    // The second run's index object named the pack of b.bin (and nothing
    // the latest snapshot's trees need: they were all written by run 3).
    fs::remove_file(&t.indexes[1]).unwrap();
    restore_expecting_only(&t, 1, "is not in the index");
}

/// A second run over the same target resumes (no --overwrite needed) and
/// fails the same way, keeping what was restored.
#[test]
fn the_same_restore_again_resumes_and_names_the_same_file() {
    let t = three_files();
    fs::remove_file(&t.packs[0]).unwrap();
    let target = t.f.path("again");
    for run in 0..2 {
        let r = t.f.cairn().args(["restore", "latest", "--target", &s(&target)]).fails();
        let bad = under(&target, &t.files[0]);
        assert!(
            r.stderr().contains(&format!("not restored: {}", s(&bad))),
            "run {run}\n{r}"
        );
        assert!(!r.stderr().contains("--overwrite"), "a re-run resumes\n{r}");
        for good in &t.files[1..] {
            assert_eq!(entry(&under(&target, good)), entry(good), "run {run}");
        }
        assert!(fs::symlink_metadata(&bad).is_err(), "run {run}");
        assert_no_parts(&target);
    }
}

/// Restoring one file reads only the folders on its way: a folder whose
/// tree is lost elsewhere in the snapshot neither fails nor slows it. The
/// full restore still names that folder.
#[test]
fn restoring_one_file_does_not_read_unrelated_folders() {
    let f = Fixture::init();
    let src = f.path("src");
    let (lost, kept) = (src.join("lost"), src.join("kept"));
    fs::create_dir_all(&lost).unwrap();
    write(&lost.join("x.bin"), Rng::new(7).bytes(5_000));
    // Run 1 writes the tree of `lost`; run 2 reuses it and writes every
    // tree on the way to `kept` anew, in a pack of its own.
    let tree_pack = added_by(&f.repo.join("tree"), || {
        f.backup(&[&s(&src)]);
    });
    fs::create_dir_all(&kept).unwrap();
    let file = kept.join("y.bin");
    write(&file, Rng::new(8).bytes(5_000));
    f.backup(&[&s(&src)]);
    fs::remove_file(&tree_pack).unwrap();

    let one = f.path("one");
    f.cairn()
        .args(["restore", "latest", "--include", &s(&file), "--target", &s(&one)])
        .ok();
    assert_eq!(entry(&under(&one, &file)), entry(&file));
    let glob = format!("{}/*.bin", s(&kept));
    let two = f.path("two");
    f.cairn()
        .args(["restore", "latest", "--include", &glob, "--target", &s(&two)])
        .ok();
    assert_eq!(entry(&under(&two, &file)), entry(&file));

    let all = f.path("all");
    let r = f.cairn().args(["restore", "latest", "--target", &s(&all)]).fails();
    assert!(
        r.stderr().contains(&s(&under(&all, &lost))),
        "the lost folder is named\n{r}"
    );
    assert_eq!(entry(&under(&all, &file)), entry(&file));
}
