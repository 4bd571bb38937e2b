//! SeaweedFS: backups, restores (whole, point, killed and run again) and
//! `check --read-data` of a repository in a bucket.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_test_support::s3::seaweed;
use serde_json::Value;

use super::*;

#[test]
fn s3_seaweedfs_two_backups_restore_point_restore_check_and_snapshots() {
    let Some(sw) = seaweed() else { return };
    let (f, _) = offsite_fixture(&sw, "roundtrip");
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    let expected = manifest(&src);
    let files = regular_files(&src);
    let total: u64 = files.values().sum();

    let t = Instant::now();
    let first = f.backup(&[&s(&src)]);
    let s3_backup = t.elapsed();
    assert_eq!(u64_at(&first, "/summary/files_new"), files.len() as u64, "{first:#}");
    assert_eq!(u64_at(&first, "/summary/bytes_read"), total, "{first:#}");
    assert_eq!(u64_at(&first, "/summary/errors"), 0, "{first:#}");
    assert_eq!(
        u64_at(&first, "/retries"),
        0,
        "no retries expected on loopback: {first:#}"
    );

    // The second backup finds every file unchanged and reads none.
    let second = f.backup(&[&s(&src)]);
    assert_eq!(str_at(&second, "/parent"), str_at(&first, "/snapshot_id"), "{second:#}");
    assert_eq!(
        u64_at(&second, "/summary/files_unchanged"),
        files.len() as u64,
        "{second:#}"
    );
    for field in ["files_new", "files_changed", "bytes_read", "data_blobs_added"] {
        assert_eq!(u64_at(&second, &format!("/summary/{field}")), 0, "{field}: {second:#}");
    }

    // Full restore, bit-identical (content, modes, times, links, the FIFO).
    let target = f.path("restored");
    let t = Instant::now();
    let out = f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    let s3_restore = t.elapsed();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert_eq!(u64_at(&out, "/summary/files"), files.len() as u64, "{out:#}");
    assert_eq!(u64_at(&out, "/summary/bytes"), total, "{out:#}");
    assert!(!target.join(IN_PROGRESS_MARKER).exists());

    // Point restore of the big file alone, by the first snapshot's id.
    let big = src.join("data/random.bin");
    let point = f.path("point");
    let first_id = str_at(&first, "/snapshot_id");
    f.cairn()
        .args([
            "restore",
            &format!("{}:{}", &first_id[..8], s(&big)),
            "--target",
            &s(&point),
        ])
        .json();
    let got: Vec<PathBuf> = manifest(&point)
        .into_keys()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    assert_eq!(got, vec![PathBuf::from("random.bin")], "only the one file");
    assert_eq!(entry(&point.join("random.bin")), entry(&big));

    // Every byte of every pack reads back and verifies.
    let check = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    assert_eq!(check["read_data"], Value::Bool(true), "{check:#}");
    assert_eq!(
        check.pointer("/report/errors"),
        Some(&Value::Array(vec![])),
        "{check:#}"
    );
    assert!(u64_at(&check, "/report/bytes_read") >= BIG as u64, "{check:#}");
    assert_eq!(u64_at(&check, "/report/snapshots"), 2, "{check:#}");

    // snapshots --json: both, the second with the first as parent.
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    let ids: Vec<&str> = snaps.iter().map(|v| str_at(v, "/id")).collect();
    assert!(ids.contains(&first_id), "{snaps:#?}");
    assert!(ids.contains(&str_at(&second, "/snapshot_id")), "{snaps:#?}");
    for v in &snaps {
        assert_eq!(strings_at(v, "/paths"), vec![s(&src)], "{v:#}");
        assert_eq!(str_at(v, "/source"), "files", "{v:#}");
    }
    let newer = snaps
        .iter()
        .find(|v| str_at(v, "/id") == str_at(&second, "/snapshot_id"))
        .unwrap();
    assert_eq!(str_at(newer, "/parent"), first_id, "{newer:#}");

    // The same data to a local-folder repository, for comparison.
    let local = Fixture::init();
    let t = Instant::now();
    local.backup(&[&s(&src)]);
    let local_backup = t.elapsed();
    let ltarget = local.path("restored");
    let t = Instant::now();
    local
        .cairn()
        .args(["restore", "latest", "--target", &s(&ltarget)])
        .json();
    let local_restore = t.elapsed();
    assert_same_tree(&expected, &manifest(&under(&ltarget, &src)));
    eprintln!(
        "{:.1} MB, whole commands (process start and repository open included): SeaweedFS backup {:.2} s \
         ({:.0} MB/s), restore {:.2} s ({:.0} MB/s); local folder backup {:.2} s ({:.0} MB/s), restore {:.2} s \
         ({:.0} MB/s)",
        total as f64 / 1e6,
        s3_backup.as_secs_f64(),
        mb_s(total, s3_backup),
        s3_restore.as_secs_f64(),
        mb_s(total, s3_restore),
        local_backup.as_secs_f64(),
        mb_s(total, local_backup),
        local_restore.as_secs_f64(),
        mb_s(total, local_restore),
    );
}

#[test]
fn s3_restore_killed_mid_way_and_run_again_is_bit_identical() {
    let Some(sw) = seaweed() else { return };
    let (f, _) = offsite_fixture(&sw, "killed");
    // Small packs, many files: the restore has many steps to be cut between.
    f.init_repo(&["--pack-size", "1"]);
    let src = f.path("src");
    sample_tree(&src, false);
    let mut rng = Rng::new(77);
    for i in 0..24 {
        write(&src.join(format!("many/file-{i:02}.bin")), rng.bytes(500_000));
    }
    let expected = manifest(&src);
    f.backup(&[&s(&src)]);

    // At 2 MiB/s the 12 MB take about six seconds; stop it after two, once
    // it has begun writing files.
    let target = f.path("restored");
    let mut child = f
        .cairn()
        .args(["--limit-download", "2048", "restore", "latest", "--target", &s(&target)])
        .spawn();
    let started = Instant::now();
    let many = under(&target, &src).join("many");
    while started.elapsed() < Duration::from_secs(2) || !many.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the restore wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the restore finished before it could be stopped mid-way"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ne!(
        manifest(&under(&target, &src)),
        expected,
        "the killed restore was already complete"
    );
    assert!(
        target.join(IN_PROGRESS_MARKER).exists(),
        "a killed restore leaves its marker, so the next run resumes"
    );

    // The same command again (no --overwrite needed) finishes the job.
    let out = f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(!target.join(IN_PROGRESS_MARKER).exists(), "{out:#}");
}
