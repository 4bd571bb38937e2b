//! Listing a bucket's objects (ListObjectsV2) or all their versions
//! (ListObjectVersions), page by page.

use super::{bare_etag, s3_error, S3Source};
use crate::backend::BackendError;
use crate::sources::SourceError;

/// One object (or object version) as the listing shows it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub modified_ns: i64,
    /// `Some` when listed with versions.
    pub version_id: Option<String>,
    /// Whether this is the current version (always true without versions).
    pub latest: bool,
}

/// What a listing found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub objects: Vec<Listed>,
    /// Delete markers seen (versions only): they hold no data.
    pub delete_markers: u64,
}

fn ns(t: Option<&aws_sdk_s3::primitives::DateTime>) -> i64 {
    t.and_then(|t| i64::try_from(t.as_nanos()).ok()).unwrap_or(0)
}

fn no_token(what: &str) -> BackendError {
    BackendError::Other {
        path: what.to_string(),
        message: "the server said the listing goes on but gave no continuation marker".into(),
    }
}

impl S3Source {
    /// Every object under the prefix, or with [`S3Source::versions`] every
    /// version. A missing bucket or refused credentials fail here, before
    /// anything is stored.
    pub(crate) fn list(&self) -> Result<Listing, SourceError> {
        let b = self.backend();
        let url = self.url();
        let r = if self.versions {
            b.run(self.list_versions(&url))
        } else {
            b.run(self.list_current(&url))
        };
        r.map_err(|e| s3_error(&url, e))
    }

    async fn list_current(&self, url: &str) -> Result<Listing, BackendError> {
        let b = self.backend();
        let mut out = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let resp = b
                .client()
                .list_objects_v2()
                .bucket(b.bucket())
                .prefix(b.prefix())
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| b.fail(url, e))?;
            for o in resp.contents() {
                let Some(key) = o.key() else { continue };
                out.objects.push(Listed {
                    key: key.to_string(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    etag: bare_etag(o.e_tag().unwrap_or("")),
                    modified_ns: ns(o.last_modified()),
                    version_id: None,
                    latest: true,
                });
            }
            if resp.is_truncated() != Some(true) {
                break;
            }
            token = resp.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Err(no_token(url));
            }
        }
        Ok(out)
    }

    async fn list_versions(&self, url: &str) -> Result<Listing, BackendError> {
        let b = self.backend();
        let mut out = Listing::default();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let resp = b
                .client()
                .list_object_versions()
                .bucket(b.bucket())
                .prefix(b.prefix())
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| b.fail(url, e))?;
            for v in resp.versions() {
                let Some(key) = v.key() else { continue };
                out.objects.push(Listed {
                    key: key.to_string(),
                    size: v.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    etag: bare_etag(v.e_tag().unwrap_or("")),
                    modified_ns: ns(v.last_modified()),
                    // Objects stored before versioning was turned on.
                    version_id: Some(v.version_id().unwrap_or("null").to_string()),
                    latest: v.is_latest() == Some(true),
                });
            }
            out.delete_markers += resp.delete_markers().len() as u64;
            if resp.is_truncated() != Some(true) {
                break;
            }
            key_marker = resp.next_key_marker().map(str::to_string);
            version_marker = resp.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Err(no_token(url));
            }
        }
        Ok(out)
    }
}
