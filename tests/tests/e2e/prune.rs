//! `prune` with the real binary: what it frees, the two-phase delete, its
//! plan and JSON, a prune killed at each step, and backups running beside it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use cairn_test_support::tree::{assert_same_tree, manifest, under};

use crate::util::*;

/// Bytes of every file under `p`.
fn du(p: &Path) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    n
}

/// A repository with 1 MiB packs and three nights of `data/`: `gone.bin`
/// only in the first two, `kept.bin` in all, `a-half/` (backed up alone first, so its two files share one pack) a pack shared by a
/// kept and a removed file. Returns the fixture and the id of the last
/// snapshot; the earlier ones are forgotten.
fn three_nights() -> (Fixture, String) {
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    let data = f.path("data");
    write(&data.join("kept.bin"), Rng::new(1).bytes(1_500_000));
    write(&data.join("gone.bin"), Rng::new(2).bytes(2_500_000));
    write(&data.join("a-half/a.bin"), Rng::new(3).bytes(300_000));
    write(&data.join("a-half/b.bin"), Rng::new(4).bytes(300_000));
    // a-half/ alone first: its two files (600 kB) go into one pack whatever
    // order the parallel sealers finish in, which the later nights reuse.
    let halves = f.backup(&[&s(&data.join("a-half"))]);
    let first = f.backup(&[&s(&data)]);
    write(&data.join("note.txt"), "second night\n");
    let second = f.backup(&[&s(&data)]);
    fs::remove_file(data.join("gone.bin")).unwrap();
    fs::remove_file(data.join("a-half/b.bin")).unwrap();
    let third = f.backup(&[&s(&data)]);
    f.cairn()
        .args([
            "forget",
            str_at(&halves, "/snapshot_id"),
            str_at(&first, "/snapshot_id"),
            str_at(&second, "/snapshot_id"),
        ])
        .ok();
    (f, str_at(&third, "/snapshot_id").to_string())
}

fn assert_restores(f: &Fixture, id: &str) {
    let target = f.path(&format!("restored-{}", &id[..8]));
    let _ = fs::remove_dir_all(&target);
    f.cairn().args(["restore", id, "--target", &s(&target)]).ok();
    let data = f.path("data");
    assert_same_tree(&manifest(&data), &manifest(&under(&target, &data)));
    fs::remove_dir_all(&target).unwrap();
}

fn assert_checks(f: &Fixture) {
    let r = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(r["report"]["errors"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
}

#[test]
fn prune_frees_what_only_forgotten_snapshots_held_after_the_grace_period() {
    let (f, last) = three_nights();
    let before = du(&f.repo);

    // Packs younger than the grace period are left alone (a running backup's).
    let young = f.cairn().args(["prune", "--dry-run"]).json();
    assert_eq!(u64_at(&young, "/plan/delete/packs"), 0, "{young:#}");
    assert!(u64_at(&young, "/plan/young/packs") >= 2, "{young:#}");
    std::thread::sleep(Duration::from_millis(1100));

    let dry = f.cairn().args(["prune", "--dry-run", "--grace-period", "1s"]).json();
    assert_eq!(dry["dry_run"], true);
    assert!(u64_at(&dry, "/plan/delete/packs") >= 2, "{dry:#}");
    assert_eq!(du(&f.repo), before, "a dry run changes nothing");
    let human = f
        .cairn()
        .args(["prune", "--dry-run", "--grace-period", "1s"])
        .ok()
        .stdout();
    assert!(human.contains("delete") && human.contains("dry run"), "{human}");

    let first = f.cairn().args(["prune", "--grace-period", "1s"]).json();
    assert!(first["record"].is_string(), "{first:#}");
    assert_eq!(u64_at(&first, "/removed/packs"), 0);
    let recorded = u64_at(&first, "/recorded/bytes");
    assert!(recorded >= 2_500_000, "gone.bin's packs are recorded: {first:#}");
    assert_checks(&f);
    assert_restores(&f, &last);

    std::thread::sleep(Duration::from_millis(1100));
    let second = f.cairn().args(["prune"]).json();
    assert_eq!(u64_at(&second, "/due/records_due"), 1, "{second:#}");
    assert!(u64_at(&second, "/removed/bytes") >= 2_500_000, "{second:#}");
    let after = du(&f.repo);
    assert!(
        before - after >= 2_500_000,
        "the repository shrank by {} bytes, less than gone.bin's 2500000",
        before - after
    );
    assert_checks(&f);
    assert_restores(&f, &last);
}

#[test]
fn forget_prune_with_instant_delete_frees_at_once() {
    let (f, last) = three_nights();
    let before = du(&f.repo);
    let both = f
        .cairn()
        .args([
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--instant-delete",
            "--max-unused",
            "0%",
        ])
        .json();
    // One JSON document: forget's groups (restic's shape) and prune's report.
    assert_eq!(both["forget"].as_array().map(Vec::len), Some(1), "{both:#}");
    assert!(u64_at(&both, "/prune/removed/bytes") >= 2_800_000, "{both:#}");
    assert!(before - du(&f.repo) >= 2_800_000, "gone.bin and a-half/b.bin are gone");
    assert_eq!(fs::read_dir(f.repo.join("deletions")).unwrap().count(), 0);
    assert_checks(&f);
    assert_restores(&f, &last);
}

/// Kills a prune (SIGKILL, from inside, at a named point) and proves the
/// repository is whole and the next prune finishes the job.
fn killed_at(point: &str, two_phase: bool) {
    let (f, last) = three_nights();
    let before = du(&f.repo);
    let mut args = vec!["prune", "--max-unused", "0%"];
    if two_phase {
        std::thread::sleep(Duration::from_millis(1100));
        f.cairn()
            .args(["prune", "--max-unused", "0%", "--grace-period", "1s"])
            .ok();
        std::thread::sleep(Duration::from_millis(1100));
    } else {
        args.push("--instant-delete");
    }
    let r = f.cairn().args(&args).env("CAIRN_FAILPOINT", point).run();
    assert_eq!(r.code(), None, "killed at {point}, so no exit code\n{r}");
    assert_checks(&f);
    assert_restores(&f, &last);

    f.cairn().args(["prune", "--max-unused", "0%", "--instant-delete"]).ok();
    assert_checks(&f);
    assert_restores(&f, &last);
    let freed = before - du(&f.repo);
    assert!(
        freed >= 2_800_000,
        "after {point}: the next prune finished the job ({freed} freed)"
    );
    assert_eq!(fs::read_dir(f.repo.join("deletions")).unwrap().count(), 0);
}

#[test]
fn a_prune_killed_while_repacking_loses_nothing() {
    killed_at("prune-repacking", false);
}

#[test]
fn a_prune_killed_after_repacking_loses_nothing() {
    killed_at("prune-after-repack", false);
}

#[test]
fn a_prune_killed_after_writing_the_new_index_loses_nothing() {
    killed_at("prune-after-index", false);
}

#[test]
fn a_prune_killed_after_recording_deletions_loses_nothing() {
    killed_at("prune-after-record", false);
}

#[test]
fn a_prune_killed_while_carrying_out_a_record_loses_nothing() {
    killed_at("prune-after-executed-record", true);
}

#[test]
fn a_prune_killed_before_removing_the_old_index_loses_nothing() {
    killed_at("prune-before-index-removal", true);
}

#[test]
fn backups_running_beside_prunes_stay_restorable() {
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    // Yesterday's data, forgotten: the packs prune records are exactly
    // those the running backups would like to deduplicate against.
    let shared = Rng::new(10).bytes(6_000_000);
    let dirs: Vec<_> = (0..2).map(|i| f.path(&format!("host{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        write(&d.join("shared.bin"), &shared);
        write(&d.join("own.bin"), Rng::new(20 + i as u64).bytes(8_000_000));
    }
    let old = f.backup(&[&s(&dirs[0])]);
    f.cairn().args(["forget", str_at(&old, "/snapshot_id")]).ok();
    std::thread::sleep(Duration::from_millis(1100));

    let backups: Vec<_> = dirs
        .iter()
        .map(|d| f.cairn().args(["backup", &s(d), "--host", "beside"]).spawn())
        .collect();
    for _ in 0..3 {
        f.cairn().args(["prune", "--grace-period", "1s"]).ok();
    }
    for b in backups {
        let out = b.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_checks(&f);
    let check_all = |f: &Fixture| {
        for snap in f.snapshots() {
            let id = str_at(&snap, "/id");
            let path = strings_at(&snap, "/paths")[0].clone();
            let target = f.path("r");
            let _ = fs::remove_dir_all(&target);
            f.cairn().args(["restore", id, "--target", &s(&target)]).ok();
            assert_same_tree(
                &manifest(Path::new(&path)),
                &manifest(&under(&target, Path::new(&path))),
            );
        }
    };
    check_all(&f);
    assert_eq!(f.snapshots().len(), 2);

    // After the grace period, the next prune carries out every record.
    std::thread::sleep(Duration::from_millis(1100));
    let last = f.cairn().args(["prune"]).json();
    assert!(u64_at(&last, "/due/records_due") >= 1, "{last:#}");
    assert_checks(&f);
    check_all(&f);
}

fn open_repo(f: &Fixture) -> cairn_engine::Repository {
    let backend = std::sync::Arc::new(cairn_engine::LocalBackend::new(&f.repo));
    cairn_engine::Repository::open(backend, PASSWORD.as_bytes()).unwrap()
}

#[test]
fn a_held_lock_blocks_prune_with_exit_11_and_never_a_backup() {
    let (f, last) = three_nights();
    let repo = open_repo(&f);
    let held = cairn_engine::acquire(&repo, "prune", &cairn_engine::LockOptions::default()).unwrap();
    let r = f.cairn().args(["prune"]).code(11);
    let holder = held.lock();
    assert!(
        r.stderr().contains(&holder.host) && r.stderr().contains(&format!("pid {}", holder.pid)),
        "the message names the holder\n{r}"
    );
    // Backups, restores and checks take no lock.
    write(&f.path("data/while-locked.txt"), "written while prune holds the lock\n");
    let during = f.backup(&[&s(&f.path("data"))]);
    f.cairn().args(["check"]).ok();
    assert_restores(&f, str_at(&during, "/snapshot_id"));
    assert_ne!(str_at(&during, "/snapshot_id"), last);
    held.release().unwrap();
    f.cairn().args(["prune"]).ok();
}

#[test]
fn a_lock_of_a_dead_process_is_broken_by_the_next_prune() {
    let (f, _) = three_nights();
    let repo = open_repo(&f);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let host = cairn_engine::acquire(&repo, "probe", &cairn_engine::LockOptions::default())
        .unwrap()
        .lock()
        .host;
    let now = cairn_engine::now_ns();
    let dead = cairn_engine::Lock {
        host,
        pid,
        user: "gone".into(),
        operation: "prune".into(),
        created_ns: now,
        refreshed_ns: now,
    };
    cairn_engine::write_lock(&repo, &dead).unwrap();
    f.cairn().args(["prune", "--instant-delete"]).ok();
    assert_eq!(
        fs::read_dir(f.repo.join("locks")).unwrap().count(),
        0,
        "broken, and ours released"
    );
}
