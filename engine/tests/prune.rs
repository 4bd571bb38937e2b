//! Prune on a local repository through the engine: what goes, what stays,
//! the two-phase delete and the backup's side of it (format-spec M2–M4,
//! B3, B4, R1, R2). Times are given to prune (`at_ns`), so grace periods
//! pass without waiting.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::backend::ObjectKind;
use cairn_engine::{
    backup, check, forget_snapshots, prune, restore, BackupOptions, BackupSource, CheckOptions, ErrorKind,
    LocalBackend, MaxUnused, ParentChoice, PruneOptions, PruneReport, Repository, RestoreOptions, SnapshotId,
    SourceKind, Stream,
};
use cairn_test_support::engine::{cheap_init, CHUNKER};
use cairn_test_support::pseudo_random;
use cairn_test_support::tree::{assert_same_tree, manifest, under};
use tempfile::TempDir;

const PW: &[u8] = b"prune-test";
const HOUR_NS: i64 = 3600 * 1_000_000_000;

struct Repo {
    dir: TempDir,
    repo: Repository,
    src: TempDir,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(Arc::new(LocalBackend::new(dir.path())), PW, cheap_init(CHUNKER)).unwrap();
        Self {
            dir,
            repo,
            src: tempfile::tempdir().unwrap(),
        }
    }

    /// A folder `name` under the source with `files` (name, size, seed).
    fn folder(&self, name: &str, files: &[(&str, usize, u64)]) -> PathBuf {
        let d = self.src.path().join(name);
        fs::create_dir_all(&d).unwrap();
        for (f, n, seed) in files {
            fs::write(d.join(f), pseudo_random(*n, *seed)).unwrap();
        }
        d
    }

    fn backup(&self, path: &Path) -> SnapshotId {
        let out = backup(
            &self.repo,
            BackupSource::Paths(vec![path.to_path_buf()]),
            &BackupOptions {
                parent: ParentChoice::None,
                ..Default::default()
            },
        )
        .unwrap();
        out.id.unwrap()
    }

    fn prune_at(&self, at_ns: i64, tune: impl FnOnce(&mut PruneOptions)) -> PruneReport {
        let mut o = PruneOptions {
            at_ns: Some(at_ns),
            ..Default::default()
        };
        tune(&mut o);
        prune(&self.repo, &o).unwrap()
    }

    /// Bytes of every pack in the repository.
    fn pack_bytes(&self) -> u64 {
        let b = self.repo.storage();
        [ObjectKind::DataPack, ObjectKind::TreePack]
            .iter()
            .flat_map(|k| b.list(*k).unwrap())
            .map(|o| o.size)
            .sum()
    }

    fn count(&self, kind: ObjectKind) -> usize {
        self.repo.storage().list(kind).unwrap().len()
    }

    fn assert_checks(&self) {
        let r = check(
            &self.repo,
            &CheckOptions {
                read_data: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r.ok(), "check found: {:?}", r.errors);
    }

    /// Restores snapshot `id` and compares it with the folder `src`.
    fn assert_restores(&self, id: &SnapshotId, src: &Path) {
        let snap = self.repo.load_snapshot(id).unwrap();
        let target = tempfile::tempdir().unwrap();
        let t = target.path().join("out");
        restore(&self.repo, &snap, &t, &RestoreOptions::default()).unwrap();
        assert_same_tree(&manifest(src), &manifest(&under(&t, src)));
    }
}

/// `h` hours after the moment every pack written so far is older than the
/// default grace period (younger packs are left alone: they may be a
/// running backup's).
fn t(h: i64) -> i64 {
    cairn_engine::now_ns() + (25 + h) * HOUR_NS
}

#[test]
fn prune_removes_what_only_forgotten_snapshots_held_after_the_grace_period() {
    let r = Repo::new();
    let gone = r.folder("gone", &[("y.bin", 600_000, 1)]);
    let kept = r.folder("kept", &[("x.bin", 500_000, 2)]);
    let a = r.backup(&gone);
    let b = r.backup(&kept);
    let before = r.pack_bytes();
    forget_snapshots(&r.repo, &[a]).unwrap();

    let first = r.prune_at(t(0), |_| {});
    assert_eq!(first.plan.delete.packs, 2, "y's data pack and a's tree pack: {first:?}");
    assert!(first.record.is_some());
    assert_eq!(r.pack_bytes(), before, "the first prune only records");
    assert_eq!(r.count(ObjectKind::Deletion), 1);
    r.assert_checks();
    r.assert_restores(&b, &kept);

    // Within the grace period nothing goes.
    let early = r.prune_at(t(1), |_| {});
    assert_eq!(early.due.records_waiting, 1);
    assert_eq!(early.removed.packs, 0);
    assert_eq!(r.pack_bytes(), before);

    let later = r.prune_at(t(25), |_| {});
    assert_eq!(later.due.records_due, 1);
    assert_eq!(later.removed.packs, 2);
    let after = r.pack_bytes();
    assert!(
        before - after >= 600_000,
        "the repository shrank by {} bytes, less than y's 600000",
        before - after
    );
    r.assert_checks();
    r.assert_restores(&b, &kept);

    // The executed record stays one more grace period (M4), then goes.
    assert_eq!(r.count(ObjectKind::Deletion), 1);
    let last = r.prune_at(t(50), |_| {});
    assert_eq!(last.due.records_finished, 1);
    assert_eq!(r.count(ObjectKind::Deletion), 0);
    r.assert_checks();
}

#[test]
fn partly_used_packs_are_repacked_to_max_unused() {
    let r = Repo::new();
    let d = r.folder("d", &[("keep.bin", 300_000, 3), ("drop.bin", 300_000, 4)]);
    let a = r.backup(&d);
    fs::remove_file(d.join("drop.bin")).unwrap();
    let b = r.backup(&d);
    forget_snapshots(&r.repo, &[a]).unwrap();

    let unlimited = r.prune_at(t(0), |o| {
        o.max_unused = MaxUnused::Unlimited;
        o.dry_run = true;
    });
    assert_eq!(unlimited.plan.repack.packs, 0, "{unlimited:?}");

    let p = r.prune_at(t(0), |o| {
        o.max_unused = MaxUnused::Percent(0.0);
        o.instant_delete = true;
    });
    assert_eq!(p.plan.repack.packs, 1, "{p:?}");
    assert!(p.plan.repack_used_bytes >= 290_000);
    assert!(p.plan.unused_after < 10_000, "{p:?}");
    assert_eq!(r.count(ObjectKind::Deletion), 0, "instant delete leaves no record");
    r.assert_checks();
    r.assert_restores(&b, &d);
    assert!(r.pack_bytes() < 450_000, "drop.bin's data is gone: {}", r.pack_bytes());
}

#[test]
fn a_snapshot_written_after_the_record_keeps_its_packs() {
    let r = Repo::new();
    let gone = r.folder("gone", &[("y.bin", 400_000, 5)]);
    let a = r.backup(&gone);
    let snap_a = r.repo.load_snapshot(&a).unwrap();
    forget_snapshots(&r.repo, &[a]).unwrap();
    r.prune_at(t(0), |_| {});

    // A backup that began before the record and finishes after it: it
    // reused y's blobs. (Its snapshot is the old one's content, saved anew.)
    let mut late = snap_a.clone();
    late.time_ns += 1;
    let late_id = r.repo.save_snapshot(&late).unwrap();

    let p = r.prune_at(t(25), |_| {});
    assert!(p.due.kept_back >= 1, "{p:?}");
    r.assert_checks();
    r.assert_restores(&late_id, &gone);
    // And the next prunes leave it restorable too.
    r.prune_at(t(50), |_| {});
    r.prune_at(t(75), |_| {});
    r.assert_checks();
    r.assert_restores(&late_id, &gone);
}

#[test]
fn a_backup_after_the_record_stores_recorded_data_again() {
    let r = Repo::new();
    let gone = r.folder("gone", &[("y.bin", 400_000, 6)]);
    let a = r.backup(&gone);
    forget_snapshots(&r.repo, &[a]).unwrap();
    r.prune_at(t(0), |_| {});
    let out = backup(
        &r.repo,
        BackupSource::Paths(vec![gone.clone()]),
        &BackupOptions::default(),
    )
    .unwrap();
    assert!(
        out.snapshot.summary.bytes_added_raw >= 400_000,
        "B3: the blobs only recorded packs hold are stored again ({} bytes added)",
        out.snapshot.summary.bytes_added_raw
    );
    let c = out.id.unwrap();
    let p = r.prune_at(t(25), |_| {});
    assert_eq!(p.due.kept_back, 0, "the new copies serve the new snapshot: {p:?}");
    assert!(p.removed.packs >= 1);
    r.assert_checks();
    r.assert_restores(&c, &gone);
}

#[test]
fn a_prune_during_a_stream_backup_fails_it_before_the_snapshot() {
    let r = Repo::new();
    let data = pseudo_random(500_000, 7);
    let stream_backup = |s: Stream| {
        backup(
            &r.repo,
            BackupSource::Stream {
                stream: s,
                filename: "dump.sql".into(),
                kind: SourceKind::Stdin {
                    filename: "dump.sql".into(),
                },
            },
            &BackupOptions::default(),
        )
    };
    let a = stream_backup(Stream::from_reader(Box::new(std::io::Cursor::new(data.clone()))))
        .unwrap()
        .id
        .unwrap();
    forget_snapshots(&r.repo, &[a]).unwrap();

    // The same data again; the prune runs while the backup reads it, after
    // the backup loaded the index (so it deduplicates against the packs the
    // prune records).
    struct PruneOnRead {
        data: std::io::Cursor<Vec<u8>>,
        repo: Option<Repository>,
    }
    impl std::io::Read for PruneOnRead {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if let Some(repo) = self.repo.take() {
                let at = PruneOptions {
                    at_ns: Some(t(0)),
                    ..Default::default()
                };
                prune(&repo, &at).unwrap();
            }
            self.data.read(buf)
        }
    }
    let reader = PruneOnRead {
        data: std::io::Cursor::new(data),
        repo: Some(r.repo.clone()),
    };
    let snapshots_before = r.count(ObjectKind::Snapshot);
    let err = stream_backup(Stream::from_reader(Box::new(reader))).unwrap_err();
    assert!(err.to_string().contains("recorded for deletion"), "{err}");
    assert_eq!(
        r.count(ObjectKind::Snapshot),
        snapshots_before,
        "no snapshot was written"
    );
    r.assert_checks();
}

#[test]
fn unindexed_packs_are_recorded_then_removed() {
    let r = Repo::new();
    let d = r.folder("d", &[("x.bin", 100_000, 8)]);
    let b = r.backup(&d);
    // What a killed backup leaves: a pack no index object names.
    let junk = pseudo_random(5000, 9);
    let name = cairn_engine::ObjectId::of_bytes(&junk).to_hex();
    r.repo.storage().write(ObjectKind::DataPack, &name, &junk).unwrap();
    let p = r.prune_at(t(0), |_| {});
    assert_eq!(p.plan.unindexed.packs, 1, "{p:?}");
    assert!(r.repo.storage().stat(ObjectKind::DataPack, &name).unwrap().is_some());
    r.prune_at(t(25), |_| {});
    assert!(r.repo.storage().stat(ObjectKind::DataPack, &name).unwrap().is_none());
    r.assert_checks();
    r.assert_restores(&b, &d);
}

#[test]
fn damage_stops_prune_before_anything_is_removed() {
    let r = Repo::new();
    let gone = r.folder("gone", &[("y.bin", 200_000, 10)]);
    let d = r.folder("d", &[("x.bin", 200_000, 11)]);
    let a = r.backup(&gone);
    r.backup(&d);
    forget_snapshots(&r.repo, &[a]).unwrap();
    let index = r.repo.storage().list(ObjectKind::Index).unwrap();
    let victim = &index[0].name;
    let path = r.dir.path().join("index").join(victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] ^= 1;
    fs::remove_file(&path).unwrap();
    fs::write(&path, &bytes).unwrap();
    let packs = r.pack_bytes();
    let err = prune(
        &r.repo,
        &PruneOptions {
            instant_delete: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    assert!(err.to_string().contains(victim.as_str()), "{err}");
    assert_eq!(r.pack_bytes(), packs);
    assert_eq!(r.count(ObjectKind::Deletion), 0);
}

#[test]
fn a_missing_pack_stops_prune() {
    let r = Repo::new();
    let d = r.folder("d", &[("x.bin", 200_000, 12)]);
    r.backup(&d);
    let data = r.repo.storage().list(ObjectKind::DataPack).unwrap();
    r.repo.storage().remove(ObjectKind::DataPack, &data[0].name).unwrap();
    let err = prune(&r.repo, &PruneOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn used_blobs_in_recorded_packs_are_rescued_by_the_next_prune() {
    let r = Repo::new();
    let gone = r.folder("gone", &[("y.bin", 300_000, 13)]);
    let a = r.backup(&gone);
    let snap_a = r.repo.load_snapshot(&a).unwrap();
    forget_snapshots(&r.repo, &[a]).unwrap();
    r.prune_at(t(0), |_| {});
    let mut late = snap_a.clone();
    late.time_ns += 1;
    let late_id = r.repo.save_snapshot(&late).unwrap();
    // Before the first record is due, the next prune copies the blobs out.
    let p = r.prune_at(t(1), |_| {});
    assert!(p.plan.rescued_blobs >= 2, "y's data and its trees: {p:?}");
    let q = r.prune_at(t(26), |_| {});
    assert_eq!(q.due.kept_back, 0, "the copies made the old packs unneeded: {q:?}");
    r.assert_checks();
    r.assert_restores(&late_id, &gone);
}

#[test]
fn dry_run_changes_nothing() {
    let r = Repo::new();
    let gone = r.folder("gone", &[("y.bin", 200_000, 14)]);
    let a = r.backup(&gone);
    forget_snapshots(&r.repo, &[a]).unwrap();
    let list = |k| r.repo.storage().list(k).unwrap();
    let before: Vec<_> = ObjectKind::ALL.iter().map(|k| list(*k)).collect();
    let p = r.prune_at(t(0), |o| {
        o.dry_run = true;
        o.instant_delete = true;
        o.grace = Duration::ZERO;
    });
    assert!(p.plan.delete.packs >= 1);
    let after: Vec<_> = ObjectKind::ALL.iter().map(|k| list(*k)).collect();
    assert_eq!(before, after);
}

#[test]
fn temporaries_older_than_the_grace_period_are_removed() {
    let r = Repo::new();
    let d = r.folder("d", &[("x.bin", 100_000, 15)]);
    let b = r.backup(&d);
    let tmp = r.dir.path().join("tmp");
    let old = tmp.join(".tmp-0123456789abcdef01234567");
    let fresh = tmp.join(".tmp-fedcba9876543210fedcba98");
    let foreign = tmp.join("not-ours");
    for p in [&old, &fresh, &foreign] {
        fs::write(p, b"half a pack").unwrap();
    }
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(48 * 3600);
    for p in [&old, &foreign] {
        fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }
    let p = prune(&r.repo, &PruneOptions::default()).unwrap();
    assert_eq!(p.temporaries_removed, 1, "{p:?}");
    assert!(!old.exists());
    assert!(
        fresh.exists(),
        "a write younger than the grace period may still be running"
    );
    assert!(foreign.exists(), "only cairn's own temporary names are removed");
    r.assert_restores(&b, &d);
}

#[test]
fn no_index_describes_a_removed_pack_once_the_records_expire() {
    let r = Repo::new();
    let a = r.backup(&r.folder("a", &[("a.bin", 300_000, 16)]));
    let b = r.folder("b", &[("b.bin", 300_000, 17)]);
    let kept = r.backup(&b);
    forget_snapshots(&r.repo, &[a]).unwrap();
    r.prune_at(t(0), |_| {});
    // A second prune while the first record waits: its new index still
    // describes the recorded packs (they are readable until removed).
    let c = r.backup(&r.folder("c", &[("c.bin", 300_000, 18)]));
    forget_snapshots(&r.repo, &[c]).unwrap();
    let second = r.prune_at(t(2), |_| {});
    assert!(second.record.is_some(), "{second:?}");
    assert_eq!(second.due.records_waiting, 1);
    // Each record is carried out, then expires; check at every step.
    for h in [25, 27, 50, 52, 100] {
        r.prune_at(t(h), |_| {});
        r.assert_checks();
    }
    assert_eq!(r.count(ObjectKind::Deletion), 0);
    r.assert_restores(&kept, &b);
}

/// Storage that slips a prepared snapshot object in right after the first
/// listing of snapshots: a backup that finishes while prune marks.
#[derive(Debug)]
struct LateSnapshot {
    inner: LocalBackend,
    late: std::sync::Mutex<Option<(String, Vec<u8>)>>,
}

mod late_impl {
    use super::LateSnapshot;
    use cairn_engine::backend::{ArchiveState, Backend, BackendError, ObjectInfo, ObjectKind, RetrievalRequest};

    impl Backend for LateSnapshot {
        fn transfers(&self) -> usize {
            self.inner.transfers()
        }
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> Result<(), BackendError> {
            self.inner.create()
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
            let listed = self.inner.list(kind)?;
            if kind == ObjectKind::Snapshot {
                if let Some((name, bytes)) = self.late.lock().unwrap().take() {
                    self.inner.write(kind, &name, &bytes)?;
                }
            }
            Ok(listed)
        }
        fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
            self.inner.read(kind, name)
        }
        fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
            *buf = self.read(kind, name)?;
            Ok(())
        }
        fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
            self.inner.read_range(kind, name, offset, len)
        }
        fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
            self.write(kind, name, data)
        }

        fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            self.inner.write(kind, name, data)
        }
        fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
            self.inner.remove(kind, name)
        }
        fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
            self.inner.stat(kind, name)
        }
        fn archive_state(&self, kind: ObjectKind, name: &str) -> Result<ArchiveState, BackendError> {
            self.inner.archive_state(kind, name)
        }
        fn request_retrieval(&self, kind: ObjectKind, name: &str, how: RetrievalRequest) -> Result<(), BackendError> {
            self.inner.request_retrieval(kind, name, how)
        }
        fn remove_temporaries(&self, older_than_ns: i64) -> Result<usize, BackendError> {
            self.inner.remove_temporaries(older_than_ns)
        }
        fn extend_retention(
            &self,
            kind: ObjectKind,
            name: &str,
            until_ns: i64,
            dry_run: bool,
        ) -> Result<Option<i64>, BackendError> {
            self.inner.extend_retention(kind, name, until_ns, dry_run)
        }
    }
}

#[test]
fn a_snapshot_written_while_prune_marks_keeps_its_packs() {
    let r = Repo::new();
    let gone = r.folder("gone", &[("y.bin", 400_000, 19)]);
    let a = r.backup(&gone);
    let mut late = r.repo.load_snapshot(&a).unwrap();
    forget_snapshots(&r.repo, &[a]).unwrap();
    r.prune_at(t(0), |_| {});
    // The snapshot a long backup writes while the next prune marks: it
    // reuses blobs that only the recorded packs hold.
    late.time_ns += 1;
    let late_id = r.repo.save_snapshot(&late).unwrap();
    let bytes = r.repo.storage().read(ObjectKind::Snapshot, &late_id.to_hex()).unwrap();
    r.repo
        .storage()
        .remove(ObjectKind::Snapshot, &late_id.to_hex())
        .unwrap();
    let slipping = Arc::new(LateSnapshot {
        inner: LocalBackend::new(r.dir.path()),
        late: std::sync::Mutex::new(Some((late_id.to_hex(), bytes))),
    });
    let repo = Repository::open(slipping, PW).unwrap();
    let p = prune(
        &repo,
        &PruneOptions {
            at_ns: Some(t(25)),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(p.due.kept_back >= 1, "the late snapshot's packs are kept: {p:?}");
    r.assert_checks();
    r.assert_restores(&late_id, &gone);
}
