//! A wrapper that reads through and discards every change: `--dry-run`.

use std::sync::Arc;

use super::{Backend, BackendError, ObjectInfo, ObjectKind};

/// Reads from the wrapped backend; writes and removals succeed without
/// touching it.
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
    fn location(&self) -> String {
        format!("{} (dry run)", self.inner.location())
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.inner.read(kind, name)
    }
    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.inner.read_range(kind, name, offset, len)
    }
    fn write(&self, _kind: ObjectKind, _name: &str, _data: &[u8]) -> Result<(), BackendError> {
        Ok(())
    }
    fn remove(&self, _kind: ObjectKind, _name: &str) -> Result<(), BackendError> {
        Ok(())
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
        self.inner.stat(kind, name)
    }
}
