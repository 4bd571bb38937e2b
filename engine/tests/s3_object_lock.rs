//! S3 Object Lock against a real server: SeaweedFS, in a bucket created with
//! Object Lock enabled (`cairn-test-locked`, made by `scripts/s3-servers.sh`).
//!
//! Which test server enforces Object Lock (found with boto3 against the
//! versions the script installs, SeaweedFS 4.48 and moto 5.2.5):
//! - SeaweedFS: `DeleteObject` with the version id of a version under
//!   retention is refused (`AccessDenied`) in COMPLIANCE and in GOVERNANCE
//!   mode (GOVERNANCE yields to `x-amz-bypass-governance-retention`), for
//!   single PUTs and multipart uploads; shortening a retention is refused,
//!   extending it allowed; `HeadObject`/`GetObjectRetention` show the date;
//!   once the date has passed the versioned delete succeeds.
//! - moto: refuses the versioned delete of a single PUT, but lets a multipart
//!   upload's locked version be deleted, lets COMPLIANCE retention be
//!   shortened, and answers `GetObjectRetention` with HTTP 500. So SeaweedFS.
//! - Both: `DeleteObject` **without** a version id is accepted even on a
//!   locked object and only adds a delete marker (S3 semantics): the object
//!   vanishes from listings and reads while its version stays stored.
//!
//! Start the servers first (`scripts/s3-servers.sh start`, then
//! `set -a; . target/s3-servers.env; set +a`); `CAIRN_SKIP_S3=1` skips these
//! tests loudly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::{Duration, SystemTime};

use cairn_engine::backend::s3::{ObjectLock, ObjectLockMode, S3Backend, S3Options};
use cairn_engine::backend::{open_location_with, Backend, BackendError, BackendOptions, ObjectKind};
use cairn_engine::{
    backup, check, forget_snapshots, prune, BackupOptions, BackupSource, CheckOptions, PruneOptions, Repository,
};
use cairn_test_support::engine::{cheap_init, CHUNKER, MIB};
use cairn_test_support::pseudo_random;
use cairn_test_support::s3::{seaweed, unique, Server};

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

fn name(i: u32) -> String {
    hex::encode(blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn every_object_but_locks_carries_retention_and_a_locked_delete_fails_clearly() {
    let Some(s) = locked_server() else { return };
    let day = Duration::from_secs(86_400);
    let b = s.backend(&unique("lock-write"), |o: &mut S3Options| {
        o.object_lock = Some(ObjectLock::days(ObjectLockMode::Compliance, 1));
        o.multipart_threshold = 5 * MIB as u64;
        o.multipart_part_size = 5 * MIB as u64;
    });
    let before = now_ns();
    let kinds = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Snapshot,
        ObjectKind::Index,
        ObjectKind::TreePack,
        ObjectKind::DataPack,
        ObjectKind::Lock,
        ObjectKind::Deletion,
    ];
    for (i, k) in kinds.iter().enumerate() {
        let n = if *k == ObjectKind::Config {
            "config".to_string()
        } else {
            name(i as u32)
        };
        b.write(*k, &n, format!("object {i}").as_bytes()).unwrap();
    }
    // Above the threshold: a multipart upload, which must carry it too.
    let big = pseudo_random(11 * MIB, 3);
    b.write(ObjectKind::DataPack, &name(100), &big).unwrap();
    let after = now_ns();

    for (i, k) in kinds.iter().enumerate() {
        let n = if *k == ObjectKind::Config {
            "config".to_string()
        } else {
            name(i as u32)
        };
        let until = b.retained_until(*k, &n).unwrap();
        if matches!(k, ObjectKind::Lock | ObjectKind::Deletion) {
            assert_eq!(
                until, None,
                "{k} must carry no retention (locks are removed after each command)"
            );
        } else {
            let u = until.unwrap_or_else(|| panic!("{k} carries no retention"));
            // S3 keeps retention dates to the second.
            let (lo, hi) = (
                before + day.as_nanos() as i64 - 2_000_000_000,
                after + day.as_nanos() as i64 + 2_000_000_000,
            );
            assert!((lo..=hi).contains(&u), "{k}: retained until {u}, expected {lo}..={hi}");
        }
    }
    let u = b.retained_until(ObjectKind::DataPack, &name(100)).unwrap().unwrap();
    assert!(
        u > before + day.as_nanos() as i64 - 2_000_000_000,
        "multipart upload: {u}"
    );
    // Listings carry the dates prune plans with.
    let listed = b.list(ObjectKind::DataPack).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|o| o.retained_until_ns.is_some_and(|u| u > after)),
        "{listed:?}"
    );

    // A delete of a locked object fails, says why and until when, and leaves
    // the object readable with no delete marker hiding it.
    for (n, data) in [(name(5), b"object 5".to_vec()), (name(100), big.clone())] {
        match b.remove(ObjectKind::DataPack, &n) {
            Err(e @ BackendError::Retained { .. }) => {
                let text = e.to_string();
                assert!(text.contains("under Object Lock retention until 20"), "{text}");
            }
            other => panic!("remove of a locked pack: {other:?}"),
        }
        assert_eq!(b.read(ObjectKind::DataPack, &n).unwrap(), data);
        assert_eq!(b.version_count(ObjectKind::DataPack, &n).unwrap(), 1);
    }
    assert_eq!(
        cairn_engine::ErrorKind::Storage,
        cairn_engine::Error::from(BackendError::Retained {
            path: "p".into(),
            until: "u".into()
        })
        .kind()
    );

    // Locks and deletion records go for real: no version stays behind.
    for k in [ObjectKind::Lock, ObjectKind::Deletion] {
        let n = name(kinds.iter().position(|x| *x == k).unwrap() as u32);
        b.remove(k, &n).unwrap();
        assert_eq!(b.version_count(k, &n).unwrap(), 0, "{k}");
        assert!(matches!(b.remove(k, &n), Err(BackendError::NotFound { .. })));
    }

    // The S3 semantics that make the versioned delete necessary: a backend
    // without the setting deletes "successfully", leaving a marker and the
    // version; the locked backend still names the retention.
    let plain = S3Backend::open(&b.location(), &s.options(|_| {}).0).unwrap();
    plain.remove(ObjectKind::Snapshot, &name(2)).unwrap();
    assert_eq!(plain.stat(ObjectKind::Snapshot, &name(2)).unwrap(), None);
    assert_eq!(b.version_count(ObjectKind::Snapshot, &name(2)).unwrap(), 2);
    assert!(matches!(
        b.remove(ObjectKind::Snapshot, &name(2)),
        Err(BackendError::Retained { .. })
    ));
}

#[test]
fn once_the_date_has_passed_a_removal_deletes_every_version() {
    let Some(s) = locked_server() else { return };
    let b = s.backend(&unique("lock-pass"), |o: &mut S3Options| {
        o.object_lock = Some(ObjectLock {
            mode: ObjectLockMode::Governance,
            retain: Duration::from_secs(3),
        });
    });
    b.write(ObjectKind::DataPack, &name(1), b"short").unwrap();
    assert!(matches!(
        b.remove(ObjectKind::DataPack, &name(1)),
        Err(BackendError::Retained { .. })
    ));
    std::thread::sleep(Duration::from_secs(5));
    b.remove(ObjectKind::DataPack, &name(1)).unwrap();
    assert_eq!(b.version_count(ObjectKind::DataPack, &name(1)).unwrap(), 0);
    assert_eq!(b.stat(ObjectKind::DataPack, &name(1)).unwrap(), None);
}

/// Every object of the repository, by kind and name.
fn objects(b: &dyn Backend) -> Vec<(ObjectKind, String)> {
    let mut out = Vec::new();
    for k in ObjectKind::ALL {
        out.extend(b.list(k).unwrap().into_iter().map(|o| (k, o.name)));
    }
    out
}

#[test]
fn forget_and_prune_keep_what_is_retained_and_remove_it_after_the_date() {
    let Some(s) = locked_server() else { return };
    let (mut s3, _f) = s.options(|_| {});
    s3.object_lock = Some(ObjectLock::days(ObjectLockMode::Governance, 1));
    let opts = BackendOptions {
        s3,
        ..Default::default()
    };
    let location = s.location(&unique("lock-prune"));
    let repo = Repository::init(
        open_location_with(&location, &opts).unwrap(),
        b"pw",
        cheap_init(CHUNKER),
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.bin");
    let mut ids = Vec::new();
    for seed in [1, 2] {
        fs::write(&file, pseudo_random(3 * MIB, seed)).unwrap();
        backup(
            &repo,
            BackupSource::Paths(vec![file.clone()]),
            &BackupOptions::default(),
        )
        .unwrap();
        ids.push(
            repo.list_snapshots()
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .find(|id| !ids.contains(id))
                .unwrap(),
        );
    }
    let b = repo.storage().clone();
    let before = objects(b.as_ref());

    // Before the date: forget keeps the snapshot and names it; prune
    // deletes nothing and says how much it kept, until when.
    let out = forget_snapshots(&repo, &ids[..1]).unwrap();
    assert!(out.removed.is_empty(), "{out:?}");
    assert_eq!(out.retained.len(), 1);
    assert_eq!(out.retained[0].id, ids[0]);
    let instant = PruneOptions {
        instant_delete: true,
        ..Default::default()
    };
    let r = prune(&repo, &instant).unwrap();
    assert_eq!(r.removed.packs, 0, "{r:?}");
    let after = objects(b.as_ref());
    for o in &before {
        assert!(after.contains(o), "{o:?} was removed while under retention");
    }
    assert_eq!(repo.list_snapshots().unwrap().len(), 2);

    // Forgotten by a backend that cannot see the retention (a plain delete
    // that only hides it): prune then keeps the retained packs it planned to
    // delete, and says so.
    let hide = S3Backend::open(&location, &s.options(|_| {}).0).unwrap();
    hide.remove(ObjectKind::Snapshot, &ids[0].to_hex()).unwrap();
    let r = prune(&repo, &instant).unwrap();
    assert_eq!(r.removed.packs, 0, "{r:?}");
    assert!(r.plan.retained.packs.packs > 0, "{r:?}");
    assert!(r.plan.retained.until.is_some(), "{r:?}");
    assert_eq!(r.plan.delete.packs, 0, "{r:?}");
    assert_eq!(r.plan.repack.packs, 0, "{r:?}");
    let after = objects(b.as_ref());
    for o in before
        .iter()
        .filter(|(k, n)| !(*k == ObjectKind::Snapshot && *n == ids[0].to_hex()))
    {
        assert!(after.contains(o), "{o:?} was removed while under retention");
    }
    assert!(check(&repo, &CheckOptions::default()).unwrap().errors.is_empty());

    // After the date (governance retention moved to the past, as only a
    // privileged user can): the same prune removes the unused data.
    let lock = S3Backend::open(&location, &s.options(|_| {}).0).unwrap();
    assert!(
        lock.set_governance_retention_all(SystemTime::now() + Duration::from_secs(2))
            .unwrap()
            > 0
    );
    std::thread::sleep(Duration::from_secs(4));
    let r = prune(&repo, &instant).unwrap();
    assert!(r.removed.packs > 0, "{r:?}");
    assert!(r.plan.retained.is_empty(), "{r:?}");
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// The retention date of every object that carries one, by kind and name,
/// as a listing with `object-lock` set reports it.
fn dates(b: &dyn Backend) -> std::collections::BTreeMap<(ObjectKind, String), i64> {
    let mut out = std::collections::BTreeMap::new();
    for k in ObjectKind::ALL {
        for o in b.list(k).unwrap() {
            if let Some(u) = o.retained_until_ns {
                out.insert((k, o.name), u);
            }
        }
    }
    out
}

/// Data packs as listed now.
fn data_packs(b: &dyn Backend) -> std::collections::BTreeSet<String> {
    b.list(ObjectKind::DataPack)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

#[test]
fn prune_extends_the_retention_of_what_is_in_use_and_only_that() {
    let Some(s) = locked_server() else { return };
    let period = Duration::from_secs(60);
    let (mut s3, _f) = s.options(|_| {});
    s3.object_lock = Some(ObjectLock {
        mode: ObjectLockMode::Governance,
        retain: period,
    });
    let opts = BackendOptions {
        s3,
        ..Default::default()
    };
    let location = s.location(&unique("lock-extend"));
    let repo = Repository::init(
        open_location_with(&location, &opts).unwrap(),
        b"pw",
        cheap_init(CHUNKER),
    )
    .unwrap();
    let b = repo.storage().clone();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.bin");
    let mut ids = Vec::new();
    let mut first_packs = Default::default();
    for seed in [1, 2] {
        fs::write(&file, pseudo_random(3 * MIB, seed)).unwrap();
        backup(
            &repo,
            BackupSource::Paths(vec![file.clone()]),
            &BackupOptions::default(),
        )
        .unwrap();
        ids.push(
            repo.list_snapshots()
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .find(|id| !ids.contains(id))
                .unwrap(),
        );
        if seed == 1 {
            first_packs = data_packs(b.as_ref());
        }
    }
    let second_packs: std::collections::BTreeSet<String> =
        data_packs(b.as_ref()).difference(&first_packs).cloned().collect();
    assert!(!first_packs.is_empty() && !second_packs.is_empty());
    let admin = S3Backend::open(&location, &s.options(|_| {}).0).unwrap();
    let period_ns = period.as_nanos() as i64;
    // S3 keeps dates to the second; prune's clock and the test's differ by
    // the run's length.
    let near_full =
        |u: i64, t0: i64, t1: i64| (t0 + period_ns - 2_000_000_000..=t1 + period_ns + 2_000_000_000).contains(&u);

    // 1. Nothing to delete, every date within half the period: prune
    //    extends everything (packs, index objects, snapshots, keys, config).
    admin
        .set_governance_retention_all(SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    let before = dates(b.as_ref());
    assert!(before.keys().any(|(k, _)| *k == ObjectKind::Config), "{before:?}");
    assert!(before.keys().any(|(k, _)| *k == ObjectKind::Index), "{before:?}");
    let dry = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(dry.plan.retention_extended.objects, before.len(), "{dry:?}");
    assert_eq!(dates(b.as_ref()), before, "a dry run changed a retention date");
    let t0 = now_ns();
    let r = prune(&repo, &PruneOptions::default()).unwrap();
    let t1 = now_ns();
    assert_eq!(r.plan.delete.packs + r.plan.repack.packs, 0, "{r:?}");
    let x = &r.plan.retention_extended;
    assert_eq!(x.objects, before.len(), "{x:?}");
    assert_eq!(x.snapshots, 2, "{x:?}");
    assert_eq!(
        x.packs,
        before
            .keys()
            .filter(|(k, _)| matches!(k, ObjectKind::DataPack | ObjectKind::TreePack))
            .count(),
        "{x:?}"
    );
    assert!(near_full(x.until_ns.unwrap(), t0, t1), "{x:?}");
    let after = dates(b.as_ref());
    assert_eq!(after.len(), before.len());
    for (o, u) in &after {
        assert!(
            near_full(*u, t0, t1),
            "{o:?} retained until {u}, expected about now + {period:?}"
        );
        assert_eq!(
            admin.retained_until(o.0, &o.1).unwrap(),
            Some(*u),
            "{o:?}: HeadObject disagrees"
        );
    }
    // Dates far enough ahead are left alone.
    let again = prune(&repo, &PruneOptions::default()).unwrap();
    assert_eq!(again.plan.retention_extended.objects, 0, "{again:?}");
    assert_eq!(dates(b.as_ref()), after);

    // 2. After the date, the first snapshot forgotten: prune records its
    //    packs for deletion and extends only what the second one uses.
    admin
        .set_governance_retention_all(SystemTime::now() + Duration::from_secs(2))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let out = forget_snapshots(&repo, &ids[..1]).unwrap();
    assert_eq!(out.removed.len(), 1, "{out:?}");
    let before = dates(b.as_ref());
    let t0 = now_ns();
    // A short grace period: the packs are seconds old.
    let short = PruneOptions {
        grace: Duration::from_secs(1),
        ..Default::default()
    };
    let r = prune(&repo, &short).unwrap();
    let t1 = now_ns();
    assert!(r.plan.delete.packs >= first_packs.len(), "{r:?}");
    let after = dates(b.as_ref());
    for p in &second_packs {
        let u = after[&(ObjectKind::DataPack, p.clone())];
        assert!(near_full(u, t0, t1), "pack {p} in use: retained until {u}");
    }
    for p in &first_packs {
        let k = (ObjectKind::DataPack, p.clone());
        assert_eq!(after[&k], before[&k], "pack {p} no longer in use was extended");
        assert!(after[&k] < t0, "pack {p}");
    }
    for (k, n) in [
        (ObjectKind::Snapshot, ids[1].to_hex()),
        (ObjectKind::Config, "config".into()),
    ] {
        assert!(near_full(after[&(k, n.clone())], t0, t1), "{k} {n}");
    }
    // The old index objects are recorded for deletion: not extended; the
    // new one carries a fresh date.
    for ((k, n), u) in before.iter().filter(|((k, _), _)| *k == ObjectKind::Index) {
        assert_eq!(after[&(*k, n.clone())], *u, "superseded index object {n} was extended");
    }
    assert!(after
        .iter()
        .any(|((k, n), u)| *k == ObjectKind::Index && !before.contains_key(&(*k, n.clone())) && *u > t0));
    assert_eq!(
        r.plan.retention_extended.packs,
        second_packs.len()
            + after
                .keys()
                .filter(|(k, n)| *k == ObjectKind::TreePack
                    && after[&(*k, n.clone())] > t0
                    && before.contains_key(&(*k, n.clone())))
                .count(),
        "{r:?}"
    );
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}
