//! Crash safety with the real binary: SIGINT and SIGTERM stop a backup
//! cleanly, and a campaign of SIGKILLs at random moments (backups, and
//! prunes) never leaves the repository inconsistent.
//!
//! The campaign runs `CAIRN_CRASH_TRIALS` trials (30 by default; the soak,
//! scripts/crash-soak.sh, runs 1,000) from the seed `CAIRN_CRASH_SEED`
//! (printed; by default from the clock), so a failure reproduces with
//! `CAIRN_CRASH_SEED=<seed> cargo test -p cairn-tests --test e2e crash::`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::util::*;

/// The files a backup left in the repository's tmp/ (writes cut short).
pub fn tmp_files(repo: &Path) -> Vec<PathBuf> {
    match fs::read_dir(repo.join("tmp")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading {}/tmp: {e}", repo.display()),
    }
}

/// How many data packs the repository holds.
fn data_packs(repo: &Path) -> usize {
    let Ok(rd) = fs::read_dir(repo.join("data")) else {
        return 0;
    };
    rd.map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| fs::read_dir(p).map(|r| r.count()).unwrap_or(0))
        .sum()
}

fn send(child: &Child, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    kill(pid, sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// Waits for `child` to exit, at most `limit`; kills it and panics after.
fn wait_at_most(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("waiting for cairn").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("waiting for cairn");
            panic!(
                "{what} did not exit within {limit:?}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("collecting cairn's output")
}

/// `check` (with `--read-data` if asked) as JSON, asserting no error.
pub fn assert_check_passes(f: &Fixture, read_data: bool, context: &str) -> Value {
    let mut c = f.cairn();
    c.arg("check");
    if read_data {
        c.arg("--read-data");
    }
    c.arg("--json");
    let r = c.run();
    assert_no_panic(&r);
    let v: Value =
        serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("{context}: check printed no JSON ({e})\n{r}"));
    assert_eq!(v["report"]["errors"], serde_json::json!([]), "{context}: {v:#}");
    assert_eq!(v["ok"], true, "{context}: {v:#}");
    assert_eq!(r.code(), Some(0), "{context}\n{r}");
    v
}

/// Restores snapshot `id` into a fresh folder and asserts it equals
/// `expected` (a manifest of `source` as it was backed up).
pub fn assert_restores_exactly(
    f: &Fixture,
    id: &str,
    source: &Path,
    expected: &std::collections::BTreeMap<PathBuf, Entry>,
    context: &str,
) {
    let target = f.path(&format!("restore-{}", &id[..12]));
    let _ = fs::remove_dir_all(&target);
    let r = f.cairn().args(["restore", id, "--target", &s(&target)]).run();
    assert_eq!(r.code(), Some(0), "{context}: restore of {id} failed\n{r}");
    let got = manifest(&under(&target, source));
    if got != *expected {
        assert_same_tree(expected, &got);
        panic!("{context}: snapshot {id} does not restore exactly");
    }
    fs::remove_dir_all(&target).unwrap();
}

// ---------------------------------------------------------------------------
// SIGINT and SIGTERM.

/// A backup of 24 MB at 4 MiB/s (so it runs for seconds) stopped by `sig`
/// once it stored two packs: exit `code`, no snapshot, no temporary file, a
/// repository that checks, and a next backup that completes, reusing what
/// the stopped one stored.
fn stopped_by(sig: Signal, code: i32) {
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    let data = f.path("data");
    for i in 0..12u64 {
        write(&data.join(format!("big-{i}.bin")), Rng::new(100 + i).bytes(2_000_000));
    }
    for i in 0..200u64 {
        write(
            &data.join(format!("small/{}/f{i}.txt", i % 7)),
            format!("small file {i}\n").repeat(1 + i as usize * 3),
        );
    }
    let total: u64 = regular_files(&data).values().sum();

    let child = f
        .cairn()
        .args(["--limit-upload", "4096", "backup", "--json", &s(&data)])
        .spawn();
    let start = Instant::now();
    while data_packs(&f.repo) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the backup stored no two packs within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    send(&child, sig);
    let signalled = Instant::now();
    let out = wait_at_most(child, Duration::from_secs(30), "the signalled backup");
    let stopped_in = signalled.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "a backup stopped by {sig} exits {code}\n--- stderr\n{stderr}"
    );
    assert!(stderr.contains("interrupted"), "the message says so: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stopped_in < Duration::from_secs(10),
        "stopping took {stopped_in:?}: it should stop at the next pack"
    );
    assert!(f.snapshots().is_empty(), "no snapshot after {sig}");
    assert_eq!(tmp_files(&f.repo), Vec::<PathBuf>::new(), "temporary files left");
    // The packs it stored are indexed: check has nothing to warn about.
    let v = assert_check_passes(&f, false, &format!("after {sig}"));
    assert_eq!(v["report"]["warnings"], serde_json::json!([]), "{v:#}");
    let stored_before = data_packs(&f.repo);
    assert!(stored_before >= 2);

    let expected = manifest(&data);
    let next = f.backup(&[&s(&data)]);
    let added = u64_at(&next, "/summary/bytes_added_raw");
    assert!(
        added < total,
        "the next backup reuses what the stopped one stored: it added {added} of {total} bytes"
    );
    assert_restores_exactly(&f, str_at(&next, "/snapshot_id"), &data, &expected, "after the stop");
    assert_check_passes(&f, true, "after the next backup");
}

#[test]
fn sigint_stops_a_backup_cleanly_with_exit_130() {
    stopped_by(Signal::SIGINT, 130);
}

#[test]
fn sigterm_stops_a_backup_cleanly_with_exit_143() {
    stopped_by(Signal::SIGTERM, 143);
}

// ---------------------------------------------------------------------------
// The SIGKILL campaign.

/// Every how many trials one kills a prune instead of a backup.
const PRUNE_EVERY: u64 = 8;

/// The prune steps a prune can be killed at from inside (engine/src/prune).
const PRUNE_FAILPOINTS: &[&str] = &[
    "prune-repacking",
    "prune-after-repack",
    "prune-after-index",
    "prune-after-record",
    "prune-after-executed-record",
    "prune-before-index-removal",
];

/// Uniform in [0, n).
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n.max(1)
}

/// The campaign's source: many small files in a few folders and a few
/// larger ones; `mutate` changes a share of both.
fn seed_data(data: &Path, rng: &mut Rng) {
    for i in 0..120u64 {
        let len = 100 + below(rng, 6000) as usize;
        write(&data.join(format!("d{}/f{i}.txt", i % 6)), rng.bytes(len));
    }
    for i in 0..3u64 {
        write(&data.join(format!("large/l{i}.bin")), rng.bytes(1_200_000));
    }
}

fn mutate(data: &Path, rng: &mut Rng, trial: u64) {
    for _ in 0..15 {
        let i = below(rng, 120);
        let len = 100 + below(rng, 6000) as usize;
        write(&data.join(format!("d{}/f{i}.txt", i % 6)), rng.bytes(len));
    }
    let l = below(rng, 3);
    write(&data.join(format!("large/l{l}.bin")), rng.bytes(1_200_000));
    write(&data.join(format!("new/t{trial}.txt")), format!("trial {trial}\n"));
    if trial >= 3 {
        let _ = fs::remove_file(data.join(format!("new/t{}.txt", trial - 3)));
    }
}

/// What happened to one killed process.
#[derive(Default, Debug)]
struct Tally {
    backups_killed: u64,
    backups_finished_first: u64,
    prunes_killed: u64,
    prunes_finished_first: u64,
}

/// Spawns `cairn` with `args` (and `env`), SIGKILLs it after `delay`
/// unless it exited first (then it must have succeeded); returns whether
/// it was killed.
fn run_and_kill(f: &Fixture, args: &[&str], env: Option<(&str, &str)>, delay: Duration, context: &str) -> bool {
    let mut c = f.cairn();
    c.args(args);
    if let Some((k, v)) = env {
        c.env(k, v);
    }
    let mut child = c.spawn();
    let start = Instant::now();
    loop {
        if child.try_wait().expect("waiting for cairn").is_some() {
            break;
        }
        if start.elapsed() >= delay {
            send(&child, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = wait_at_most(child, Duration::from_secs(90), context);
    match out.status.code() {
        // Killed by us or by its own failpoint.
        None => true,
        Some(0) => false,
        Some(c) => panic!(
            "{context}: `cairn {}` exited {c} before being killed\n--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The campaign: each trial changes the data, kills a backup (or, every
/// [`PRUNE_EVERY`] trials, a prune) at a random moment, then proves that
/// `check` passes (so no snapshot references a missing blob), that the
/// next run completes, and that its snapshot restores exactly. At the end
/// one prune removes every leftover and `check --read-data` passes.
#[test]
fn sigkill_campaign() {
    let trials: u64 = std::env::var("CAIRN_CRASH_TRIALS")
        .ok()
        .map(|t| t.parse().expect("CAIRN_CRASH_TRIALS is a number"))
        .unwrap_or(30);
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .map(|t| t.parse().expect("CAIRN_CRASH_SEED is a number"))
        .unwrap_or_else(clock_seed);
    eprintln!("sigkill campaign: {trials} trials, CAIRN_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    let data = f.path("data");
    seed_data(&data, &mut rng);
    f.backup(&[&s(&data)]);

    // How long a backup of one trial's changes takes: kills are drawn
    // across most of it (a trial's backup is often quicker: the killed
    // one's packs are reused, so some kills still land after the end).
    mutate(&data, &mut rng, 0);
    let t = Instant::now();
    let calibration = f.backup(&[&s(&data)]);
    let backup_span = t.elapsed().mul_f64(0.9);
    let mut last = (str_at(&calibration, "/snapshot_id").to_string(), manifest(&data));
    eprintln!(
        "a trial's backup takes {:?}; kills are drawn across 0..{backup_span:?}",
        t.elapsed()
    );

    let mut tally = Tally::default();
    let campaign = Instant::now();
    for trial in 1..=trials {
        let context = format!("trial {trial} (CAIRN_CRASH_SEED={seed})");
        if trial % PRUNE_EVERY == 0 {
            // Forget all but the last three snapshots, then kill the prune
            // that frees their data: at a named step or at a random moment.
            f.cairn().args(["forget", "--keep-last", "3"]).ok();
            let prune = ["prune", "--instant-delete", "--max-unused", "0%"];
            let killed = if below(&mut rng, 2) == 0 {
                let point = PRUNE_FAILPOINTS[below(&mut rng, PRUNE_FAILPOINTS.len() as u64) as usize];
                eprintln!("{context}: prune killed at {point}");
                run_and_kill(
                    &f,
                    &prune,
                    Some(("CAIRN_FAILPOINT", point)),
                    Duration::from_secs(90),
                    &context,
                )
            } else {
                let delay = backup_span.mul_f64(below(&mut rng, 1000) as f64 / 1000.0);
                eprintln!("{context}: prune killed after {delay:?}");
                run_and_kill(&f, &prune, None, delay, &context)
            };
            if killed {
                tally.prunes_killed += 1;
            } else {
                tally.prunes_finished_first += 1;
            }
            assert_check_passes(&f, false, &format!("{context}, after the killed prune"));
            assert_restores_exactly(&f, &last.0, &data, &last.1, &context);
            // The next prune completes (breaking the dead one's lock).
            f.cairn().args(prune).ok();
            assert_check_passes(&f, false, &format!("{context}, after the next prune"));
            assert_restores_exactly(&f, &last.0, &data, &last.1, &context);
            continue;
        }
        mutate(&data, &mut rng, trial);
        let delay = backup_span.mul_f64(below(&mut rng, 1000) as f64 / 1000.0);
        let mut args = vec!["backup", "--json"];
        if below(&mut rng, 4) == 0 {
            args.push("--force");
        }
        let path = s(&data);
        args.push(&path);
        eprintln!(
            "{context}: backup{} killed after {delay:?}",
            if args.len() > 3 { " --force" } else { "" }
        );
        if run_and_kill(&f, &args, None, delay, &context) {
            tally.backups_killed += 1;
        } else {
            tally.backups_finished_first += 1;
        }
        assert_check_passes(&f, false, &format!("{context}, after the kill"));
        let next = f.backup(&[&s(&data)]);
        let id = str_at(&next, "/snapshot_id").to_string();
        let expected = manifest(&data);
        assert_restores_exactly(&f, &id, &data, &expected, &context);
        last = (id, expected);
    }

    // Leftovers of the kills: temporary files, packs no index names.
    let before = assert_check_passes(&f, false, "before the final prune");
    let leftovers = (tmp_files(&f.repo).len(), before["report"]["warnings"].clone());
    let r = f
        .cairn()
        .args([
            "prune",
            "--instant-delete",
            "--grace-period",
            "0",
            "--max-unused",
            "0%",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        tmp_files(&f.repo),
        Vec::<PathBuf>::new(),
        "prune removed the temporary files"
    );
    let after = assert_check_passes(&f, true, "after the final prune");
    assert_eq!(
        after["report"]["warnings"],
        serde_json::json!([]),
        "prune removed every leftover: {after:#}"
    );
    assert_restores_exactly(&f, &last.0, &data, &last.1, "after the final prune");
    eprintln!(
        "sigkill campaign: {trials} trials in {:?}, 0 failures (CAIRN_CRASH_SEED={seed}): {tally:?}; \
         before the final prune: {} temporary file(s), check warnings {}; prune: {}",
        campaign.elapsed(),
        leftovers.0,
        leftovers.1,
        serde_json::json!({"removed": r["removed"], "temporaries_removed": r["temporaries_removed"]}),
    );
    assert!(
        tally.backups_killed + tally.prunes_killed >= trials / 2,
        "most kills must land while the process runs: {tally:?}"
    );
}
