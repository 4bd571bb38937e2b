//! Multipart uploads: objects above the threshold go up in parts, several
//! at once, and a failed upload is aborted so that neither an object nor
//! stray parts stay behind.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, StorageClass};
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::error::{classify, error_chain};
use super::S3Backend;
use crate::backend::BackendError;

/// S3 allows at most this many parts per upload.
const MAX_PARTS: u64 = 10_000;

/// A multipart upload begun and neither completed nor aborted.
struct Unfinished {
    key: String,
    upload_id: String,
    /// When it was begun (Unix ns), if the server says.
    begun_ns: Option<i64>,
}

/// Where one multipart part goes.
struct PartJob {
    number: i32,
    bytes: Bytes,
}

impl S3Backend {
    /// Multipart upload of `size` bytes taken from `source`; aborted on any
    /// failure, so no object (and no stray parts) are left behind.
    pub(super) async fn put_multipart(
        &self,
        kind: crate::backend::ObjectKind,
        key: &str,
        class: Option<StorageClass>,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Bytes, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let (mode, until) = self.retention_for(kind).unzip();
        let created = {
            let _p = self.permit(key).await?;
            self.client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_storage_class(class)
                .set_object_lock_mode(mode)
                .set_object_lock_retain_until_date(until)
                .send()
                .await
                .map_err(|e| self.fail(key, e))?
        };
        let upload_id = created
            .upload_id()
            .ok_or_else(|| BackendError::Other {
                path: key.to_string(),
                message: "the server started a multipart upload without an upload id".into(),
            })?
            .to_string();
        let result = self.upload_parts_and_complete(key, &upload_id, size, source).await;
        if let Err(e) = &result {
            tracing::debug!(key, error = %e, "multipart upload failed; aborting it");
            let _p = self.permit(key).await?;
            if let Err(abort) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                // The object is not visible either way; only the stored
                // parts linger until a lifecycle rule removes them.
                tracing::warn!(
                    key,
                    error = %error_chain(&abort),
                    "could not abort a failed multipart upload; its parts stay stored until the bucket's \
                     lifecycle rule for incomplete multipart uploads removes them"
                );
            }
        }
        result
    }

    /// Aborts the unfinished multipart uploads under the repository's
    /// prefix begun before `older_than_ns`: what a killed writer leaves
    /// (its parts are stored and billed, though no object is visible).
    pub(super) fn abort_stale_uploads(&self, older_than_ns: i64) -> Result<usize, BackendError> {
        self.run(async {
            let stale: Vec<Unfinished> = self
                .unfinished_uploads()
                .await?
                .into_iter()
                .filter(|u| u.begun_ns.is_some_and(|t| t < older_than_ns))
                .collect();
            for u in &stale {
                let _p = self.permit(&u.key).await?;
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&u.key)
                    .upload_id(&u.upload_id)
                    .send()
                    .await
                    .map_err(|e| self.fail(&u.key, e))?;
            }
            Ok(stale.len())
        })
    }

    /// Every multipart upload under the prefix that was started and neither
    /// completed nor aborted.
    async fn unfinished_uploads(&self) -> Result<Vec<Unfinished>, BackendError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let resp = {
                let _p = self.permit(&self.prefix).await?;
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(|e| self.fail(&self.prefix, e))?
            };
            for u in resp.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(Unfinished {
                        key: key.to_string(),
                        upload_id: id.to_string(),
                        begun_ns: u.initiated().and_then(|t| i64::try_from(t.as_nanos()).ok()),
                    });
                }
            }
            if resp.is_truncated() != Some(true) {
                break;
            }
            key_marker = resp.next_key_marker().map(str::to_string);
            id_marker = resp.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn upload_parts_and_complete(
        &self,
        key: &str,
        upload_id: &str,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Bytes, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size).max(1);
        // Parts in flight (and so in memory) for this upload.
        let inflight = Arc::new(Semaphore::new(self.connections));
        let mut tasks = tokio::task::JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::with_capacity(count as usize);
        let mut failure: Option<BackendError> = None;
        let join_err = |e: tokio::task::JoinError| BackendError::Other {
            path: key.to_string(),
            message: format!("a part upload stopped unexpectedly: {e}"),
        };
        for i in 0..count {
            let slot = match inflight.clone().acquire_owned().await {
                Ok(s) => s,
                Err(_) => {
                    failure = Some(join_err_closed(key));
                    break;
                }
            };
            while let Some(r) = tasks.try_join_next() {
                match r.map_err(join_err).and_then(|x| x) {
                    Ok(p) => done.push(p),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            if failure.is_some() {
                break;
            }
            let offset = i * part_size;
            let len = part_size.min(size - offset) as usize;
            let bytes = match source(offset, len) {
                Ok(b) if b.len() == len => b,
                Ok(b) => {
                    failure = Some(BackendError::Other {
                        path: key.to_string(),
                        message: format!("the data source gave {} bytes for a part of {len}", b.len()),
                    });
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let job = PartJob {
                number: (i + 1) as i32,
                bytes,
            };
            let client = self.client.clone();
            let permits = self.permits.clone();
            let (bucket, key, upload_id) = (self.bucket.clone(), key.to_string(), upload_id.to_string());
            tasks.spawn(async move {
                let _slot = slot;
                let _p = permits.acquire_owned().await.map_err(|_| join_err_closed(&key))?;
                let len = job.bytes.len() as i64;
                let out = client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(job.number)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .content_length(len)
                    .body(ByteStream::from(job.bytes))
                    .send()
                    .await
                    .map_err(|e| classify(&key, &bucket, e))?;
                Ok::<_, BackendError>(
                    CompletedPart::builder()
                        .part_number(job.number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .build(),
                )
            });
        }
        if let Some(e) = failure {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            return Err(e);
        }
        while let Some(r) = tasks.join_next().await {
            match r.map_err(join_err).and_then(|x| x) {
                Ok(p) => done.push(p),
                Err(e) => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    return Err(e);
                }
            }
        }
        done.sort_by_key(|p| p.part_number());
        let _p = self.permit(key).await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(())
    }

    /// Keys with multipart uploads started and neither completed nor
    /// aborted, under this backend's prefix (normally none: failed uploads
    /// are aborted).
    #[cfg(any(test, feature = "testing"))]
    pub fn pending_multipart_uploads(&self) -> Result<Vec<String>, BackendError> {
        self.run(async { Ok(self.unfinished_uploads().await?.into_iter().map(|u| u.key).collect()) })
    }
}

fn join_err_closed(key: &str) -> BackendError {
    BackendError::Other {
        path: key.to_string(),
        message: "the S3 client is shutting down".into(),
    }
}
