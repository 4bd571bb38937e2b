//! S3 Object Lock through the `cairn` binary: a profile with `object-lock`
//! on SeaweedFS's Object Lock bucket (SeaweedFS enforces Object Lock; moto
//! only partly: see engine/tests/s3_object_lock.rs). A forget+prune before
//! the retention date deletes nothing and says why; after it, they remove
//! what is unused.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use cairn_engine::backend::s3::{ObjectLock, ObjectLockMode, S3Backend, S3Credentials, S3Options};
use cairn_engine::backend::{Backend, ObjectKind};
use cairn_test_support::s3::seaweed;
use serde_json::Value;

use super::*;

/// SeaweedFS with its Object Lock bucket, or `None` when S3 tests are skipped.
fn locked_server() -> Option<Server> {
    let mut s = seaweed()?;
    s.bucket = std::env::var("CAIRN_TEST_S3_LOCKED_BUCKET").unwrap_or_else(|_| {
        panic!(
            "CAIRN_TEST_S3_LOCKED_BUCKET is not set: restart the servers with `scripts/s3-servers.sh start` (it \
             creates the Object Lock bucket) and source target/s3-servers.env again"
        )
    });
    Some(s)
}

/// Every object of the repository at `prefix`, by kind and name.
fn objects(b: &S3Backend) -> BTreeSet<(ObjectKind, String)> {
    let mut out = BTreeSet::new();
    for k in ObjectKind::ALL {
        out.extend(b.list(k).unwrap().into_iter().map(|o| (k, o.name)));
    }
    out
}

#[test]
fn s3_object_lock_forget_prune_delete_nothing_before_the_date_and_everything_unused_after() {
    let Some(sw) = locked_server() else { return };
    // No days: the retention table's longest max-age (2 days) is the default.
    let (f, prefix) = s3_fixture(
        &sw,
        "object-lock",
        &[profile(
            "immutable",
            &sw.endpoint,
            "object-lock = { mode = \"governance\" }\n\n[[retention]]\nmax-age = \"2d\"\nkeep-last = 1\n\n\
             [[retention]]\nmax-age = \"1d\"",
        )],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    write(&src.join("a.bin"), Rng::new(1).bytes(3_000_000));
    let first = f.backup(&[&s(&src)]);
    write(&src.join("a.bin"), Rng::new(2).bytes(3_000_000));
    let second = f.backup(&[&s(&src)]);
    let first_id = str_at(&first, "/snapshot_id").to_string();
    let second_id = str_at(&second, "/snapshot_id").to_string();

    let cred = sw.creds_file();
    let o = S3Options {
        credentials: S3Credentials::File(cred.path().to_path_buf()),
        ..Default::default()
    };
    let b = S3Backend::open(&sw.location(&prefix), &o).unwrap();
    // Written with the default: now + 2 days (S3 keeps whole seconds).
    let until = b.retained_until(ObjectKind::Snapshot, &second_id).unwrap().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let two_days = 2 * 86_400 * 1_000_000_000i64;
    assert!(
        (now + two_days - 120_000_000_000..=now + two_days).contains(&until),
        "{until} vs {now}"
    );
    assert_eq!(
        b.list(ObjectKind::Lock).unwrap().len(),
        0,
        "the command's lock went for real"
    );
    let before = objects(&b);

    // Before the date, for people: the first snapshot is kept and named.
    let run = f
        .cairn()
        .args(["forget", "--keep-last", "1", "--prune", "--instant-delete"])
        .ok();
    let out = run.stdout() + &run.stderr();
    assert!(out.contains("kept 1 snapshot(s) under Object Lock retention"), "{run}");
    assert!(out.contains(&format!("{} retained until", &first_id[..8])), "{run}");
    assert!(out.contains("under Object Lock retention until"), "{run}");
    // And for scripts.
    let v = f
        .cairn()
        .args(["forget", "--keep-last", "1", "--prune", "--instant-delete"])
        .json();
    let retained = &v["forget"][0]["retained"];
    assert_eq!(retained[0]["id"], Value::String(first_id.clone()), "{v:#}");
    assert!(
        retained[0]["until"].as_str().is_some_and(|u| u.starts_with("20")),
        "{v:#}"
    );
    assert_eq!(u64_at(&v, "/prune/removed/packs"), 0, "{v:#}");
    assert!(u64_at(&v, "/prune/plan/retained/index_objects") > 0, "{v:#}");
    assert!(v["prune"]["plan"]["retained"]["until"].is_string(), "{v:#}");
    let after = objects(&b);
    let gone: Vec<_> = before.difference(&after).collect();
    assert!(gone.is_empty(), "removed under retention: {gone:?}");
    assert_eq!(f.snapshots().len(), 2);

    // After the date (governance retention moved back by a privileged user,
    // rather than waiting two days): the same command removes the first
    // snapshot and the data only it used.
    assert!(
        b.set_governance_retention_all(SystemTime::now() + Duration::from_secs(2))
            .unwrap()
            > 0
    );
    std::thread::sleep(Duration::from_secs(4));
    // Every date has passed, so what is in use is due for an extension; a
    // dry run says so and changes no date.
    let passed = b.retained_until(ObjectKind::Snapshot, &second_id).unwrap().unwrap();
    let run = f.cairn().args(["prune", "--dry-run"]).ok();
    assert!(run.stdout().contains("would extend Object Lock retention of "), "{run}");
    let v = f.cairn().args(["prune", "--dry-run"]).json();
    assert!(u64_at(&v, "/plan/retention_extended/objects") > 0, "{v:#}");
    assert!(v["plan"]["retention_extended"]["until"].is_string(), "{v:#}");
    assert_eq!(
        b.retained_until(ObjectKind::Snapshot, &second_id).unwrap(),
        Some(passed),
        "a dry run changed a retention date"
    );
    let v = f
        .cairn()
        .args(["forget", "--keep-last", "1", "--prune", "--instant-delete"])
        .json();
    assert!(v["forget"][0].get("retained").is_none(), "{v:#}");
    assert!(u64_at(&v, "/prune/removed/packs") > 0, "{v:#}");
    // What is still in use was extended to now + 2 days again.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert_eq!(u64_at(&v, "/prune/plan/retention_extended/snapshots"), 1, "{v:#}");
    assert!(u64_at(&v, "/prune/plan/retention_extended/packs") > 0, "{v:#}");
    // Listed with `object-lock` set, so the listing carries the dates.
    let dated = S3Backend::open(
        &sw.location(&prefix),
        &S3Options {
            object_lock: Some(ObjectLock::days(ObjectLockMode::Governance, 2)),
            ..o.clone()
        },
    )
    .unwrap();
    for k in [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Snapshot,
        ObjectKind::Index,
        ObjectKind::DataPack,
        ObjectKind::TreePack,
    ] {
        for o in dated.list(k).unwrap() {
            let u = o
                .retained_until_ns
                .unwrap_or_else(|| panic!("{k} {} carries no retention", o.name));
            assert!(
                (now + two_days - 120_000_000_000..=now + two_days).contains(&u),
                "{k} {} in use: retained until {u}, now {now}",
                o.name
            );
        }
    }
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], Value::String(second_id.clone()));
    let after = objects(&b);
    assert!(!after.contains(&(ObjectKind::Snapshot, first_id.clone())));
    // Removed for real: not hidden behind a delete marker.
    assert_eq!(b.version_count(ObjectKind::Snapshot, &first_id).unwrap(), 0);
    let check = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    let target = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_eq!(entry(&under(&target, &src).join("a.bin")), entry(&src.join("a.bin")));
}
