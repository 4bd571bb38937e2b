//! Containment and healing: backups after a pack is lost, `repair index`,
//! `repair snapshots`, damaged snapshot objects, and `init` over leftovers.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// Every file below `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn data_packs(f: &Fixture) -> BTreeSet<PathBuf> {
    files_under(&f.repo.join("data")).into_iter().collect()
}

fn remove(p: &Path) {
    fs::remove_file(p).unwrap_or_else(|e| panic!("removing {}: {e}", p.display()));
}

/// Restores `snapshot` and asserts the part under `src` equals `expected`.
fn restores_exactly(f: &Fixture, snapshot: &str, src: &Path, expected: &std::collections::BTreeMap<PathBuf, Entry>) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let target = f.path(&format!("restored-{n}"));
    f.cairn().args(["restore", snapshot, "--target", &s(&target)]).ok();
    assert_same_tree(expected, &manifest(&under(&target, src)));
}

/// Every (snapshot, path) `check --json` names as depending on a problem.
fn dependents(check: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in check["report"]["problems"].as_array().unwrap_or(&Vec::new()) {
        for d in p["dependents"].as_array().unwrap_or(&Vec::new()) {
            out.push((str_at(d, "/snapshot").to_string(), str_at(d, "/path").to_string()));
        }
    }
    out
}

#[test]
fn backups_after_a_pack_is_lost_store_its_data_again() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, true);
    let expected = manifest(&src);
    let first = f.backup(&[&s(&src)]);
    let first_id = str_at(&first, "/snapshot_id").to_string();

    // Lose the data pack that holds big.bin (the largest).
    let lost = data_packs(&f)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("a data pack");
    remove(&lost);

    // check names the lost pack and the files of the first snapshot it held.
    let r = f.cairn().args(["check", "--json"]).fails();
    let j = r.json();
    let deps = dependents(&j);
    let big = s(&src.join("data/big.bin"));
    assert!(
        deps.iter().any(|(snap, p)| *snap == first_id && *p == big),
        "check names snapshot {first_id} {big}: {j:#}"
    );
    let r = f.cairn().arg("check").fails();
    let name = lost.file_name().unwrap().to_string_lossy().into_owned();
    assert!(r.stderr().contains(&name), "{r}");
    assert!(r.stderr().contains(&format!("snapshot {}", &first_id[..8])), "{r}");
    assert!(r.stderr().contains(&big), "{r}");
    assert!(!r.stderr().contains("prune will remove"), "no destructive advice: {r}");

    // With the parent (unchanged files), and with --force: the data is
    // stored again, not referenced while missing.
    let with_parent = f.backup(&[&s(&src)]);
    let forced = f.backup(&["--force", &s(&src)]);
    let ids = [
        str_at(&with_parent, "/snapshot_id").to_string(),
        str_at(&forced, "/snapshot_id").to_string(),
    ];
    for id in &ids {
        restores_exactly(&f, id, &src, &expected);
    }
    // The data is stored again under the same ids, so the first snapshot is
    // whole again too: check names no file, only the lost pack itself.
    let j = f.cairn().args(["check", "--read-data", "--json"]).fails().json();
    assert!(dependents(&j).is_empty(), "{j:#}");
    assert!(j.to_string().contains(&name), "{j:#}");
    restores_exactly(&f, &first_id, &src, &expected);

    // With the lost pack out of the index, all is well.
    f.cairn().args(["repair", "index"]).ok();
    let j = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(j["ok"], Value::Bool(true), "{j:#}");
    for id in ids.iter().chain([&first_id]) {
        restores_exactly(&f, id, &src, &expected);
    }
}

#[test]
fn repair_index_after_every_index_object_is_deleted() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, true);
    let expected = manifest(&src);
    let id = str_at(&f.backup(&[&s(&src)]), "/snapshot_id").to_string();
    f.cairn()
        .args(["backup", "--stdin", "--stdin-filename", "s.txt"])
        .stdin("stream\n")
        .ok();
    let packs = data_packs(&f).len() + files_under(&f.repo.join("tree")).len();
    let old = files_under(&f.repo.join("index"));
    assert!(!old.is_empty());
    for p in &old {
        remove(p);
    }
    // Unusable now: restore fails before writing anything wrong.
    f.cairn()
        .args(["restore", "latest", "--target", &s(&f.path("broken"))])
        .fails();

    let j = f.cairn().args(["repair", "index"]).json();
    assert_eq!(u64_at(&j, "/packs_indexed") as usize, packs, "{j:#}");
    assert_eq!(
        u64_at(&j, "/packs_found") as usize,
        packs,
        "every pack was found: {j:#}"
    );
    assert!(!j["index_objects_written"].as_array().unwrap().is_empty(), "{j:#}");

    restores_exactly(&f, &id, &src, &expected);
    let j = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(j["ok"], Value::Bool(true), "{j:#}");
    assert!(j["report"]["warnings"].as_array().unwrap().is_empty(), "{j:#}");

    // Running it again replaces the index objects it wrote, nothing else.
    let before = files_under(&f.repo.join("index"));
    let j = f.cairn().args(["repair", "index"]).json();
    assert_eq!(u64_at(&j, "/packs_found"), 0, "{j:#}");
    assert_eq!(u64_at(&j, "/index_objects_removed") as usize, before.len(), "{j:#}");
    restores_exactly(&f, &id, &src, &expected);
}

#[test]
fn repair_index_finds_packs_whose_index_object_was_lost_and_keeps_the_others() {
    let f = Fixture::init();
    let a = f.path("a");
    write(&a.join("one.bin"), Rng::new(1).bytes(200_000));
    f.backup(&[&s(&a)]);
    let first_index: BTreeSet<PathBuf> = files_under(&f.repo.join("index")).into_iter().collect();
    write(&a.join("two.bin"), Rng::new(2).bytes(200_000));
    f.backup(&[&s(&a)]);
    let expected = manifest(&a);
    // Lose the second backup's index object only.
    for p in files_under(&f.repo.join("index")) {
        if !first_index.contains(&p) {
            remove(&p);
        }
    }
    let r = f.cairn().arg("check").fails();
    assert!(r.stderr().contains("repair index"), "check advises repair index: {r}");
    let j = f.cairn().args(["repair", "index"]).json();
    assert!(u64_at(&j, "/packs_found") >= 2, "the data and tree packs: {j:#}");
    restores_exactly(&f, "latest", &a, &expected);
    let j = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(j["ok"], Value::Bool(true), "{j:#}");
}

/// A repository whose second snapshot lost the data of `b.bin` (its own
/// pack) but not `a.bin`'s. Returns (fixture, source, damaged snapshot id).
fn repository_with_a_lost_file() -> (Fixture, PathBuf, String) {
    let f = Fixture::init();
    let src = f.path("src");
    write(&src.join("a.bin"), Rng::new(7).bytes(300_000));
    write(&src.join("keep/c.txt"), "small and safe\n");
    f.backup(&[&s(&src)]);
    let before = data_packs(&f);
    write(&src.join("b.bin"), Rng::new(8).bytes(300_000));
    let id = str_at(&f.backup(&[&s(&src)]), "/snapshot_id").to_string();
    let new: Vec<PathBuf> = data_packs(&f).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "the second backup stored b.bin in one new pack");
    remove(&new[0]);
    (f, src, id)
}

#[test]
fn repair_snapshots_marks_lost_files_damaged_and_keeps_the_rest() {
    let (f, src, damaged) = repository_with_a_lost_file();
    let b = s(&src.join("b.bin"));
    let j = f.cairn().args(["check", "--json"]).fails().json();
    assert!(
        dependents(&j).contains(&(damaged.clone(), b.clone())),
        "check names {damaged} {b}: {j:#}"
    );

    // A dry run writes nothing.
    let snaps_before = files_under(&f.repo.join("snapshots"));
    let j = f.cairn().args(["repair", "snapshots", "--dry-run"]).json();
    assert_eq!(files_under(&f.repo.join("snapshots")), snaps_before, "{j:#}");

    let j = f.cairn().args(["repair", "snapshots"]).json();
    let done: Vec<&Value> = j["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["repaired"].is_null())
        .collect();
    assert_eq!(done.len(), 1, "only the damaged snapshot is copied: {j:#}");
    assert_eq!(str_at(done[0], "/original"), damaged);
    assert_eq!(str_at(done[0], "/damaged/0/path"), b, "{j:#}");
    assert_eq!(str_at(done[0], "/damaged/0/new_path"), format!("{b}.damaged"), "{j:#}");
    let copy = str_at(done[0], "/repaired").to_string();
    // The original is kept; the copy is tagged and names it.
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 3);
    let c = snaps
        .iter()
        .find(|s| str_at(s, "/id") == copy)
        .expect("the copy is listed");
    assert!(strings_at(c, "/tags").contains(&"repaired".to_string()), "{c:#}");

    // The copy restores the intact files exactly, and the damaged one
    // under its marked name, with what is left of it (nothing here).
    let target = f.path("restored");
    f.cairn().args(["restore", &copy, "--target", &s(&target)]).ok();
    let got = under(&target, &src);
    assert_eq!(
        fs::read(got.join("a.bin")).unwrap(),
        fs::read(src.join("a.bin")).unwrap()
    );
    assert_eq!(fs::read(got.join("keep/c.txt")).unwrap(), b"small and safe\n");
    assert!(!got.join("b.bin").exists(), "no file under the lost file's real name");
    assert_eq!(fs::metadata(got.join("b.bin.damaged")).unwrap().len(), 0);

    // Without the damaged original, check passes (after the index forgets
    // the lost pack).
    f.cairn().args(["forget", &damaged]).ok();
    f.cairn().args(["repair", "index"]).ok();
    let j = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(j["ok"], Value::Bool(true), "{j:#}");
}

#[test]
fn repair_snapshots_drop_damaged_and_forget() {
    let (f, src, damaged) = repository_with_a_lost_file();
    let j = f
        .cairn()
        .args(["repair", "snapshots", "--drop-damaged", "--forget", &damaged[..10]])
        .json();
    let copy = str_at(&j, "/snapshots/0/repaired").to_string();
    assert_eq!(j["snapshots"][0]["forgotten"], Value::Bool(true), "{j:#}");
    assert_eq!(str_at(&j, "/snapshots/0/damaged/0/action"), "dropped");
    let ids: Vec<String> = f.snapshots().iter().map(|s| str_at(s, "/id").to_string()).collect();
    assert!(!ids.contains(&damaged) && ids.contains(&copy), "{ids:?}");

    let target = f.path("restored");
    f.cairn().args(["restore", &copy, "--target", &s(&target)]).ok();
    let got = under(&target, &src);
    assert_eq!(
        fs::read(got.join("a.bin")).unwrap(),
        fs::read(src.join("a.bin")).unwrap()
    );
    assert!(!got.join("b.bin").exists() && !got.join("b.bin.damaged").exists());

    f.cairn().args(["repair", "index"]).ok();
    let j = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(j["ok"], Value::Bool(true), "{j:#}");
}

#[test]
fn a_damaged_snapshot_object_affects_only_itself() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    let expected = manifest(&src);
    let good = str_at(&f.backup(&[&s(&src)]), "/snapshot_id").to_string();
    let other = f.path("other");
    write(&other.join("x.txt"), "x\n");
    let bad = str_at(&f.backup(&[&s(&other)]), "/snapshot_id").to_string();
    let bad_path = f.repo.join("snapshots").join(&bad);
    chmod(&bad_path, 0o644);
    let mut bytes = fs::read(&bad_path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    fs::write(&bad_path, &bytes).unwrap();
    // And a stray file someone left there.
    write(&f.repo.join("snapshots/README"), "not a snapshot\n");

    let r = f.cairn().args(["snapshots", "--json"]).ok();
    let ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_at(s, "/id").to_string())
        .collect();
    assert_eq!(ids, vec![good.clone()], "{r}");
    assert!(
        r.stderr().contains(&bad) && r.stderr().contains("README"),
        "warns about both: {r}"
    );

    restores_exactly(&f, "latest", &src, &expected);
    restores_exactly(&f, &good[..8], &src, &expected);
    let r = f.cairn().args(["ls", &good[..8]]).ok();
    assert!(r.stdout().contains("hello.txt"), "{r}");
    assert_eq!(f.dump(&good[..8], &s(&src.join("hello.txt"))), b"hello, cairn\n");
    let r = f.cairn().args(["find", "readme.md"]).ok();
    assert!(r.stdout().contains(&good[..8]), "{r}");

    // Naming the damaged one fails, clearly.
    let r = f
        .cairn()
        .args(["restore", &bad[..10], "--target", &s(&f.path("t2"))])
        .fails();
    assert!(r.stderr().contains("damaged"), "{r}");
    assert!(!f.path("t2").join("x.txt").exists());
    let r = f.cairn().args(["ls", &bad[..10]]).fails();
    assert!(r.stderr().contains("damaged"), "{r}");
}

#[test]
fn init_refuses_a_location_that_lost_only_its_config() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    f.backup(&[&s(&src)]);
    let keys = files_under(&f.repo.join("keys"));
    remove(&f.repo.join("config"));
    let r = f
        .cairn()
        .args(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
        .fails();
    assert!(r.stderr().contains("refusing"), "{r}");
    assert!(!f.repo.join("config").exists(), "nothing was created");
    assert_eq!(files_under(&f.repo.join("keys")), keys, "the old keys are untouched");

    // Only packs left: refused too.
    for p in files_under(&f.repo.join("keys"))
        .into_iter()
        .chain(files_under(&f.repo.join("snapshots")))
        .chain(files_under(&f.repo.join("index")))
    {
        remove(&p);
    }
    let r = f
        .cairn()
        .args(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
        .fails();
    assert!(r.stderr().contains("pack"), "{r}");
    assert!(!f.repo.join("config").exists());
}
