//! A local cache of metadata objects (keys, snapshots, indexes, tree packs)
//! in front of a remote backend, so `snapshots`, `ls`, `find`, `diff` and a
//! change-detecting backup fetch them once. Every cached object is named by
//! the BLAKE3 hash of its bytes, so a cached copy is verified on every read
//! and a damaged one is dropped and fetched again. File-data packs are never
//! cached.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{forward, slice_range, Backend, BackendError, ObjectInfo, ObjectKind};

/// Where the cache lives and how big it may grow.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Folder for this repository's cache.
    pub dir: PathBuf,
    /// Size above which the least recently used objects are evicted.
    pub max_bytes: u64,
}

impl CacheOptions {
    /// Default size limit: 1 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

    /// The cache of `location`: under `base` (default: the user's cache
    /// folder, `$XDG_CACHE_HOME/cairn` or `~/.cache/cairn`), one folder per
    /// location, named by a hash of it, so two repositories never share
    /// entries (which are verified by their hash names anyway). `None` when
    /// there is no base folder to use.
    pub fn for_location(location: &str, base: Option<&Path>) -> Option<Self> {
        let base = match base {
            Some(b) => b.to_path_buf(),
            None => dirs::cache_dir()?.join("cairn"),
        };
        let key = blake3::hash(location.as_bytes()).to_hex();
        Some(Self {
            dir: base.join(&key.as_str()[..16]),
            max_bytes: Self::DEFAULT_MAX_BYTES,
        })
    }
}

/// The caching wrapper.
#[derive(Debug)]
pub struct CacheBackend<B> {
    inner: B,
    opts: CacheOptions,
    size: AtomicU64,
    evicting: Mutex<()>,
    /// Reads answered from the cache (for reports and tests).
    pub hits: AtomicU64,
}

fn cacheable(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::Key | ObjectKind::Snapshot | ObjectKind::Index | ObjectKind::TreePack
    )
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

impl<B: Backend> CacheBackend<B> {
    /// Wraps `inner`; the cache folder is created on first write.
    pub fn new(inner: B, opts: CacheOptions) -> Self {
        let size = dir_size(&opts.dir);
        Self {
            inner,
            opts,
            size: AtomicU64::new(size),
            evicting: Mutex::new(()),
            hits: AtomicU64::new(0),
        }
    }

    fn path(&self, kind: ObjectKind, name: &str) -> Option<PathBuf> {
        // Names are hex hashes; anything else is not ours to cache.
        if !cacheable(kind) || name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.opts.dir.join(kind.prefix()).join(name))
    }

    fn cached(&self, kind: ObjectKind, name: &str) -> Option<Vec<u8>> {
        let p = self.path(kind, name)?;
        let bytes = fs::read(&p).ok()?;
        if blake3::hash(&bytes).to_hex().as_str() != name {
            // Damaged on local disk: forget it, fetch again.
            let _ = fs::remove_file(&p);
            return None;
        }
        // The modification time doubles as "last used" for eviction.
        let _ = filetime::set_file_mtime(&p, filetime::FileTime::now());
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }

    fn store(&self, kind: ObjectKind, name: &str, data: &[u8]) {
        let Some(p) = self.path(kind, name) else { return };
        if blake3::hash(data).to_hex().as_str() != name {
            return;
        }
        // A cache that cannot be written is only slower, never wrong.
        let Some(parent) = p.parent() else { return };
        if fs::create_dir_all(parent).is_err() {
            return;
        }
        let tmp = parent.join(format!(".{name}.tmp"));
        if fs::write(&tmp, data).is_ok() && fs::rename(&tmp, &p).is_ok() {
            self.size.fetch_add(data.len() as u64, Ordering::Relaxed);
            self.evict_if_needed();
        } else {
            let _ = fs::remove_file(&tmp);
        }
    }

    fn evict_if_needed(&self) {
        if self.size.load(Ordering::Relaxed) <= self.opts.max_bytes {
            return;
        }
        let Ok(_guard) = self.evicting.try_lock() else { return };
        let mut files = Vec::new();
        for kind in [
            ObjectKind::TreePack,
            ObjectKind::Index,
            ObjectKind::Snapshot,
            ObjectKind::Key,
        ] {
            let Ok(rd) = fs::read_dir(self.opts.dir.join(kind.prefix())) else {
                continue;
            };
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    let t = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                    files.push((t, m.len(), e.path()));
                }
            }
        }
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let goal = self.opts.max_bytes / 10 * 8;
        for (_, len, p) in files {
            if total <= goal {
                break;
            }
            if fs::remove_file(&p).is_ok() {
                total -= len;
            }
        }
        self.size.store(total, Ordering::Relaxed);
    }

    fn forget(&self, kind: ObjectKind, name: &str) {
        if let Some(p) = self.path(kind, name) {
            if let Ok(m) = fs::metadata(&p) {
                if fs::remove_file(&p).is_ok() {
                    self.size
                        .fetch_sub(m.len().min(self.size.load(Ordering::Relaxed)), Ordering::Relaxed);
                }
            }
        }
    }
}

impl<B: Backend> Backend for CacheBackend<B> {
    // Archive states change while a retrieval runs: never cached. Cached
    // kinds are never archived anyway (only data packs are).
    forward!(inner: transfers, location, create, archive_state, request_retrieval, remove_temporaries, extend_retention);

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        let listed = self.inner.list(kind)?;
        // Objects removed from the repository (prune) leave the cache too.
        if cacheable(kind) {
            if let Ok(rd) = fs::read_dir(self.opts.dir.join(kind.prefix())) {
                let names: std::collections::HashSet<&str> = listed.iter().map(|o| o.name.as_str()).collect();
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if !n.starts_with('.') && !names.contains(n.as_str()) {
                        self.forget(kind, &n);
                    }
                }
            }
        }
        Ok(listed)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        if let Some(b) = self.cached(kind, name) {
            return Ok(b);
        }
        let b = self.inner.read(kind, name)?;
        self.store(kind, name, &b);
        Ok(b)
    }

    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        if cacheable(kind) {
            *buf = self.read(kind, name)?;
            return Ok(());
        }
        self.inner.read_into(kind, name, buf)
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        if kind != ObjectKind::TreePack {
            return self.inner.read_range(kind, name, offset, len);
        }
        // Tree packs are small and read again and again: keep them whole.
        let whole = self.read(kind, name)?;
        slice_range(kind, name, &whole, offset, len)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(kind, name, data)?;
        self.store(kind, name, data);
        Ok(())
    }

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
        self.inner.write_bytes(kind, name, data)?;
        self.store(kind, name, data);
        Ok(())
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
        self.forget(kind, name);
        self.inner.remove(kind, name)
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
        if let Some(p) = self.path(kind, name) {
            if let Ok(m) = fs::metadata(&p) {
                return Ok(Some(m.len()));
            }
        }
        self.inner.stat(kind, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    fn name(data: &[u8]) -> String {
        blake3::hash(data).to_hex().to_string()
    }

    #[test]
    fn serves_metadata_from_disk_verifies_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let b = CacheBackend::new(
            MemoryBackend::new(),
            CacheOptions {
                dir: dir.path().into(),
                max_bytes: 10_000,
            },
        );
        let snap = b"snapshot bytes".to_vec();
        let n = name(&snap);
        b.inner.write(ObjectKind::Snapshot, &n, &snap).unwrap();
        assert_eq!(b.read(ObjectKind::Snapshot, &n).unwrap(), snap);
        assert_eq!(b.hits.load(Ordering::Relaxed), 0);
        assert_eq!(b.read(ObjectKind::Snapshot, &n).unwrap(), snap);
        assert_eq!(b.hits.load(Ordering::Relaxed), 1);
        // A damaged cached copy is noticed and replaced from the backend.
        fs::write(dir.path().join("snapshots").join(&n), b"garbage").unwrap();
        assert_eq!(b.read(ObjectKind::Snapshot, &n).unwrap(), snap);
        assert_eq!(b.hits.load(Ordering::Relaxed), 1);
        // Data packs never land in the cache.
        let data = vec![7u8; 3000];
        let dn = name(&data);
        b.write(ObjectKind::DataPack, &dn, &data).unwrap();
        assert!(!dir.path().join("data").exists());
        // Past the bound, old entries go.
        for i in 0..20u32 {
            let t = vec![i as u8; 1000];
            b.write(ObjectKind::TreePack, &name(&t), &t).unwrap();
        }
        assert!(dir_size(dir.path()) <= 10_000, "{}", dir_size(dir.path()));
        // Objects gone from the repository leave the cache on the next listing.
        b.inner.remove(ObjectKind::Snapshot, &n).unwrap();
        b.list(ObjectKind::Snapshot).unwrap();
        assert!(!dir.path().join("snapshots").join(&n).exists());
    }
}
