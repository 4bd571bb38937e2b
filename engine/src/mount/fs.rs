//! The mounted file system's operations, free of FUSE's request and reply
//! types (`fuse.rs` forwards to them), so unit tests call them directly.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use lru::LruCache;

use super::inodes::{Entry, Ident, Inodes, Listing, What, ROOT};
use super::view::{SnapEntry, View, Views};
use crate::backend::BackendError;
use crate::id::{BlobId, TreeId};
use crate::repository::{Repository, RepositoryError};
use crate::tree::{Node, NodeKind, Tree, Xattr};

/// Plaintext bytes of decoded trees kept for lookups and listings.
const TREE_CACHE_BYTES: usize = 32 << 20;

/// Files named in the log for unreadable data, remembered so that the
/// kernel's retries do not repeat the line; forgotten past this many.
const WARNED_MAX: usize = 10_000;

/// `read_dir`'s callback: number, next offset, type, name; true when full.
pub(super) type AddEntry<'a> = dyn FnMut(u64, u64, FileType, &[u8]) -> bool + 'a;

/// A least-recently-used cache bounded by the bytes its values hold.
struct Weighted<K: Hash + Eq, V: Clone> {
    lru: LruCache<K, (V, usize)>,
    bytes: usize,
    budget: usize,
}

impl<K: Hash + Eq, V: Clone> Weighted<K, V> {
    fn new(budget: usize) -> Self {
        Self {
            lru: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    fn get(&mut self, k: &K) -> Option<V> {
        self.lru.get(k).map(|(v, _)| v.clone())
    }

    /// Adds `v`; the least recently used go until the budget holds, but
    /// never the newest, however heavy: a folder or blob larger than the
    /// budget must not be read again for every request.
    fn put(&mut self, k: K, v: V, weight: usize) {
        if let Some((_, w)) = self.lru.put(k, (v, weight)) {
            self.bytes -= w;
        }
        self.bytes += weight;
        while self.bytes > self.budget && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((_, (_, w))) => self.bytes -= w,
                None => break,
            }
        }
    }
}

/// Roughly what a decoded tree takes in memory.
fn tree_weight(t: &Tree) -> usize {
    t.nodes
        .iter()
        .map(|n| {
            std::mem::size_of::<Node>()
                + n.name.len()
                + n.user.len()
                + n.group.len()
                + n.content.len() * std::mem::size_of::<crate::tree::ContentRef>()
                + n.symlink_target.as_ref().map_or(0, Vec::len)
                + n.xattrs
                    .iter()
                    .map(|x| x.name.len() + x.value.len() + 48)
                    .sum::<usize>()
        })
        .sum()
}

/// A Unix-ns time as the kernel wants it.
fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// The folder a snapshot's root is shown as.
fn root_entry(snap: &Arc<SnapEntry>) -> Entry {
    let mut node = Node::new(snap.name.as_bytes().to_vec(), NodeKind::Dir);
    node.mode = 0o755;
    node.uid = snap.uid;
    node.gid = snap.gid;
    node.mtime_ns = snap.time_ns;
    node.ctime_ns = snap.time_ns;
    node.subtree = Some(snap.tree);
    Entry::new(snap.clone(), PathBuf::from("/"), node)
}

/// The mounted repository.
pub(super) struct MountFs {
    repo: Arc<Repository>,
    views: Views,
    inodes: Inodes,
    trees: Mutex<Weighted<TreeId, Arc<Tree>>>,
    blobs: Mutex<Weighted<BlobId, Arc<Vec<u8>>>>,
    /// Blobs being read, each with the lock its other readers wait on.
    loading: Mutex<HashMap<BlobId, Arc<Mutex<()>>>>,
    warned: Mutex<HashSet<u64>>,
    /// Owner of the folders the mount makes (the mounting user).
    owner: (u32, u32),
}

impl MountFs {
    /// A file system over `views`, keeping up to `cache_bytes` of file data.
    pub fn new(repo: Arc<Repository>, views: Views, cache_bytes: usize) -> Self {
        Self {
            repo,
            views,
            inodes: Inodes::new(),
            trees: Mutex::new(Weighted::new(TREE_CACHE_BYTES)),
            blobs: Mutex::new(Weighted::new(cache_bytes)),
            loading: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
            owner: (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
        }
    }

    fn what(&self, ino: u64) -> Result<Arc<What>, Errno> {
        self.inodes.get(ino).ok_or(Errno::ENOENT)
    }

    /// The entry `name` of folder `parent`, counted as one kernel lookup.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<FileAttr, Errno> {
        let (ident, what) = self.child(parent, name)?;
        let (ino, what) = self.inodes.put(ident, what, true);
        Ok(self.attr(ino, &what))
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let what = self.what(ino)?;
        Ok(self.attr(ino, &what))
    }

    fn child(&self, parent: u64, name: &[u8]) -> Result<(Ident, What), Errno> {
        let ident = Ident::Child(parent, name.to_vec());
        match &*self.what(parent)? {
            What::Root => {
                let l = match name {
                    b"snapshots" => Listing::Snapshots,
                    b"hosts" => Listing::Hosts,
                    b"tags" => Listing::Tags,
                    _ => return Err(Errno::ENOENT),
                };
                Ok((ident, What::Listing(l)))
            }
            What::Listing(l) => {
                let view = self.views.current();
                let name = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
                let what = listing_child(&view, l, name).ok_or(Errno::ENOENT)?;
                let ident = match &what {
                    What::Entry(e) => Ident::Snapshot(parent, e.snap.id),
                    _ => ident,
                };
                Ok((ident, what))
            }
            What::Link { .. } => Err(Errno::ENOTDIR),
            What::Entry(e) => {
                let tree = self.tree_of(e)?;
                let node = tree.get(name).ok_or(Errno::ENOENT)?.clone();
                let ident = if node.is_hard_linked() {
                    Ident::Linked(e.snap.id, node.device, node.inode)
                } else {
                    ident
                };
                let path = e.path.join(std::ffi::OsStr::from_bytes(name));
                Ok((ident, What::Entry(Entry::new(e.snap.clone(), path, node))))
            }
        }
    }

    /// The decoded tree of folder entry `e`.
    fn tree_of(&self, e: &Entry) -> Result<Arc<Tree>, Errno> {
        let id = match (e.node.kind, e.node.subtree) {
            (NodeKind::Dir, Some(t)) => t,
            (NodeKind::Dir, None) => return Ok(Arc::new(Tree::default())),
            _ => return Err(Errno::ENOTDIR),
        };
        if let Some(t) = lock(&self.trees).get(&id) {
            return Ok(t);
        }
        let mut r = self.repo.load_tree(&self.views.index(), &id);
        if moved(&r) && self.views.reload_index() {
            r = self.repo.load_tree(&self.views.index(), &id);
        }
        let tree = Arc::new(r.map_err(|err| {
            tracing::error!(
                "mount: folder {} of snapshot {} cannot be listed: {err}",
                e.path.display(),
                e.snap.id.short()
            );
            Errno::EIO
        })?);
        lock(&self.trees).put(id, tree.clone(), tree_weight(&tree));
        Ok(tree)
    }

    /// Calls `add(ino, next offset, type, name)` for the entries of folder
    /// `ino` from `offset` on (`.` and `..` first) until it returns true
    /// (the kernel's buffer is full).
    pub fn read_dir(&self, ino: u64, offset: u64, add: &mut AddEntry<'_>) -> Result<(), Errno> {
        let what = self.what(ino)?;
        let mut items: Vec<(Ident, FileType, Vec<u8>)> = Vec::new();
        let tree;
        let nodes: &[Node] = match &*what {
            What::Root => {
                for n in ["snapshots", "hosts", "tags"] {
                    items.push((Ident::Child(ino, n.into()), FileType::Directory, n.into()));
                }
                &[]
            }
            What::Listing(l) => {
                let view = self.views.current();
                items = listing_names(&view, l, ino);
                &[]
            }
            What::Entry(e) => {
                tree = self.tree_of(e)?;
                &tree.nodes
            }
            What::Link { .. } => return Err(Errno::ENOTDIR),
        };
        let total = 2 + items.len() + nodes.len();
        for i in usize::try_from(offset).unwrap_or(usize::MAX)..total {
            let next = i as u64 + 1;
            let full = match i {
                0 => add(ino, next, FileType::Directory, b"."),
                1 => add(ino, next, FileType::Directory, b".."),
                _ if i - 2 < items.len() => {
                    let (ident, kind, name) = &items[i - 2];
                    add(self.inodes.number(ident), next, *kind, name)
                }
                _ => {
                    let n = &nodes[i - 2 - items.len()];
                    let ident = match &*what {
                        What::Entry(e) if n.is_hard_linked() => Ident::Linked(e.snap.id, n.device, n.inode),
                        _ => Ident::Child(ino, n.name.clone()),
                    };
                    add(self.inodes.number(&ident), next, file_type(n.kind), &n.name)
                }
            };
            if full {
                break;
            }
        }
        Ok(())
    }

    /// Where symbolic link `ino` points.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        match &*self.what(ino)? {
            What::Link { target, .. } => Ok(target.clone()),
            What::Entry(e) => e.node.symlink_target.clone().ok_or(Errno::EINVAL),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Checks that `ino` can be opened for reading.
    pub fn open(&self, ino: u64, write: bool) -> Result<(), Errno> {
        let what = self.what(ino)?;
        if write {
            return Err(Errno::EROFS);
        }
        match &*what {
            What::Entry(e) if e.node.kind == NodeKind::Dir => Err(Errno::EISDIR),
            _ => Ok(()),
        }
    }

    /// Up to `size` bytes of file `ino` from `offset`. A blob that cannot
    /// be read fails the read with EIO, and the log names the file once.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        tracing::trace!("mount: read {ino:x} {offset}+{size}");
        let what = self.what(ino)?;
        let What::Entry(e) = &*what else {
            return Err(Errno::EISDIR);
        };
        if e.node.kind != NodeKind::File {
            return Err(Errno::EINVAL);
        }
        let end = e
            .node
            .size
            .min(e.content_len())
            .min(offset.saturating_add(u64::from(size)));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        let mut i = e.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        while at < end && i < e.node.content.len() {
            let blob = self.blob(ino, e, i)?;
            let from = (at - e.starts[i]) as usize;
            let to = ((end - e.starts[i]) as usize).min(blob.len());
            out.extend_from_slice(blob.get(from..to).unwrap_or_default());
            at = e.starts[i] + to as u64;
            i += 1;
        }
        Ok(out)
    }

    /// Content blob `i` of file `e`, through the cache.
    fn blob(&self, ino: u64, e: &Entry, i: usize) -> Result<Arc<Vec<u8>>, Errno> {
        let c = e.node.content[i];
        if let Some(b) = lock(&self.blobs).get(&c.id) {
            return Ok(b);
        }
        // The kernel's readahead asks for neighbouring ranges from several
        // threads at once: one of them reads the blob, the others wait for
        // it instead of reading and decrypting it again.
        let gate = lock(&self.loading).entry(c.id).or_default().clone();
        let _turn = lock(&gate);
        let loaded = lock(&self.blobs).get(&c.id);
        let r = match loaded {
            Some(b) => Ok(b),
            None => self.load_blob(ino, e, i),
        };
        let mut loading = lock(&self.loading);
        if loading.get(&c.id).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
            loading.remove(&c.id);
        }
        r
    }

    /// Reads content blob `i` of file `e` into the cache.
    fn load_blob(&self, ino: u64, e: &Entry, i: usize) -> Result<Arc<Vec<u8>>, Errno> {
        let c = e.node.content[i];
        tracing::debug!("mount: reading blob {} of {}", c.id.short(), e.path.display());
        let mut r = self.repo.read_blob(&self.views.index(), &c.id);
        if moved(&r) && self.views.reload_index() {
            r = self.repo.read_blob(&self.views.index(), &c.id);
        }
        let data = match r {
            Ok(d) if d.len() == c.length as usize => d,
            Ok(d) => {
                let why = format!(
                    "blob {} has {} bytes, the tree says {}",
                    c.id.short(),
                    d.len(),
                    c.length
                );
                self.unreadable(ino, e, &why);
                return Err(Errno::EIO);
            }
            Err(RepositoryError::Backend(BackendError::Archived { .. })) => {
                self.warn_once(ino, || {
                    let (id, path) = (e.snap.id.short(), e.path.display());
                    tracing::warn!(
                        "mount: {path} (snapshot {id}) cannot be read: its data is in archive storage, and a \
                         read retrieves nothing; `cairn restore {id}:{path} --target DIR` retrieves and restores it"
                    );
                });
                return Err(Errno::EIO);
            }
            Err(err) => {
                self.unreadable(ino, e, &err.to_string());
                return Err(Errno::EIO);
            }
        };
        let data = Arc::new(data);
        lock(&self.blobs).put(c.id, data.clone(), data.len());
        Ok(data)
    }

    fn unreadable(&self, ino: u64, e: &Entry, why: &str) {
        self.warn_once(ino, || {
            tracing::error!(
                "mount: {} (snapshot {}) cannot be read whole: {why}",
                e.path.display(),
                e.snap.id.short()
            );
        });
    }

    fn warn_once(&self, ino: u64, say: impl FnOnce()) {
        let mut w = lock(&self.warned);
        if w.len() >= WARNED_MAX {
            w.clear();
        }
        if w.insert(ino) {
            say();
        }
    }

    /// The extended attributes of `ino` (a source's own metadata left out).
    pub fn xattrs(&self, ino: u64) -> Result<Vec<Xattr>, Errno> {
        Ok(match &*self.what(ino)? {
            What::Entry(e) => e
                .node
                .xattrs
                .iter()
                .filter(|x| !x.is_source_metadata())
                .cloned()
                .collect(),
            _ => Vec::new(),
        })
    }

    fn attr(&self, ino: u64, what: &What) -> FileAttr {
        let dir = |time_ns: i64| (FileType::Directory, 0o555, self.owner, time_ns, 0u64, 2u32, 0u64);
        let (kind, perm, (uid, gid), mtime_ns, size, nlink, rdev) = match what {
            What::Root | What::Listing(_) => dir(self.views.current().newest_ns()),
            What::Link { target, time_ns } => (
                FileType::Symlink,
                0o777,
                self.owner,
                *time_ns,
                target.len() as u64,
                1,
                0,
            ),
            What::Entry(e) => {
                let n = &e.node;
                let size = match n.kind {
                    NodeKind::Symlink => n.symlink_target.as_ref().map_or(0, |t| t.len() as u64),
                    NodeKind::File => n.size,
                    _ => 0,
                };
                let nlink = if n.kind == NodeKind::Dir {
                    2
                } else {
                    n.nlink.clamp(1, u64::from(u32::MAX)) as u32
                };
                (
                    file_type(n.kind),
                    n.mode & 0o7777,
                    (n.uid, n.gid),
                    n.mtime_ns,
                    size,
                    nlink,
                    n.rdev,
                )
            }
        };
        let ctime_ns = match what {
            What::Entry(e) => e.node.ctime_ns,
            _ => mtime_ns,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: system_time(mtime_ns),
            mtime: system_time(mtime_ns),
            ctime: system_time(ctime_ns),
            crtime: system_time(mtime_ns),
            kind,
            perm: (perm & 0o7777) as u16,
            nlink,
            uid,
            gid,
            rdev: rdev as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Whether `ino` is a folder the mount makes (its listing can change).
    pub fn is_listing(&self, ino: u64) -> bool {
        ino == ROOT
            || matches!(
                self.inodes.get(ino).as_deref(),
                Some(What::Listing(_) | What::Link { .. })
            )
    }

    /// Entries the table holds (tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.inodes.len()
    }
}

/// Whether a read failed because the index may be out of date: the blob
/// is not in it, or its pack is gone (a prune repacked it elsewhere).
fn moved<T>(r: &Result<T, RepositoryError>) -> bool {
    matches!(
        r,
        Err(RepositoryError::MissingBlob { .. } | RepositoryError::Backend(BackendError::NotFound { .. }))
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The snapshots a listing folder shows, oldest first.
fn members<'a>(view: &'a View, l: &Listing) -> Box<dyn Iterator<Item = &'a Arc<SnapEntry>> + 'a> {
    let of = |ix: Option<&'a Vec<usize>>| -> Box<dyn Iterator<Item = &'a Arc<SnapEntry>> + 'a> {
        Box::new(ix.into_iter().flatten().map(move |&i| &view.snaps[i]))
    };
    match l {
        Listing::Snapshots => Box::new(view.snaps.iter()),
        Listing::Host(h) => of(view.hosts.get(h)),
        Listing::Tag(t) => of(view.tags.get(t)),
        Listing::Hosts | Listing::Tags => Box::new(std::iter::empty()),
    }
}

/// What `name` is in listing folder `l`.
fn listing_child(view: &View, l: &Listing, name: &str) -> Option<What> {
    match l {
        Listing::Hosts => view
            .hosts
            .contains_key(name)
            .then(|| What::Listing(Listing::Host(name.into()))),
        Listing::Tags => view
            .tags
            .contains_key(name)
            .then(|| What::Listing(Listing::Tag(name.into()))),
        _ => {
            let link = |s: &Arc<SnapEntry>| What::Link {
                target: s.name.as_bytes().to_vec(),
                time_ns: s.time_ns,
            };
            if name == "latest" {
                return members(view, l).last().map(link);
            }
            if let Some(s) = members(view, l).find(|s| s.name == name) {
                return Some(What::Entry(root_entry(s)));
            }
            // `snapshots/<id prefix>`: a link to the snapshot's folder, not listed.
            match (l, view.by_id_prefix(name)) {
                (Listing::Snapshots, Some(s)) if view.by_name(name).is_none() => Some(link(s)),
                _ => None,
            }
        }
    }
}

/// What listing folder `l` (number `ino`) shows: identity, type, name.
fn listing_names(view: &View, l: &Listing, ino: u64) -> Vec<(Ident, FileType, Vec<u8>)> {
    let folder = |name: &String| {
        let name = name.as_bytes().to_vec();
        (Ident::Child(ino, name.clone()), FileType::Directory, name)
    };
    match l {
        Listing::Hosts => view.hosts.keys().map(folder).collect(),
        Listing::Tags => view.tags.keys().map(folder).collect(),
        _ => {
            let mut out: Vec<_> = members(view, l)
                .map(|s| {
                    (
                        Ident::Snapshot(ino, s.id),
                        FileType::Directory,
                        s.name.as_bytes().to_vec(),
                    )
                })
                .collect();
            if !out.is_empty() {
                out.push((
                    Ident::Child(ino, b"latest".to_vec()),
                    FileType::Symlink,
                    b"latest".to_vec(),
                ));
            }
            out
        }
    }
}
