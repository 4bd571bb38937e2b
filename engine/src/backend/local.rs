//! A repository in a local folder.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{config_listing, no_archive_classes, Backend, BackendError, ObjectInfo, ObjectKind};

/// Objects as files under a root folder; see format-spec "Local layout".
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet; `init` creates it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the root and the fixed folders.
    pub fn create_layout(&self) -> Result<(), BackendError> {
        for sub in [
            "keys",
            "snapshots",
            "index",
            "data",
            "tree",
            "locks",
            "deletions",
            "tmp",
        ] {
            let p = self.root.join(sub);
            fs::create_dir_all(&p).map_err(|e| BackendError::from_io(&p.to_string_lossy(), e))?;
        }
        Ok(())
    }

    fn full(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.root.join(kind.path(name))
    }

    fn tmp_path(&self) -> Result<PathBuf, BackendError> {
        let mut r = [0u8; 12];
        crate::crypto::random_bytes(&mut r).map_err(|e| BackendError::Other {
            path: self.location(),
            message: e.to_string(),
        })?;
        Ok(self.root.join("tmp").join(format!(".tmp-{}", hex::encode(r))))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Moves `tmp` to `dst` only if `dst` does not exist. `renameat2(NOREPLACE)`
/// does this atomically; on file systems without it, a hard link (which also
/// refuses to replace) does the same.
fn publish(tmp: &Path, dst: &Path) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, tmp, None, dst, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            fs::hard_link(tmp, dst)?;
            fs::remove_file(tmp)
        }
        Err(e) => Err(std::io::Error::from(e)),
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.create_layout()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        if kind == ObjectKind::Config {
            return Ok(config_listing(self.stat(kind, "config")?));
        }
        let dir = self.root.join(kind.prefix());
        let mut out = Vec::new();
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && d == dir => return Ok(out),
                Err(e) => return Err(BackendError::from_io(&d.to_string_lossy(), e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| BackendError::from_io(&d.to_string_lossy(), e))?;
                let ft = ent
                    .file_type()
                    .map_err(|e| BackendError::from_io(&d.to_string_lossy(), e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if ft.is_dir() && kind == ObjectKind::DataPack && d == dir {
                    dirs.push(ent.path());
                } else if ft.is_file() && !name.starts_with('.') {
                    let meta = ent
                        .metadata()
                        .map_err(|e| BackendError::from_io(&ent.path().to_string_lossy(), e))?;
                    let modified_ns = meta.modified().ok().map(crate::time::system_time_ns);
                    out.push(ObjectInfo {
                        name,
                        size: meta.len(),
                        modified_ns,
                        storage_class: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let p = self.full(kind, name);
        fs::read(&p).map_err(|e| BackendError::from_io(&kind.path(name), e))
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let p = self.full(kind, name);
        let rel = kind.path(name);
        let mut f = File::open(&p).map_err(|e| BackendError::from_io(&rel, e))?;
        let size = f.metadata().map_err(|e| BackendError::from_io(&rel, e))?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(BackendError::OutOfRange {
                path: rel,
                offset,
                len,
                size,
            });
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| BackendError::from_io(&rel, e))?;
        // Read into spare capacity: zeroing a buffer the read overwrites
        // anyway showed in restore profiles.
        let mut buf = Vec::with_capacity(len as usize);
        (&mut f)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| BackendError::from_io(&rel, e))?;
        if buf.len() as u64 != len {
            return Err(BackendError::Transient {
                path: rel,
                message: "object shrank while being read".into(),
            });
        }
        Ok(buf)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let rel = kind.path(name);
        let dst = self.full(kind, name);
        let tmp = self.tmp_path()?;
        let io = |e| BackendError::from_io(&rel, e);
        let result = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            let parent = dst.parent().unwrap_or(&self.root).to_path_buf();
            match publish(&tmp, &dst) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The fan-out folder of a data pack is made on first use.
                    fs::create_dir_all(&parent)?;
                    if let Some(grand) = parent.parent() {
                        sync_dir(grand)?;
                    }
                    publish(&tmp, &dst)?;
                }
                other => other?,
            }
            sync_dir(&parent)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
        let p = self.full(kind, name);
        fs::remove_file(&p).map_err(|e| BackendError::from_io(&kind.path(name), e))
    }

    fn remove_temporaries(&self, older_than_ns: i64) -> Result<usize, BackendError> {
        let dir = self.root.join("tmp");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(BackendError::from_io(&dir.to_string_lossy(), e)),
        };
        let mut n = 0;
        for ent in rd {
            let ent = ent.map_err(|e| BackendError::from_io(&dir.to_string_lossy(), e))?;
            let old = ent
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| crate::time::system_time_ns(t) < older_than_ns);
            // Only our own temporary names: anything else was put there by someone.
            if old && ent.file_name().to_string_lossy().starts_with(".tmp-") {
                match fs::remove_file(ent.path()) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(BackendError::from_io(&ent.path().to_string_lossy(), e)),
                }
            }
        }
        Ok(n)
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
        match fs::metadata(self.full(kind, name)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BackendError::from_io(&kind.path(name), e)),
        }
    }

    no_archive_classes!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_no_temporary_on_refused_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.create_layout().unwrap();
        b.write(ObjectKind::Index, "aa", b"1").unwrap();
        assert!(matches!(
            b.write(ObjectKind::Index, "aa", b"2"),
            Err(BackendError::AlreadyExists { .. })
        ));
        assert_eq!(b.read(ObjectKind::Index, "aa").unwrap(), b"1");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
