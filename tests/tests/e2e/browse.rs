//! Looking into snapshots: `diff`, `find`, `ls`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::util::*;

#[test]
fn diff_shows_added_removed_and_modified_files() {
    let f = Fixture::init();
    let src = f.path("src");
    write(&src.join("keep.txt"), "unchanged\n");
    write(&src.join("gone.txt"), "to be removed\n");
    write(&src.join("edit.txt"), "before\n");
    write(&src.join("sub/inner.txt"), "inner, unchanged\n");
    let first = f.backup(&[&s(&src)]);
    fs::remove_file(src.join("gone.txt")).unwrap();
    write(&src.join("edit.txt"), "after the edit\n");
    write(&src.join("sub/new.txt"), "added later\n");
    let second = f.backup(&[&s(&src)]);
    let (a, b) = (str_at(&first, "/snapshot_id"), str_at(&second, "/snapshot_id"));

    let p = |rel: &str| s(&src.join(rel));
    let expected: BTreeMap<String, &str> =
        BTreeMap::from([(p("gone.txt"), "-"), (p("edit.txt"), "M"), (p("sub/new.txt"), "+")]);

    // Text: "<marker>    <path>[/]" per change.
    let text = f.cairn().args(["diff", &a[..8], &b[..8]]).ok().stdout();
    let mut files = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(2, char::is_whitespace);
        let (marker, path) = (parts.next().unwrap(), parts.next().unwrap_or("").trim());
        if !["+", "-", "M"].contains(&marker) {
            continue; // a summary line
        }
        if path.ends_with('/') {
            continue; // folders whose metadata changed may be listed
        }
        files.insert(path.to_string(), marker);
    }
    assert_eq!(
        files.iter().map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>(),
        expected,
        "diff output:\n{text}"
    );

    // JSON: the same, with words.
    let j = f.cairn().args(["diff", a, b]).json();
    assert_eq!(str_at(&j, "/first"), a);
    assert_eq!(str_at(&j, "/second"), b);
    let got: BTreeMap<String, String> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["dir"] == Value::Bool(false))
        .map(|c| (str_at(c, "/path").to_string(), str_at(c, "/change").to_string()))
        .collect();
    let words = |m: &str| match m {
        "+" => "added",
        "-" => "removed",
        _ => "modified",
    };
    let want: BTreeMap<String, String> = expected.iter().map(|(k, v)| (k.clone(), words(v).into())).collect();
    assert_eq!(got, want, "{j:#}");

    // A snapshot compared with itself has no changes.
    let same = f.cairn().args(["diff", a, a]).json();
    assert_eq!(same["changes"], serde_json::json!([]), "{same:#}");
}

#[test]
fn find_locates_a_file_in_the_snapshots_that_hold_it() {
    let f = Fixture::init();
    let src = f.path("src");
    write(&src.join("readme.txt"), "no database yet\n");
    let s1 = f.backup(&[&s(&src)]);
    let db = src.join("var/lib/app.db");
    write(&db, Rng::new(3).bytes(12_345));
    let s2 = f.backup(&[&s(&src)]);
    fs::remove_file(&db).unwrap();
    let s3 = f.backup(&[&s(&src)]);

    let hits = f.cairn().args(["find", "*.db"]).json();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "only the second snapshot holds a .db: {hits:#?}");
    assert_eq!(str_at(&hits[0], "/snapshot"), str_at(&s2, "/snapshot_id"));
    assert_eq!(str_at(&hits[0], "/path"), s(&db));
    assert_eq!(u64_at(&hits[0], "/size"), 12_345);
    for other in [&s1, &s3] {
        assert_ne!(str_at(&hits[0], "/snapshot"), str_at(other, "/snapshot_id"));
    }

    // The table names it too; a pattern that matches nothing finds nothing.
    let text = f.cairn().args(["find", "*.db"]).ok().stdout();
    assert!(text.contains(&s(&db)), "{text}");
    let none = f.cairn().args(["find", "*.nothing"]).json();
    assert_eq!(none, serde_json::json!([]));
    // A pattern with `/` matches whole paths.
    let by_path = f.cairn().args(["find", &format!("{}/var/**", s(&src))]).json();
    let paths: BTreeSet<&str> = by_path.as_array().unwrap().iter().map(|h| str_at(h, "/path")).collect();
    assert!(paths.contains(s(&db).as_str()), "{by_path:#}");
}

#[test]
fn ls_lists_every_entry_with_its_metadata() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    let id = str_at(&f.backup(&[&s(&src)]), "/snapshot_id").to_string();
    let expected = manifest(&src);

    let j = f.cairn().args(["ls", "latest"]).json();
    assert_eq!(str_at(&j, "/snapshot"), id);
    let entries: BTreeMap<String, &Value> = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (str_at(e, "/path").to_string(), e))
        .collect();
    for (rel, e) in &expected {
        let path = s(&src.join(rel));
        let path = path.trim_end_matches('/').to_string();
        let got = entries
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is missing from ls --json"));
        match e {
            Entry::File { size, mode, .. } => {
                assert_eq!(str_at(got, "/type"), "file", "{got}");
                assert_eq!(u64_at(got, "/size"), *size, "{got}");
                assert_eq!(u64_at(got, "/mode") as u32 & 0o7777, *mode, "{got}");
            }
            Entry::Dir { mode, .. } => {
                assert_eq!(str_at(got, "/type"), "dir", "{got}");
                assert_eq!(u64_at(got, "/mode") as u32 & 0o7777, *mode, "{got}");
            }
            Entry::Symlink { target, .. } => {
                assert_eq!(str_at(got, "/type"), "symlink", "{got}");
                assert_eq!(str_at(got, "/target"), s(target), "{got}");
            }
            Entry::Other { .. } => {
                assert_eq!(str_at(got, "/type"), "fifo", "the only special file is a FIFO: {got}");
            }
        }
    }
    // Besides the source tree, only its parent folders are listed.
    for p in entries.keys() {
        let pb = std::path::Path::new(p);
        assert!(
            pb.starts_with(&src) || src.starts_with(pb),
            "{p} is in the listing but neither in nor above {}",
            src.display()
        );
    }

    // The long listing: mode string, size and path on one line.
    let long = f.cairn().args(["ls", "-l", "latest"]).ok().stdout();
    let line_of = |rel: &str| line_for(&long, &src.join(rel));
    let run = line_of("bin/run.sh");
    assert!(run.starts_with("-rwxr-xr-x"), "{run}");
    let size = fs::metadata(src.join("bin/run.sh")).unwrap().len().to_string();
    assert!(
        run.split_whitespace().any(|w| w == size),
        "the size, {size} bytes: {run}"
    );
    assert!(line_of("secret.key").starts_with("-rw-------"), "{long}");
    assert!(line_of("docs").starts_with('d'), "{long}");
    assert!(line_of("link-to-readme").starts_with('l'), "{long}");

    // One folder, not recursive.
    let short = f
        .cairn()
        .args(["ls", "latest", &s(&src.join("docs")), "--no-recursive"])
        .ok()
        .stdout();
    let listed: BTreeSet<&str> = short.lines().collect();
    let docs = |rel: &str| s(&src.join("docs").join(rel));
    assert!(listed.contains(docs("readme.md").as_str()), "{short}");
    assert!(listed.contains(docs("nested").as_str()), "{short}");
    assert!(
        !listed.contains(docs("nested/deep/notes.txt").as_str()),
        "not recursive:\n{short}"
    );
}

/// `ls -l` shows modes as `ls -l` does: setuid/setgid as `s`, sticky as `t`.
#[test]
fn ls_long_shows_setgid_and_sticky_bits() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    chmod(&src.join("shared/setgid-tool"), 0o2755);
    f.backup(&[&s(&src)]);
    let long = f.cairn().args(["ls", "-l", "latest"]).ok().stdout();
    let line_of = |rel: &str| line_for(&long, &src.join(rel));
    let tool = line_of("shared/setgid-tool");
    assert!(tool.starts_with("-rwxr-sr-x"), "mode 2755 is -rwxr-sr-x: {tool}");
    let drop = line_of("shared/drop");
    assert!(drop.starts_with("drwxrwxrwt"), "mode 1777 is drwxrwxrwt: {drop}");
    let pipe = line_of("pipe");
    assert!(pipe.starts_with("prw-r-----"), "{pipe}");
}

/// The line of `ls -l` output that ends with `path`.
fn line_for(long: &str, path: &Path) -> String {
    let p = s(path);
    long.lines()
        .find(|l| l.ends_with(&format!(" {p}")))
        .unwrap_or_else(|| panic!("no line for {p} in:\n{long}"))
        .to_string()
}
