//! Many writers: four `cairn backup` processes into one repository at once
//! (local, and S3 on SeaweedFS), over data that overlaps (the same files,
//! the same content under other names) and differs; afterwards
//! `check --read-data` passes and every snapshot restores exactly.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_test_support::s3::{seaweed, unique};

use crate::util::*;

const WRITERS: u64 = 4;

/// `common/` (backed up by every writer), and per writer `own-N/` with its
/// own files and one file whose content is also in the next writer's.
/// Returns each writer's paths.
fn writer_data(root: &Path) -> Vec<Vec<PathBuf>> {
    let common = root.join("common");
    for i in 0..40u64 {
        write(
            &common.join(format!("c{}/f{i}.txt", i % 4)),
            Rng::new(1000 + i).bytes(200 + 97 * i as usize),
        );
    }
    for i in 0..2u64 {
        write(
            &common.join(format!("big-{i}.bin")),
            Rng::new(2000 + i).bytes(1_500_000),
        );
    }
    (0..WRITERS)
        .map(|w| {
            let own = root.join(format!("own-{w}"));
            for i in 0..30u64 {
                write(
                    &own.join(format!("f{i}.txt")),
                    Rng::new(3000 + 100 * w + i).bytes(150 + 61 * i as usize),
                );
            }
            write(&own.join("mine.bin"), Rng::new(4000 + w).bytes(1_500_000));
            // The same bytes as the next writer's twin-of-*.bin.
            write(&own.join(format!("twin-{w}.bin")), Rng::new(5000 + w).bytes(900_000));
            write(
                &own.join(format!("twin-of-{}.bin", (w + WRITERS - 1) % WRITERS)),
                Rng::new(5000 + (w + WRITERS - 1) % WRITERS).bytes(900_000),
            );
            vec![common.clone(), own]
        })
        .collect()
}

/// Runs the four backups at once, then checks every byte and restores
/// every snapshot.
fn four_writers(f: &Fixture) {
    let sets = writer_data(&f.path("src"));
    let expected: Vec<Vec<_>> = sets
        .iter()
        .map(|paths| paths.iter().map(|p| manifest(p)).collect())
        .collect();
    let start = Instant::now();
    let children: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(w, paths)| {
            let mut c = f.cairn();
            c.args(["backup", "--json", "--host", &format!("writer-{w}")]);
            c.args(paths.iter().map(|p| s(p)));
            c.spawn()
        })
        .collect();
    for (w, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("waiting for a writer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "writer {w} failed ({})\n{stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(start.elapsed() < Duration::from_secs(300));

    let check = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(check["report"]["errors"], serde_json::json!([]), "{check:#}");
    assert_eq!(check["ok"], true, "{check:#}");

    let snaps = f.snapshots();
    assert_eq!(snaps.len(), WRITERS as usize, "one snapshot per writer");
    for snap in &snaps {
        let host = str_at(snap, "/host");
        let w: usize = host
            .strip_prefix("writer-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected host {host}"));
        let id = str_at(snap, "/id");
        let target = f.path(&format!("restored-{w}"));
        f.cairn().args(["restore", id, "--target", &s(&target)]).ok();
        for (path, want) in sets[w].iter().zip(&expected[w]) {
            assert_same_tree(want, &manifest(&under(&target, path)));
        }
        fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn four_backups_at_once_into_one_local_repository_all_restore() {
    let f = Fixture::empty();
    f.init_repo(&["--pack-size", "1"]);
    four_writers(&f);
}

#[test]
fn s3_four_backups_at_once_into_one_seaweedfs_repository_all_restore() {
    let Some(sw) = seaweed() else { return };
    let prefix = unique("e2e-writers");
    let f = Fixture::with_config("offsite", |f| {
        let creds = f.root.join("s3.cred");
        sw.write_credentials(&creds);
        format!(
            "[repositories.offsite]\nlocation = \"s3:{endpoint}/{bucket}/{prefix}\"\npassword-file = \"{pw}\"\n\n\
             [repositories.offsite.s3]\nregion = \"us-east-1\"\ncredentials-file = \"{creds}\"\n",
            endpoint = sw.endpoint.trim_end_matches('/'),
            bucket = sw.bucket,
            pw = s(&f.password_file),
            creds = s(&creds),
        )
    });
    f.init_repo(&["--pack-size", "1"]);
    four_writers(&f);
}
