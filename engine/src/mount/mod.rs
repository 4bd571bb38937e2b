//! `cairn mount`: the repository's snapshots as a read-only file system
//! (FUSE, through `fuser`), for point restores by looking rather than
//! restoring: `cp`, `diff`, `grep` or `sqlite3` work on backed-up files.
//!
//! The root holds `snapshots/<time>/…`, `hosts/<host>/<time>/…` and
//! `tags/<tag>/<time>/…`; each listing folder has a `latest` link to its
//! newest snapshot, and `snapshots/<id prefix>` (not listed) links to the
//! snapshot with that id. New snapshots appear without remounting (the
//! repository is listed again at most once per refresh interval, when a
//! listing folder is read).
//!
//! Memory stays bounded whatever the snapshots' size: trees are read when a
//! folder is first looked into and kept in a bounded cache; file data is
//! read blob by blob through the index into a cache of `cache_bytes`; the
//! inode table holds only what the kernel holds. Several worker threads
//! answer the kernel, so reads from several processes run in parallel.
//!
//! A file whose data packs are in an archive storage class lists normally;
//! reading it fails with EIO, nothing is retrieved, and the log names the
//! file and the `cairn restore` command that would retrieve it.

mod fs;
mod fuse;
mod inodes;
#[cfg(test)]
mod tests;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::repository::{Repository, RepositoryError};
use crate::select::SnapshotFilter;

/// Errors of mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point is missing, not a folder, or not usable.
    #[error("{0}")]
    Mountpoint(String),
    /// The kernel or `fusermount3` refused the mount.
    #[error("mounting at {path}: {source}; {hint}")]
    Mount {
        /// The mount point.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
        /// What to check.
        hint: &'static str,
    },
    /// Unmounting or the session thread failed.
    #[error("unmounting {path}: {source}")]
    Unmount {
        /// The mount point.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Repository failure (listing snapshots, loading the index).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Which snapshots to show.
    pub filter: SnapshotFilter,
    /// Let other users (root included) see the mount; mode bits are then
    /// enforced by the kernel. Needs `user_allow_other` in /etc/fuse.conf
    /// for a user other than root.
    pub allow_other: bool,
    /// Bytes of file data kept in memory between reads.
    pub cache_bytes: usize,
    /// How often at most the repository is listed again for new snapshots.
    pub refresh: Duration,
    /// Threads answering the kernel (parallel reads).
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            filter: SnapshotFilter::default(),
            allow_other: false,
            cache_bytes: 64 << 20,
            refresh: Duration::from_secs(1),
            // Reads wait on storage more than on the CPU.
            threads: 4,
        }
    }
}

/// A mounted repository; dropping it unmounts.
pub struct Mounted {
    session: BackgroundSession,
    path: PathBuf,
    snapshots: usize,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted").field("path", &self.path).finish()
    }
}

impl Mounted {
    /// Snapshots shown when it was mounted.
    pub fn snapshots(&self) -> usize {
        self.snapshots
    }

    /// Whether it was unmounted from outside (`umount`, `fusermount3 -u`).
    pub fn has_ended(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Unmounts. `Ok(false)` when the mount point is busy (a shell or a
    /// program has something in it open): it then stays mounted and served.
    pub fn try_unmount(&self) -> Result<bool, MountError> {
        let failed = |source: std::io::Error| MountError::Unmount {
            path: self.path.display().to_string(),
            source,
        };
        match nix::mount::umount(&self.path) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => Ok(true),
            Err(nix::errno::Errno::EBUSY) => Ok(false),
            // Not root: the set-uid helper unmounts a user's own FUSE mount.
            Err(nix::errno::Errno::EPERM) => {
                let out = std::process::Command::new("fusermount3")
                    .arg("-u")
                    .arg(&self.path)
                    .output()
                    .map_err(failed)?;
                if out.status.success() {
                    Ok(true)
                } else if String::from_utf8_lossy(&out.stderr).contains("busy") {
                    Ok(false)
                } else {
                    Err(failed(std::io::Error::other(
                        String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    )))
                }
            }
            Err(e) => Err(failed(e.into())),
        }
    }

    /// Waits for the session to end (after an unmount).
    pub fn wait(self) -> Result<(), MountError> {
        let path = self.path.display().to_string();
        self.session
            .join()
            .map_err(|source| MountError::Unmount { path, source })
    }
}

/// Mounts `repo` read-only at `mountpoint` (an existing folder) and serves
/// it from background threads until [`Mounted::unmount`] or an unmount from
/// outside.
pub fn mount(repo: Repository, mountpoint: &Path, opts: MountOptions) -> Result<Mounted, MountError> {
    let meta = std::fs::metadata(mountpoint)
        .map_err(|e| MountError::Mountpoint(format!("mount point {}: {e}", mountpoint.display())))?;
    if !meta.is_dir() {
        return Err(MountError::Mountpoint(format!(
            "mount point {} is not a folder",
            mountpoint.display()
        )));
    }
    let repo = Arc::new(repo);
    let views = view::Views::open(repo.clone(), opts.filter.clone(), opts.refresh)?;
    let snapshots = views.current().snaps.len();
    let fs = fs::MountFs::new(repo, views, opts.cache_bytes);
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
    ];
    if opts.allow_other {
        config.acl = SessionACL::All;
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let session = fuser::spawn_mount(fs, mountpoint, &config).map_err(|source| MountError::Mount {
        path: mountpoint.display().to_string(),
        hint: if source.kind() == std::io::ErrorKind::NotFound {
            "FUSE needs /dev/fuse and, for users other than root, `fusermount3` (Debian package fuse3)"
        } else {
            "is /dev/fuse there and usable, and is the folder not mounted already?"
        },
        source,
    })?;
    Ok(Mounted {
        session,
        path: mountpoint.canonicalize().unwrap_or_else(|_| mountpoint.to_path_buf()),
        snapshots,
    })
}
