//! A wrapper that reads through and discards every change: `--dry-run`.
//!
//! Everything that only looks (reads, listings, `stat`, `archive_state`)
//! goes to the wrapped backend, so a dry run sees the repository as it is,
//! archived packs included. Everything that would change something is
//! answered `Ok` without reaching it: `write` and `remove` (a dry run must
//! leave the repository as it found it), `create` (it must not lay out a
//! folder or touch a bucket either) and `request_retrieval` (a retrieval
//! from archive storage is billed, and a dry run must not start one; the
//! objects keep reporting `Archived`).

use std::sync::Arc;

use super::{forward, Backend, BackendError, ObjectKind, RetrievalRequest};

/// Reads from the wrapped backend; changes succeed without touching it. See
/// the module documentation.
#[derive(Debug)]
pub struct DryRunBackend {
    inner: Arc<dyn Backend>,
}

impl DryRunBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner }
    }
}

impl Backend for DryRunBackend {
    forward!(inner: transfers, list, read, read_into, read_range, stat, archive_state);

    fn location(&self) -> String {
        format!("{} (dry run)", self.inner.location())
    }

    fn create(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
        // Writes nothing, like `write`: a dry run must never reach the backend.
        self.write(kind, name, data)
    }

    fn write(&self, _kind: ObjectKind, _name: &str, _data: &[u8]) -> Result<(), BackendError> {
        Ok(())
    }

    fn remove(&self, _kind: ObjectKind, _name: &str) -> Result<(), BackendError> {
        Ok(())
    }

    fn request_retrieval(&self, _kind: ObjectKind, _name: &str, _how: RetrievalRequest) -> Result<(), BackendError> {
        Ok(())
    }

    fn remove_temporaries(&self, _older_than_ns: i64) -> Result<usize, BackendError> {
        Ok(0)
    }

    fn extend_retention(&self, kind: ObjectKind, name: &str, until_ns: i64, _dry_run: bool) -> Result<Option<i64>, BackendError> {
        // Says what it would set, changes nothing.
        self.inner.extend_retention(kind, name, until_ns, true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{ArchiveState, ObjectInfo, RetrievalTier};

    /// Keeps every data pack in `GLACIER` and counts the calls that would
    /// change something.
    #[derive(Debug, Default)]
    struct Glacier {
        inner: MemoryBackend,
        changes: AtomicUsize,
    }

    impl Glacier {
        fn archived(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
            if kind == ObjectKind::DataPack {
                return Err(BackendError::Archived { path: kind.path(name) });
            }
            Ok(())
        }

        fn change(&self) {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Backend for Glacier {
        forward!(inner: transfers, location, stat, remove_temporaries, extend_retention);

        fn create(&self) -> Result<(), BackendError> {
            self.change();
            self.inner.create()
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
            self.inner.list(kind)
        }
        fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
            self.archived(kind, name)?;
            self.inner.read(kind, name)
        }
        crate::backend::read_into_by_read!();
        fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
            self.archived(kind, name)?;
            self.inner.read_range(kind, name, offset, len)
        }
        fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
            self.write(kind, name, data)
        }

        fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            self.change();
            self.inner.write(kind, name, data)
        }
        fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
            self.change();
            self.inner.remove(kind, name)
        }
        fn archive_state(&self, kind: ObjectKind, _name: &str) -> Result<ArchiveState, BackendError> {
            Ok(match kind {
                ObjectKind::DataPack => ArchiveState::Archived {
                    class: "GLACIER".into(),
                },
                _ => ArchiveState::Readable,
            })
        }
        fn request_retrieval(&self, _kind: ObjectKind, _name: &str, _how: RetrievalRequest) -> Result<(), BackendError> {
            self.change();
            Ok(())
        }
    }

    /// Regression: the dry-run wrapper used to answer `archive_state` with
    /// the trait's default (`Readable`), so through it archived packs looked
    /// readable; and it must not let a change or a paid retrieval through.
    #[test]
    fn dry_run_reports_archived_packs_and_changes_nothing() {
        let glacier = Arc::new(Glacier::default());
        glacier.inner.write(ObjectKind::DataPack, "ab01", b"pack").unwrap();
        glacier.inner.write(ObjectKind::Index, "cd02", b"index").unwrap();
        let dry = DryRunBackend::new(glacier.clone());

        assert_eq!(
            dry.archive_state(ObjectKind::DataPack, "ab01").unwrap(),
            ArchiveState::Archived {
                class: "GLACIER".into()
            }
        );
        assert!(matches!(
            dry.read(ObjectKind::DataPack, "ab01"),
            Err(BackendError::Archived { .. })
        ));
        assert!(matches!(
            dry.read_range(ObjectKind::DataPack, "ab01", 0, 2),
            Err(BackendError::Archived { .. })
        ));
        assert_eq!(dry.read(ObjectKind::Index, "cd02").unwrap(), b"index");
        assert_eq!(dry.stat(ObjectKind::DataPack, "ab01").unwrap(), Some(4));
        assert_eq!(dry.list(ObjectKind::DataPack).unwrap().len(), 1);

        dry.write(ObjectKind::Snapshot, "ef03", b"snapshot").unwrap();
        dry.remove(ObjectKind::Index, "cd02").unwrap();
        dry.request_retrieval(ObjectKind::DataPack, "ab01", RetrievalRequest { tier: RetrievalTier::Bulk, days: 1 })
            .unwrap();
        dry.create().unwrap();
        assert_eq!(glacier.changes.load(Ordering::Relaxed), 0);
        assert!(glacier.inner.list(ObjectKind::Snapshot).unwrap().is_empty());
        assert_eq!(glacier.inner.read(ObjectKind::Index, "cd02").unwrap(), b"index");
        // Still archived: no retrieval was started.
        assert!(matches!(
            dry.archive_state(ObjectKind::DataPack, "ab01").unwrap(),
            ArchiveState::Archived { .. }
        ));
        assert!(dry.location().ends_with("(dry run)"));
    }
}
