//! How prune reports a failed Object Lock retention extension, without an S3
//! server: a local repository whose listings carry retention dates (as an S3
//! one with `object-lock` does) and whose extension of one object fails.
//! The extension on a real server is tested in s3_object_lock.rs.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::SystemTime;

use cairn_engine::backend::{Backend, BackendError, ObjectKind};
use cairn_engine::{backup, check, prune, BackupOptions, BackupSource, CheckOptions, PruneOptions, Repository};
use cairn_test_support::engine::{cheap_init, CHUNKER, MIB};
use cairn_test_support::pseudo_random;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A local repository whose listings date every object a minute ahead (as
/// an S3 one with `object-lock` does) and whose extension of one object
/// fails: how prune reports a failed extension, without S3.
#[derive(Debug)]
struct FailingExtension {
    inner: cairn_engine::LocalBackend,
    fail: std::sync::Mutex<Option<String>>,
    extended: std::sync::Mutex<Vec<(ObjectKind, String)>>,
}

mod failing_impl {
    use super::{now_ns, FailingExtension};
    use cairn_engine::backend::{ArchiveState, Backend, BackendError, ObjectInfo, ObjectKind, RetrievalRequest};

    impl Backend for FailingExtension {
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
            let mut l = self.inner.list(kind)?;
            if !matches!(kind, ObjectKind::Lock | ObjectKind::Deletion) {
                for o in &mut l {
                    o.retained_until_ns = Some(now_ns() + 60_000_000_000);
                }
            }
            Ok(l)
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
            _until_ns: i64,
            dry_run: bool,
        ) -> Result<Option<i64>, BackendError> {
            if self.fail.lock().unwrap().as_deref() == Some(name) {
                return Err(BackendError::Denied {
                    path: kind.path(name),
                    message: "AccessDenied: Access Denied".into(),
                });
            }
            if !dry_run {
                self.extended.lock().unwrap().push((kind, name.to_string()));
            }
            Ok(Some(now_ns() + 120_000_000_000))
        }
    }
}

#[test]
fn a_failed_extension_fails_prune_naming_the_object_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = std::sync::Arc::new(FailingExtension {
        inner: cairn_engine::LocalBackend::new(dir.path()),
        fail: Default::default(),
        extended: Default::default(),
    });
    let repo = Repository::init(backend.clone(), b"pw", cheap_init(CHUNKER)).unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.bin");
    fs::write(&file, pseudo_random(2 * MIB, 7)).unwrap();
    backup(&repo, BackupSource::Paths(vec![file]), &BackupOptions::default()).unwrap();
    let pack = backend.list(ObjectKind::DataPack).unwrap()[0].name.clone();
    *backend.fail.lock().unwrap() = Some(pack.clone());

    let err = prune(&repo, &PruneOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("could not extend the Object Lock retention of 1 object(s)"),
        "{text}"
    );
    assert!(text.contains(&pack), "the message names the pack: {text}");
    let denied = BackendError::Denied {
        path: "p".into(),
        message: "m".into(),
    };
    assert_eq!(err.kind(), cairn_engine::Error::from(denied).kind());
    // Every other object was still extended, and nothing was removed.
    let extended = backend.extended.lock().unwrap().clone();
    assert!(extended.iter().any(|(k, _)| *k == ObjectKind::Snapshot), "{extended:?}");
    assert!(extended.iter().any(|(k, _)| *k == ObjectKind::Config), "{extended:?}");
    assert!(!extended.iter().any(|(_, n)| *n == pack), "{extended:?}");
    assert_eq!(repo.list_snapshots().unwrap().len(), 1);
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // A dry run extends nothing and fails the same way.
    backend.extended.lock().unwrap().clear();
    let dry = PruneOptions {
        dry_run: true,
        ..Default::default()
    };
    assert!(prune(&repo, &dry).is_err());
    *backend.fail.lock().unwrap() = None;
    let r = prune(&repo, &dry).unwrap();
    assert!(r.plan.retention_extended.objects > 0, "{r:?}");
    assert!(backend.extended.lock().unwrap().is_empty());
}
