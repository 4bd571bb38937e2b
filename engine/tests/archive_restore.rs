//! Restores from packs in an archive storage class, against a backend that
//! behaves as S3 does for GLACIER objects (reads fail until a retrieval is
//! requested and finished). The real-server version runs on moto in
//! `s3_backend.rs`; this one pins the engine's logic.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_engine::backend::{ArchiveState, Backend, BackendError, ObjectInfo, ObjectKind, RetrievalRequest};
use cairn_engine::ChunkerParams;
use cairn_engine::{backup, restore, BackupOptions, BackupSource, MemoryBackend, Repository, RestoreOptions};
use cairn_engine::{RestoreError, RetrievalOptions};
use cairn_test_support::engine::cheap_init;
use cairn_test_support::tree::{assert_same_tree, manifest, under};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Glacier {
    Archived,
    /// Requested; readable after this many more state queries.
    Retrieving(u32),
    Restored,
}

/// Memory backend whose data packs can be "moved to GLACIER".
#[derive(Debug, Default)]
struct ArchiveBackend {
    inner: MemoryBackend,
    glacier: Mutex<HashMap<String, Glacier>>,
    requests: Mutex<Vec<String>>,
    polls_until_ready: u32,
}

impl ArchiveBackend {
    fn archive_all_data(&self) {
        let mut g = self.glacier.lock().unwrap();
        for o in self.inner.list(ObjectKind::DataPack).unwrap() {
            g.insert(o.name, Glacier::Archived);
        }
    }
    fn readable(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
        if kind == ObjectKind::DataPack {
            match self.glacier.lock().unwrap().get(name) {
                Some(Glacier::Archived) | Some(Glacier::Retrieving(_)) => {
                    return Err(BackendError::Archived { path: kind.path(name) })
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Backend for ArchiveBackend {
    fn transfers(&self) -> usize {
        self.inner.transfers()
    }
    fn create(&self) -> Result<(), BackendError> {
        self.inner.create()
    }

    fn location(&self) -> String {
        "archive-test".into()
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.readable(kind, name)?;
        self.inner.read(kind, name)
    }
    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        *buf = self.read(kind, name)?;
        Ok(())
    }
    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.readable(kind, name)?;
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
        let mut g = self.glacier.lock().unwrap();
        let class = "GLACIER".to_string();
        Ok(match g.get(name).copied() {
            _ if kind != ObjectKind::DataPack => ArchiveState::Readable,
            None | Some(Glacier::Restored) => ArchiveState::Readable,
            Some(Glacier::Archived) => ArchiveState::Archived { class },
            Some(Glacier::Retrieving(0)) => {
                g.insert(name.to_string(), Glacier::Restored);
                ArchiveState::Readable
            }
            Some(Glacier::Retrieving(n)) => {
                g.insert(name.to_string(), Glacier::Retrieving(n - 1));
                ArchiveState::Retrieving { class }
            }
        })
    }
    fn request_retrieval(&self, kind: ObjectKind, name: &str, _how: RetrievalRequest) -> Result<(), BackendError> {
        assert_eq!(kind, ObjectKind::DataPack);
        self.requests.lock().unwrap().push(name.to_string());
        let mut g = self.glacier.lock().unwrap();
        if g.get(name) == Some(&Glacier::Archived) {
            g.insert(name.to_string(), Glacier::Retrieving(self.polls_until_ready));
        }
        Ok(())
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

fn setup(
    polls: u32,
) -> (
    Arc<ArchiveBackend>,
    Repository,
    tempfile::TempDir,
    cairn_engine::Snapshot,
) {
    let backend = Arc::new(ArchiveBackend {
        polls_until_ready: polls,
        ..Default::default()
    });
    let repo = Repository::init(
        backend.clone(),
        b"pw",
        cheap_init(ChunkerParams {
            seed: 1,
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
        }),
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    for i in 0..4u8 {
        let data: Vec<u8> = (0..1_500_000u32)
            .map(|x| (x.wrapping_mul(2654435761) >> (i + 3)) as u8)
            .collect();
        std::fs::write(src.path().join(format!("f{i}")), data).unwrap();
    }
    let out = backup(
        &repo,
        BackupSource::Paths(vec![src.path().to_path_buf()]),
        &BackupOptions::default(),
    )
    .unwrap();
    let snap = repo.load_snapshot(&out.id.unwrap()).unwrap();
    backend.archive_all_data();
    (backend, repo, src, snap)
}

/// The restore under `target` is the backed-up tree `src`, entry by entry.
fn same_tree(src: &Path, target: &Path) {
    assert_same_tree(&manifest(src), &manifest(&under(target, src)));
}

#[test]
fn metadata_commands_need_no_retrieval() {
    let (backend, repo, _src, snap) = setup(0);
    assert_eq!(repo.list_snapshots().unwrap().len(), 1);
    let index = repo.load_index().unwrap();
    let mut n = 0;
    cairn_engine::walk_snapshot(&repo, &index, &snap, "/", true, &mut |_, _| n += 1).unwrap();
    assert!(n > 4);
    let report = cairn_engine::check(&repo, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    assert!(backend.requests.lock().unwrap().is_empty());
}

#[test]
fn restore_requests_once_stops_pending_then_resumes() {
    let (backend, repo, src, snap) = setup(1);
    let packs = backend.inner.list(ObjectKind::DataPack).unwrap().len();
    assert!(packs >= 2);
    let target = tempfile::tempdir().unwrap();
    let opts = RestoreOptions {
        check_archive_first: true,
        ..Default::default()
    };
    let e = restore(&repo, &snap, target.path(), &opts).unwrap_err();
    let cairn_engine::Error::Restore(RestoreError::RetrievalPending { objects, report, .. }) = e else {
        panic!("expected pending, got {e}")
    };
    assert_eq!(objects, packs);
    assert_eq!(report.requested_now, packs);
    assert!(!report.estimates.is_empty());
    // Second run: still retrieving (one more poll), nothing requested twice.
    let e = restore(&repo, &snap, target.path(), &opts).unwrap_err();
    let cairn_engine::Error::Restore(RestoreError::RetrievalPending { report, .. }) = e else {
        panic!("expected pending, got {e}")
    };
    assert_eq!(report.requested_now, 0);
    assert_eq!(report.already_in_progress, packs);
    assert_eq!(backend.requests.lock().unwrap().len(), packs);
    // Third run: retrievals done; the restore resumes over its own files.
    restore(&repo, &snap, target.path(), &opts).unwrap();
    same_tree(src.path(), target.path());
    assert!(!target.path().join(cairn_engine::IN_PROGRESS_MARKER).exists());
}

#[test]
fn lifecycle_moved_packs_found_while_reading_are_retrieved_with_wait() {
    let (backend, repo, src, snap) = setup(2);
    let target = tempfile::tempdir().unwrap();
    // No up-front check: the first read meets the archived pack.
    let opts = RestoreOptions {
        check_archive_first: false,
        retrieval: RetrievalOptions {
            wait: true,
            poll_initial: Duration::from_millis(5),
            poll_max: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    };
    let s = restore(&repo, &snap, target.path(), &opts).unwrap();
    assert!(s.bytes > 0);
    same_tree(src.path(), target.path());
    let packs = backend.inner.list(ObjectKind::DataPack).unwrap().len();
    assert_eq!(backend.requests.lock().unwrap().len(), packs);
}

#[test]
fn check_read_data_retrieves_archived_packs_once_then_verifies_them() {
    let (backend, repo, _src, _snap) = setup(1);
    let packs = backend.inner.list(ObjectKind::DataPack).unwrap().len();
    let opts = cairn_engine::CheckOptions {
        read_data: true,
        retrieval: Some(RetrievalOptions::default()),
        ..Default::default()
    };
    // Without retrieval options archived packs are only reported unread.
    let plain = cairn_engine::check(
        &repo,
        &cairn_engine::CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(plain.ok(), "{:?}", plain.errors);
    assert_eq!(plain.archived_unread, packs);
    assert!(backend.requests.lock().unwrap().is_empty());
    // First run: requests each archived pack once, reads none of them yet.
    let r = cairn_engine::check(&repo, &opts).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
    assert_eq!(r.archived_unread, packs);
    assert_eq!(r.retrieval.as_ref().unwrap().requested_now, packs);
    // Second run: still in progress, nothing requested again.
    let r = cairn_engine::check(&repo, &opts).unwrap();
    assert_eq!(r.retrieval.as_ref().unwrap().already_in_progress, packs);
    assert_eq!(backend.requests.lock().unwrap().len(), packs);
    // Third run: retrieved, so every pack is read and verified.
    let r = cairn_engine::check(&repo, &opts).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
    assert_eq!(r.archived_unread, 0);
    assert!(r.bytes_read > 0);
}

#[test]
fn check_read_data_with_wait_reads_archived_packs_as_they_become_readable() {
    let (backend, repo, _src, _snap) = setup(2);
    let opts = cairn_engine::CheckOptions {
        read_data: true,
        retrieval: Some(RetrievalOptions {
            wait: true,
            poll_initial: Duration::from_millis(5),
            poll_max: Duration::from_millis(20),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = cairn_engine::check(&repo, &opts).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
    assert_eq!(r.archived_unread, 0);
    let packs = backend.inner.list(ObjectKind::DataPack).unwrap().len();
    assert_eq!(backend.requests.lock().unwrap().len(), packs);
}
