//! Through the fault-injecting proxy in front of SeaweedFS: failed, dropped,
//! cut-off and slowed requests are retried, and what is stored and restored
//! stays bit-identical.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_test_support::s3::seaweed;
use serde_json::Value;

use super::*;

#[test]
fn s3_faults_backup_and_restore_through_a_failing_proxy_retry_and_stay_bit_identical() {
    let Some(sw) = seaweed() else { return };
    let root = tempfile::tempdir().unwrap();
    // 30% of requests fail (503 SlowDown, 500, dropped before or after the
    // server acted, answers cut off) or are slowed; at most 40 faults per
    // run, 2 for the same request and 3 for one object (a multipart upload
    // is retried whole), so the client's 8 attempts always suffice.
    let faults = [
        "--rate",
        "0.3",
        "--max-faults",
        "40",
        "--max-per-request",
        "2",
        "--max-per-object",
        "3",
        "--max-delay-ms",
        "300",
        "--verbose",
    ];
    let backup_log = root.path().join("backup-proxy.log");
    let restore_log = root.path().join("restore-proxy.log");
    let backup_proxy = Proxy::start(&sw.endpoint, &[&["--seed", "3"][..], &faults[..]].concat(), &backup_log);
    let restore_proxy = Proxy::start(
        &sw.endpoint,
        &[&["--seed", "4"][..], &faults[..]].concat(),
        &restore_log,
    );
    // Multipart from 5 MiB on, so part uploads and their completion meet
    // faults too.
    let multipart = "multipart-threshold-mib = 5\npart-size-mib = 5\nconnections = 4";
    let (f, _) = s3_fixture(
        &sw,
        "faults",
        &[
            profile("direct", &sw.endpoint, ""),
            profile("flaky-backup", &backup_proxy.endpoint, multipart),
            profile("flaky-restore", &restore_proxy.endpoint, multipart),
        ],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    write(&src.join("data/multipart.bin"), Rng::new(9).bytes(9_000_000));
    let expected = manifest(&src);
    let started = Instant::now();

    let r = f
        .cairn()
        .args(["-r", "flaky-backup", "--json", "backup", &s(&src)])
        .run();
    let out = survived_faults("backup", &r, &backup_proxy, &backup_log);
    assert_eq!(u64_at(&out, "/summary/errors"), 0, "{out:#}");

    // What the faulty backup stored is whole (read directly).
    let check = f.cairn().args(["-r", "direct", "check", "--read-data"]).json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");

    let target = f.path("restored");
    let r = f
        .cairn()
        .args([
            "-r",
            "flaky-restore",
            "--json",
            "restore",
            "latest",
            "--verify",
            "--target",
        ])
        .arg(&target)
        .run();
    survived_faults("restore", &r, &restore_proxy, &restore_log);
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded faults took {:?}",
        started.elapsed()
    );
}

#[test]
fn s3_faults_a_lost_answer_to_a_multipart_completion_is_retried_into_the_stored_object() {
    let Some(sw) = seaweed() else { return };
    let root = tempfile::tempdir().unwrap();
    // Every POST (start and completion of multipart uploads) has its answer
    // lost after the server acted: twice for the start, then once for the
    // completion (3 per object), so the third attempt completes the upload
    // but never hears so, and the fourth finds the object already there.
    let log_file = root.path().join("proxy.log");
    let proxy = Proxy::start(
        &sw.endpoint,
        &[
            "--rate",
            "1",
            "--only",
            "POST ",
            "--faults",
            "drop-after",
            "--max-per-request",
            "2",
            "--max-per-object",
            "3",
            "--verbose",
        ],
        &log_file,
    );
    let (f, _) = s3_fixture(
        &sw,
        "lost-completion",
        &[
            profile("direct", &sw.endpoint, ""),
            profile(
                "flaky",
                &proxy.endpoint,
                "multipart-threshold-mib = 5\npart-size-mib = 5",
            ),
        ],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    write(&src.join("one.bin"), Rng::new(12).bytes(11_000_000));
    let expected = manifest(&src);

    let r = f.cairn().args(["-r", "flaky", "--json", "backup"]).arg(&src).run();
    let log = fs::read_to_string(&log_file).unwrap_or_default();
    assert_eq!(r.code(), Some(0), "backup failed\n{r}\n{log}");
    let out = r.json();
    let stats = proxy.stats();
    assert!(log.contains("?uploadId="), "no completion was cut off: {stats}\n{log}");
    assert!(u64_at(&out, "/retries") >= 3, "{out:#}\n{log}");

    // Stored once, whole, and restorable.
    let check = f.cairn().args(["-r", "direct", "check", "--read-data"]).json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    let target = f.path("restored");
    f.cairn()
        .args(["-r", "direct", "restore", "latest", "--target", &s(&target)])
        .json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
}

/// Asserts that `r`, a command through `proxy`, succeeded although the proxy
/// injected faults, and that cairn retried; returns its JSON output.
fn survived_faults(what: &str, r: &Run, proxy: &Proxy, log: &Path) -> Value {
    let log = || fs::read_to_string(log).unwrap_or_default();
    assert_eq!(r.code(), Some(0), "{what} through the proxy failed\n{r}\n{}", log());
    let out = r.json();
    let stats = proxy.stats();
    eprintln!("{what} through the proxy: {stats}, retries {}", out["retries"]);
    assert!(u64_at(&stats, "/faults") > 0, "{stats}");
    assert!(
        u64_at(&out, "/retries") > 0,
        "the faults caused no retries: {out:#}\n{stats}\n{}",
        log()
    );
    out
}
