//! Where a repository's objects live. A [`Backend`] stores opaque, immutable,
//! named objects; it knows nothing of encryption or formats.
//!
//! Contract (every implementation, tested by the shared suite in
//! `backend::suite`):
//! - `write` is atomic and exclusive: after it returns `Ok`, the whole object
//!   is durably stored under its final name; a crash before that leaves no
//!   object under that name; an existing object is never replaced
//!   ([`BackendError::AlreadyExists`]).
//! - `read`/`read_range` return exactly the stored bytes or an error; a range
//!   past the end is an error, never a short read.
//! - Calls may run in parallel from many threads.
//! - Errors say whether retrying can help ([`BackendError::is_retryable`]).
//!   Retries, caches and limits are wrappers around a backend, not part of it.

pub mod cache;
pub mod dryrun;
pub mod limiter;
pub mod local;
pub mod memory;
pub mod retry;
pub mod s3;

use std::fmt;

/// The kinds of object, each under its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The encrypted repository configuration (one object, named `config`).
    Config,
    /// Password-wrapped master keys.
    Key,
    /// Snapshots.
    Snapshot,
    /// Index objects: which blobs live in which pack.
    Index,
    /// Packs of file-content blobs (the bulk, the only kind that may be archived).
    DataPack,
    /// Packs of tree blobs.
    TreePack,
    /// Locks (maintenance only; backups take none).
    Lock,
    /// Records of objects scheduled for deletion (two-phase delete).
    Deletion,
}

impl ObjectKind {
    /// Every kind, in the order `check` visits them.
    pub const ALL: [ObjectKind; 8] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Snapshot,
        ObjectKind::Index,
        ObjectKind::TreePack,
        ObjectKind::DataPack,
        ObjectKind::Lock,
        ObjectKind::Deletion,
    ];

    /// The folder (key prefix) of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Index => "index",
            ObjectKind::DataPack => "data",
            ObjectKind::TreePack => "tree",
            ObjectKind::Lock => "locks",
            ObjectKind::Deletion => "deletions",
        }
    }

    /// The relative path of an object: `data/ab/abcd...` for data packs
    /// (fanned out so no folder holds millions of entries), `kind/name` else.
    pub fn path(self, name: &str) -> String {
        match self {
            ObjectKind::Config => "config".to_string(),
            ObjectKind::DataPack => {
                let fan = name.get(..2).unwrap_or("00");
                format!("data/{fan}/{name}")
            }
            k => format!("{}/{name}", k.prefix()),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Index => "index",
            ObjectKind::DataPack => "data pack",
            ObjectKind::TreePack => "tree pack",
            ObjectKind::Lock => "lock",
            ObjectKind::Deletion => "deletion record",
        })
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name (the part after the prefix).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Backend failures, classified by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The object does not exist. Permanent.
    #[error("{path}: object not found")]
    NotFound {
        /// Object path.
        path: String,
    },
    /// An exclusive write met an existing object. Permanent.
    #[error("{path}: object already exists")]
    AlreadyExists {
        /// Object path.
        path: String,
    },
    /// The object exists but sits in an archive storage class and must be
    /// retrieved (restored) before it can be read. Not an error of the data.
    #[error("{path}: object is in archive storage and must be retrieved before it can be read")]
    Archived {
        /// Object path.
        path: String,
    },
    /// A byte range outside the object was asked for. Permanent.
    #[error("{path}: range {offset}+{len} is outside the object ({size} bytes)")]
    OutOfRange {
        /// Object path.
        path: String,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Actual size.
        size: u64,
    },
    /// Access denied, bad credentials, missing bucket or folder. Permanent.
    #[error("{path}: {message}")]
    Denied {
        /// Object or location.
        path: String,
        /// What the server or OS said.
        message: String,
    },
    /// The storage is full. Permanent until space is freed.
    #[error("{path}: no space left on the storage")]
    NoSpace {
        /// Object path.
        path: String,
    },
    /// Timeouts, throttling, dropped connections, 5xx: retrying may help.
    #[error("{path}: temporary failure: {message}")]
    Transient {
        /// Object path.
        path: String,
        /// Detail.
        message: String,
    },
    /// Anything else that will not go away by retrying.
    #[error("{path}: {message}")]
    Other {
        /// Object path.
        path: String,
        /// Detail.
        message: String,
    },
}

impl BackendError {
    /// True when the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackendError::Transient { .. })
    }

    /// Maps an I/O error on `path` to the matching kind.
    pub fn from_io(path: &str, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let path = path.to_string();
        match e.kind() {
            K::NotFound => BackendError::NotFound { path },
            K::AlreadyExists => BackendError::AlreadyExists { path },
            K::PermissionDenied => BackendError::Denied {
                path,
                message: e.to_string(),
            },
            K::StorageFull => BackendError::NoSpace { path },
            K::Interrupted | K::TimedOut | K::WouldBlock => BackendError::Transient {
                path,
                message: e.to_string(),
            },
            _ => BackendError::Other {
                path,
                message: e.to_string(),
            },
        }
    }
}

/// Storage of immutable named objects. See the module documentation for the
/// contract every implementation keeps.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short description of the location, for messages (never credentials).
    fn location(&self) -> String;

    /// Prepares an empty location for a new repository (folders, bucket
    /// checks). The default does nothing.
    fn create(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Every object of `kind` (for `Config`, the config object if present).
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError>;

    /// The whole object.
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError>;

    /// `len` bytes from `offset`; errors when the range is not wholly inside.
    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError>;

    /// Stores `data` atomically under a new name; never overwrites.
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError>;

    /// Removes an object; removing a missing object is `NotFound`.
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError>;

    /// The object's size, or `None` when it does not exist.
    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError>;

    /// Whether the object can be read now, or sits in an archive storage
    /// class (and how far its retrieval is). Backends without archive
    /// classes keep the default: always readable.
    fn archive_state(&self, kind: ObjectKind, name: &str) -> Result<ArchiveState, BackendError> {
        let _ = (kind, name);
        Ok(ArchiveState::Readable)
    }

    /// Asks for an archived object to be made readable for `days` days.
    /// Asking again for an object whose retrieval is in progress or done
    /// must succeed without starting another (and without another fee where
    /// the service allows).
    fn request_retrieval(
        &self,
        kind: ObjectKind,
        name: &str,
        tier: RetrievalTier,
        days: u32,
    ) -> Result<(), BackendError> {
        let _ = (tier, days);
        Err(BackendError::Other {
            path: kind.path(name),
            message: "this storage has no archive classes to retrieve from".into(),
        })
    }
}

/// Where an object stands with respect to archive storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveState {
    /// Readable now (a normal class, or an archived object with a finished retrieval).
    Readable,
    /// In an archive class, no retrieval requested.
    Archived {
        /// The storage class, e.g. `GLACIER` or `DEEP_ARCHIVE`.
        class: String,
    },
    /// In an archive class, retrieval requested and not finished.
    Retrieving {
        /// The storage class.
        class: String,
    },
}

/// Speed (and price) of a retrieval from archive storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrievalTier {
    /// Minutes (GLACIER only), most expensive.
    Expedited,
    /// Hours.
    Standard,
    /// Many hours, cheapest.
    Bulk,
}

#[doc(hidden)]
pub mod suite;

/// How to open a location: settings of the S3 backend and of the wrappers
/// put around it.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// S3 settings (used for `s3:` locations only).
    pub s3: s3::S3Options,
    /// Retries of temporary failures (S3 only), and their shared counter.
    pub retry: retry::RetryOptions,
    /// Upload limit in KiB/s (any location).
    pub limit_upload_kib: Option<u64>,
    /// Download limit in KiB/s (any location).
    pub limit_download_kib: Option<u64>,
    /// Local metadata cache (S3 only; `None` disables it).
    pub cache: Option<cache::CacheOptions>,
}

impl BackendOptions {
    /// Retries made so far by backends opened with these options.
    pub fn retries(&self) -> u64 {
        self.retry.retries()
    }

    fn limits(&self) -> limiter::Limits {
        limiter::Limits {
            upload_kib: self.limit_upload_kib,
            download_kib: self.limit_download_kib,
        }
    }
}

/// Opens a repository location with default options; see [`open_location_with`].
pub fn open_location(location: &str) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    open_location_with(location, &BackendOptions::default())
}

/// Opens a repository location: a folder path, `local:PATH`,
/// `s3://BUCKET[/PREFIX]` (AWS) or `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`.
/// S3 backends come wrapped in retries ([`retry::RetryBackend`]); speed
/// limits ([`limiter::LimitBackend`]) wrap any backend when set.
pub fn open_location_with(location: &str, opts: &BackendOptions) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    use std::sync::Arc;
    if location.starts_with("s3:") {
        let s3 = s3::S3Backend::open(location, &opts.s3)?;
        let limited = limiter::LimitBackend::new(s3, opts.limits());
        let retried = retry::RetryBackend::new(limited, opts.retry.clone());
        return Ok(match &opts.cache {
            Some(c) => Arc::new(cache::CacheBackend::new(retried, c.clone())),
            None => Arc::new(retried),
        });
    }
    let path = location.strip_prefix("local:").unwrap_or(location);
    if path.is_empty() {
        return Err(BackendError::Other {
            path: location.into(),
            message: "empty repository location".into(),
        });
    }
    let local = local::LocalBackend::new(path);
    if opts.limits().is_unlimited() {
        Ok(Arc::new(local))
    } else {
        Ok(Arc::new(limiter::LimitBackend::new(local, opts.limits())))
    }
}
