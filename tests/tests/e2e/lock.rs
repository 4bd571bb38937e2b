//! `unlock`: which maintenance locks it removes and which it leaves, with
//! and without `--remove-all`, and its JSON. The locks are made through the
//! engine: a live one held by this test process, and locks of a process
//! that has exited (on this host, so visibly gone).

use std::sync::Arc;

use cairn_engine::{acquire, write_lock, LocalBackend, Lock, LockError, LockOptions, MaintenanceLock, Repository};

use crate::util::*;

fn open(f: &Fixture) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&f.repo)), PASSWORD.as_bytes()).unwrap()
}

/// A live lock: this test process holds it while the test runs.
fn hold(repo: &Repository) -> MaintenanceLock {
    acquire(repo, "prune", &LockOptions::default()).unwrap()
}

/// A lock of a process of this host that has exited.
fn dead_lock(repo: &Repository, host: &str) -> String {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let lock = Lock {
        host: host.into(),
        pid,
        user: "gone".into(),
        operation: "prune".into(),
        created_ns: now,
        refreshed_ns: now,
    };
    write_lock(repo, &lock).unwrap()
}

/// The names in the repository's `locks/`, sorted.
fn lock_files(f: &Fixture) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(f.repo.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn unlock_removes_a_dead_process_lock_and_keeps_the_live_one() {
    let f = Fixture::init();
    let repo = open(&f);
    let live = hold(&repo);
    let dead = dead_lock(&repo, &live.lock().host);
    let mut both = vec![live.name(), dead.clone()];
    both.sort();
    assert_eq!(lock_files(&f), both);

    let run = f.cairn().arg("unlock").ok();
    let out = run.stdout();
    assert!(out.contains(&format!("removed lock {}", &dead[..8])), "{run}");
    assert!(out.contains("no longer runs on this host"), "{run}");
    assert!(out.contains(&format!("kept lock {}", &live.name()[..8])), "{run}");
    assert!(out.contains(&format!("pid {}", std::process::id())), "{run}");
    assert!(out.contains("--remove-all"), "{run}");
    assert_eq!(lock_files(&f), [live.name()]);
    // The holder still holds it.
    live.ensure_held().unwrap();
    live.release().unwrap();
    assert!(lock_files(&f).is_empty());
    let run = f.cairn().arg("unlock").ok();
    assert!(run.stdout().contains("holds no locks"), "{run}");
}

#[test]
fn unlock_remove_all_removes_a_live_lock_and_its_holder_stops() {
    let f = Fixture::init();
    let repo = open(&f);
    let live = hold(&repo);
    let run = f.cairn().args(["unlock", "--remove-all"]).ok();
    assert!(
        run.stdout().contains(&format!("removed lock {}", &live.name()[..8])),
        "{run}"
    );
    assert!(lock_files(&f).is_empty());
    let err = live.ensure_held().unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err:?}");
}

#[test]
fn unlock_json_lists_removed_and_kept_locks() {
    let f = Fixture::init();
    let repo = open(&f);
    let live = hold(&repo);
    let dead = dead_lock(&repo, &live.lock().host);
    let v = f.cairn().arg("unlock").json();
    let removed = v["removed"].as_array().unwrap();
    let kept = v["kept"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{v:#}");
    assert_eq!(kept.len(), 1, "{v:#}");
    assert_eq!(str_at(&removed[0], "/name"), dead);
    assert_eq!(removed[0]["stale"], true);
    assert_eq!(str_at(&removed[0], "/lock/user"), "gone");
    assert!(removed[0]["damage"].is_null());
    assert_eq!(str_at(&kept[0], "/name"), live.name());
    assert_eq!(kept[0]["stale"], false);
    assert_eq!(u64_at(&kept[0], "/lock/pid"), u64::from(std::process::id()));
    assert_eq!(str_at(&kept[0], "/lock/operation"), "prune");
    assert_eq!(
        str_at(&kept[0], "/lock/created"),
        cairn_engine::format_ns(live.lock().created_ns)
    );
    assert!(str_at(&kept[0], "/reason").contains("runs"), "{v:#}");
}

#[test]
fn unlock_keeps_an_unreadable_lock_unless_remove_all() {
    let f = Fixture::init();
    let bytes = b"not a lock object";
    let name = blake3::hash(bytes).to_hex().to_string();
    write(&f.repo.join("locks").join(&name), bytes);
    let v = f.cairn().arg("unlock").json();
    assert_eq!(str_at(&v, "/kept/0/name"), name, "{v:#}");
    assert!(v["kept"][0]["lock"].is_null());
    assert!(!str_at(&v, "/kept/0/damage").is_empty(), "{v:#}");
    f.cairn().args(["unlock", "--remove-all"]).ok();
    assert!(lock_files(&f).is_empty());
}

#[test]
fn unlock_help_explains_stale_locks() {
    let f = Fixture::empty();
    let run = f.bare().args(["unlock", "--help"]).ok();
    // Help is wrapped to the terminal's width: compare words, not lines.
    let out = run.stdout().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.contains("--remove-all"), "{run}");
    assert!(out.contains("not refreshed for 30 minutes"), "{run}");
    assert!(out.contains("never take or wait for it"), "{run}");
}
