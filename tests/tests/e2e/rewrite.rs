//! `rewrite`: erasing files from existing snapshots, dry runs, JSON, filters.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

const SECRET: &str = "alice's secret, in every backup\n";

/// Every path `ls --json` lists in `snapshot`.
fn listed(f: &Fixture, snapshot: &str) -> BTreeSet<String> {
    let v = f.cairn().args(["ls", snapshot]).json();
    v["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("ls --json has no entries: {v:#}"))
        .iter()
        .map(|e| str_at(e, "/path").to_string())
        .collect()
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter().map(|s| str_at(s, "/id").to_string()).collect()
}

/// Backs up `src` three times (hello.txt changes in between, the secret is in
/// each); returns the snapshots' ids, oldest first.
fn three_backups(f: &Fixture, src: &Path) -> Vec<String> {
    sample_tree(src, false);
    write(&src.join("home/alice/secret.txt"), SECRET);
    write(&src.join("home/alice/notes.txt"), "alice's notes stay\n");
    (0..3)
        .map(|n| {
            write(&src.join("hello.txt"), format!("hello, version {n}\n"));
            str_at(&f.backup(&["--tag", "nightly", &s(src)]), "/snapshot_id").to_string()
        })
        .collect()
}

#[test]
fn rewrite_removes_a_file_from_every_snapshot() {
    let f = Fixture::init();
    let src = f.path("src");
    let originals = three_backups(&f, &src);
    let expected = manifest(&src);
    let secret = s(&src.join("home/alice/secret.txt"));
    let before = f.snapshots();
    let listed_before: Vec<BTreeSet<String>> = originals.iter().map(|id| listed(&f, id)).collect();
    assert!(listed_before.iter().all(|l| l.contains(&secret)));

    // A dry run lists the path in each snapshot and changes nothing.
    let text = f
        .cairn()
        .args(["rewrite", "--exclude", "secret.txt", "--forget", "--dry-run"])
        .ok()
        .stdout();
    assert_eq!(text.matches(&secret).count(), 3, "{text}");
    assert!(text.contains("dry run"), "{text}");
    let dry = f
        .cairn()
        .args(["rewrite", "--exclude", "secret.txt", "--forget", "-n"])
        .json();
    assert_eq!(dry["dry_run"], Value::Bool(true), "{dry:#}");
    for s in dry["snapshots"].as_array().unwrap() {
        assert_eq!(s["rewritten"], Value::Null, "{dry:#}");
        assert_eq!(str_at(s, "/removed/0/path"), secret);
    }
    assert_eq!(f.snapshots(), before, "a dry run changes no snapshot");

    let done = f
        .cairn()
        .args(["rewrite", "--exclude", "secret.txt", "--forget"])
        .json();
    assert_eq!(done["dry_run"], Value::Bool(false));
    let rewrites = done["snapshots"].as_array().unwrap();
    assert_eq!(rewrites.len(), 3, "{done:#}");
    let mut copies = Vec::new();
    for (r, original) in rewrites.iter().zip(&originals) {
        assert_eq!(str_at(r, "/original"), original);
        assert_eq!(r["forgotten"], Value::Bool(true));
        assert_eq!(u64_at(r, "/files_removed"), 1);
        assert_eq!(u64_at(r, "/bytes_removed"), SECRET.len() as u64);
        assert_eq!(str_at(r, "/removed/0/type"), "file");
        copies.push(str_at(r, "/rewritten").to_string());
    }

    let after = f.snapshots();
    assert_eq!(after.len(), before.len(), "one copy per original, the originals gone");
    let mut want = copies.clone();
    want.sort();
    let mut got = ids(&after);
    got.sort();
    assert_eq!(got, want);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(str_at(new, "/rewritten_from"), str_at(old, "/id"));
        for field in ["/time", "/host", "/user", "/paths", "/tags", "/source"] {
            assert_eq!(new.pointer(field), old.pointer(field), "{field}");
        }
    }
    for (copy, was) in copies.iter().zip(&listed_before) {
        let mut want = was.clone();
        want.remove(&secret);
        assert_eq!(listed(&f, copy), want, "{copy} lists all but the secret");
    }
    let hits = f.cairn().args(["find", "secret.txt"]).json();
    assert_eq!(hits, Value::Array(Vec::new()), "{hits:#}");

    let target = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).ok();
    let mut expected = expected;
    expected.remove(Path::new("home/alice/secret.txt"));
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    f.cairn().args(["check", "--read-data"]).ok();
}

#[test]
fn rewrite_selects_snapshots_and_leaves_unmatched_ones_alone() {
    let f = Fixture::init();
    let src = f.path("src");
    let originals = three_backups(&f, &src);
    let other = f.path("other");
    write(&other.join("plain.txt"), "nothing to erase\n");
    let plain = str_at(&f.backup(&[&s(&other)]), "/snapshot_id").to_string();

    // A folder by its path: it goes with what is in it. Only the filtered
    // snapshots are looked at; the other one is reported unchanged.
    let alice = s(&src.join("home/alice"));
    let pattern = format!("{alice}/**");
    let first = &originals[0][..10];
    let r = f
        .cairn()
        .args(["rewrite", first, &plain[..10], "--exclude", &alice])
        .json();
    let snaps = r["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2, "{r:#}");
    assert_eq!(str_at(&snaps[0], "/removed/0/type"), "dir");
    assert_eq!(u64_at(&snaps[0], "/files_removed"), 2);
    assert_eq!(snaps[0]["forgotten"], Value::Bool(false));
    assert_eq!(str_at(&snaps[1], "/original"), plain);
    assert_eq!(snaps[1]["rewritten"], Value::Null);
    assert_eq!(snaps[1]["removed"], Value::Array(Vec::new()));
    let copy = str_at(&snaps[0], "/rewritten").to_string();
    assert!(listed(&f, &copy).iter().all(|p| !p.starts_with(&alice)));
    assert_eq!(f.snapshots().len(), 5, "without --forget the originals stay");

    // `cat snapshot` and the table show where a copy came from.
    let cat = f.cairn().args(["cat", "snapshot", &copy]).ok().json();
    assert_eq!(str_at(&cat, "/snapshot/rewritten_from"), originals[0]);
    assert_eq!(str_at(&cat, "/snapshot/excludes/0"), alice);
    let table = f.cairn().args(["snapshots"]).ok().stdout();
    assert!(table.contains("Rewritten from"), "{table}");
    let row = table.lines().find(|l| l.starts_with(&copy[..8])).unwrap();
    assert!(row.contains(&originals[0][..8]), "{table}");

    // --path picks the snapshots of `other` only, where nothing matches;
    // the path pattern with ** leaves the folder itself, emptied.
    let r = f
        .cairn()
        .args(["rewrite", "--path", &s(&other), "--exclude", &pattern])
        .json();
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(r["snapshots"][0]["rewritten"], Value::Null);
    let r = f
        .cairn()
        .args(["rewrite", &originals[1][..10], "--exclude", &pattern])
        .json();
    let copy = str_at(&r, "/snapshots/0/rewritten").to_string();
    let left: Vec<PathBuf> = listed(&f, &copy).into_iter().map(PathBuf::from).collect();
    assert!(left.contains(&PathBuf::from(&alice)), "{left:?}");
    assert!(!left.iter().any(|p| p.starts_with(&alice) && p != Path::new(&alice)));
}

#[test]
fn rewrite_refuses_what_it_cannot_do() {
    let f = Fixture::init();
    let src = f.path("src");
    write(&src.join("a"), "a\n");
    f.backup(&[&s(&src)]);
    let r = f.cairn().args(["rewrite"]).fails();
    assert!(r.stderr().contains("--exclude"), "{r}");
    let r = f.cairn().args(["rewrite", "--exclude", "a["]).fails();
    assert!(r.stderr().contains("a["), "{r}");
    let list = f.path("patterns");
    fs::write(&list, "# nothing but a comment\n").unwrap();
    let r = f.cairn().args(["rewrite", "--exclude-file", &s(&list)]).fails();
    assert!(r.stderr().contains("--exclude"), "{r}");
    let help = f.bare().args(["rewrite", "--help"]).ok().stdout();
    assert!(help.contains("prune"), "{help}");
}

/// How many blobs in the repository's packs (decrypted and decompressed)
/// contain `needle`: the search an auditor of an erasure would run.
fn blobs_containing(f: &Fixture, needle: &[u8]) -> usize {
    use cairn_engine::{LocalBackend, ObjectKind, PackId, Repository};
    let repo = Repository::open(std::sync::Arc::new(LocalBackend::new(&f.repo)), PASSWORD.as_bytes()).unwrap();
    let mut n = 0;
    for kind in [ObjectKind::DataPack, ObjectKind::TreePack] {
        for o in repo.storage().list(kind).unwrap() {
            let bytes = repo.storage().read(kind, &o.name).unwrap();
            let pack = PackId::from_hex(&o.name).unwrap();
            for e in repo.read_pack_header(kind, &o.name).unwrap() {
                let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                let plain = repo.open_blob(e.blob_type, &e.id, &pack, sealed).unwrap();
                if plain.windows(needle.len()).any(|w| w == needle) {
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn after_rewrite_and_prune_the_erased_file_is_in_no_pack() {
    let f = Fixture::init();
    let src = f.path("src");
    three_backups(&f, &src);
    // Present before: the search can find it (content and, in trees, its name).
    assert_eq!(blobs_containing(&f, SECRET.as_bytes()), 1, "one blob, deduplicated");
    assert!(blobs_containing(&f, b"secret.txt") >= 1);

    f.cairn().args(["rewrite", "--exclude", "secret.txt", "--forget"]).ok();
    assert_eq!(
        blobs_containing(&f, SECRET.as_bytes()),
        1,
        "rewrite alone removes no data"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = f
        .cairn()
        .args(["prune", "--max-unused", "0%", "--grace-period", "1s"])
        .json();
    assert!(first["record"].is_string(), "{first:#}");
    assert_eq!(blobs_containing(&f, SECRET.as_bytes()), 1, "recorded, not yet removed");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    f.cairn().args(["prune", "--max-unused", "0%"]).ok();

    assert_eq!(
        blobs_containing(&f, SECRET.as_bytes()),
        0,
        "the content is gone from every pack"
    );
    assert_eq!(blobs_containing(&f, b"secret.txt"), 0, "and its name from every tree");
    let check = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(check["ok"], true, "{check:#}");
    let target = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).ok();
    let restored = under(&target, &src);
    assert!(!restored.join("home/alice/secret.txt").exists());
    assert_eq!(
        fs::read(restored.join("home/alice/notes.txt")).unwrap(),
        b"alice's notes stay\n"
    );
}
