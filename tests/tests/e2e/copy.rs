//! `cairn copy` between local repositories with different passwords: the
//! fast path (destination made with `init --chunker-params-from`) and the
//! re-chunk path, bit-identical restores from the destination alone, a
//! second copy that copies nothing, a copy killed part-way and run again,
//! and a profile's `copy-to` after each backup. The S3 directions are in
//! s3/copy.rs and use the helpers here.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::util::*;

/// Fast KDF settings for test repositories.
const FAST_KDF: [&str; 4] = ["--kdf-memory-kib", "1024", "--kdf-iterations", "1"];

/// One repository profile of a [`Repos`] fixture.
pub struct RepoDef<'a> {
    pub name: &'a str,
    pub location: String,
    /// Further lines of the profile (e.g. `copy-to = [...]`).
    pub extra: String,
    /// Lines of its `[repositories.NAME.s3]` table, if any.
    pub s3: Option<String>,
}

/// A local repository profile at `root/NAME`.
pub fn local<'a>(f: &Fixture, name: &'a str) -> RepoDef<'a> {
    RepoDef {
        name,
        location: s(&f.root.join(name)),
        extra: String::new(),
        s3: None,
    }
}

/// A fixture whose cairn.toml holds several repository profiles, each with
/// its own password (a different one per profile).
pub struct Repos {
    pub f: Fixture,
    pub passwords: BTreeMap<String, PathBuf>,
    pub locations: BTreeMap<String, String>,
}

impl Repos {
    /// Writes the profiles `defs(fixture)` with a password file each.
    pub fn new(defs: impl FnOnce(&Fixture) -> Vec<RepoDef<'static>>) -> Repos {
        let mut passwords = BTreeMap::new();
        let mut locations = BTreeMap::new();
        let f = Fixture::with_config("unused", |f| {
            let mut rng = Rng::new(clock_seed());
            let mut toml = String::new();
            for d in defs(f) {
                let pw = f.password_file_for(&rng.password());
                toml.push_str(&format!(
                    "[repositories.{}]\nlocation = \"{}\"\npassword-file = \"{}\"\n{}\n",
                    d.name,
                    d.location,
                    s(&pw),
                    d.extra
                ));
                if let Some(s3) = &d.s3 {
                    toml.push_str(&format!("[repositories.{}.s3]\n{s3}\n", d.name));
                }
                toml.push('\n');
                passwords.insert(d.name.to_string(), pw);
                locations.insert(d.name.to_string(), d.location.clone());
            }
            toml
        });
        Repos {
            f,
            passwords,
            locations,
        }
    }

    /// Appends `text` (e.g. `[sources.NAME]` tables) to the cairn.toml.
    pub fn append_config(&self, text: &str) {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.f.user_config())
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("appending to cairn.toml");
    }

    /// `cairn -r NAME` (password from the profile).
    pub fn cairn(&self, repo: &str) -> Cairn {
        let mut c = self.f.bare();
        c.env("CAIRN_REPOSITORY", repo);
        c
    }

    /// `init` with fast KDF settings and `args`.
    pub fn init(&self, repo: &str, args: &[&str]) {
        self.cairn(repo).arg("init").args(FAST_KDF).args(args).ok();
    }

    /// `init --chunker-params-from FROM` (the fast path's destination).
    pub fn init_like(&self, repo: &str, from: &str, args: &[&str]) {
        self.cairn(repo)
            .arg("init")
            .args(FAST_KDF)
            .args(["--chunker-params-from", from])
            .args(args)
            .env("CAIRN_FROM_PASSWORD_FILE", &self.passwords[from])
            .ok();
    }

    pub fn backup(&self, repo: &str, paths: &[&Path]) -> Value {
        self.cairn(repo).arg("backup").args(paths).json()
    }

    /// `copy --json` from `from` with `args`, asserting success; the
    /// document of the one destination.
    pub fn copy(&self, from: &str, args: &[&str]) -> Value {
        let v = self.cairn(from).arg("copy").args(args).json();
        let copies = v["copies"].as_array().unwrap_or_else(|| panic!("no copies: {v:#}"));
        assert_eq!(copies.len(), 1, "{v:#}");
        assert_eq!(copies[0]["ok"], Value::Bool(true), "{v:#}");
        copies[0].clone()
    }

    pub fn snapshots(&self, repo: &str) -> Vec<Value> {
        match self.cairn(repo).arg("snapshots").json() {
            Value::Array(v) => v,
            other => panic!("snapshots --json is not a list: {other}"),
        }
    }

    /// `check` (and `--read-data`) of `repo` passes with no error.
    pub fn assert_check(&self, repo: &str, read_data: bool, context: &str) {
        let mut c = self.cairn(repo);
        c.arg("check");
        if read_data {
            c.arg("--read-data");
        }
        let r = c.arg("--json").run();
        assert_no_panic(&r);
        let v: Value = serde_json::from_slice(&r.stdout)
            .unwrap_or_else(|e| panic!("{context}: check of {repo} printed no JSON ({e})\n{r}"));
        assert_eq!(v["report"]["errors"], serde_json::json!([]), "{context}: {v:#}");
        assert_eq!(v["ok"], Value::Bool(true), "{context}: {v:#}");
        assert_eq!(r.code(), Some(0), "{context}\n{r}");
    }

    /// Restores snapshot `id` of `repo` and asserts it equals `expected`
    /// (the manifest of `source` when it was backed up).
    pub fn assert_restores(&self, repo: &str, id: &str, source: &Path, expected: &BTreeMap<PathBuf, Entry>) {
        let target = self.f.path(&format!("restore-{repo}-{}", &id[..12]));
        let _ = fs::remove_dir_all(&target);
        self.cairn(repo).args(["restore", id, "--target", &s(&target)]).json();
        let got = manifest(&under(&target, source));
        assert_same_tree(expected, &got);
        assert_eq!(&got, expected, "snapshot {id} of {repo} does not restore exactly");
        fs::remove_dir_all(&target).unwrap();
    }

    /// Every snapshot a copy report names restores from `repo` exactly as
    /// its source snapshot was backed up (`expected`: source id → manifest).
    pub fn assert_copies_restore(
        &self,
        repo: &str,
        report: &Value,
        source: &Path,
        expected: &BTreeMap<String, BTreeMap<PathBuf, Entry>>,
    ) {
        let snaps = self.snapshots(repo);
        for c in copied(report) {
            // The copy names its original (`snapshots --json` → copied_from).
            let snap = snaps
                .iter()
                .find(|s| s["id"] == Value::String(c.1.clone()))
                .unwrap_or_else(|| panic!("copy {} is not among the snapshots of {repo}: {snaps:#?}", c.1));
            assert_eq!(str_at(snap, "/copied_from/snapshot"), c.0, "{snap:#}");
            let want = expected
                .get(&c.0)
                .unwrap_or_else(|| panic!("copied {} is no snapshot of the test: {report:#}", c.0));
            self.assert_restores(repo, &c.1, source, want);
        }
    }
}

/// The (source, destination) snapshot ids of a copy report.
pub fn copied(report: &Value) -> Vec<(String, String)> {
    report["copied"]
        .as_array()
        .unwrap_or_else(|| panic!("no copied list: {report:#}"))
        .iter()
        .map(|c| (str_at(c, "/source").to_string(), str_at(c, "/destination").to_string()))
        .collect()
}

/// Asserts that a copy of `report` took `path` ("fast" or "rechunk").
pub fn assert_path(report: &Value, path: &str) {
    assert_eq!(str_at(report, "/path"), path, "{report:#}");
}

/// Asserts the second, unchanged copy: everything skipped, nothing read or written.
pub fn assert_nothing_copied(report: &Value, n: u64) {
    assert!(copied(report).is_empty(), "{report:#}");
    assert_eq!(u64_at(report, "/skipped"), n, "{report:#}");
    for field in ["bytes_read", "packs_read", "blobs_read", "blobs_written"] {
        assert_eq!(u64_at(report, &format!("/{field}")), 0, "{field}: {report:#}");
    }
}

/// A tree to back up: the sample tree and some pseudo-random data.
fn tree(root: &Path, seed: u64, size: usize) {
    sample_tree(root, false);
    write(&root.join("data/random.bin"), Rng::new(seed).bytes(size));
}

/// Total bytes of the files under `dir` (recursively).
pub fn bytes_under(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                bytes_under(&p)
            } else {
                fs::metadata(&p).unwrap().len()
            }
        })
        .sum()
}

/// The data pack files of a local repository.
fn data_pack_files(repo: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(repo.join("data")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|p| fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>())
        .collect();
    v.sort();
    v
}

#[test]
fn copy_local_fast_and_rechunk_with_other_passwords_restore_exactly_and_a_second_copy_copies_nothing() {
    let r = Repos::new(|f| vec![local(f, "primary"), local(f, "fast"), local(f, "slow")]);
    r.init("primary", &[]);
    r.init_like("fast", "primary", &[]);
    r.init("slow", &[]);
    let src = r.f.path("src");
    let mut expected = BTreeMap::new();
    tree(&src, 1, 2_000_000);
    let first = r.backup("primary", &[&src]);
    expected.insert(str_at(&first, "/snapshot_id").to_string(), manifest(&src));
    write(&src.join("hello.txt"), "changed\n");
    write(&src.join("data/more.bin"), Rng::new(2).bytes(700_000));
    let second = r.backup("primary", &[&src]);
    expected.insert(str_at(&second, "/snapshot_id").to_string(), manifest(&src));

    // A dry run says what it would copy and writes nothing.
    let dry = r.copy("primary", &["--to", "fast", "--dry-run"]);
    assert_eq!(dry["dry_run"], Value::Bool(true), "{dry:#}");
    assert_eq!(copied(&dry).len(), 2, "{dry:#}");
    assert!(r.snapshots("fast").is_empty(), "a dry run wrote a snapshot");
    assert!(
        data_pack_files(&r.f.root.join("fast")).is_empty(),
        "a dry run wrote packs"
    );

    // The fast path: blobs re-encrypted and re-packed, not re-chunked.
    let t = Instant::now();
    let fast = r.copy("primary", &["--to", "fast"]);
    eprintln!("fast copy: {:.2} s {fast:#}", t.elapsed().as_secs_f64());
    assert_path(&fast, "fast");
    assert_eq!(copied(&fast).len(), 2, "{fast:#}");
    assert_eq!(u64_at(&fast, "/skipped"), 0, "{fast:#}");
    assert!(u64_at(&fast, "/bytes_written") > 2_700_000, "{fast:#}");
    assert!(u64_at(&fast, "/blobs_written") > 0, "{fast:#}");
    let human = r.cairn("primary").args(["copy", "--to", "fast", "--dry-run"]).ok();
    assert!(
        human
            .stdout()
            .contains("fast: blobs re-encrypted and re-packed, not re-chunked"),
        "{human}"
    );

    // The re-chunk path, to a location (not a profile) with its password
    // from --to-password-file.
    let slow_location = r.locations["slow"].clone();
    let slow_pw = s(&r.passwords["slow"]);
    let rechunk = r.copy("primary", &["--to", &slow_location, "--to-password-file", &slow_pw]);
    assert_path(&rechunk, "rechunk");
    assert_eq!(copied(&rechunk).len(), 2, "{rechunk:#}");
    let human = r
        .cairn("primary")
        .args(["copy", "--to", &slow_location, "--dry-run"])
        .env("CAIRN_TO_PASSWORD_FILE", &slow_pw)
        .ok();
    assert!(human.stdout().contains("re-chunked for the destination"), "{human}");

    // The destinations alone: the source is moved away first.
    let moved = r.f.path("primary-away");
    fs::rename(r.f.root.join("primary"), &moved).unwrap();
    for (repo, report) in [("fast", &fast), ("slow", &rechunk)] {
        assert_eq!(r.snapshots(repo).len(), 2, "{repo}");
        r.assert_copies_restore(repo, report, &src, &expected);
        r.assert_check(repo, true, repo);
    }
    fs::rename(&moved, r.f.root.join("primary")).unwrap();

    // Run again: both skip everything and read no pack.
    assert_nothing_copied(&r.copy("primary", &["--to", "fast"]), 2);
    assert_nothing_copied(
        &r.copy("primary", &["--to", &slow_location, "--to-password-file", &slow_pw]),
        2,
    );
    assert_eq!(r.snapshots("fast").len(), 2);

    // A new snapshot: only it is copied, reading only its new data.
    write(&src.join("data/third.bin"), Rng::new(3).bytes(300_000));
    let third = r.backup("primary", &[&src]);
    let third_id = str_at(&third, "/snapshot_id").to_string();
    expected.insert(third_id.clone(), manifest(&src));
    let again = r.copy("primary", &["--to", "fast"]);
    assert_path(&again, "fast");
    assert_eq!(u64_at(&again, "/skipped"), 2, "{again:#}");
    assert_eq!(
        copied(&again).iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        vec![third_id]
    );
    assert!(
        u64_at(&again, "/bytes_read") < 1_000_000,
        "read more than the new data: {again:#}"
    );
    r.assert_copies_restore("fast", &again, &src, &expected);
}

#[test]
fn copy_takes_no_password_from_the_source_and_refuses_a_wrong_one() {
    let r = Repos::new(|f| vec![local(f, "primary"), local(f, "other")]);
    r.init("primary", &[]);
    r.init("other", &[]);
    let src = r.f.path("src");
    tree(&src, 4, 100_000);
    r.backup("primary", &[&src]);
    let other = r.locations["other"].clone();

    // A location without a password source: the source's own is not tried.
    let out = r
        .cairn("primary")
        .args(["copy", "--to", &other])
        .env("CAIRN_PASSWORD_FILE", &r.passwords["primary"])
        .fails();
    assert!(out.stderr().contains("--to-password-file"), "{out}");

    // A wrong destination password: exit 12, nothing written.
    let wrong = r.f.password_file_for("not the password");
    r.cairn("primary")
        .args(["copy", "--to", &other, "--to-password-file", &s(&wrong)])
        .code(12);
    assert!(r.snapshots("other").is_empty());

    // No destination at all: a clear error.
    let out = r.cairn("primary").arg("copy").fails();
    assert!(out.stderr().contains("--to"), "{out}");

    // --help explains the two paths and how to get the fast one.
    let help = r.f.bare().args(["copy", "--help"]).ok().stdout();
    for words in [
        "--chunker-params-from",
        "fast",
        "rechunk",
        "copy-to",
        "--to-password-file",
        "--wait",
    ] {
        assert!(help.contains(words), "copy --help lacks {words:?}:\n{help}");
    }
}

#[test]
fn copy_killed_part_way_then_run_again_completes_without_copying_stored_packs_again() {
    let r = Repos::new(|f| vec![local(f, "primary"), local(f, "offsite")]);
    r.init("primary", &["--pack-size", "1"]);
    r.init_like("offsite", "primary", &["--pack-size", "1"]);
    let src = r.f.path("src");
    for i in 0..24u64 {
        write(&src.join(format!("big-{i}.bin")), Rng::new(100 + i).bytes(2_000_000));
    }
    let snap = r.backup("primary", &[&src]);
    let expected = BTreeMap::from([(str_at(&snap, "/snapshot_id").to_string(), manifest(&src))]);
    let dst = r.f.root.join("offsite");

    // At 4 MiB/s the 48 MB copy takes about 12 s: killed once it has
    // stored twenty packs of about 32 (an index object names every 8, so
    // sixteen are indexed). The twelve packs still to go leave seconds for
    // this loop to notice, even on a loaded machine: with 12 of 16 it
    // once found the copy already finished.
    let mut child = r
        .cairn("primary")
        .args(["copy", "--to", "offsite", "--limit-upload", "4096"])
        .spawn();
    let start = Instant::now();
    while data_pack_files(&dst).len() < 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "the copy stored no packs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGKILL).unwrap();
    let _ = child.wait();
    let before_kill = data_pack_files(&dst);
    eprintln!("killed after {} data packs", before_kill.len());

    // In between: no snapshot, and the destination checks.
    assert!(r.snapshots("offsite").is_empty(), "a killed copy left a snapshot");
    r.assert_check("offsite", false, "after the kill");

    let second = r.copy("primary", &["--to", "offsite"]);
    assert_eq!(copied(&second).len(), 1, "{second:#}");
    // A whole copy writes about what the source's data packs hold (the
    // destination's own packs also keep those a killed run left unindexed).
    let whole = bytes_under(&r.f.root.join("primary").join("data"));
    let written = u64_at(&second, "/bytes_written");
    eprintln!(
        "run again wrote {written} bytes; the source's data packs hold {whole}, the destination's {}",
        bytes_under(&dst.join("data"))
    );
    assert!(
        written < whole * 3 / 4,
        "the second run wrote {written} bytes, about the whole copy ({whole}): {second:#}"
    );
    // The packs stored before the kill that an index names are kept, not
    // written again: at least one of them survives into the finished copy.
    let after = data_pack_files(&dst);
    assert!(
        before_kill.iter().filter(|p| after.contains(p)).count() > 0,
        "no pack stored before the kill was kept"
    );
    r.assert_copies_restore("offsite", &second, &src, &expected);
    r.assert_check("offsite", true, "after the second run");
}

#[test]
fn backup_with_copy_to_copies_the_new_snapshot_and_a_failed_copy_keeps_the_backup() {
    let r = Repos::new(|f| {
        let root = f.root.clone();
        let mut p = local(f, "primary");
        p.extra = "copy-to = [\"offsite\", \"cold\"]".into();
        let mut broken = local(f, "broken");
        broken.extra = "copy-to = [\"missing\"]".into();
        let mut missing = local(f, "missing");
        missing.location = s(&root.join("does-not-exist"));
        vec![p, local(f, "offsite"), local(f, "cold"), broken, missing]
    });
    r.init("primary", &[]);
    r.init_like("offsite", "primary", &[]);
    r.init("cold", &[]);
    let src = r.f.path("src");
    tree(&src, 5, 500_000);
    let b = r.backup("primary", &[&src]);
    let id = str_at(&b, "/snapshot_id").to_string();
    let copies = b["copies"].as_array().unwrap_or_else(|| panic!("no copies: {b:#}"));
    assert_eq!(copies.len(), 2, "{b:#}");
    assert_eq!(str_at(&copies[0], "/destination"), "offsite");
    assert_path(&copies[0], "fast");
    assert_eq!(str_at(&copies[1], "/destination"), "cold");
    assert_path(&copies[1], "rechunk");
    let expected = BTreeMap::from([(id.clone(), manifest(&src))]);
    for (repo, c) in [("offsite", &copies[0]), ("cold", &copies[1])] {
        assert_eq!(
            copied(c).iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
            vec![id.clone()]
        );
        r.assert_copies_restore(repo, c, &src, &expected);
    }

    // `cairn copy` without --to uses the same list: nothing left to copy.
    let v = r.cairn("primary").arg("copy").json();
    for c in v["copies"].as_array().expect("copies") {
        assert_nothing_copied(c, 1);
    }

    // A copy that fails: the exit code says so, the backup stays.
    r.init("broken", &[]);
    let run = r.cairn("broken").arg("backup").arg(&src).fails();
    assert!(run.stderr().contains("copy to missing failed"), "{run}");
    assert_eq!(r.snapshots("broken").len(), 1, "the backup was undone\n{run}");
}

#[test]
fn copy_of_a_source_with_a_damaged_pack_copies_the_intact_snapshot_and_names_the_damaged_one() {
    let r = Repos::new(|f| vec![local(f, "primary"), local(f, "offsite")]);
    r.init("primary", &[]);
    r.init_like("offsite", "primary", &[]);
    let src = r.f.path("src");
    tree(&src, 7, 500_000);
    let first = r.backup("primary", &[&src]);
    let first_id = str_at(&first, "/snapshot_id").to_string();
    let expected = BTreeMap::from([(first_id.clone(), manifest(&src))]);
    let before = data_pack_files(&r.f.root.join("primary"));
    write(&src.join("data/only-second.bin"), Rng::new(8).bytes(300_000));
    let second = r.backup("primary", &[&src]);
    let second_id = str_at(&second, "/snapshot_id").to_string();
    // The one data pack the second backup stored holds only its new file:
    // damage one byte of it.
    let new: Vec<PathBuf> = data_pack_files(&r.f.root.join("primary"))
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let mut bytes = fs::read(&new[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let mut perm = fs::metadata(&new[0]).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&new[0], perm).unwrap();
    fs::write(&new[0], bytes).unwrap();

    let run = r.cairn("primary").args(["copy", "--to", "offsite", "--json"]).run();
    assert_no_panic(&run);
    assert_eq!(run.code(), Some(1), "the damage's exit code\n{run}");
    let v: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{run}"));
    let c = &v["copies"][0];
    assert_eq!(c["ok"], Value::Bool(false), "{v:#}");
    assert_eq!(
        copied(c).iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        vec![first_id.clone()],
        "{v:#}"
    );
    let failed = c["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("no failed list: {v:#}"));
    assert_eq!(failed.len(), 1, "{v:#}");
    assert_eq!(str_at(&failed[0], "/source"), second_id, "{v:#}");
    assert!(str_at(&failed[0], "/reason").contains("only-second.bin"), "{v:#}");
    assert!(
        run.stderr().contains(&second_id[..8]),
        "the damaged snapshot is named\n{run}"
    );

    // The destination holds the intact snapshot only, and it restores.
    assert_eq!(r.snapshots("offsite").len(), 1);
    r.assert_copies_restore("offsite", c, &src, &expected);
    r.assert_check("offsite", true, "offsite");
}
