//! File-system metadata into tree nodes.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

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

/// A node describing `m`, named `name` (content and xattrs not read).
pub(crate) fn node_from_meta(name: Vec<u8>, m: &fs::Metadata, names: &mut NameCache) -> Node {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    };
    let mut n = Node::new(name, kind);
    n.mode = m.mode() & 0o7777;
    n.uid = m.uid();
    n.gid = m.gid();
    n.user = names.user(n.uid);
    n.group = names.group(n.gid);
    n.mtime_ns = m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec());
    n.ctime_ns = m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec());
    n.inode = m.ino();
    n.device = m.dev();
    n.nlink = m.nlink();
    n.rdev = m.rdev();
    n.size = if kind == NodeKind::File { m.size() } else { 0 };
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
