//! A repository in a local folder.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::direct;
use super::{config_listing, no_archive_classes, Backend, BackendError, ObjectInfo, ObjectKind};

/// Permission bits of the files and folders a local repository creates,
/// whatever the umask (README "File permissions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// Files: objects, keys, locks, temporaries.
    pub file: u32,
    /// Folders.
    pub dir: u32,
}

impl Modes {
    /// The default: the owner only. Key objects readable by others would
    /// let them guess the password offline.
    pub const PRIVATE: Modes = Modes {
        file: 0o600,
        dir: 0o700,
    };
    /// For a repository whose `config` its owner made group-readable (as
    /// restic does): the group may read, never write; others get nothing.
    pub const GROUP_READABLE: Modes = Modes {
        file: 0o640,
        dir: 0o750,
    };

    /// The modes that keep an existing repository as its owner set it up,
    /// judged by its `config` file's mode (`None`: a new repository).
    pub fn for_config_mode(config_mode: Option<u32>) -> Modes {
        match config_mode {
            Some(m) if m & 0o040 != 0 => Modes::GROUP_READABLE,
            _ => Modes::PRIVATE,
        }
    }
}

/// Objects as files under a root folder; see format-spec "Local layout".
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    /// Decided on first use, from the repository's `config` file.
    modes: OnceLock<Modes>,
    /// Cleared when the file system refuses `O_DIRECT`, so later writes do
    /// not ask again.
    direct: AtomicBool,
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet; `init` creates it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            modes: OnceLock::new(),
            direct: AtomicBool::new(true),
        }
    }

    /// The modes new files and folders get ([`Modes::for_config_mode`]).
    pub fn modes(&self) -> Modes {
        *self.modes.get_or_init(|| {
            let config = fs::metadata(self.root.join(ObjectKind::Config.path("config")));
            Modes::for_config_mode(config.ok().map(|m| m.mode()))
        })
    }

    /// Creates the root and the fixed folders. Folders above the root are
    /// made as any program would; the root and everything in it get
    /// [`LocalBackend::modes`]. An existing root keeps its mode.
    pub fn create_layout(&self) -> Result<(), BackendError> {
        let io = |p: &Path, e| BackendError::from_io(&p.to_string_lossy(), e);
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        self.make_dir(&self.root).map_err(|e| io(&self.root, e))?;
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
            self.make_dir(&p).map_err(|e| io(&p, e))?;
        }
        Ok(())
    }

    /// Makes `dir` (whose parent exists) with the folder mode, or leaves it
    /// as it is if it exists. Made with the mode and then set to it exactly:
    /// the umask may only have taken bits away.
    fn make_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mode = self.modes().dir;
        match fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => fs::set_permissions(dir, Permissions::from_mode(mode)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// [`LocalBackend::make_dir`] for `dir` and each missing folder between
    /// it and the root.
    fn make_dirs(&self, dir: &Path) -> std::io::Result<()> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut at = self.root.clone();
        for c in rel.components() {
            at.push(c);
            self.make_dir(&at)?;
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

/// An object that got shorter between its size being read and its bytes.
fn shrank(path: String) -> BackendError {
    BackendError::Transient {
        path,
        message: "object shrank while being read".into(),
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

    fn transfers(&self) -> usize {
        // A large write goes straight to the device (`direct`) and small
        // ones are a copy into the page cache and an fsync; one writer
        // already outpaces what two cores can seal, and a second would
        // only queue behind the same disk.
        1
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
                        retained_until_ns: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let mut buf = Vec::new();
        self.read_into(kind, name, &mut buf)?;
        Ok(buf)
    }

    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        // Whole objects are read buffered: `check`, their main reader, reads
        // a pack and then verifies it on the same thread, and the kernel's
        // readahead overlaps the two where a direct read would wait
        // (measured: 1.36–1.63 s buffered, 1.60–1.61 s direct). `File`
        // reserves the file's size and reads into the spare capacity
        // without zeroing it, as `fs::read` does.
        let rel = || kind.path(name);
        let mut f = File::open(self.full(kind, name)).map_err(|e| BackendError::from_io(&rel(), e))?;
        buf.clear();
        f.read_to_end(buf).map_err(|e| BackendError::from_io(&rel(), e))?;
        Ok(())
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
        // Large ranges (a restore's reads) go around the page cache, as
        // packs are written: `direct`.
        if len >= direct::MIN_DIRECT as u64 && self.direct.load(Ordering::Relaxed) {
            match direct::read_at(&p, offset, len as usize) {
                Ok(Some(buf)) => return Ok(buf),
                Ok(None) => self.direct.store(false, Ordering::Relaxed),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(shrank(rel)),
                Err(e) => return Err(BackendError::from_io(&rel, e)),
            }
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
            return Err(shrank(rel));
        }
        Ok(buf)
    }

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
        self.write(kind, name, data)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let rel = kind.path(name);
        let dst = self.full(kind, name);
        let tmp = self.tmp_path()?;
        let io = |e| BackendError::from_io(&rel, e);
        let result = (|| -> std::io::Result<()> {
            let mode = self.modes().file;
            // A temporary name that is taken (never, with 96 random bits)
            // must not read as "the object exists", which a caller may
            // take as already stored.
            let taken = |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    std::io::Error::other(format!("the temporary file {} exists already", tmp.display()))
                }
                _ => e,
            };
            let try_direct = data.len() >= direct::MIN_DIRECT && self.direct.load(Ordering::Relaxed);
            let written = if try_direct {
                direct::write_new(&tmp, mode, data).map_err(taken)?
            } else {
                direct::Outcome::Unsupported
            };
            let f = match written {
                direct::Outcome::Written(f) => f,
                direct::Outcome::Unsupported => {
                    if try_direct {
                        self.direct.store(false, Ordering::Relaxed);
                    }
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(mode)
                        .open(&tmp)
                        .map_err(taken)?;
                    f.write_all(data)?;
                    f
                }
            };
            // Exactly the mode, whatever the umask took away (fchmod on
            // the open file, so nothing else can be changed by mistake).
            f.set_permissions(Permissions::from_mode(mode))?;
            f.sync_all()?;
            drop(f);
            let parent = dst.parent().unwrap_or(&self.root).to_path_buf();
            match publish(&tmp, &dst) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The fan-out folder of a data pack is made on first use.
                    self.make_dirs(&parent)?;
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
    crate::backend::no_retention!();
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

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_repository_is_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/repo");
        let b = LocalBackend::new(&root);
        b.create_layout().unwrap();
        b.write(ObjectKind::Config, "config", b"c").unwrap();
        b.write(ObjectKind::Key, "k1", b"k").unwrap();
        b.write(ObjectKind::DataPack, &"ab".repeat(32), b"p").unwrap();
        assert_eq!(mode(&root), 0o700);
        for ent in fs::read_dir(&root).unwrap() {
            let p = ent.unwrap().path();
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&p), want, "{}", p.display());
        }
        assert_eq!(mode(&root.join("data/ab")), 0o700);
        assert_eq!(mode(&root.join("data/ab").join("ab".repeat(32))), 0o600);
        assert_eq!(mode(&root.join("keys/k1")), 0o600);
    }

    #[test]
    fn a_group_readable_config_makes_new_files_group_readable() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::new(dir.path()).create_layout().unwrap();
        fs::write(dir.path().join("config"), b"c").unwrap();
        fs::set_permissions(dir.path().join("config"), Permissions::from_mode(0o640)).unwrap();
        let b = LocalBackend::new(dir.path());
        assert_eq!(b.modes(), Modes::GROUP_READABLE);
        b.write(ObjectKind::DataPack, &"cd".repeat(32), b"p").unwrap();
        assert_eq!(mode(&dir.path().join("data/cd")), 0o750);
        assert_eq!(mode(&dir.path().join("data/cd").join("cd".repeat(32))), 0o640);
        // Other bits of the config are not followed: others get nothing.
        assert_eq!(Modes::for_config_mode(Some(0o100666)), Modes::GROUP_READABLE);
        assert_eq!(Modes::for_config_mode(Some(0o100604)), Modes::PRIVATE);
        assert_eq!(Modes::for_config_mode(None), Modes::PRIVATE);
    }
}
