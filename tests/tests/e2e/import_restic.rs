//! `cairn import restic` against repositories made by restic 0.19.1 itself
//! (`CAIRN_RESTIC`), in both restic format versions: every imported snapshot
//! restores through Cairn exactly as `restic restore` restores the same
//! snapshot; a second import imports nothing; a new restic snapshot is
//! picked up by a third; damage costs only the files that need it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cairn_test_support::tree::{assert_same_tree, manifest, under};
use serde_json::Value;

use crate::forget_restic::{restic, run_restic};
use crate::util::*;

/// A tree with the entries that trip importers up.
fn awkward_tree(root: &Path, rng: &mut Rng) {
    let d = root.join("data");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    write(&d.join("plain.txt"), "hello restic\n");
    write(&d.join("empty"), "");
    write(&d.join("big.bin"), rng.bytes(5 << 20));
    write(&d.join("sub/deeper/small"), rng.bytes(3000));
    // Names restic has to escape: not UTF-8, a backslash, a newline, a quote.
    for name in [
        &b"latin1-\xe9t\xe9"[..],
        b"back\\slash",
        b"new\nline",
        b"quo\"te",
        "é-utf8".as_bytes(),
    ] {
        write(&d.join(OsStr::from_bytes(name)), name);
    }
    std::os::unix::fs::symlink("plain.txt", d.join("link")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"target-\xff"), d.join("odd-link")).unwrap();
    std::fs::hard_link(d.join("plain.txt"), d.join("sub/hard")).unwrap();
    nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    // Sparse: 4 MiB with a little data in the middle.
    let f = std::fs::File::create(d.join("sparse")).unwrap();
    f.set_len(4 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"island", 2 << 20).unwrap();
    chmod(&d.join("plain.txt"), 0o4751);
    chmod(&d.join("sub/deeper/small"), 0o400);
    chmod(&d.join("sub"), 0o1777);
    // Where the file system takes user xattrs.
    let _ = xattr::set(d.join("empty"), "user.note", b"kept");
}

/// Runs restic on `repo` with the fixture's password.
fn r(bin: &Path, f: &Fixture, repo: &Path, args: &[&str]) -> Vec<u8> {
    run_restic(bin, repo, &f.password_file, args, b"")
}

/// restic's snapshots: (id, time) oldest first.
fn restic_snapshots(bin: &Path, f: &Fixture, repo: &Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&r(bin, f, repo, &["snapshots", "--json"])).unwrap();
    let mut s: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["time"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    s.sort();
    s.into_iter().map(|(_, id)| id).collect()
}

fn import(f: &Fixture, from: &Path, extra: &[&str]) -> Run {
    f.cairn()
        .args(["--json", "import", "restic", "--from"])
        .arg(from)
        .args(extra)
        .env("CAIRN_FROM_PASSWORD_FILE", &f.password_file)
        .run()
}

/// The Cairn snapshot imported from restic snapshot `rid`.
pub(crate) fn imported_as(f: &Fixture, rid: &str) -> String {
    f.snapshots()
        .into_iter()
        .find(|s| s["copied_from"]["snapshot"].as_str() == Some(rid))
        .map(|s| s["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no Cairn snapshot records restic snapshot {rid}"))
}

/// Restores restic snapshot `rid` with restic and its import with Cairn,
/// and compares the two trees entry by entry (and the xattrs of `empty`).
fn assert_same_restore(bin: &Path, f: &Fixture, repo: &Path, rid: &str) {
    let by_restic = f.path(&format!("restic-restore/{rid}"));
    r(bin, f, repo, &["restore", rid, "--target", &s(&by_restic)]);
    assert_cairn_restores_as(f, rid, &by_restic);
}

/// Restores the import of restic snapshot `rid` and compares it, entry by
/// entry and with every file's xattrs, with `by_restic` (restic's restore).
pub(crate) fn assert_cairn_restores_as(f: &Fixture, rid: &str, by_restic: &Path) {
    let by_cairn = f.path(&format!("cairn-restore/{rid}"));
    f.cairn()
        .args(["restore", &imported_as(f, rid), "--preserve-special", "--target"])
        .arg(&by_cairn)
        .ok();
    // The target folders themselves are the restorers' own, not the snapshot's.
    let (mut a, mut b) = (manifest(by_restic), manifest(&by_cairn));
    a.remove(Path::new(""));
    b.remove(Path::new(""));
    assert!(a.len() >= 3, "restic restored only {} entries", a.len());
    assert_same_tree(&a, &b);
    for m in files_under(by_restic) {
        let rel = m.strip_prefix(by_restic).unwrap();
        let want: Vec<_> = xattr::list(&m).map(|l| l.collect()).unwrap_or_default();
        let got: Vec<_> = xattr::list(by_cairn.join(rel)).map(|l| l.collect()).unwrap_or_default();
        assert_eq!(want, got, "xattrs of {}", rel.display());
    }
}

fn import_both_versions(version: &str) {
    let Some(bin) = restic() else { return };
    let f = Fixture::init();
    let mut rng = Rng::new(17);
    let src = f.path("src");
    awkward_tree(&src, &mut rng);
    let repo = f.path(&format!("restic-v{version}"));
    r(&bin, &f, &repo, &["init", "--repository-version", version]);
    let data = s(&src.join("data"));
    r(&bin, &f, &repo, &["backup", &data, "--host", "h1", "--tag", "t1"]);
    // Night 2: one file changed, one added, one removed, a folder added.
    write(&src.join("data/plain.txt"), "changed\n");
    write(&src.join("data/new.bin"), rng.bytes(700_000));
    std::fs::remove_file(src.join("data/empty")).unwrap();
    std::fs::create_dir_all(src.join("data/added")).unwrap();
    write(&src.join("data/added/x"), "x");
    r(&bin, &f, &repo, &["backup", &data, "--host", "h1", "--tag", "t2,night"]);
    // Another host and path, whose files deduplicate with the first.
    r(&bin, &f, &repo, &["backup", &s(&src.join("data/sub")), "--host", "h2"]);
    let ids = restic_snapshots(&bin, &f, &repo);
    assert_eq!(ids.len(), 3);

    let first = import(&f, &repo, &[]);
    assert_eq!(first.code(), Some(0), "{}", first.stderr());
    let v = first.json();
    assert_eq!(v["imported"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["restic_version"], version.parse::<u64>().unwrap());
    assert_eq!(u64_at(&v, "/problems"), 0);
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 3);
    // Same time, host, tags and paths as restic recorded.
    let rv: Value = serde_json::from_slice(&r(&bin, &f, &repo, &["snapshots", "--json"])).unwrap();
    for rs in rv.as_array().unwrap() {
        let rid = rs["id"].as_str().unwrap();
        let c = snaps
            .iter()
            .find(|c| c["copied_from"]["snapshot"].as_str() == Some(rid))
            .unwrap();
        assert_eq!(c["host"], rs["hostname"]);
        assert_eq!(c["paths"], rs["paths"]);
        assert_eq!(c["tags"], *rs.get("tags").unwrap_or(&Value::Array(vec![])));
        let rt: jiff::Timestamp = rs["time"].as_str().unwrap().parse().unwrap();
        let ct: jiff::Timestamp = c["time"].as_str().unwrap().parse().unwrap();
        assert_eq!(rt, ct, "time of {rid}");
    }
    for rid in &ids {
        assert_same_restore(&bin, &f, &repo, rid);
    }
    f.cairn().args(["check", "--read-data"]).ok();

    // Again: nothing new.
    let again = import(&f, &repo, &[]).json();
    assert_eq!(again["imported"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 3);
    assert_eq!(f.snapshots().len(), 3);

    // A new restic snapshot is picked up, and the unchanged files are not read.
    write(&src.join("data/night3"), "third night\n");
    r(&bin, &f, &repo, &["backup", &data, "--host", "h1"]);
    let third = import(&f, &repo, &[]).json();
    let imported = third["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 1, "{third}");
    let (files, read) = (u64_at(&imported[0], "/files"), u64_at(&imported[0], "/files_read"));
    assert!(
        files >= 8 && read < files,
        "read {read} of {files} files: the previous import was not reused"
    );
    let newest = restic_snapshots(&bin, &f, &repo).pop().unwrap();
    assert_same_restore(&bin, &f, &repo, &newest);

    // Cairn's own first backup after the move takes the import as its
    // parent and reads nothing that restic had already seen.
    let own = f.backup(&[&data, "--host", "h1"]);
    assert_eq!(own["parent"].as_str(), Some(imported_as(&f, &newest).as_str()), "{own}");
    assert_eq!(u64_at(&own, "/summary/bytes_read"), 0, "{own}");
    assert!(u64_at(&own, "/summary/files_unchanged") >= 8, "{own}");
}

#[test]
fn import_restic_repository_version_1() {
    import_both_versions("1");
}

#[test]
fn import_restic_repository_version_2() {
    import_both_versions("2");
}

#[test]
fn import_restic_refuses_a_wrong_password_and_a_dry_run_writes_nothing() {
    let Some(bin) = restic() else { return };
    let f = Fixture::init();
    let repo = f.path("restic");
    write(&f.path("src/a"), "a");
    r(&bin, &f, &repo, &["init"]);
    r(&bin, &f, &repo, &["backup", &s(&f.path("src")), "--host", "keep"]);
    r(&bin, &f, &repo, &["backup", &s(&f.path("src")), "--host", "other"]);
    let wrong = f.password_file_for("not the password");
    let run = f
        .cairn()
        .args(["import", "restic", "--from"])
        .arg(&repo)
        .arg("--from-password-file")
        .arg(&wrong)
        .run();
    assert_eq!(run.code(), Some(12), "{}", run.stderr());
    assert!(run.stderr().contains("restic"), "{}", run.stderr());
    let dry = import(&f, &repo, &["--dry-run"]);
    assert_eq!(dry.code(), Some(0), "{}", dry.stderr());
    assert_eq!(dry.json()["imported"].as_array().unwrap().len(), 2);
    assert!(f.snapshots().is_empty(), "a dry run wrote a snapshot");
    // The password from a command, and a host filter.
    let cmd = format!("cat '{}'", s(&f.password_file));
    let one = f
        .cairn()
        .args(["--json", "import", "restic", "--host", "keep", "--from"])
        .arg(&repo)
        .args(["--from-password-command", &cmd])
        .run();
    assert_eq!(one.code(), Some(0), "{}", one.stderr());
    assert_eq!(one.json()["selected"], 1);
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["host"], "keep");
    // Not a restic repository: the Cairn repository itself.
    let own = import(&f, &f.repo, &[]);
    assert_eq!(own.code(), Some(10), "{}", own.stderr());
}

/// The data packs the newest restic index file lists (restic `cat index`).
fn newest_data_packs(bin: &Path, f: &Fixture, repo: &Path) -> Vec<String> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(repo.join("index")).unwrap() {
        let e = e.unwrap();
        let t = e.metadata().unwrap().modified().unwrap();
        if newest.as_ref().is_none_or(|(n, _)| t > *n) {
            newest = Some((t, e.path()));
        }
    }
    let name = newest.unwrap().1.file_name().unwrap().to_string_lossy().into_owned();
    let v: Value = serde_json::from_slice(&r(bin, f, repo, &["cat", "index", &name])).unwrap();
    v["packs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["blobs"].as_array().unwrap().iter().all(|b| b["type"] == "data"))
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn import_restic_marks_files_whose_data_is_lost_and_imports_the_rest() {
    let Some(bin) = restic() else { return };
    let f = Fixture::init();
    let mut rng = Rng::new(3);
    let repo = f.path("restic");
    write(&f.path("src/kept.bin"), rng.bytes(1 << 20));
    r(&bin, &f, &repo, &["init"]);
    r(&bin, &f, &repo, &["backup", &s(&f.path("src"))]);
    write(&f.path("src/lost.bin"), rng.bytes(1 << 20));
    r(&bin, &f, &repo, &["backup", &s(&f.path("src"))]);
    let packs = newest_data_packs(&bin, &f, &repo);
    assert!(!packs.is_empty());
    for p in &packs {
        std::fs::remove_file(repo.join("data").join(&p[..2]).join(p)).unwrap();
    }
    let run = import(&f, &repo, &[]);
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    let v = run.json();
    assert_eq!(v["imported"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(u64_at(&v, "/problems"), 1, "{v}");
    let problem = &v["imported"][1]["problems"][0];
    assert!(problem["path"].as_str().unwrap().ends_with("/src/lost.bin"), "{v}");
    assert!(problem["error"].as_str().unwrap().contains("cannot be read"), "{v}");
    // The damaged snapshot restores what is intact, the damaged file renamed.
    let ids = restic_snapshots(&bin, &f, &repo);
    let out = f.path("out");
    f.cairn()
        .args(["restore", &imported_as(&f, &ids[1]), "--target"])
        .arg(&out)
        .ok();
    let at = |name: &str| under(&out, &f.path(name));
    assert_eq!(
        std::fs::read(at("src/kept.bin")).unwrap(),
        std::fs::read(f.path("src/kept.bin")).unwrap()
    );
    assert!(at("src/lost.bin.damaged").exists());
    assert!(!at("src/lost.bin").exists());
    f.cairn().args(["check", "--read-data"]).ok();
}

#[test]
fn import_restic_killed_before_a_snapshot_is_written_resumes_and_loses_nothing() {
    let Some(bin) = restic() else { return };
    let f = Fixture::init();
    let mut rng = Rng::new(11);
    let repo = f.path("restic");
    write(&f.path("src/a.bin"), rng.bytes(2 << 20));
    r(&bin, &f, &repo, &["init"]);
    r(&bin, &f, &repo, &["backup", &s(&f.path("src"))]);
    write(&f.path("src/b.bin"), rng.bytes(1 << 20));
    r(&bin, &f, &repo, &["backup", &s(&f.path("src"))]);
    // Killed after the first snapshot's data is stored, before its snapshot.
    let killed = f
        .cairn()
        .args(["import", "restic", "--from"])
        .arg(&repo)
        .env("CAIRN_FROM_PASSWORD_FILE", &f.password_file)
        .env("CAIRN_FAILPOINT", "import-before-snapshot")
        .run();
    assert_eq!(
        killed.code(),
        None,
        "the failpoint did not kill it: {}",
        killed.stderr()
    );
    assert!(f.snapshots().is_empty());
    f.cairn().arg("check").ok();
    let again = import(&f, &repo, &[]);
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    assert_eq!(again.json()["imported"].as_array().map(Vec::len), Some(2));
    for rid in restic_snapshots(&bin, &f, &repo) {
        assert_same_restore(&bin, &f, &repo, &rid);
    }
    f.cairn().args(["check", "--read-data"]).ok();
}
