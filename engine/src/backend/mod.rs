//! Where a repository's objects live. A [`Backend`] stores opaque, immutable,
//! named objects; it knows nothing of encryption or formats. The contract
//! every implementation keeps is written on the trait and checked by the
//! shared suite (`backend::suite`, behind the `testing` feature), which runs
//! against the local folder, the in-memory backend, every wrapper and a real
//! S3 server.
//!
//! Retries, caches, speed limits and dry runs are wrappers around a backend
//! ([`retry`], [`cache`], [`limiter`], [`dryrun`]), not part of one.

pub mod cache;
pub mod dryrun;
pub mod limiter;
mod direct;
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
    /// What `cairn run` and `cairn drill` did, for `status`.
    Report,
}

impl ObjectKind {
    /// Every kind, in the order `check` visits them.
    pub const ALL: [ObjectKind; 9] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Snapshot,
        ObjectKind::Index,
        ObjectKind::TreePack,
        ObjectKind::DataPack,
        ObjectKind::Lock,
        ObjectKind::Deletion,
        ObjectKind::Report,
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
            ObjectKind::Report => "reports",
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
            ObjectKind::Report => "report",
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
    /// When it was stored (Unix ns), where the storage says: prune dates
    /// archived packs by it, for their minimum storage duration.
    pub modified_ns: Option<i64>,
    /// Its storage class where the storage has classes and it is not the
    /// standard one (e.g. `GLACIER`, `DEEP_ARCHIVE`), from the listing itself.
    pub storage_class: Option<String>,
    /// The date (Unix ns) until which the storage refuses to delete it (S3
    /// Object Lock retention), where the backend was told to look (an S3
    /// repository with `object-lock` set); `None` elsewhere. Prune keeps
    /// objects whose date is still ahead rather than fail to delete them.
    pub retained_until_ns: Option<i64>,
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
    #[error("{path}: No space left on device: the storage is full (free space, then run again)")]
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
    /// The object is under S3 Object Lock retention: the storage refuses to
    /// delete it before `until`. Permanent until that date; nothing changed.
    #[error("{path}: under Object Lock retention until {until}: the storage refuses to delete it before then")]
    Retained {
        /// Object path.
        path: String,
        /// The retention date (RFC 3339, UTC).
        until: String,
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

/// Storage of immutable named objects.
///
/// The contract, which every implementation keeps and every caller may rely
/// on (the shared suite checks each point):
/// - **Many threads.** Every method may be called from many threads at once
///   (`Send + Sync`); calls on distinct objects do not disturb each other.
/// - **Exclusive, atomic writes.** After [`write`](Backend::write) returns
///   `Ok`, the whole object is durably stored under its final name; a crash
///   before that leaves no object under that name. An existing object is
///   never replaced: the write fails with [`BackendError::AlreadyExists`].
///   Of several writers racing for one name exactly one succeeds and the
///   others get `AlreadyExists` (S3 servers that ignore `If-None-Match` are
///   the one exception; see `s3`).
/// - **Exact reads.** [`read`](Backend::read) and
///   [`read_range`](Backend::read_range) return exactly the stored bytes or
///   an error: [`BackendError::NotFound`] for a missing object,
///   [`BackendError::OutOfRange`] for a range not wholly inside (never a
///   short read), and [`BackendError::Archived`] for an object in an archive
///   storage class that has not been retrieved (see
///   [`archive_state`](Backend::archive_state)).
/// - **Sorted listings.** [`list`](Backend::list) returns every object of a
///   kind, archived ones included, sorted by name (byte order), each name
///   once.
/// - **Errors say whether to retry** ([`BackendError::is_retryable`]): only
///   `Transient` errors may go away by trying again. Implementations do not
///   retry by themselves; `retry::RetryBackend` does, and reads the
///   answers of a retried call with its history in mind (see `remove`).
///
/// The trait has no default methods, so a wrapper has to say for each method
/// what it does: pass it on (the `forward!` macro), change it, or discard it.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short description of the location, for messages (never credentials).
    fn location(&self) -> String;

    /// How many object transfers to keep in flight to use the storage
    /// well: 1 where one stream already keeps it busy (a local disk, whose
    /// writes the kernel batches), more where each request mostly waits on
    /// the network (S3: its connection count). Backup sizes its pack
    /// writers by it.
    fn transfers(&self) -> usize;

    /// Makes the location ready for a new repository: creates what the
    /// storage needs (the local folder layout) or checks that it is there (an
    /// S3 bucket; buckets are never created). Calling it again on a prepared
    /// location succeeds and changes no object. It does not check whether a
    /// repository is already there: that is `init`'s business.
    fn create(&self) -> Result<(), BackendError>;

    /// Every object of `kind` (for `Config`, the config object if present),
    /// sorted by name, with its size.
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError>;

    /// The whole object: `NotFound` when missing, `Archived` when it must be
    /// retrieved first.
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError>;

    /// [`read`](Backend::read) into `buf`, replacing what it held (on an
    /// error its content is unspecified). A caller that reads object after
    /// object (`check --read-data`, pack by pack) keeps one buffer instead
    /// of a fresh pack-sized allocation each time, whose pages the kernel
    /// must fault in and zero and the allocator then keeps. A backend that
    /// cannot fill a buffer it is given (S3 collects the response body
    /// itself) reads with `read` ([`read_into_by_read`]).
    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError>;

    /// `len` bytes from `offset`: `OutOfRange` when the range is not wholly
    /// inside the object (an empty range at the very end is inside),
    /// `NotFound` and `Archived` as for [`read`](Backend::read).
    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError>;

    /// Stores `data` atomically under a new name; never overwrites
    /// (`AlreadyExists`).
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError>;

    /// [`write`](Backend::write) from a shared buffer: a backend whose
    /// request body would otherwise copy `data` (S3) takes a reference to it
    /// instead, so a pack in flight is not held twice. The caller can take
    /// the buffer back (`Bytes::try_into_mut`) once this returns. Backends
    /// that copy anyway write `data` with [`write`](Backend::write); a
    /// wrapper that changes `write` must change this alike (no default, so
    /// none can forget).
    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError>;

    /// Removes an object; removing a missing object is `NotFound`. A caller
    /// that retries a `remove` whose earlier attempt failed transiently may
    /// take `NotFound` as done (that attempt may have removed it);
    /// `retry::RetryBackend` does exactly that.
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError>;

    /// The object's size, or `None` when it does not exist. Works on archived
    /// objects.
    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError>;

    /// Whether the object can be read now, or sits in an archive storage
    /// class (and how far its retrieval is). Storage without archive classes
    /// answers `Readable` without looking, so this is no existence check: a
    /// missing object may be `Readable` here and `NotFound` when read
    /// (storage with archive classes answers `NotFound`).
    fn archive_state(&self, kind: ObjectKind, name: &str) -> Result<ArchiveState, BackendError>;

    /// Asks for an archived object to be made readable for `days` days.
    /// Harmless to repeat: asking again for an object whose retrieval is in
    /// progress or done succeeds without starting another (and without
    /// another fee where the service allows), and asking for an object that
    /// is readable already (on storage without archive classes, any object)
    /// succeeds and changes nothing. Retrievals of archive classes cost
    /// money: callers ask only for objects that
    /// [`archive_state`](Backend::archive_state) reports as `Archived`.
    fn request_retrieval(&self, kind: ObjectKind, name: &str, how: RetrievalRequest) -> Result<(), BackendError>;

    /// Removes what writes cut short left behind, begun before
    /// `older_than_ns` (Unix ns): the local folder's `tmp/` files, an S3
    /// bucket's unfinished multipart uploads under the repository's prefix.
    /// Returns how many went; storage that leaves nothing behind answers 0.
    /// Only maintenance calls it, with a cut-off older than any running
    /// write (prune's grace period).
    fn remove_temporaries(&self, older_than_ns: i64) -> Result<usize, BackendError>;

    /// Extends the retention (S3 Object Lock) of an object still in use, as
    /// kopia's maintenance does: when `until_ns`, its retention date from
    /// the listing, is less than half the configured period ahead, moves it
    /// to now + the period, in the configured mode (S3 never lets a date be
    /// shortened). Returns the new date (Unix ns), or `None` when nothing
    /// was due or the storage keeps no retention (local folder, memory).
    /// With `dry_run` it changes nothing and returns the date it would set.
    fn extend_retention(
        &self,
        kind: ObjectKind,
        name: &str,
        until_ns: i64,
        dry_run: bool,
    ) -> Result<Option<i64>, BackendError>;
}

/// Writes [`Backend`] methods that pass the call unchanged to the backend in
/// the field `$inner`, for the methods a wrapper does not change:
/// `forward!(inner: location, list, stat);`. With no default methods on the
/// trait, a method a wrapper neither writes out nor names here does not
/// compile, so no wrapper can skip one by accident.
macro_rules! forward {
    ($inner:tt: $($method:ident),+ $(,)?) => {
        $( $crate::backend::forward!(@one $inner $method); )+
    };
    // Each method's signature, once; `@fn` writes the pass-through.
    (@one $i:tt location) => { $crate::backend::forward!(@fn $i location() -> String); };
    (@one $i:tt transfers) => { $crate::backend::forward!(@fn $i transfers() -> usize); };
    (@one $i:tt create) => { $crate::backend::forward!(@fn $i create() -> ()); };
    (@one $i:tt list) => { $crate::backend::forward!(@fn $i list(kind: $crate::backend::ObjectKind) -> Vec<$crate::backend::ObjectInfo>); };
    (@one $i:tt read) => { $crate::backend::forward!(@fn $i read(kind: $crate::backend::ObjectKind, name: &str) -> Vec<u8>); };
    (@one $i:tt read_into) => {
        $crate::backend::forward!(@fn $i read_into(kind: $crate::backend::ObjectKind, name: &str, buf: &mut Vec<u8>) -> ());
    };
    (@one $i:tt read_range) => {
        $crate::backend::forward!(@fn $i read_range(kind: $crate::backend::ObjectKind, name: &str, offset: u64, len: u64) -> Vec<u8>);
    };
    (@one $i:tt write) => { $crate::backend::forward!(@fn $i write(kind: $crate::backend::ObjectKind, name: &str, data: &[u8]) -> ()); };
    (@one $i:tt write_bytes) => {
        $crate::backend::forward!(@fn $i write_bytes(kind: $crate::backend::ObjectKind, name: &str, data: &bytes::Bytes) -> ());
    };
    (@one $i:tt remove) => { $crate::backend::forward!(@fn $i remove(kind: $crate::backend::ObjectKind, name: &str) -> ()); };
    (@one $i:tt stat) => { $crate::backend::forward!(@fn $i stat(kind: $crate::backend::ObjectKind, name: &str) -> Option<u64>); };
    (@one $i:tt archive_state) => {
        $crate::backend::forward!(@fn $i archive_state(kind: $crate::backend::ObjectKind, name: &str) -> $crate::backend::ArchiveState);
    };
    (@one $i:tt extend_retention) => {
        $crate::backend::forward!(
            @fn $i extend_retention(kind: $crate::backend::ObjectKind, name: &str, until_ns: i64, dry_run: bool) -> Option<i64>
        );
    };
    (@one $i:tt remove_temporaries) => { $crate::backend::forward!(@fn $i remove_temporaries(older_than_ns: i64) -> usize); };
    (@one $i:tt request_retrieval) => {
        $crate::backend::forward!(
            @fn $i request_retrieval(kind: $crate::backend::ObjectKind, name: &str, how: $crate::backend::RetrievalRequest) -> ()
        );
    };
    // `location` and `transfers` are the methods that cannot fail.
    (@fn $i:tt location() -> String) => {
        fn location(&self) -> String {
            self.$i.location()
        }
    };
    (@fn $i:tt transfers() -> usize) => {
        fn transfers(&self) -> usize {
            self.$i.transfers()
        }
    };
    (@fn $i:tt $m:ident($($a:ident: $t:ty),*) -> $ok:ty) => {
        fn $m(&self, $($a: $t),*) -> Result<$ok, $crate::backend::BackendError> {
            self.$i.$m($($a),*)
        }
    };
}
pub(crate) use forward;

/// `Backend::read_into` through the backend's own `read`: for backends (and
/// test doubles) whose `read` cannot fill a given buffer, or changes what is
/// read, so both always answer alike.
macro_rules! read_into_by_read {
    () => {
        fn read_into(
            &self,
            kind: $crate::backend::ObjectKind,
            name: &str,
            buf: &mut Vec<u8>,
        ) -> Result<(), $crate::backend::BackendError> {
            *buf = $crate::backend::Backend::read(self, kind, name)?;
            Ok(())
        }
    };
}
pub(crate) use read_into_by_read;

/// `Backend::archive_state` and `Backend::request_retrieval` of a storage
/// without archive classes: every object is readable, so there is never
/// anything to retrieve (and asking is accepted, as the contract says).
macro_rules! no_archive_classes {
    () => {
        fn archive_state(
            &self,
            _kind: $crate::backend::ObjectKind,
            _name: &str,
        ) -> Result<$crate::backend::ArchiveState, $crate::backend::BackendError> {
            Ok($crate::backend::ArchiveState::Readable)
        }

        fn request_retrieval(
            &self,
            _kind: $crate::backend::ObjectKind,
            _name: &str,
            _how: $crate::backend::RetrievalRequest,
        ) -> Result<(), $crate::backend::BackendError> {
            Ok(())
        }
    };
}
pub(crate) use no_archive_classes;

/// `Backend::extend_retention` of a storage without retention dates: its
/// listings carry none, so nothing is ever due.
macro_rules! no_retention {
    () => {
        fn extend_retention(
            &self,
            _kind: $crate::backend::ObjectKind,
            _name: &str,
            _until_ns: i64,
            _dry_run: bool,
        ) -> Result<Option<i64>, $crate::backend::BackendError> {
            Ok(None)
        }
    };
}
pub(crate) use no_retention;

/// `len` bytes of `data` (object `kind`/`name`) from `offset`, or
/// `OutOfRange` when that is not wholly inside: for backends and wrappers
/// that hold whole objects in memory.
pub(crate) fn slice_range(
    kind: ObjectKind,
    name: &str,
    data: &[u8],
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, BackendError> {
    let size = data.len() as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(data[offset as usize..end as usize].to_vec()),
        _ => Err(BackendError::OutOfRange {
            path: kind.path(name),
            offset,
            len,
            size,
        }),
    }
}

/// The listing of the config kind: the one object `config`, if it exists
/// (`size` from a `stat`).
pub(crate) fn config_listing(size: Option<u64>) -> Vec<ObjectInfo> {
    size.map(|size| ObjectInfo {
        name: "config".into(),
        size,
        modified_ns: None,
        storage_class: None,
        retained_until_ns: None,
    })
    .into_iter()
    .collect()
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

/// What a retrieval from archive storage asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrievalRequest {
    /// How fast (and at what price).
    pub tier: RetrievalTier,
    /// Days the retrieved copy stays readable.
    pub days: u32,
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

#[cfg(any(test, feature = "testing"))]
pub mod suite;
#[cfg(test)]
mod suite_runs;

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
/// S3 backends come wrapped in retries (`retry::RetryBackend`); speed
/// limits (`limiter::LimitBackend`) wrap any backend when set.
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
