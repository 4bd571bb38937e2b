//! Backing up a bucket: list, decide per object whether the parent snapshot
//! has it already (same path, size and ETag: not read at all), read the rest
//! in parallel straight into the chunker, and build the tree with the
//! backup's own folder builder.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use bytes::{Buf, Bytes};

use super::listing::Listed;
use super::{attr, bare_etag, key_names, rfc3339, S3Source};
use crate::backend::BackendError;
use crate::backup::{save_content, BackupError, BackupOptions, ContentError, DirBuilder, Saver, SkippedEntry};
use crate::chunker::ChunkBuffer;
use crate::id::{SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::{S3Details, Summary};
use crate::tree::{self, ContentRef, Descend, Node, NodeKind, Visitor, Xattr};

/// One object version to put in the snapshot.
struct Planned {
    listed: Listed,
    path: PathBuf,
    /// What the parent snapshot has at the same path, when still usable.
    prev: Option<Arc<PrevObject>>,
}

/// A file of the parent snapshot of the same bucket.
#[derive(Debug)]
struct PrevObject {
    size: u64,
    etag: String,
    mtime_ns: i64,
    xattrs: Vec<Xattr>,
    content: Vec<ContentRef>,
}

/// The parent's S3 files by path (the one tree walker does the walking).
#[derive(Default)]
struct ParentObjects(HashMap<PathBuf, Arc<PrevObject>>);

impl Visitor for ParentObjects {
    type Error = RepositoryError;

    fn enter(&mut self, path: &Path, _: &TreeId, n: &Node) -> Result<Descend, RepositoryError> {
        match n.kind {
            NodeKind::Dir => Ok(Descend::Yes),
            NodeKind::File => {
                if let Some(etag) = xattr(n, attr::ETAG) {
                    self.0.insert(
                        path.to_path_buf(),
                        Arc::new(PrevObject {
                            size: n.size,
                            etag,
                            mtime_ns: n.mtime_ns,
                            xattrs: n.xattrs.clone(),
                            content: n.content.clone(),
                        }),
                    );
                }
                Ok(Descend::No)
            }
            _ => Ok(Descend::No),
        }
    }
}

fn xattr(n: &Node, name: &str) -> Option<String> {
    n.xattrs
        .iter()
        .find(|x| x.name == name.as_bytes())
        .map(|x| String::from_utf8_lossy(&x.value).into_owned())
}

fn load_parent(repo: &Repository, index: &Index, id: &SnapshotId) -> Result<ParentObjects, RepositoryError> {
    let snap = repo.load_snapshot(id)?;
    let mut out = ParentObjects::default();
    tree::walk(repo, index, &snap.tree, Path::new("/"), &mut out)?;
    // Reused only while the index offers every blob (as for files: blobs
    // waiting for deletion or in lost packs are read and stored anew).
    out.0.retain(|_, p| p.content.iter().all(|c| index.contains(&c.id)));
    Ok(out)
}

/// The metadata of an object as a GET or HEAD gave it.
struct ObjectMeta {
    etag: String,
    modified_ns: i64,
    content_type: Option<String>,
    user: Vec<(String, String)>,
}

impl ObjectMeta {
    fn from_parts(
        etag: Option<&str>,
        modified: Option<&aws_sdk_s3::primitives::DateTime>,
        content_type: Option<&str>,
        user: Option<&HashMap<String, String>>,
    ) -> Self {
        let mut user: Vec<(String, String)> = user
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        user.sort();
        Self {
            etag: bare_etag(etag.unwrap_or("")),
            modified_ns: modified.and_then(|t| i64::try_from(t.as_nanos()).ok()).unwrap_or(0),
            content_type: content_type.map(str::to_string),
            user,
        }
    }
}

/// Why one object could not be backed up.
enum ReadError {
    /// The object: skipped with a warning, the backup goes on.
    Object(String),
    /// The repository side: the backup stops.
    Save(BackupError),
}

/// A synchronous reader over a response body, a frame at a time (memory is
/// one frame, whatever the object's size).
struct Body<'a> {
    src: &'a S3Source,
    stream: ByteStream,
    frame: Bytes,
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.frame.is_empty() {
            match self.src.backend().run(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.frame = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "the connection broke while reading: {}",
                        crate::backend::s3::error_chain(&e)
                    )))
                }
            }
        }
        let n = out.len().min(self.frame.len());
        out[..n].copy_from_slice(&self.frame[..n]);
        self.frame.advance(n);
        Ok(n)
    }
}

impl S3Source {
    /// GETs one object version and chunks it into the saver.
    fn read_object(
        &self,
        repo: &Repository,
        saver: &Saver,
        chunks: &mut ChunkBuffer,
        l: &Listed,
        opts: &BackupOptions,
    ) -> Result<(Vec<ContentRef>, u64, ObjectMeta), ReadError> {
        let b = self.backend();
        let resp = b
            .run(
                b.client()
                    .get_object()
                    .bucket(b.bucket())
                    .key(&l.key)
                    .set_version_id(l.version_id.clone())
                    .send(),
            )
            .map_err(|e| ReadError::Object(describe(b.fail(&l.key, e))))?;
        let meta = ObjectMeta::from_parts(resp.e_tag(), resp.last_modified(), resp.content_type(), resp.metadata());
        let announced = resp.content_length().and_then(|n| u64::try_from(n).ok());
        let body = Body {
            src: self,
            stream: resp.body,
            frame: Bytes::new(),
        };
        let content = save_content(repo, saver, chunks, body, |len| {
            if let Some(p) = &opts.progress {
                p.bytes_done.fetch_add(len, Ordering::Relaxed);
            }
        })
        .map_err(|e| match e {
            ContentError::Read(e) => ReadError::Object(e.to_string()),
            ContentError::Save(e) => ReadError::Save(e),
        })?;
        if let Some(n) = announced {
            if n != content.size {
                return Err(ReadError::Object(format!(
                    "the server announced {n} bytes but sent {}",
                    content.size
                )));
            }
        }
        Ok((content.refs, content.size, meta))
    }

    /// HEADs one object version, for metadata only.
    fn head_object(&self, l: &Listed) -> Result<ObjectMeta, String> {
        let b = self.backend();
        let h = b
            .run(
                b.client()
                    .head_object()
                    .bucket(b.bucket())
                    .key(&l.key)
                    .set_version_id(l.version_id.clone())
                    .send(),
            )
            .map_err(|e| describe(b.fail(&l.key, e)))?;
        Ok(ObjectMeta::from_parts(
            h.e_tag(),
            h.last_modified(),
            h.content_type(),
            h.metadata(),
        ))
    }
}

fn describe(e: BackendError) -> String {
    match e {
        BackendError::NotFound { .. } => "deleted while the backup ran".into(),
        other => other.to_string(),
    }
}

/// The file node of an object version.
fn file_node(name: &[u8], l: &Listed, meta: &ObjectMeta, size: u64, content: Vec<ContentRef>) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::File);
    n.mode = 0o644;
    n.uid = nix::unistd::getuid().as_raw();
    n.gid = nix::unistd::getgid().as_raw();
    n.mtime_ns = meta.modified_ns;
    n.ctime_ns = meta.modified_ns;
    n.nlink = 1;
    n.size = size;
    n.content = content;
    let mut x = |name: &str, value: &str| {
        n.xattrs.push(Xattr {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        })
    };
    x(attr::ETAG, &meta.etag);
    x(attr::LAST_MODIFIED, &rfc3339(meta.modified_ns));
    if let Some(ct) = &meta.content_type {
        x(attr::CONTENT_TYPE, ct);
    }
    for (k, v) in &meta.user {
        x(&format!("{}{k}", attr::META), v);
    }
    if let Some(v) = &l.version_id {
        x(attr::VERSION_ID, v);
        x(attr::LATEST, if l.latest { "1" } else { "0" });
    }
    // format-spec "Trees": xattrs sorted by name.
    n.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
    n
}

/// The metadata a parent's node recorded.
fn meta_of(prev: &PrevObject) -> ObjectMeta {
    let get = |name: &str| {
        prev.xattrs
            .iter()
            .find(|x| x.name == name.as_bytes())
            .map(|x| String::from_utf8_lossy(&x.value).into_owned())
    };
    let user = prev
        .xattrs
        .iter()
        .filter_map(|x| {
            let n = std::str::from_utf8(&x.name).ok()?.strip_prefix(attr::META)?;
            Some((n.to_string(), String::from_utf8_lossy(&x.value).into_owned()))
        })
        .collect();
    ObjectMeta {
        etag: prev.etag.clone(),
        modified_ns: prev.mtime_ns,
        content_type: get(attr::CONTENT_TYPE),
        user,
    }
}

/// Lists `src`, stores what the parent does not have and builds the
/// snapshot's tree: `/BUCKET/KEY` per object (see the module documentation).
/// Objects that cannot be read or represented go to `skipped`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backup_bucket(
    repo: &Repository,
    index: &Index,
    saver: &Saver,
    src: &S3Source,
    parent: Option<&SnapshotId>,
    opts: &BackupOptions,
    summary: &mut Summary,
    skipped: &mut Vec<SkippedEntry>,
) -> Result<(TreeId, S3Details), BackupError> {
    let listing = src.list()?;
    let bucket_dir = PathBuf::from("/").join(src.bucket());
    let parent = match parent {
        Some(id) => match load_parent(repo, index, id) {
            Ok(p) => Some(p),
            Err(e) if e.kind() == crate::error::ErrorKind::Damaged => {
                tracing::warn!("not using the parent snapshot: {e}; every object is read");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };

    // Paths, and the keys that cannot be paths.
    let mut planned: Vec<Planned> = Vec::new();
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let mut files: HashSet<PathBuf> = HashSet::new();
    dirs.insert(PathBuf::from("/"));
    dirs.insert(bucket_dir.clone());
    let mut folder_markers = 0u64;
    for l in listing.objects {
        if l.key.ends_with('/') && l.size == 0 {
            folder_markers += 1;
            continue;
        }
        let old = if l.latest { None } else { l.version_id.as_deref() };
        let shown = bucket_dir.join(&l.key);
        let names = match key_names(&l.key, old) {
            Ok(n) => n,
            Err(error) => {
                skipped.push(SkippedEntry { path: shown, error });
                continue;
            }
        };
        let path = names.iter().fold(bucket_dir.clone(), |p, n| p.join(n));
        if !files.insert(path.clone()) {
            skipped.push(SkippedEntry {
                path,
                error: format!("key {:?} gives a path another object has already", l.key),
            });
            continue;
        }
        let mut a = path.parent();
        while let Some(d) = a {
            if !dirs.insert(d.to_path_buf()) {
                break;
            }
            a = d.parent();
        }
        let prev = parent.as_ref().and_then(|p| p.0.get(&path).cloned());
        planned.push(Planned { listed: l, path, prev });
    }
    planned.retain(|p| {
        let clash = dirs.contains(&p.path);
        if clash {
            skipped.push(SkippedEntry {
                path: p.path.clone(),
                error: format!(
                    "key {:?} is both an object and the folder of other keys; the folder is kept",
                    p.listed.key
                ),
            });
        }
        !clash
    });
    if folder_markers > 0 {
        tracing::info!("{folder_markers} folder marker(s) (empty keys ending in `/`) hold no data and were left out");
    }
    if listing.delete_markers > 0 {
        tracing::info!(
            "{} delete marker(s) hold no data and were left out",
            listing.delete_markers
        );
    }
    if let Some(p) = &opts.progress {
        p.files_total.store(planned.len() as u64, Ordering::Relaxed);
        p.bytes_total
            .store(planned.iter().map(|p| p.listed.size).sum(), Ordering::Relaxed);
        p.walk_finished.store(true, Ordering::Relaxed);
    }

    // Unchanged objects take the parent's content; the rest are read.
    let mut nodes: Vec<Option<Node>> = Vec::with_capacity(planned.len());
    let mut to_read: Vec<usize> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        let l = &p.listed;
        let name = p
            .path
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        match &p.prev {
            Some(prev) if prev.size == l.size && prev.etag == l.etag && !l.etag.is_empty() => {
                // Same content. Its metadata is the parent's unless the
                // object was rewritten since (a copy onto itself with new
                // metadata keeps the ETag): then one HEAD, still no read.
                // Whole seconds: listings may carry milliseconds that the
                // Last-Modified header of a GET (what the parent kept) drops.
                let same_time = prev.mtime_ns.div_euclid(1_000_000_000) == l.modified_ns.div_euclid(1_000_000_000);
                let meta = if same_time {
                    Ok(meta_of(prev))
                } else {
                    src.head_object(l)
                };
                match meta {
                    Ok(meta) => {
                        nodes.push(Some(file_node(&name, l, &meta, l.size, prev.content.clone())));
                        summary.files_unchanged += 1;
                        summary.bytes_unchanged += l.size;
                        if let Some(pr) = &opts.progress {
                            pr.files_done.fetch_add(1, Ordering::Relaxed);
                            pr.bytes_done.fetch_add(l.size, Ordering::Relaxed);
                        }
                    }
                    Err(error) => {
                        skipped.push(SkippedEntry {
                            path: p.path.clone(),
                            error,
                        });
                        nodes.push(None);
                    }
                }
            }
            _ => {
                to_read.push(i);
                nodes.push(None);
            }
        }
    }

    let read = read_all(repo, saver, src, &planned, &to_read, opts)?;
    for (i, r) in read {
        let p = &planned[i];
        match r {
            Ok((content, size, meta)) => {
                let name = p
                    .path
                    .file_name()
                    .map(|n| n.as_encoded_bytes().to_vec())
                    .unwrap_or_default();
                nodes[i] = Some(file_node(&name, &p.listed, &meta, size, content));
                summary.bytes_read += size;
                if p.prev.is_some() {
                    summary.files_changed += 1;
                    summary.bytes_changed += size;
                } else {
                    summary.files_new += 1;
                    summary.bytes_new += size;
                }
            }
            Err(error) => skipped.push(SkippedEntry {
                path: p.path.clone(),
                error,
            }),
        }
    }

    let mut root = DirBuilder::synthetic_root();
    // The bucket folder exists even when nothing is under the prefix.
    root.insert_dir(&bucket_dir);
    let mut objects = 0u64;
    for (p, n) in planned.iter().zip(nodes) {
        if let Some(n) = n {
            root.insert_path(&p.path, n);
            objects += 1;
        }
    }
    // Every folder but the root.
    summary.dirs = dirs.len().saturating_sub(1) as u64;
    let tree = root.store(saver, repo)?;
    Ok((
        tree,
        S3Details {
            url: src.url(),
            versions: src.versions(),
            objects,
        },
    ))
}

type ReadResult = Result<(Vec<ContentRef>, u64, ObjectMeta), String>;

/// Reads the objects `which` of `planned`, up to the source's reader count
/// at once; each result by its index. Stops at the first repository-side
/// failure (or a cancellation) with that error.
fn read_all(
    repo: &Repository,
    saver: &Saver,
    src: &S3Source,
    planned: &[Planned],
    which: &[usize],
    opts: &BackupOptions,
) -> Result<Vec<(usize, ReadResult)>, BackupError> {
    let next = Mutex::new(which.iter());
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, ReadResult)>> = Mutex::new(Vec::with_capacity(which.len()));
    let failure: Mutex<Option<BackupError>> = Mutex::new(None);
    let readers = src.readers.min(which.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..readers {
            s.spawn(|| {
                let mut chunks = ChunkBuffer::new(&repo.config().chunker);
                loop {
                    if stop.load(Ordering::Relaxed) || opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    let Some(&i) = next.lock().ok().and_then(|mut it| it.next()) else {
                        return;
                    };
                    let r = match src.read_object(repo, saver, &mut chunks, &planned[i].listed, opts) {
                        Ok(v) => Ok(v),
                        Err(ReadError::Object(e)) => Err(e),
                        Err(ReadError::Save(e)) => {
                            stop.store(true, Ordering::Relaxed);
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    };
                    if let Some(p) = &opts.progress {
                        p.files_done.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    if stop.load(Ordering::Relaxed) {
        return Err(BackupError::PipelineStopped);
    }
    let mut v = results.into_inner().map_err(|_| BackupError::ThreadPanicked)?;
    v.sort_by_key(|(i, _)| *i);
    Ok(v)
}
