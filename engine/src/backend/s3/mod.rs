//! A repository in an S3 bucket (AWS or any S3-compatible server).
//!
//! Locations:
//! - `s3://BUCKET[/PREFIX]`: AWS S3; the region comes from [`S3Options::region`]
//!   or the standard AWS chain (`AWS_REGION`, profile).
//! - `s3:https://HOST[:PORT]/BUCKET[/PREFIX]` and `s3:http://...`: a custom
//!   endpoint, with path-style addressing unless told otherwise.
//!
//! Object keys are `PREFIX/` + [`ObjectKind::path`], so data packs live under
//! `PREFIX/data/xx/...` and everything else elsewhere: a single lifecycle rule
//! on `PREFIX/data/` moves file data (and nothing that a restore needs first)
//! to a cheaper class.
//!
//! The [`Backend`] trait is synchronous; this backend owns a small
//! multi-threaded tokio runtime and blocks on it, so it may be called from any
//! number of threads at once (rayon pools included). At most
//! [`S3Options::connections`] requests are in flight at a time.
//!
//! Writes are exclusive: a `HeadObject` first (for servers that ignore
//! conditional writes), then `PutObject` (or `CompleteMultipartUpload`) with
//! `If-None-Match: *`. On servers that honour the header the write is atomic
//! and exclusive; on servers that ignore it, two writers racing between the
//! `HeadObject` and the upload could both succeed and the later one wins.
//! Repository objects are named by their content (or carry random names), so
//! such a race would store identical bytes. Every upload carries a CRC32
//! checksum that the server verifies, so bytes damaged on the way are
//! refused rather than stored.
//!
//! Retries, bandwidth limits and caches are wrappers ([`super::retry`],
//! [`super::limiter`]); this module never retries by itself (the SDK's own
//! retries are turned off so that every retry is counted in one place). So a
//! multipart upload whose part fails is aborted and, when retried, starts
//! over: objects are packs of tens of MiB, rarely above the threshold.

//!
//! Inside: `options` (locations, settings and their limits), `credentials`,
//! `error` (what each S3 error means), `multipart`, `archive` (storage
//! classes and retrieval) and `connect` (the client and its runtime); this
//! file is the [`Backend`] itself.

mod archive;
mod connect;
mod credentials;
mod error;
mod multipart;
mod object_lock;
mod options;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, StorageClass};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::sync::Semaphore;

pub use credentials::S3Credentials;
pub use object_lock::{ObjectLock, ObjectLockMode};
pub use options::{DataStorageClass, S3Location, S3Options, S3OptionsError};

use super::{config_listing, ArchiveState, Backend, BackendError, ObjectInfo, ObjectKind, RetrievalRequest};
use connect::{block_on, RuntimeOwner};
use error::classify;
pub(crate) use error::error_chain;

/// Objects in an S3 bucket under a prefix. See the module documentation.
pub struct S3Backend {
    client: Client,
    handle: tokio::runtime::Handle,
    _runtime: RuntimeOwner,
    bucket: String,
    prefix: String,
    location: String,
    data_class: DataStorageClass,
    /// One permit per request in flight.
    permits: Arc<Semaphore>,
    connections: usize,
    multipart_threshold: u64,
    part_size: u64,
    /// Retention put on what is written (see `object_lock`).
    object_lock: Option<ObjectLock>,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.location)
            .field("data_class", &self.data_class)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (empty or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The client, for the S3 bucket source (`sources::s3`), which lists and
    /// reads a bucket through the same connection settings and credentials.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn key(&self, kind: ObjectKind, name: &str) -> String {
        format!("{}{}", self.prefix, kind.path(name))
    }

    pub(crate) fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        block_on(&self.handle, f)
    }

    async fn permit(&self, path: &str) -> Result<tokio::sync::SemaphorePermit<'_>, BackendError> {
        self.permits.acquire().await.map_err(|_| BackendError::Other {
            path: path.to_string(),
            message: "the S3 client is shutting down".into(),
        })
    }

    pub(crate) fn fail<E>(&self, path: &str, e: SdkError<E>) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(path, &self.bucket, e)
    }

    /// HeadObject: `Ok(None)` for a missing object, else size, storage
    /// class and the `x-amz-restore` header.
    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>, Option<String>)>, BackendError> {
        let _p = self.permit(key).await?;
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(h) => Ok(Some((
                h.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                h.storage_class().map(|c| c.as_str().to_string()),
                h.restore().map(str::to_string),
            ))),
            Err(e) => match self.fail(key, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<(Vec<u8>, Option<String>), BackendError> {
        let _p = self.permit(key).await?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some((start, end_incl)) = range {
            req = req.range(format!("bytes={start}-{end_incl}"));
        }
        let resp = req.send().await.map_err(|e| self.fail(key, e))?;
        let content_range = resp.content_range().map(str::to_string);
        let expected = resp.content_length().and_then(|n| u64::try_from(n).ok());
        let body = resp
            .body
            .collect()
            .await
            .map_err(|e| BackendError::Transient {
                path: key.to_string(),
                message: format!("the connection broke while reading: {}", error_chain(&e)),
            })?
            .to_vec();
        if let Some(n) = expected {
            if n != body.len() as u64 {
                return Err(BackendError::Transient {
                    path: key.to_string(),
                    message: format!("the server announced {n} bytes but sent {}", body.len()),
                });
            }
        }
        Ok((body, content_range))
    }

    async fn put(&self, kind: ObjectKind, key: &str, class: Option<StorageClass>, bytes: Bytes) -> Result<(), BackendError> {
        let _p = self.permit(key).await?;
        let len = bytes.len() as i64;
        // S3 wants an integrity checksum on writes with retention: the CRC32
        // below is one.
        let (mode, until) = self.retention_for(kind).unzip();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_storage_class(class)
            .set_object_lock_mode(mode)
            .set_object_lock_retain_until_date(until)
            .content_length(len)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(())
    }

    async fn write_from(
        &self,
        kind: ObjectKind,
        name: &str,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Bytes, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        // For servers that ignore If-None-Match (see the module docs).
        if self.head(&key).await?.is_some() {
            return Err(BackendError::AlreadyExists { path: key });
        }
        let class = if kind == ObjectKind::DataPack {
            self.data_class.sdk()
        } else {
            None
        };
        if size > self.multipart_threshold {
            self.put_multipart(kind, &key, class, size, source).await
        } else {
            let len = usize::try_from(size).map_err(|_| BackendError::Other {
                path: key.clone(),
                message: "object too large for this machine".into(),
            })?;
            let bytes = source(0, len)?;
            if bytes.len() != len {
                return Err(BackendError::Other {
                    path: key,
                    message: format!("the data source gave {} bytes instead of {len}", bytes.len()),
                });
            }
            self.put(kind, &key, class, bytes).await
        }
    }

    /// Writes an object of `size` bytes whose content `source(offset, len)`
    /// hands out piece by piece (a multipart upload above the threshold, so
    /// the whole object need not be in memory). Same contract as
    /// [`Backend::write`]: if `source` fails, the upload is aborted and no
    /// object appears. (Only the tests need it apart from `write`.)
    #[cfg(any(test, feature = "testing"))]
    pub fn write_from_source(
        &self,
        kind: ObjectKind,
        name: &str,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Vec<u8>, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let wrapped = |offset: u64, len: usize| source(offset, len).map(Bytes::from);
        self.run(self.write_from(kind, name, size, &wrapped))
    }
}

/// Parses the total size from a `Content-Range: bytes a-b/SIZE` header.
fn total_from_content_range(v: &str) -> Option<u64> {
    v.rsplit_once('/').and_then(|(_, t)| t.trim().parse().ok())
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn transfers(&self) -> usize {
        // Each request waits mostly on the network and the server, so as
        // many as may be in flight at once keep the link busy.
        self.connections
    }

    fn create(&self) -> Result<(), BackendError> {
        self.run(async {
            let _p = self.permit(&self.location).await?;
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) => Err(match self.fail(&self.location, e) {
                    BackendError::NotFound { path } => BackendError::Denied {
                        path,
                        message: format!(
                            "the bucket {:?} does not exist; create it first (cairn does not create buckets) \
                             or correct the repository location",
                            self.bucket
                        ),
                    },
                    other => other,
                }),
            }
        })
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        if kind == ObjectKind::Config {
            let mut listed = config_listing(self.stat(kind, "config")?);
            if self.locked(kind) {
                // The one object: its date comes with a HEAD, as listings' do.
                let key = self.key(kind, "config");
                for o in &mut listed {
                    o.retained_until_ns = self.run(self.retention_of(&key, None))?;
                }
            }
            return Ok(listed);
        }
        let list_prefix = format!("{}{}/", self.prefix, kind.prefix());
        self.run(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let resp = {
                    let _p = self.permit(&list_prefix).await?;
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(&list_prefix)
                        .set_continuation_token(token.take())
                        .send()
                        .await
                        .map_err(|e| self.fail(&list_prefix, e))?
                };
                for o in resp.contents() {
                    let Some(rest) = o.key().and_then(|k| k.strip_prefix(&list_prefix)) else {
                        continue;
                    };
                    let name = if kind == ObjectKind::DataPack {
                        // data/xx/NAME: bare names, whatever the fan-out.
                        rest.rsplit('/').next().unwrap_or(rest)
                    } else if rest.contains('/') {
                        continue;
                    } else {
                        rest
                    };
                    if name.is_empty() || name.starts_with('.') {
                        continue;
                    }
                    out.push(ObjectInfo {
                        name: name.to_string(),
                        size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        modified_ns: o
                            .last_modified()
                            .and_then(|t| t.as_nanos().try_into().ok()),
                        storage_class: o
                            .storage_class()
                            .map(|c| c.as_str().to_string())
                            .filter(|c| c != "STANDARD"),
                        retained_until_ns: None,
                    });
                }
                if resp.is_truncated() != Some(true) {
                    break;
                }
                token = resp.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    return Err(BackendError::Other {
                        path: list_prefix.clone(),
                        message: "the server said the listing goes on but gave no continuation token".into(),
                    });
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            if self.locked(kind) {
                self.fill_retention(|name| self.key(kind, name), &mut out).await?;
            }
            Ok(out)
        })
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let key = self.key(kind, name);
        self.run(async { self.get(&key, None).await.map(|(body, _)| body) })
    }

    // The SDK collects the response body into a buffer of its own.
    crate::backend::read_into_by_read!();

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let key = self.key(kind, name);
        self.run(async {
            let out_of_range = |size: u64| BackendError::OutOfRange {
                path: key.clone(),
                offset,
                len,
                size,
            };
            let size_now = || async {
                match self.head(&key).await? {
                    Some((size, _, _)) => Ok(size),
                    None => Err(BackendError::NotFound { path: key.clone() }),
                }
            };
            let end = match offset.checked_add(len) {
                Some(end) if len > 0 => end,
                // An empty range: valid when it starts inside (or at the end of) the object.
                _ => {
                    let size = size_now().await?;
                    return if len == 0 && offset <= size {
                        Ok(Vec::new())
                    } else {
                        Err(out_of_range(size))
                    };
                }
            };
            let (body, content_range) = match self.get(&key, Some((offset, end - 1))).await {
                Ok(r) => r,
                // 416: the range starts past the end.
                Err(BackendError::OutOfRange { .. }) => return Err(out_of_range(size_now().await?)),
                Err(e) => return Err(e),
            };
            match content_range {
                Some(cr) => {
                    if body.len() as u64 == len {
                        Ok(body)
                    } else {
                        let size = match total_from_content_range(&cr) {
                            Some(s) => s,
                            None => size_now().await?,
                        };
                        Err(out_of_range(size))
                    }
                }
                // A server that ignored the Range header sent everything.
                None => {
                    let size = body.len() as u64;
                    if end > size {
                        return Err(out_of_range(size));
                    }
                    Ok(body[offset as usize..end as usize].to_vec())
                }
            }
        })
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        // Each part is copied once, when its upload starts (so a large
        // object is not held twice in memory).
        let source = |offset: u64, len: usize| {
            let start = offset as usize;
            Ok(Bytes::copy_from_slice(&data[start..start + len]))
        };
        self.run(self.write_from(kind, name, data.len() as u64, &source))
    }

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &Bytes) -> Result<(), BackendError> {
        // Request bodies and parts share the caller's buffer: a copy of
        // each pack in flight was most of an S3 backup's peak memory above
        // a local one's.
        let source = |offset: u64, len: usize| {
            let start = offset as usize;
            Ok(data.slice(start..start + len))
        };
        self.run(self.write_from(kind, name, data.len() as u64, &source))
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        if self.object_lock.is_some() {
            // The bucket keeps versions: a plain delete would only hide the
            // object behind a delete marker (see `object_lock`).
            return self.run(self.remove_versions(&key));
        }
        self.run(async {
            // S3 deletes of missing keys succeed; the contract wants NotFound.
            if self.head(&key).await?.is_none() {
                return Err(BackendError::NotFound { path: key.clone() });
            }
            let _p = self.permit(&key).await?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
        let key = self.key(kind, name);
        self.run(async { Ok(self.head(&key).await?.map(|(size, _, _)| size)) })
    }

    fn archive_state(&self, kind: ObjectKind, name: &str) -> Result<ArchiveState, BackendError> {
        self.state(kind, name)
    }

    fn request_retrieval(&self, kind: ObjectKind, name: &str, how: RetrievalRequest) -> Result<(), BackendError> {
        self.retrieve(kind, name, how)
    }

    fn remove_temporaries(&self, older_than_ns: i64) -> Result<usize, BackendError> {
        self.abort_stale_uploads(older_than_ns)
    }

    fn extend_retention(&self, kind: ObjectKind, name: &str, until_ns: i64, dry_run: bool) -> Result<Option<i64>, BackendError> {
        let key = self.key(kind, name);
        self.run(self.extend_retention_of(&key, kind, until_ns, dry_run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_refuses_options_out_of_range_instead_of_clamping() {
        for (tune, says) in [
            (
                S3Options {
                    connections: 0,
                    ..Default::default()
                },
                "connections must be 1 to 256, not 0",
            ),
            (
                S3Options {
                    multipart_part_size: 1 << 20,
                    ..Default::default()
                },
                "part size must be 5 MiB to 5120 MiB, not 1 MiB",
            ),
        ] {
            // Refused before any connection is made: nothing listens there.
            match S3Backend::open("s3:http://127.0.0.1:9/bucket", &tune) {
                Err(BackendError::Other { message, .. }) => assert!(message.contains(says), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn content_range_totals() {
        assert_eq!(total_from_content_range("bytes 0-9/100000"), Some(100_000));
        assert_eq!(total_from_content_range("bytes 0-9/*"), None);
    }
}
