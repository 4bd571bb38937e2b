//! `restore --to-s3`: a snapshot's files (of an S3 source) put back as
//! objects, with their content type and user metadata, best-effort: a file
//! that fails is named and the others go on.
//!
//! The key of `/BUCKET/KEY` is the target's prefix followed by `KEY`, so
//! restoring into the bucket that was backed up (no prefix) puts objects
//! back where they were. Non-current versions (`KEY.versions/VERSION`) are
//! put back only when chosen one by one (`SNAPSHOT:/BUCKET/KEY.versions/V`):
//! then as `KEY`; a folder's restore leaves them out and counts them.
//! Content is read through `dump`'s path, a blob at a time, and uploaded
//! in parts of [`PART`] bytes: memory stays at one part per upload.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use serde::Serialize;

use super::{attr, S3Source, VERSIONS_SUFFIX};
use crate::browse::BrowseError;
use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::{Snapshot, SourceKind};
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// Objects up to this size go up in one PUT; larger ones in parts of it.
pub const PART: usize = 8 * 1024 * 1024;

/// Settings of a restore into a bucket.
#[derive(Debug, Default, Clone)]
pub struct S3RestoreOptions {
    /// Only this file or folder of the snapshot (absolute), e.g.
    /// `/BUCKET/photos`; default: everything.
    pub subpath: Option<String>,
    /// Counters to update for a progress display.
    pub progress: Option<Arc<S3RestoreProgress>>,
}

/// Live counters of a restore into a bucket.
#[derive(Debug, Default)]
pub struct S3RestoreProgress {
    /// Objects to put.
    pub objects_total: AtomicU64,
    /// Their bytes.
    pub bytes_total: AtomicU64,
    /// Objects done (put or failed).
    pub objects_done: AtomicU64,
    /// Bytes put so far.
    pub bytes_done: AtomicU64,
}

/// An object that was not put back.
#[derive(Debug, Clone, Serialize)]
pub struct S3RestoreFailure {
    /// The file in the snapshot.
    pub path: String,
    /// The key it was to become.
    pub key: String,
    /// Why it was not.
    pub reason: String,
}

/// What a restore into a bucket did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct S3RestoreSummary {
    /// The target (`s3:...`, without credentials).
    pub target: String,
    /// Objects put.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Non-current versions left out (restore them one by one).
    pub versions_left_out: u64,
    /// Objects not put, and why.
    pub failed: Vec<S3RestoreFailure>,
}

/// One file to put.
struct Job {
    path: PathBuf,
    key: String,
    node: Node,
}

/// Collects the files below the start folder.
struct Files(Vec<(PathBuf, Node)>);

impl Visitor for Files {
    type Error = RepositoryError;
    fn enter(&mut self, path: &Path, _: &TreeId, n: &Node) -> std::result::Result<Descend, RepositoryError> {
        match n.kind {
            NodeKind::Dir => Ok(Descend::Yes),
            NodeKind::File => {
                self.0.push((path.to_path_buf(), n.clone()));
                Ok(Descend::No)
            }
            _ => Ok(Descend::No),
        }
    }
}

fn xattr<'a>(n: &'a Node, name: &str) -> Option<&'a [u8]> {
    n.xattrs
        .iter()
        .find(|x| x.name == name.as_bytes())
        .map(|x| x.value.as_slice())
}

/// The key (below the bucket folder) of the file at `path`: everything
/// after `/BUCKET/`; a non-current version's is its key's.
fn original_key(path: &Path, old_version: bool) -> Option<String> {
    let mut names: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .skip(1)
        .collect();
    if old_version {
        names.pop()?;
        let last = names.pop()?.strip_suffix(VERSIONS_SUFFIX)?;
        names.push(last);
    }
    if names.is_empty() {
        return None;
    }
    Some(names.join("/"))
}

/// Puts the files of `snapshot` (or of `opts.subpath`) into `target`'s
/// bucket under its prefix. Returns the summary whatever failed per object;
/// fails as a whole only when the snapshot is not an S3 source's or the
/// path is not in it.
pub fn restore_to_s3(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &S3Source,
    opts: &S3RestoreOptions,
) -> Result<S3RestoreSummary> {
    if !matches!(snapshot.source, SourceKind::S3) {
        return Err(BrowseError::Path(
            "only snapshots of an S3 source (`backup --s3-source`) can be restored with --to-s3; restore others with --target"
                .into(),
        )
        .into());
    }
    let index = repo.load_index()?;
    let start = opts.subpath.clone().unwrap_or_else(|| "/".into());
    let node = crate::browse::node_at(repo, &index, snapshot, &start)?;
    let start_path = PathBuf::from(if start.is_empty() { "/" } else { start.as_str() });
    let mut files = Files(Vec::new());
    let single = node.kind == NodeKind::File;
    if single {
        files.0.push((start_path.clone(), node));
    } else if let (NodeKind::Dir, Some(t)) = (node.kind, node.subtree) {
        tree::walk(repo, &index, &t, &start_path, &mut files)?;
    }
    let mut summary = S3RestoreSummary {
        target: target.url(),
        ..Default::default()
    };
    let mut jobs = Vec::new();
    for (path, node) in files.0 {
        let old = xattr(&node, attr::LATEST) == Some(b"0".as_slice());
        if old && !single {
            summary.versions_left_out += 1;
            continue;
        }
        match original_key(&path, old) {
            Some(k) => jobs.push(Job {
                key: format!("{}{k}", target.backend().prefix()),
                path,
                node,
            }),
            None => summary.failed.push(S3RestoreFailure {
                path: path.to_string_lossy().into_owned(),
                key: String::new(),
                reason: "no object key can be made of this path".into(),
            }),
        }
    }
    if let Some(p) = &opts.progress {
        p.objects_total.store(jobs.len() as u64, Ordering::Relaxed);
        p.bytes_total
            .store(jobs.iter().map(|j| j.node.size).sum(), Ordering::Relaxed);
    }

    let next = Mutex::new(jobs.iter());
    let done: Mutex<Vec<(u64, Option<S3RestoreFailure>)>> = Mutex::new(Vec::new());
    let workers = target.readers.min(jobs.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(job) = next.lock().ok().and_then(|mut it| it.next()) else {
                    return;
                };
                let r = put_one(repo, &index, target, job, opts);
                if let Some(p) = &opts.progress {
                    p.objects_done.fetch_add(1, Ordering::Relaxed);
                }
                let entry = match r {
                    Ok(n) => (n, None),
                    Err(reason) => (
                        0,
                        Some(S3RestoreFailure {
                            path: job.path.to_string_lossy().into_owned(),
                            key: job.key.clone(),
                            reason,
                        }),
                    ),
                };
                if let Ok(mut d) = done.lock() {
                    d.push(entry);
                }
            });
        }
    });
    for (n, failure) in done.into_inner().unwrap_or_default() {
        match failure {
            Some(f) => summary.failed.push(f),
            None => {
                summary.objects += 1;
                summary.bytes += n;
            }
        }
    }
    summary.failed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(summary)
}

/// Puts one file as one object; its byte count, or why not.
fn put_one(
    repo: &Repository,
    index: &crate::index::Index,
    target: &S3Source,
    job: &Job,
    opts: &S3RestoreOptions,
) -> std::result::Result<u64, String> {
    let path = job.path.to_str().ok_or("the path is not UTF-8")?;
    let mut up = Upload {
        target,
        key: &job.key,
        content_type: xattr(&job.node, attr::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v).into_owned()),
        metadata: job
            .node
            .xattrs
            .iter()
            .filter_map(|x| {
                let name = std::str::from_utf8(&x.name).ok()?.strip_prefix(attr::META)?;
                Some((name.to_string(), String::from_utf8_lossy(&x.value).into_owned()))
            })
            .collect(),
        buf: Vec::new(),
        upload_id: None,
        parts: Vec::new(),
        progress: opts.progress.clone(),
    };
    match crate::browse::dump_node(repo, index, &job.node, path, &mut up) {
        Ok(n) => up.finish().map(|()| n),
        Err(e) => {
            up.abort();
            Err(match e {
                // The upload's own failure, not an output problem.
                Error::Browse(BrowseError::Output(io)) => io.to_string(),
                other => other.to_string(),
            })
        }
    }
}

/// An object being uploaded from a stream of writes.
struct Upload<'a> {
    target: &'a S3Source,
    key: &'a str,
    content_type: Option<String>,
    metadata: std::collections::HashMap<String, String>,
    buf: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    progress: Option<Arc<S3RestoreProgress>>,
}

impl Upload<'_> {
    fn part(&mut self) -> std::result::Result<(), String> {
        let b = self.target.backend();
        let fail = |e: crate::backend::BackendError| e.to_string();
        if self.upload_id.is_none() {
            let created = b
                .run(
                    b.client()
                        .create_multipart_upload()
                        .bucket(b.bucket())
                        .key(self.key)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32)
                        .set_content_type(self.content_type.clone())
                        .set_metadata(Some(self.metadata.clone()))
                        .send(),
                )
                .map_err(|e| fail(b.fail(self.key, e)))?;
            self.upload_id = Some(
                created
                    .upload_id()
                    .ok_or("the server started a multipart upload without an upload id")?
                    .to_string(),
            );
        }
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buf);
        let len = body.len() as u64;
        let out = b
            .run(
                b.client()
                    .upload_part()
                    .bucket(b.bucket())
                    .key(self.key)
                    .set_upload_id(self.upload_id.clone())
                    .part_number(number)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(ByteStream::from(body))
                    .send(),
            )
            .map_err(|e| fail(b.fail(self.key, e)))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                .build(),
        );
        if let Some(p) = &self.progress {
            p.bytes_done.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }

    fn finish(mut self) -> std::result::Result<(), String> {
        let b = self.target.backend();
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buf);
            let len = body.len() as u64;
            b.run(
                b.client()
                    .put_object()
                    .bucket(b.bucket())
                    .key(self.key)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .set_content_type(self.content_type.clone())
                    .set_metadata(Some(self.metadata.clone()))
                    .body(ByteStream::from(body))
                    .send(),
            )
            .map_err(|e| b.fail(self.key, e).to_string())?;
            if let Some(p) = &self.progress {
                p.bytes_done.fetch_add(len, Ordering::Relaxed);
            }
            return Ok(());
        }
        let r = (|| {
            if !self.buf.is_empty() {
                self.part()?;
            }
            b.run(
                b.client()
                    .complete_multipart_upload()
                    .bucket(b.bucket())
                    .key(self.key)
                    .set_upload_id(self.upload_id.clone())
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(std::mem::take(&mut self.parts)))
                            .build(),
                    )
                    .send(),
            )
            .map_err(|e| b.fail(self.key, e).to_string())
            .map(|_| ())
        })();
        if r.is_err() {
            self.abort();
        }
        r
    }

    /// Drops a started multipart upload, so no parts stay stored.
    fn abort(&self) {
        let b = self.target.backend();
        if let Some(id) = &self.upload_id {
            let r = b.run(
                b.client()
                    .abort_multipart_upload()
                    .bucket(b.bucket())
                    .key(self.key)
                    .upload_id(id)
                    .send(),
            );
            if let Err(e) = r {
                tracing::warn!(
                    key = self.key,
                    error = %crate::backend::s3::error_chain(&e),
                    "could not abort a failed multipart upload; its parts stay stored until a lifecycle rule removes them"
                );
            }
        }
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PART - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART {
            self.part().map_err(std::io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Parts go up when full and the rest in `finish`.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_paths() {
        assert_eq!(original_key(Path::new("/b/x/y.txt"), false).as_deref(), Some("x/y.txt"));
        assert_eq!(
            original_key(Path::new("/b/x/y.txt.versions/v1"), true).as_deref(),
            Some("x/y.txt")
        );
        assert_eq!(original_key(Path::new("/b"), false), None);
        assert_eq!(original_key(Path::new("/b/x/v1"), true), None);
    }
}
