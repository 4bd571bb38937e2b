//! The lock on the memory backend: taking, holding off, breaking stale
//! locks (by age, by a dead process), the race rule, refreshes, losing the
//! lock, and `unlock`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::backend::memory::MemoryBackend;
use crate::backend::{forward, Backend};
use crate::error::{Error, ErrorKind};
use crate::id::ObjectId;
use crate::repository::InitOptions;
use crate::testing::{memory_repo, CHEAP_KDF};

const HOUR_NS: i64 = 3_600_000_000_000;

fn quick() -> LockOptions {
    LockOptions {
        retry_for: Duration::ZERO,
        stale_after: Duration::from_secs(60),
        refresh_every: Duration::from_secs(3600),
    }
}

fn names(repo: &Repository) -> Vec<String> {
    repo.backend()
        .list(ObjectKind::Lock)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

fn this_host() -> String {
    crate::repository::host_and_user().0
}

/// A lock as another process would have written it.
fn other(host: &str, pid: u32, created_ns: i64, refreshed_ns: i64) -> Lock {
    Lock {
        host: host.into(),
        pid,
        user: "someone".into(),
        operation: "prune".into(),
        created_ns,
        refreshed_ns,
    }
}

/// The pid of a process that ran and is gone (reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A content-named object in `locks/` that does not decrypt.
fn write_damaged(repo: &Repository) -> String {
    let bytes = b"not a sealed lock object".to_vec();
    let name = ObjectId::of_bytes(&bytes).to_hex();
    repo.backend().write(ObjectKind::Lock, &name, &bytes).unwrap();
    name
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn acquire_writes_a_lock_of_this_process_and_release_removes_it() {
    let repo = memory_repo();
    let held = acquire(&repo, "prune", &quick()).unwrap();
    let all = list_locks(&repo).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, held.name());
    let lock = all[0].lock.as_ref().unwrap();
    assert_eq!(lock.pid, std::process::id());
    assert_eq!(lock.host, this_host());
    assert_eq!(lock.operation, "prune");
    assert_eq!(lock.created_ns, lock.refreshed_ns);
    assert!(!all[0].stale, "{}", all[0].reason);
    held.ensure_held().unwrap();
    held.release().unwrap();
    assert!(names(&repo).is_empty());
}

#[test]
fn dropping_the_lock_removes_it() {
    let repo = memory_repo();
    {
        let _held = acquire(&repo, "prune", &quick()).unwrap();
        assert_eq!(names(&repo).len(), 1);
    }
    assert!(names(&repo).is_empty());
}

#[test]
fn a_live_lock_holds_off_a_second_acquire_and_names_its_holder() {
    let repo = memory_repo();
    let first = acquire(&repo, "prune", &quick()).unwrap();
    let err = acquire(&repo, "repair", &quick()).unwrap_err();
    let LockError::Held { holder, since } = &err else {
        panic!("expected Held, got {err:?}");
    };
    assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
    assert!(holder.contains("(prune)"), "{holder}");
    assert_eq!(since, &format_ns(first.lock().created_ns));
    let msg = err.to_string();
    assert!(msg.contains("cairn unlock"), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert_eq!(Error::from(err).kind(), ErrorKind::Locked);
    // The loser wrote nothing (it saw the lock before writing its own).
    assert_eq!(names(&repo), [first.name()]);
}

#[test]
fn acquire_waits_for_a_lock_released_within_retry_for() {
    let repo = memory_repo();
    let first = acquire(&repo, "prune", &quick()).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        first.release().unwrap();
    });
    let started = Instant::now();
    let opts = LockOptions {
        retry_for: Duration::from_secs(20),
        ..quick()
    };
    let second = acquire(&repo, "prune", &opts).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    releaser.join().unwrap();
    assert_eq!(names(&repo), [second.name()]);
}

#[test]
fn a_lock_not_refreshed_within_stale_after_is_removed() {
    let repo = memory_repo();
    let now = now_ns();
    let old = write_lock(&repo, &other("elsewhere", 1, now - 3 * HOUR_NS, now - 2 * HOUR_NS)).unwrap();
    let s = &list_locks(&repo).unwrap()[0];
    assert!(s.stale && s.reason.contains("not refreshed since"), "{}", s.reason);
    let held = acquire(&repo, "prune", &quick()).unwrap();
    assert_eq!(names(&repo), [held.name()]);
    assert_ne!(held.name(), old);
}

#[test]
fn a_lock_of_a_dead_process_is_stale_on_its_own_host_only() {
    let repo = memory_repo();
    let now = now_ns();
    let pid = dead_pid();
    let here = write_lock(&repo, &other(&this_host(), pid, now, now)).unwrap();
    let s = list_locks(&repo).unwrap().remove(0);
    assert!(s.stale, "{}", s.reason);
    assert!(
        s.reason.contains(&format!("process {pid} no longer runs")),
        "{}",
        s.reason
    );
    let held = acquire(&repo, "prune", &quick()).unwrap();
    assert!(!names(&repo).contains(&here));
    held.release().unwrap();

    // The same pid on another host says nothing about that host's process.
    write_lock(&repo, &other("another-host", pid, now, now)).unwrap();
    let err = acquire(&repo, "prune", &quick()).unwrap_err();
    assert!(
        matches!(&err, LockError::Held { holder, .. } if holder.contains("another-host")),
        "{err:?}"
    );
}

#[test]
fn an_unreadable_lock_counts_as_held() {
    let repo = memory_repo();
    let name = write_damaged(&repo);
    let s = list_locks(&repo).unwrap().remove(0);
    assert!(s.lock.is_err() && !s.stale, "{s:?}");
    let err = acquire(&repo, "prune", &quick()).unwrap_err();
    assert!(
        matches!(&err, LockError::Held { holder, since } if holder.contains(&name) && since == "an unknown time"),
        "{err:?}"
    );
}

#[test]
fn of_two_live_locks_the_older_wins_then_the_smaller_name() {
    let status = |name: &str, created_ns: i64| LockStatus {
        name: name.into(),
        lock: Ok(other("h", 1, created_ns, created_ns)),
        stale: false,
        reason: String::new(),
        removed: false,
    };
    let won = oldest([status("aa", 20), status("bb", 10), status("cc", 30)]).unwrap();
    assert_eq!(won.name, "bb");
    let won = oldest([status("bb", 10), status("ab", 10)]).unwrap();
    assert_eq!(won.name, "ab");
    let damaged = LockStatus {
        lock: Err("damaged".into()),
        ..status("ff", 0)
    };
    assert_eq!(oldest([status("00", i64::MIN + 1), damaged]).unwrap().name, "ff");
}

/// A memory backend that, at the first write into `locks/`, first stores
/// `sneak` there: another process writing its lock between our listing and
/// our write.
#[derive(Debug)]
struct Racing {
    inner: MemoryBackend,
    sneak: Mutex<Option<(String, Vec<u8>)>>,
}

impl Backend for Racing {
    forward!(inner: transfers, location, create, list, read, read_into, read_range, remove, stat, archive_state, request_retrieval, remove_temporaries, extend_retention);

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
        self.write(kind, name, data)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        if kind == ObjectKind::Lock {
            if let Some((n, bytes)) = self.sneak.lock().unwrap().take() {
                self.inner.write(kind, &n, &bytes)?;
            }
        }
        self.inner.write(kind, name, data)
    }
}

fn racing_repo() -> (Repository, Arc<Racing>) {
    let backend = Arc::new(Racing {
        inner: MemoryBackend::new(),
        sneak: Mutex::new(None),
    });
    let opts = InitOptions {
        kdf: CHEAP_KDF,
        ..Default::default()
    };
    (Repository::init(backend.clone(), b"pw", opts).unwrap(), backend)
}

fn sneak_in(repo: &Repository, backend: &Racing, lock: &Lock) -> String {
    let bytes = repo.seal_file(lock).unwrap();
    let name = ObjectId::of_bytes(&bytes).to_hex();
    *backend.sneak.lock().unwrap() = Some((name.clone(), bytes));
    name
}

#[test]
fn a_racing_lock_created_earlier_wins_and_ours_is_removed() {
    let (repo, backend) = racing_repo();
    let now = now_ns();
    // Created a second before ours, live, on another host.
    let theirs = sneak_in(&repo, &backend, &other("rival", 7, now - 1_000_000_000, now));
    let err = acquire(&repo, "prune", &quick()).unwrap_err();
    assert!(
        matches!(&err, LockError::Held { holder, .. } if holder.contains("rival")),
        "{err:?}"
    );
    assert_eq!(names(&repo), [theirs], "ours is removed, theirs stays");
}

#[test]
fn a_racing_lock_created_later_loses() {
    let (repo, backend) = racing_repo();
    let later = now_ns() + HOUR_NS;
    let theirs = sneak_in(&repo, &backend, &other("rival", 7, later, later));
    let held = acquire(&repo, "prune", &quick()).unwrap();
    // Theirs stays for its own process to remove when it lists again.
    let mut expect = vec![held.name(), theirs];
    expect.sort();
    assert_eq!(names(&repo), expect);
    held.ensure_held().unwrap();
}

#[test]
fn a_refresh_replaces_the_object_and_keeps_created_ns() {
    let repo = memory_repo();
    let opts = LockOptions {
        refresh_every: Duration::from_millis(50),
        ..quick()
    };
    let held = acquire(&repo, "prune", &opts).unwrap();
    let (first, before) = (held.name(), held.lock());
    wait_until("the lock is refreshed", || held.name() != first);
    let now = held.lock();
    assert_eq!(now.created_ns, before.created_ns);
    assert!(now.refreshed_ns > before.refreshed_ns);
    // Exactly one object: the previous one was removed.
    let listed = names(&repo);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(!listed.contains(&first));
    held.ensure_held().unwrap();
}

#[test]
fn ensure_held_fails_once_unlock_remove_all_took_the_lock_away() {
    let repo = memory_repo();
    let opts = LockOptions {
        refresh_every: Duration::from_millis(20),
        ..quick()
    };
    let held = acquire(&repo, "prune", &opts).unwrap();
    let removed = unlock(&repo, true, &quick()).unwrap();
    assert_eq!(removed.len(), 1);
    assert!(removed[0].removed);
    let err = held.ensure_held().unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Locked);
    // The refresh thread must not write the lock again.
    std::thread::sleep(Duration::from_millis(200));
    assert!(names(&repo).is_empty(), "{:?}", names(&repo));
    assert!(matches!(held.release(), Err(LockError::Lost { .. })));
}

#[test]
fn ensure_held_fails_when_refreshes_are_overdue() {
    let repo = memory_repo();
    let opts = LockOptions {
        stale_after: Duration::from_millis(100),
        refresh_every: Duration::from_secs(3600),
        ..quick()
    };
    let held = acquire(&repo, "prune", &opts).unwrap();
    held.ensure_held().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let err = held.ensure_held().unwrap_err();
    assert!(
        matches!(&err, LockError::Lost { why, .. } if why.contains("not refreshed")),
        "{err:?}"
    );
}

#[test]
fn unlock_removes_stale_locks_and_remove_all_removes_the_rest() {
    let repo = memory_repo();
    let now = now_ns();
    let live = write_lock(&repo, &other("elsewhere", 1, now, now)).unwrap();
    let stale = write_lock(&repo, &other("elsewhere", 2, now - 2 * HOUR_NS, now - 2 * HOUR_NS)).unwrap();
    let damaged = write_damaged(&repo);

    let report = unlock(&repo, false, &quick()).unwrap();
    let removed: Vec<&str> = report.iter().filter(|s| s.removed).map(|s| s.name.as_str()).collect();
    assert_eq!(removed, [stale.as_str()]);
    let kept = |n: &str| report.iter().find(|s| s.name == n).unwrap();
    assert!(kept(&live).reason.contains("refreshed"), "{}", kept(&live).reason);
    assert!(
        kept(&damaged).reason.contains("--remove-all"),
        "{}",
        kept(&damaged).reason
    );
    let mut left = vec![live, damaged];
    left.sort();
    assert_eq!(names(&repo), left);

    let report = unlock(&repo, true, &quick()).unwrap();
    assert!(report.len() == 2 && report.iter().all(|s| s.removed), "{report:?}");
    assert!(names(&repo).is_empty());
}

#[test]
fn judge_says_why() {
    let opts = quick();
    let now = now_ns();
    let (stale, why) = judge(&other("h", 1, 0, now - 2 * HOUR_NS), now, &opts, "x");
    assert!(stale && why.contains("stale after 1m"), "{why}");
    // A clock ahead of ours is not stale (the age would be negative).
    let (stale, why) = judge(&other("h", 1, 0, now + HOUR_NS), now, &opts, "x");
    assert!(!stale && why.contains("refreshed 0ms ago"), "{why}");
    assert_eq!(human(Duration::from_secs(3723)), "1h 2m 3s");
    assert_eq!(human(Duration::from_secs(1800)), "30m");
}
