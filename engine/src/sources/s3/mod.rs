//! An S3 bucket (or a prefix of one) as a backup source (`--s3-source`),
//! and putting a snapshot's files back as objects (`restore --to-s3`).
//!
//! Objects become files under one folder named after the bucket: the key
//! `photos/2026/a.jpg` of bucket `media` is `/media/photos/2026/a.jpg` in the
//! snapshot, whatever prefix was backed up (so a snapshot path always gives
//! back its key). Each file keeps the object's size, its last-modified time
//! as mtime, and the object's metadata as source attributes (`cairn.s3.*`,
//! never set on restored files): `etag`, `content-type`, `last-modified`
//! and `meta.<name>` per user metadata entry.
//!
//! With `--versions`, the current version of a key is at its path as above
//! and each non-current version at `KEY.versions/<version-id>`, each with
//! `cairn.s3.version-id` and `cairn.s3.latest` (`1`/`0`, format-spec "Trees"). Delete
//! markers hold no data and are only counted.
//!
//! Keys that cannot be a path (an empty segment as in `a//b`, a `.` or `..`
//! segment, a NUL byte, or a key that is both an object and the folder of
//! other keys) are left out with a warning, like unreadable files; folder
//! markers (empty keys ending in `/`) are left out silently, counted.
//!
//! The client, its credentials and the location syntax are the S3
//! repository backend's ([`S3Backend`]): one implementation of each.

mod backup;
mod listing;
mod restore;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;

use crate::backend::s3::{S3Backend, S3Options};
use crate::backend::{Backend, BackendError};

pub(crate) use backup::backup_bucket;
pub use restore::{restore_to_s3, S3RestoreFailure, S3RestoreOptions, S3RestoreProgress, S3RestoreSummary};

use super::SourceError;

/// Attribute names on the files of an S3 source's snapshot.
pub(crate) mod attr {
    /// The object's ETag, without quotes.
    pub const ETAG: &str = "cairn.s3.etag";
    /// `Content-Type`.
    pub const CONTENT_TYPE: &str = "cairn.s3.content-type";
    /// Last-Modified, RFC 3339 (UTC).
    pub const LAST_MODIFIED: &str = "cairn.s3.last-modified";
    /// The version id (`--versions` only).
    pub const VERSION_ID: &str = "cairn.s3.version-id";
    /// `1` for the current version, `0` for older ones (`--versions` only).
    pub const LATEST: &str = "cairn.s3.latest";
    /// Prefix of user metadata entries (`x-amz-meta-NAME` → `cairn.s3.meta.NAME`).
    pub const META: &str = "cairn.s3.meta.";
}

/// Suffix of the folder holding a key's non-current versions.
pub const VERSIONS_SUFFIX: &str = ".versions";

/// A bucket (and prefix) to back up or restore into.
pub struct S3Source {
    backend: S3Backend,
    versions: bool,
    readers: usize,
}

impl fmt::Debug for S3Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Source")
            .field("location", &self.backend.location())
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl S3Source {
    /// Opens `location` (`s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]` or
    /// `s3://BUCKET[/PREFIX]`) with the S3 repository settings `opts`
    /// (credentials, region, endpoint, connections). Contacts no server.
    /// `versions` includes non-current versions in a backup.
    pub fn open(location: &str, opts: &S3Options, versions: bool) -> Result<Self, SourceError> {
        let backend = S3Backend::open(location, opts).map_err(|e| s3_error(location, e))?;
        Ok(Self {
            backend,
            versions,
            // Reads are latency-bound: as many at once as the connections allow.
            readers: opts.connections.clamp(1, 32),
        })
    }

    /// The location without credentials, as recorded in the snapshot.
    pub fn url(&self) -> String {
        self.backend.location()
    }

    /// Whether non-current versions are included.
    pub fn versions(&self) -> bool {
        self.versions
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        self.backend.bucket()
    }

    /// The folder in the snapshot holding what is backed up:
    /// `/BUCKET[/PREFIX]`.
    pub fn root_path(&self) -> String {
        let p = format!("/{}/{}", self.backend.bucket(), self.backend.prefix());
        p.trim_end_matches('/').to_string()
    }

    pub(crate) fn backend(&self) -> &S3Backend {
        &self.backend
    }
}

/// An S3 failure as the source's error, naming the source (the backend's
/// own wording speaks of "the repository").
pub(crate) fn s3_error(what: &str, e: BackendError) -> SourceError {
    let text = e
        .to_string()
        .replace("the repository location", "the S3 source location");
    SourceError::Read {
        what: format!("S3 source {what}"),
        source: std::io::Error::other(text),
    }
}

/// `"abc"` → `abc`: servers differ in whether listings quote ETags.
pub(crate) fn bare_etag(e: &str) -> String {
    e.trim().trim_matches('"').to_string()
}

/// Unix ns → RFC 3339 UTC with whole seconds (S3's resolution).
pub(crate) fn rfc3339(ns: i64) -> String {
    aws_sdk_s3::primitives::DateTime::from_secs(ns.div_euclid(1_000_000_000))
        .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// The snapshot path of an object version relative to the bucket folder
/// (`KEY`, or `KEY.versions/VERSION` for a non-current version), split into
/// names, or why it cannot be one.
pub(crate) fn key_names(key: &str, old_version: Option<&str>) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = key.split('/').map(str::to_string).collect();
    for n in &names {
        if n.is_empty() {
            return Err("the key has an empty segment (`//`, or a leading or trailing `/`)".into());
        }
        crate::tree::check_name(n.as_bytes()).map_err(|e| format!("the key cannot be a path: {e}"))?;
    }
    if let Some(v) = old_version {
        if let Some(last) = names.last_mut() {
            last.push_str(VERSIONS_SUFFIX);
        }
        crate::tree::check_name(v.as_bytes()).map_err(|e| format!("version id {v:?} cannot be a file name: {e}"))?;
        names.push(v.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_become_names_or_are_refused() {
        assert_eq!(key_names("a/b.txt", None).unwrap(), ["a", "b.txt"]);
        assert_eq!(key_names("a/b", Some("v1")).unwrap(), ["a", "b.versions", "v1"]);
        for bad in ["a//b", "/a", "a/", "a/./b", "a/../b", "..", ".", "a\0b"] {
            assert!(key_names(bad, None).is_err(), "{bad:?}");
        }
        assert!(key_names("a", Some("..")).is_err());
        assert!(key_names("a", Some("x/y")).is_err());
    }

    #[test]
    fn times_and_etags() {
        assert_eq!(rfc3339(1_700_000_000_500_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(bare_etag("\"abc-2\""), "abc-2");
    }
}
