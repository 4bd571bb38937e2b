//! An in-memory backend for unit tests of the engine.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{no_archive_classes, slice_range, Backend, BackendError, ObjectInfo, ObjectKind};

/// Objects in a map; keeps the full backend contract (exclusive writes,
/// range checks) so engine tests see the same behaviour as on disk.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<(ObjectKind, String), Vec<u8>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(ObjectKind, String), Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-written object
        // (inserts are single calls), so a poisoned map is still consistent.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces an object's bytes, for corruption tests.
    pub fn tamper(&self, kind: ObjectKind, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.lock().get_mut(&(kind, name.to_string())) {
            f(v);
        }
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".into()
    }

    fn transfers(&self) -> usize {
        1
    }

    fn remove_temporaries(&self, _older_than_ns: i64) -> Result<usize, BackendError> {
        // Writes replace the map entry whole: nothing is ever half-written.
        Ok(0)
    }

    fn create(&self) -> Result<(), BackendError> {
        // A map needs no preparing.
        Ok(())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        // The map is ordered by (kind, name): the listing comes out sorted.
        Ok(self
            .lock()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, n), v)| ObjectInfo {
                name: n.clone(),
                size: v.len() as u64,
                modified_ns: None,
                storage_class: None,
                retained_until_ns: None,
            })
            .collect())
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.lock()
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| BackendError::NotFound { path: kind.path(name) })
    }

    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        let map = self.lock();
        let v = map
            .get(&(kind, name.to_string()))
            .ok_or_else(|| BackendError::NotFound { path: kind.path(name) })?;
        buf.clear();
        buf.extend_from_slice(v);
        Ok(())
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let map = self.lock();
        let v = map
            .get(&(kind, name.to_string()))
            .ok_or_else(|| BackendError::NotFound { path: kind.path(name) })?;
        slice_range(kind, name, v, offset, len)
    }

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
        self.write(kind, name, data)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let mut map = self.lock();
        let key = (kind, name.to_string());
        if map.contains_key(&key) {
            return Err(BackendError::AlreadyExists { path: kind.path(name) });
        }
        map.insert(key, data.to_vec());
        Ok(())
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
        self.lock()
            .remove(&(kind, name.to_string()))
            .map(|_| ())
            .ok_or_else(|| BackendError::NotFound { path: kind.path(name) })
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
        Ok(self.lock().get(&(kind, name.to_string())).map(|v| v.len() as u64))
    }

    no_archive_classes!();
    crate::backend::no_retention!();
}
