//! FUSE requests to [`MountFs`] operations and back.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenAccMode, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};

use super::fs::MountFs;

/// How long the kernel may keep what a snapshot holds: it never changes.
const SNAPSHOT_TTL: Duration = Duration::from_secs(3600);

/// How long it may keep the listing folders and links, which change as
/// snapshots come and go.
const LISTING_TTL: Duration = Duration::from_secs(1);

impl MountFs {
    fn ttl(&self, ino: u64) -> Duration {
        if self.is_listing(ino) {
            LISTING_TTL
        } else {
            SNAPSHOT_TTL
        }
    }
}

impl Filesystem for MountFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup(parent.0, name.as_bytes()) {
            Ok(attr) => {
                // A listing folder's entries (snapshot folders, `latest`)
                // come and go: the kernel asks again after the short TTL.
                let ttl = if self.is_listing(parent.0) || self.is_listing(attr.ino.0) {
                    LISTING_TTL
                } else {
                    SNAPSHOT_TTL
                };
                reply.entry(&ttl, &attr, Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.ttl(ino.0), &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        match self.open(ino.0, write) {
            // Content never changes: the page cache may keep it across opens.
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = self.read_dir(ino.0, offset, &mut |child, next, kind: FileType, name| {
            reply.add(INodeNo(child), next, kind, OsStr::from_bytes(name))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(all) => match all.iter().find(|x| x.name.as_slice() == name.as_bytes()) {
                Some(x) => xattr_reply(reply, &x.value, size),
                None => reply.error(Errno::ENODATA),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(all) => {
                let mut names = Vec::new();
                for x in &all {
                    names.extend_from_slice(&x.name);
                    names.push(0);
                }
                xattr_reply(reply, &names, size);
            }
            Err(e) => reply.error(e),
        }
    }
}

/// The size alone when asked with 0, the bytes when they fit, ERANGE otherwise.
fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len <= size {
        reply.data(data);
    } else {
        reply.error(Errno::ERANGE);
    }
}
