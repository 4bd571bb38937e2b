//! Metadata (owner, mode, extended attributes, times) and the entries that
//! are not files or folders, applied without ever following a symlink.
//!
//! Files and folders get their metadata through a descriptor opened with
//! `O_NOFOLLOW`, after `fstat` confirms the type the snapshot says; symlinks
//! and special files through the calls that act on the link itself
//! (`lchown`, `lsetxattr`, `utimensat(AT_SYMLINK_NOFOLLOW)`, and
//! `fchmodat(AT_SYMLINK_NOFOLLOW)`, never on a symlink). A hostile tree
//! that puts a symlink where a file was restored therefore cannot make the
//! restore change anything the link points to.

use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::tree::{Node, NodeKind, Xattr};

/// Set-uid and set-gid: dropped unless `--preserve-special`.
const SET_ID_BITS: u32 = 0o6000;

/// What metadata a restore applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct MetaOptions {
    /// Keep set-id bits and create device nodes.
    pub preserve_special: bool,
    /// Apply extended attributes.
    pub xattrs: bool,
    /// Running as root: ownership is applied.
    pub root: bool,
}

/// The metadata a restore applies to an entry: what it needs of a node.
#[derive(Clone, Copy)]
pub(super) struct Applied<'a> {
    /// What the entry must still be for its metadata to be applied.
    pub kind: NodeKind,
    /// Permission bits as stored.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Modification time, Unix ns.
    pub mtime_ns: i64,
    /// Extended attributes.
    pub xattrs: &'a [Xattr],
}

impl<'a> From<&'a Node> for Applied<'a> {
    fn from(n: &'a Node) -> Self {
        Applied {
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime_ns: n.mtime_ns,
            xattrs: &n.xattrs,
        }
    }
}

impl MetaOptions {
    fn mode(&self, mode: u32) -> u32 {
        let m = mode & 0o7777;
        if self.preserve_special {
            m
        } else {
            m & !SET_ID_BITS
        }
    }
}

fn time_of(ns: i64) -> SystemTime {
    let d = Duration::new(
        ns.unsigned_abs() / 1_000_000_000,
        (ns.unsigned_abs() % 1_000_000_000) as u32,
    );
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

/// Whether the entry at `p` (its metadata `m`) is still of the type `kind`
/// says; if not, a warning says why its metadata is not applied.
fn is_still(m: std::io::Result<fs::Metadata>, p: &Path, kind: NodeKind, warnings: &mut Vec<String>) -> bool {
    match m {
        Ok(m) if type_matches(m.file_type(), kind) => true,
        Ok(_) => {
            warnings.push(format!(
                "{}: metadata not set: it is no longer a {}",
                p.display(),
                kind.name()
            ));
            false
        }
        Err(e) => {
            warnings.push(format!("{}: metadata not set: {e}", p.display()));
            false
        }
    }
}

fn type_matches(t: fs::FileType, kind: NodeKind) -> bool {
    match kind {
        NodeKind::File => t.is_file(),
        NodeKind::Dir => t.is_dir(),
        NodeKind::Symlink => t.is_symlink(),
        NodeKind::Fifo => t.is_fifo(),
        NodeKind::CharDevice => t.is_char_device(),
        NodeKind::BlockDevice => t.is_block_device(),
        NodeKind::Socket => t.is_socket(),
    }
}

/// Applies `n`'s metadata to the open `file` (a restored file, or a folder
/// opened by [`apply_to_dir`]); `p` is only for messages.
pub(super) fn apply_to_fd(file: &File, p: &Path, n: Applied<'_>, o: &MetaOptions, warnings: &mut Vec<String>) {
    if !is_still(file.metadata(), p, n.kind, warnings) {
        return;
    }
    // Owner before mode: changing the owner clears set-id bits.
    if o.root {
        if let Err(e) = std::os::unix::fs::fchown(file, Some(n.uid), Some(n.gid)) {
            warnings.push(format!("{}: owner not set: {e}", p.display()));
        }
    }
    if let Err(e) = file.set_permissions(Permissions::from_mode(o.mode(n.mode))) {
        warnings.push(format!("{}: mode not set: {e}", p.display()));
    }
    if o.xattrs {
        use xattr::FileExt;
        for x in n.xattrs.iter().filter(|x| !x.is_source_metadata()) {
            if let Err(e) = file.set_xattr(std::ffi::OsStr::from_bytes(&x.name), &x.value) {
                warnings.push(format!("{}: extended attribute not set: {e}", p.display()));
            }
        }
    }
    let t = time_of(n.mtime_ns);
    if let Err(e) = file.set_times(FileTimes::new().set_accessed(t).set_modified(t)) {
        warnings.push(format!("{}: times not set: {e}", p.display()));
    }
}

/// Applies a folder's metadata through a descriptor of the folder itself.
pub(super) fn apply_to_dir(p: &Path, n: &Node, o: &MetaOptions, warnings: &mut Vec<String>) {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(p);
    match dir {
        Ok(d) => apply_to_fd(&d, p, n.into(), o, warnings),
        Err(e) => warnings.push(format!("{}: metadata not set: {e}", p.display())),
    }
}

/// Applies the metadata of a symlink or special file to the entry at `p`
/// itself, after checking it is of the type `n` says.
pub(super) fn apply_to_link_or_special(p: &Path, n: &Node, o: &MetaOptions, warnings: &mut Vec<String>) {
    if n.kind == NodeKind::Fifo {
        // Opening a FIFO without blocking has no effect on it, so it gets
        // its metadata through a descriptor like a file.
        let fifo = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
            .open(p);
        match fifo {
            Ok(f) => apply_to_fd(&f, p, n.into(), o, warnings),
            Err(e) => warnings.push(format!("{}: metadata not set: {e}", p.display())),
        }
        return;
    }
    if !is_still(fs::symlink_metadata(p), p, n.kind, warnings) {
        return;
    }
    if o.root {
        if let Err(e) = std::os::unix::fs::lchown(p, Some(n.uid), Some(n.gid)) {
            warnings.push(format!("{}: owner not set: {e}", p.display()));
        }
    }
    // A symlink's own mode means nothing on Linux; a chmod of it would act
    // on what it points to. Device nodes are not opened (that can act on
    // the device): chmod without following a symlink.
    if n.kind != NodeKind::Symlink {
        use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
        let mode = Mode::from_bits_truncate(o.mode(n.mode) as nix::libc::mode_t);
        if let Err(e) = fchmodat(None, p, mode, FchmodatFlags::NoFollowSymlink) {
            warnings.push(format!("{}: mode not set: {e}", p.display()));
        }
    }
    if o.xattrs {
        for x in n.xattrs.iter().filter(|x| !x.is_source_metadata()) {
            // `xattr::set` is lsetxattr: it does not follow a symlink.
            if let Err(e) = xattr::set(p, std::ffi::OsStr::from_bytes(&x.name), &x.value) {
                warnings.push(format!("{}: extended attribute not set: {e}", p.display()));
            }
        }
    }
    let t = filetime::FileTime::from_system_time(time_of(n.mtime_ns));
    if let Err(e) = filetime::set_symlink_file_times(p, t, t) {
        warnings.push(format!("{}: times not set: {e}", p.display()));
    }
}

/// What became of a symlink or special file.
pub(super) enum Special {
    /// Created.
    Made,
    /// Left out on purpose; the warning says why.
    LeftOut(String),
}

/// Creates the symlink, FIFO or (with `preserve_special`) device node `n`
/// at `p`, replacing what is there unless it is a folder. The error is the
/// reason it could not be created.
pub(super) fn make_special(p: &Path, n: &Node, o: &MetaOptions) -> Result<Special, String> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let is_device = matches!(n.kind, NodeKind::CharDevice | NodeKind::BlockDevice);
    if n.kind == NodeKind::Socket {
        return Ok(Special::LeftOut(format!(
            "{}: not restored: sockets are not restored",
            p.display()
        )));
    }
    if is_device && !o.preserve_special {
        return Ok(Special::LeftOut(format!(
            "{}: not restored: device node, use --preserve-special",
            p.display()
        )));
    }
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.is_dir() {
            return Err("a folder is in the way".into());
        }
        fs::remove_file(p).map_err(|e| format!("replacing what is there: {e}"))?;
    }
    // Created with no permissions; the mode is applied with the metadata.
    let mode = Mode::empty();
    match n.kind {
        NodeKind::Symlink => {
            let target = std::ffi::OsStr::from_bytes(n.symlink_target.as_deref().unwrap_or_default());
            std::os::unix::fs::symlink(target, p).map_err(|e| e.to_string())?;
        }
        NodeKind::Fifo => nix::unistd::mkfifo(p, mode).map_err(|e| e.to_string())?,
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            let kind = if n.kind == NodeKind::CharDevice {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            mknod(p, kind, mode, n.rdev as nix::libc::dev_t).map_err(|e| format!("device not created: {e}"))?;
        }
        NodeKind::Socket | NodeKind::File | NodeKind::Dir => {}
    }
    Ok(Special::Made)
}
