//! File-system metadata into tree nodes.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::libc;
use nix::sys::stat::fstatat;

use crate::tree::{Node, NodeKind, Xattr};

/// User and group names by id, looked up once each.
#[derive(Default)]
pub(crate) struct NameCache {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl NameCache {
    /// The name of user `uid` (empty when unknown).
    pub(crate) fn user(&mut self, uid: u32) -> String {
        let look = || nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name);
        once(&mut self.users, uid, look)
    }

    /// The name of group `gid` (empty when unknown).
    pub(crate) fn group(&mut self, gid: u32) -> String {
        let look = || nix::unistd::Group::from_gid(gid.into()).ok().flatten().map(|g| g.name);
        once(&mut self.groups, gid, look)
    }
}

/// `look` asked once per id: the user database may be a network service.
fn once(names: &mut HashMap<u32, String>, id: u32, look: impl FnOnce() -> Option<String>) -> String {
    names.entry(id).or_insert_with(|| look().unwrap_or_default()).clone()
}

/// What a backup records of an `lstat`: from std's metadata for the paths
/// given, from `fstatat` relative to the open folder for what is inside
/// them (the kernel then resolves one name, not the whole path).
pub(crate) struct Stat {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    device: u64,
    nlink: u64,
    rdev: u64,
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl From<&fs::Metadata> for Stat {
    fn from(m: &fs::Metadata) -> Self {
        Stat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            inode: m.ino(),
            device: m.dev(),
            nlink: m.nlink(),
            rdev: m.rdev(),
        }
    }
}

impl Stat {
    /// The device the entry is on.
    pub(crate) fn device(&self) -> u64 {
        self.device
    }

    /// Whether the entry is a folder (the walk goes into it).
    pub(crate) fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// `name` (one component) in the folder open as `dir`, not following a
    /// symlink.
    pub(crate) fn at(dir: RawFd, name: &[u8]) -> io::Result<Stat> {
        // nix passes a short name through a stack buffer, no allocation.
        let st = fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(Stat {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
            inode: st.st_ino,
            device: st.st_dev,
            #[allow(clippy::useless_conversion)] // u32 on some targets
            nlink: u64::from(st.st_nlink),
            rdev: st.st_rdev,
        })
    }
}

/// A node describing `m`, named `name` (content and xattrs not read).
pub(crate) fn node_from_meta(name: Vec<u8>, m: &Stat, names: &mut NameCache) -> Node {
    let kind = match m.mode & libc::S_IFMT {
        libc::S_IFDIR => NodeKind::Dir,
        libc::S_IFLNK => NodeKind::Symlink,
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFCHR => NodeKind::CharDevice,
        libc::S_IFBLK => NodeKind::BlockDevice,
        libc::S_IFSOCK => NodeKind::Socket,
        _ => NodeKind::File,
    };
    let mut n = Node::new(name, kind);
    n.mode = m.mode & 0o7777;
    n.uid = m.uid;
    n.gid = m.gid;
    n.user = names.user(n.uid);
    n.group = names.group(n.gid);
    n.mtime_ns = m.mtime_ns;
    n.ctime_ns = m.ctime_ns;
    n.inode = m.inode;
    n.device = m.device;
    n.nlink = m.nlink;
    n.rdev = m.rdev;
    n.size = if kind == NodeKind::File { m.size } else { 0 };
    n
}

/// The extended attributes of `path`, sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Vec<Xattr> {
    // Not every file system supports them; absence is not an error.
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some(Xattr {
                name: n.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
