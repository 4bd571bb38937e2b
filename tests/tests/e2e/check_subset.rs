//! `check --read-data-subset` (rotating, random and sized shares) and
//! `check SNAPSHOT...` (only what those snapshots reference).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// A repository of 1 MiB packs holding `mib` MiB of random data in `dir`.
fn with_packs(f: &Fixture, dir: &str, mib: usize, seed: u64) -> PathBuf {
    let src = f.path(dir);
    let mut rng = Rng::new(seed);
    for i in 0..mib {
        write(&src.join(format!("f{i}.bin")), rng.bytes(1 << 20));
    }
    src
}

fn data_packs(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("data"))
}

fn flip_a_byte(pack: &Path) -> String {
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    chmod(pack, 0o644);
    fs::write(pack, &bytes).unwrap();
    pack.file_name().unwrap().to_string_lossy().into_owned()
}

fn report(j: &Value, key: &str) -> u64 {
    u64_at(j, &format!("/report/{key}"))
}

#[test]
fn rotating_shares_read_every_pack_once_and_the_damaged_share_fails() {
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    let src = with_packs(&f, "src", 8, clock_seed());
    f.backup(&[&s(&src)]);
    let all = f.cairn().args(["check", "--read-data"]).json();
    let packs = report(&all, "packs");
    assert!(packs >= 4, "the test needs several packs: {all:#}");
    assert_eq!(report(&all, "packs_read"), packs, "{all:#}");

    // The three shares of 1/3, 2/3, 3/3 are disjoint and read everything.
    let mut read = 0;
    let mut bytes = 0;
    for n in 1..=3 {
        let j = f
            .cairn()
            .args(["check", "--read-data-subset", &format!("{n}/3")])
            .json();
        assert_eq!(j["ok"], Value::Bool(true), "{j:#}");
        assert_eq!(str_at(&j, "/report/subset"), format!("{n}/3"));
        let again = f
            .cairn()
            .args(["check", "--read-data-subset", &format!("{n}/3")])
            .json();
        assert_eq!(
            report(&j, "bytes_read"),
            report(&again, "bytes_read"),
            "a share is stable"
        );
        read += report(&j, "packs_read");
        bytes += report(&j, "bytes_read");
    }
    assert_eq!(read, packs);
    assert_eq!(bytes, report(&all, "bytes_read"));

    // Damage one pack: exactly one share of three sees it, and names it.
    let name = flip_a_byte(&data_packs(&f.repo)[0]);
    let mut failed = Vec::new();
    for n in 1..=3 {
        let r = f.cairn().args(["check", "--read-data-subset", &format!("{n}/3")]).run();
        assert_no_panic(&r);
        match r.code() {
            Some(0) => assert!(!r.stderr().contains(&name), "{r}"),
            Some(1) => {
                assert!(r.stderr().contains(&name), "the damaged pack is named\n{r}");
                failed.push(n);
            }
            other => panic!("exit {other:?}\n{r}"),
        }
    }
    assert_eq!(failed.len(), 1, "one share holds the pack: {failed:?}");
}

#[test]
fn random_and_sized_shares_read_what_was_asked() {
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    let src = with_packs(&f, "src", 6, clock_seed());
    f.backup(&[&s(&src)]);
    let packs = report(&f.cairn().arg("check").json(), "packs");

    let j = f.cairn().args(["check", "--read-data-subset", "100%"]).json();
    assert_eq!(report(&j, "packs_read"), packs, "{j:#}");
    let j = f.cairn().args(["check", "--read-data-subset", "50%"]).json();
    assert_eq!(report(&j, "packs_read"), packs.div_ceil(2), "{j:#}");
    // Any one pack of these is at least 512 KiB: 1 KiB needs exactly one.
    let j = f.cairn().args(["check", "--read-data-subset", "1K"]).json();
    assert_eq!(report(&j, "packs_read"), 1, "{j:#}");
    assert!(report(&j, "bytes_read") > 0);

    for bad in ["0/3", "4/3", "0%", "7X"] {
        let r = f.cairn().args(["check", "--read-data-subset", bad]).fails();
        assert_eq!(r.code(), Some(2), "{bad}: a usage error\n{r}");
        assert!(r.stderr().contains("subset"), "{bad}: says what is wrong\n{r}");
    }
}

#[test]
fn checking_one_snapshot_reads_only_what_it_references() {
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    let a = with_packs(&f, "a", 2, clock_seed());
    let a_id = str_at(&f.backup(&[&s(&a)]), "/snapshot_id").to_string();
    let before: Vec<PathBuf> = data_packs(&f.repo);
    let b = with_packs(&f, "b", 3, clock_seed() ^ 0x5555);
    let b_id = str_at(&f.backup(&[&s(&b)]), "/snapshot_id").to_string();
    let only_b: Vec<PathBuf> = data_packs(&f.repo)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!only_b.is_empty());

    let whole = f.cairn().args(["check", "--read-data"]).json();
    let ja = f.cairn().args(["check", "--read-data", &a_id]).json();
    assert_eq!(ja["ok"], Value::Bool(true), "{ja:#}");
    assert_eq!(report(&ja, "snapshots"), 1, "{ja:#}");
    assert!(
        report(&ja, "packs_read") < report(&whole, "packs_read"),
        "only a's packs are read: {ja:#}"
    );

    // Damage in a pack only b uses: checking a still passes, b fails.
    let name = flip_a_byte(&only_b[0]);
    let ja = f.cairn().args(["check", "--read-data", &a_id]).json();
    assert_eq!(ja["ok"], Value::Bool(true), "{ja:#}");
    let r = f.cairn().args(["check", "--read-data", &b_id]).fails();
    assert_eq!(r.code(), Some(1), "{r}");
    assert!(r.stderr().contains(&name), "{r}");
    assert!(r.stderr().contains(&s(&b)), "the file in b that needs it is named\n{r}");
    let r = f
        .cairn()
        .args(["check", "--read-data", "--host", "no-such-host"])
        .fails();
    assert!(r.stderr().contains("no snapshot"), "{r}");
}
