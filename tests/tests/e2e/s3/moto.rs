//! moto: archive storage classes. Data packs in GLACIER are browsed
//! without a retrieval, retrieved once when a restore or `check
//! --read-data` needs them, and never taken for damage. moto's restore
//! progression is global: each test holds `moto_restores` for its run.

use std::time::{Duration, Instant};

use cairn_test_support::s3::{moto, moto_restores};
use serde_json::Value;

use super::*;

#[test]
fn s3_moto_glacier_packs_browse_without_retrieval_and_restore_once_retrieved() {
    let Some(m) = moto() else { return };
    let restores = moto_restores(&m);
    let (f, prefix) = archive_fixture(&m, "glacier");
    let src = f.path("src");
    s3_tree(&src);
    let first = f.backup(&[&s(&src)]);

    // Data packs went to GLACIER, everything else stayed STANDARD.
    let objects = moto_objects(&m, &format!("{prefix}/"));
    let data_prefix = format!("{prefix}/data/");
    assert!(objects.keys().any(|k| k.starts_with(&data_prefix)), "{objects:#?}");
    for (key, class) in &objects {
        let want = if key.starts_with(&data_prefix) {
            "GLACIER"
        } else {
            "STANDARD"
        };
        assert_eq!(class, want, "{key}");
    }

    // Browsing, a second backup and check need no file data.
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    let ls = f.cairn().args(["ls", "latest"]).json();
    let paths: Vec<String> = ls["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| str_at(e, "/path").to_string())
        .collect();
    assert!(paths.contains(&s(&src.join("data/random.bin"))), "{paths:?}");
    let found = f.cairn().args(["find", "*.bin"]).json();
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(1),
        "one file matches, in one snapshot: {found:#}"
    );
    assert_eq!(str_at(&found, "/0/path"), s(&src.join("data/random.bin")));

    write(&src.join("hello.txt"), "hello again, cairn\n");
    write(&src.join("data/added.bin"), Rng::new(6).bytes(300_000));
    let second = f.backup(&[&s(&src)]);
    assert_eq!(u64_at(&second, "/summary/files_changed"), 1, "{second:#}");
    assert_eq!(u64_at(&second, "/summary/files_new"), 1, "{second:#}");
    let diff = f
        .cairn()
        .args(["diff", str_at(&first, "/snapshot_id"), str_at(&second, "/snapshot_id")])
        .json();
    let changes: Vec<(String, String)> = diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["dir"] != Value::Bool(true))
        .map(|c| (str_at(c, "/change").to_string(), str_at(c, "/path").to_string()))
        .collect();
    assert!(
        changes.contains(&("modified".into(), s(&src.join("hello.txt")))),
        "{diff:#}"
    );
    assert!(
        changes.contains(&("added".into(), s(&src.join("data/added.bin")))),
        "{diff:#}"
    );
    let check = f.cairn().arg("check").json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    assert_nothing_retrieved(&m, &prefix);
    let packs = moto_data_packs(&m, &prefix).len() as u64;
    let expected = manifest(&src);

    // Retrievals that take a few looks to finish.
    restores.manual(3);
    let target = f.path("restored");
    let restore = |json: bool| {
        let mut c = f.cairn();
        c.args(["restore", "latest", "--target", &s(&target)]);
        if json {
            c.arg("--json");
        }
        c.run()
    };

    // First run: requests every pack, says how many and how big, exits 14.
    let j = assert_pending(&restore(true)).json();
    assert_eq!(j["retrieval_pending"], Value::Bool(true), "{j:#}");
    assert_eq!(u64_at(&j, "/objects"), packs, "{j:#}");
    assert!(u64_at(&j, "/bytes") >= BIG as u64, "{j:#}");
    assert_eq!(u64_at(&j, "/report/packs_needed"), packs, "{j:#}");
    assert_eq!(u64_at(&j, "/report/archived"), packs, "{j:#}");
    assert_eq!(u64_at(&j, "/report/requested_now"), packs, "{j:#}");
    assert_eq!(u64_at(&j, "/report/already_in_progress"), 0, "{j:#}");
    assert_eq!(strings_at(&j, "/report/classes"), vec!["GLACIER".to_string()], "{j:#}");
    assert!(
        !j["report"]["estimates"].as_array().expect("estimates").is_empty(),
        "{j:#}"
    );

    // Second run, for people: asks for nothing again and says so.
    let r = restore(false);
    let e = assert_pending(&r).stderr();
    assert!(
        e.contains(&format!("0 retrieval(s) requested now, {packs} already in progress")),
        "{r}"
    );
    assert!(
        e.contains(&format!("{packs} pack(s)")) && e.contains("retrieved from archive storage"),
        "{r}"
    );

    // Further runs request nothing either, until moto has finished.
    let mut runs = 2;
    let out = loop {
        let r = restore(true);
        runs += 1;
        assert_no_damage_reported(&r);
        match r.code() {
            Some(0) => break r.json(),
            Some(14) => {
                let j = r.json();
                assert_eq!(u64_at(&j, "/report/requested_now"), 0, "asked twice: {j:#}");
                assert!(u64_at(&j, "/report/already_in_progress") > 0, "{j:#}");
            }
            _ => panic!("expected 0 or 14\n{r}"),
        }
        assert!(runs < 10, "the retrievals never finished");
    };
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(u64_at(&out, "/summary/packs_read") > 0, "{out:#}");
    assert!(!target.join(IN_PROGRESS_MARKER).exists());
    for key in moto_data_packs(&m, &prefix).keys() {
        let (_, restore) = moto_head(&m, key);
        assert!(
            restore.is_some_and(|r| r.contains("ongoing-request=\"false\"")),
            "{key}"
        );
    }
}

#[test]
fn s3_moto_restore_wait_and_a_restore_killed_while_pending_then_run_again() {
    let Some(m) = moto() else { return };
    let _restores = moto_restores(&m);
    let (f, prefix) = archive_fixture(&m, "wait");
    let src = f.path("src");
    s3_tree(&src);
    f.backup(&[&s(&src)]);
    assert_nothing_retrieved(&m, &prefix);

    // --wait requests, polls and restores, in one run (the first poll comes
    // after 30 s).
    let target = f.path("waited");
    let t = Instant::now();
    let out = f
        .cairn()
        .args(["restore", "latest", "--wait", "--target", &s(&target)])
        .json();
    eprintln!(
        "restore --wait from GLACIER on moto took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_same_tree(&manifest(&src), &manifest(&under(&target, &src)));
    assert!(u64_at(&out, "/summary/packs_read") > 0, "{out:#}");

    // New data in new, archived packs.
    write(&src.join("data/second.bin"), Rng::new(8).bytes(3_000_000));
    f.backup(&[&s(&src)]);
    let expected = manifest(&src);

    // A restore --wait stopped (SIGKILL) once it has requested the
    // retrievals and printed the estimate.
    let target = f.path("killed");
    let mut child = f
        .cairn()
        .args(["restore", "latest", "--wait", "--target", &s(&target)])
        .spawn();
    let lines = stderr_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("requested now")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("restore --wait printed no retrieval estimate: {seen:#?}");
            }
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("1 of") && l.contains("1 retrieval(s) requested now")),
        "only the new pack is archived: {seen:#?}"
    );
    assert!(child.try_wait().unwrap().is_none(), "it should be waiting");
    child.kill().unwrap();
    child.wait().unwrap();

    // Run again (without --wait): moto finished the retrieval meanwhile.
    let out = f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(!target.join(IN_PROGRESS_MARKER).exists(), "{out:#}");
}

#[test]
fn s3_moto_packs_moved_to_glacier_after_the_backup_become_a_retrieval_not_damage() {
    let Some(m) = moto() else { return };
    let _restores = moto_restores(&m);
    let root = tempfile::tempdir().unwrap();
    // In front of moto, hiding the archive class from the first look at each
    // object: the restore plans the pack as readable and meets
    // InvalidObjectState on the read, as when a lifecycle rule moves packs
    // between the plan and the read.
    let proxy = Proxy::start(
        &m.endpoint,
        &["--faults", "none", "--hide-archive-once"],
        &root.path().join("proxy.log"),
    );
    let (f, prefix) = s3_fixture(
        &m,
        "lifecycle",
        &[
            profile("standard", &m.endpoint, ""),
            profile("late-look", &proxy.endpoint, ""),
        ],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    f.backup(&[&s(&src)]);
    let packs = moto_data_packs(&m, &prefix);
    assert!(packs.values().all(|c| c == "STANDARD"), "{packs:#?}");

    // The lifecycle rule: every data pack to GLACIER.
    for key in packs.keys() {
        moto_move_to_glacier(&m, key);
    }
    assert!(
        moto_data_packs(&m, &prefix).values().all(|c| c == "GLACIER"),
        "the packs did not move"
    );
    let check = f.cairn().arg("check").json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    assert_nothing_retrieved(&m, &prefix);

    // Found archived while reading: retrieval requested, exit 14.
    let target = f.path("restored");
    let r = f
        .cairn()
        .args([
            "-r",
            "late-look",
            "restore",
            "latest",
            "--json",
            "--target",
            &s(&target),
        ])
        .run();
    let j = assert_pending(&r).json();
    let n = packs.len() as u64;
    assert_eq!(u64_at(&j, "/objects"), n, "{j:#}");
    assert_eq!(u64_at(&j, "/report/requested_now"), n, "{j:#}");
    let stats = proxy.stats();
    assert_eq!(
        u64_at(&stats, "/hidden_archive"),
        n,
        "every pack was first seen as readable: {stats}"
    );

    // moto finished at once: the same command completes the restore.
    let out = f
        .cairn()
        .args(["-r", "late-look", "restore", "latest", "--target", &s(&target)])
        .json();
    assert_same_tree(&manifest(&src), &manifest(&under(&target, &src)));
    assert!(u64_at(&out, "/summary/packs_read") >= n, "{out:#}");

    // Moved before the restore looks (the plan sees the class up front):
    // only the newly moved pack is requested.
    write(&src.join("data/later.bin"), Rng::new(10).bytes(2_000_000));
    f.backup(&[&s(&src)]);
    let expected = manifest(&src);
    let fresh: Vec<String> = moto_data_packs(&m, &prefix)
        .into_iter()
        .filter(|(_, c)| c == "STANDARD")
        .map(|(k, _)| k)
        .collect();
    assert!(!fresh.is_empty());
    for key in &fresh {
        moto_move_to_glacier(&m, key);
    }
    let target = f.path("restored-again");
    let r = f
        .cairn()
        .args(["restore", "latest", "--json", "--target", &s(&target)])
        .run();
    let j = assert_pending(&r).json();
    assert_eq!(u64_at(&j, "/report/requested_now"), fresh.len() as u64, "{j:#}");
    assert_eq!(u64_at(&j, "/objects"), fresh.len() as u64, "{j:#}");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
}

#[test]
fn s3_moto_check_read_data_of_archived_packs_does_not_call_the_repository_damaged() {
    let Some(m) = moto() else { return };
    let _restores = moto_restores(&m);
    let (f, prefix) = archive_fixture(&m, "check-archived");
    let src = f.path("src");
    sample_tree(&src, false);
    write(&src.join("data/some.bin"), Rng::new(13).bytes(500_000));
    f.backup(&[&s(&src)]);

    // Archived packs cannot be read without a retrieval: check --read-data
    // must request it (as restore does), say so, exit 14 ("retrieval
    // pending"), and never call the repository damaged.
    let r = f.cairn().args(["check", "--read-data"]).run();
    assert_no_panic(&r);
    let text = format!("{}\n{}", r.stdout(), r.stderr());
    assert_eq!(
        r.code(),
        Some(14),
        "check --read-data on archived packs should stop with 14\n{r}"
    );
    assert!(
        text.contains("archive storage"),
        "check --read-data does not say the packs are in archive storage\n{r}"
    );
    assert!(
        !text.to_lowercase().contains("damaged"),
        "check --read-data calls packs in archive storage damage\n{r}"
    );
    // moto finishes retrievals at once here: the same check now reads and
    // verifies every pack.
    let r = f.cairn().args(["check", "--read-data"]).run();
    assert_no_panic(&r);
    assert_eq!(r.code(), Some(0), "check --read-data after the retrieval\n{r}");
    let _ = &prefix;
}

/// Prune on a repository whose data packs are in DEEP_ARCHIVE: partly used
/// archived packs are never repacked (that would need a retrieval), nothing
/// is retrieved, and wholly unused ones are deleted (or wait, with
/// `--cold-min-age`) with their early-deletion charge reported.
#[test]
fn s3_moto_prune_leaves_deep_archive_packs_unread_and_prices_early_deletion() {
    let Some(m) = moto() else { return };
    let _restores = moto_restores(&m);
    let (f, prefix) = s3_fixture(
        &m,
        "prune-deep",
        &[profile("archive", &m.endpoint, "storage-class = \"DEEP_ARCHIVE\"")],
    );
    f.init_repo(&["--pack-size", "1"]);
    let src = f.path("src");
    write(&src.join("a-half/a.bin"), Rng::new(31).bytes(300_000));
    write(&src.join("a-half/b.bin"), Rng::new(32).bytes(300_000));
    write(&src.join("b-gone/gone.bin"), Rng::new(33).bytes(3_000_000));
    write(&src.join("kept.bin"), Rng::new(34).bytes(1_500_000));
    // a-half/ and b-gone/ alone first: a-half's two files share one pack and
    // gone.bin has packs of its own, whatever order the parallel sealers
    // finish in.
    let halves = f.backup(&[&s(&src.join("a-half"))]);
    let gones = f.backup(&[&s(&src.join("b-gone"))]);
    let first = f.backup(&[&s(&src)]);
    fs::remove_dir_all(src.join("b-gone")).unwrap();
    fs::remove_file(src.join("a-half/b.bin")).unwrap();
    f.backup(&[&s(&src)]);
    f.cairn()
        .args([
            "forget",
            str_at(&halves, "/snapshot_id"),
            str_at(&gones, "/snapshot_id"),
            str_at(&first, "/snapshot_id"),
        ])
        .ok();
    let packs_before = moto_data_packs(&m, &prefix);
    assert!(packs_before.values().all(|c| c == "DEEP_ARCHIVE"), "{packs_before:#?}");

    // Waiting out the 180-day minimum: nothing archived goes or is read.
    let waited = f
        .cairn()
        .args([
            "prune",
            "--max-unused",
            "0%",
            "--instant-delete",
            "--cold-min-age",
            "180d",
        ])
        .json();
    let cold = waited["plan"]["cold"].as_array().expect("cold packs").clone();
    let actions: Vec<&str> = cold.iter().map(|c| str_at(c, "/action")).collect();
    assert!(actions.contains(&"wait"), "{waited:#}");
    assert!(actions.contains(&"keep"), "the partly used pack is kept: {waited:#}");
    assert!(
        !actions.contains(&"repack") && !actions.contains(&"delete"),
        "{waited:#}"
    );
    for c in cold.iter().filter(|c| c["action"] == "wait") {
        assert_eq!(u64_at(c, "/minimum_days"), 180);
        assert!(
            c["early_deletion_usd"].as_f64().unwrap() > 0.0,
            "the avoided charge: {c:#}"
        );
    }
    assert_eq!(
        moto_data_packs(&m, &prefix),
        packs_before,
        "no data pack deleted or added"
    );

    // Without waiting: the wholly unused ones go, each with its charge.
    let pruned = f
        .cairn()
        .args(["prune", "--max-unused", "0%", "--instant-delete"])
        .json();
    let cold = pruned["plan"]["cold"].as_array().expect("cold packs").clone();
    let deleted: Vec<String> = cold
        .iter()
        .filter(|c| c["action"] == "delete")
        .map(|c| str_at(c, "/pack").to_string())
        .collect();
    assert!(!deleted.is_empty(), "{pruned:#}");
    assert!(cold.iter().all(|c| c["action"] != "repack"), "{pruned:#}");
    for c in cold.iter().filter(|c| c["action"] == "delete") {
        assert!(c["early_deletion_usd"].as_f64().unwrap() > 0.0, "{c:#}");
        assert!(c["age_days"].as_f64().unwrap() < 1.0, "moto dates the pack: {c:#}");
    }
    let packs_after = moto_data_packs(&m, &prefix);
    for key in packs_before.keys() {
        let name = key.rsplit('/').next().unwrap();
        assert_eq!(
            packs_after.contains_key(key),
            !deleted.iter().any(|d| d == name),
            "{key}: deleted exactly the wholly unused packs"
        );
    }
    for key in packs_after.keys() {
        assert!(
            packs_before.contains_key(key),
            "{key}: no pack was written (nothing repacked)"
        );
        let (class, restore) = moto_head(&m, key);
        assert_eq!(class.as_deref(), Some("DEEP_ARCHIVE"));
        assert_eq!(restore, None, "a retrieval of {key} was requested");
    }
    f.cairn().args(["check"]).ok();
    let ls = f.cairn().args(["ls", "latest"]).json();
    assert!(ls["entries"].to_string().contains("kept.bin"));
}

/// A killed upload leaves an unfinished multipart upload (stored, billed,
/// invisible); prune aborts those older than the grace period. moto dates
/// every upload 2010-11-10, so that an upload younger than the grace period
/// stays is shown on the local backend (engine/tests/prune.rs), whose
/// temporaries are dated by the same comparison.
#[test]
fn s3_moto_prune_aborts_stale_multipart_uploads() {
    let Some(m) = moto() else { return };
    let (f, prefix) = s3_fixture(&m, "prune-uploads", &[profile("archive", &m.endpoint, "")]);
    f.init_repo(&[]);
    let key = format!("{prefix}/data/ab/ab{}", "0".repeat(62));
    let started = http(
        &m.endpoint,
        "POST",
        &format!("/{}/{key}?uploads", m.bucket),
        &[("Authorization", MOTO_AUTH)],
        b"",
    );
    assert_eq!(started.status, 200, "{}", String::from_utf8_lossy(&started.body));
    let uploads = || {
        let a = http(
            &m.endpoint,
            "GET",
            &format!("/{}?uploads&prefix={prefix}/", m.bucket),
            &[("Authorization", MOTO_AUTH)],
            b"",
        );
        String::from_utf8_lossy(&a.body).matches("<Upload>").count()
    };
    assert_eq!(uploads(), 1);
    let dry = f.cairn().args(["prune", "--dry-run"]).json();
    assert_eq!(
        u64_at(&dry, "/temporaries_removed"),
        0,
        "a dry run aborts nothing: {dry:#}"
    );
    assert_eq!(uploads(), 1);
    let r = f.cairn().args(["prune"]).json();
    assert_eq!(u64_at(&r, "/temporaries_removed"), 1, "{r:#}");
    assert_eq!(uploads(), 0);
}

/// `--repack-cold`: the partly used archived pack is retrieved first (priced
/// as a restore), then repacked; the kept file still restores.
#[test]
fn s3_moto_prune_repack_cold_retrieves_then_repacks() {
    let Some(m) = moto() else { return };
    let _restores = moto_restores(&m);
    let (f, prefix) = s3_fixture(
        &m,
        "prune-repack-cold",
        &[profile("archive", &m.endpoint, "storage-class = \"DEEP_ARCHIVE\"")],
    );
    f.init_repo(&["--pack-size", "1"]);
    let src = f.path("src");
    write(&src.join("a-half/a.bin"), Rng::new(41).bytes(300_000));
    write(&src.join("a-half/b.bin"), Rng::new(42).bytes(300_000));
    write(&src.join("gone.bin"), Rng::new(43).bytes(3_000_000));
    let halves = f.backup(&[&s(&src.join("a-half"))]);
    let first = f.backup(&[&s(&src)]);
    fs::remove_file(src.join("gone.bin")).unwrap();
    fs::remove_file(src.join("a-half/b.bin")).unwrap();
    let kept = f.backup(&[&s(&src)]);
    f.cairn()
        .args([
            "forget",
            str_at(&halves, "/snapshot_id"),
            str_at(&first, "/snapshot_id"),
        ])
        .ok();
    let before = moto_data_packs(&m, &prefix);

    let r = f
        .cairn()
        .args([
            "prune",
            "--max-unused",
            "0%",
            "--instant-delete",
            "--repack-cold",
            "--wait",
            "--tier",
            "bulk",
        ])
        .json();
    let retrieval = &r["retrieval"];
    assert!(
        u64_at(retrieval, "/archived") >= 1,
        "the partly used pack was archived: {r:#}"
    );
    assert!(
        !retrieval["estimates"].as_array().unwrap().is_empty(),
        "priced first: {r:#}"
    );
    assert_eq!(u64_at(&r, "/repack_pending"), 0, "{r:#}");
    assert!(r["plan"]["cold"].to_string().contains("\"repack\""), "{r:#}");
    let after = moto_data_packs(&m, &prefix);
    assert!(
        after.keys().any(|k| !before.contains_key(k)),
        "a new pack holds the copied blobs"
    );
    assert!(
        after.len() < before.len(),
        "the repacked and the unused packs went: {after:#?}"
    );

    let target = f.path("restored");
    f.cairn()
        .args([
            "restore",
            str_at(&kept, "/snapshot_id"),
            "--wait",
            "--target",
            &s(&target),
        ])
        .ok();
    let restored = fs::read(under(&target, &src).join("a-half/a.bin")).unwrap();
    assert_eq!(restored, Rng::new(41).bytes(300_000));
}
