//! A wrapper that retries failures that may go away: [`RetryBackend`].
//!
//! Only errors with [`BackendError::is_retryable`] (timeouts, throttling,
//! dropped connections, 5xx) are retried, with exponential backoff and full
//! jitter: before attempt `n + 1` it sleeps a random time between zero and
//! `min(max_delay, base_delay * 2^n)`. Every retry is counted in a shared
//! counter ([`RetryOptions::counter`]) that the command line reports.
//!
//! Two results of a retried call are read with their history in mind: a
//! `write` whose earlier attempt failed transiently may have stored the
//! object after all, so an `AlreadyExists` on a later attempt is checked by
//! reading the object back (the same bytes: success); likewise a retried
//! `remove` that meets `NotFound` counts as done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{ArchiveState, Backend, BackendError, ObjectInfo, ObjectKind, RetrievalRequest};

/// How a `RetryBackend` retries.
#[derive(Debug, Clone)]
pub struct RetryOptions {
    /// Attempts per call, the first included (default 8; 1 = no retries).
    pub max_attempts: u32,
    /// The first backoff ceiling (default 100 ms).
    pub base_delay: Duration,
    /// The largest backoff ceiling (default 10 s).
    pub max_delay: Duration,
    /// Counts retries (not first attempts); shared with whoever reports them.
    pub counter: Arc<AtomicU64>,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl RetryOptions {
    /// Retries counted so far.
    pub fn retries(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// The random sleep before retry number `retry` (0-based): full jitter
    /// below an exponentially growing ceiling.
    fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let mut r = [0u8; 8];
        // Without randomness, sleep the whole ceiling: still a backoff.
        let fraction = match crate::crypto::random_bytes(&mut r) {
            Ok(()) => (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 1.0,
        };
        ceiling.mul_f64(fraction)
    }
}

/// Retries the retryable failures of the backend it wraps; see the module
/// documentation.
#[derive(Debug)]
pub struct RetryBackend<B> {
    inner: B,
    opts: RetryOptions,
}

impl<B: Backend> RetryBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, opts: RetryOptions) -> Self {
        Self { inner, opts }
    }

    /// Retries made so far (over all calls, and over every backend sharing
    /// the same counter).
    #[cfg(any(test, feature = "testing"))]
    pub fn retries(&self) -> u64 {
        self.opts.retries()
    }

    /// The wrapped backend.
    #[cfg(any(test, feature = "testing"))]
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// A write of `data` by `put`, retried. An earlier attempt may have
    /// stored it before failing to report success: the same bytes there
    /// mean the write happened.
    fn write_with(
        &self,
        kind: ObjectKind,
        name: &str,
        data: &[u8],
        put: impl Fn() -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        self.with_retries("write", |retried| match put() {
            Err(BackendError::AlreadyExists { path }) if retried => match self.inner.read(kind, name) {
                Ok(stored) if stored == data => Ok(()),
                Ok(_) => Err(BackendError::AlreadyExists { path }),
                Err(e) => Err(e),
            },
            other => other,
        })
    }

    /// Runs `f` until it succeeds, fails permanently, or the attempts are
    /// used up. `f` is told whether an earlier attempt failed transiently.
    fn with_retries<T>(
        &self,
        what: &str,
        mut f: impl FnMut(bool) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let attempts = self.opts.max_attempts.max(1);
        let mut retried = false;
        let mut attempt = 1;
        loop {
            match f(retried) {
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let pause = self.opts.delay(attempt - 1);
                    tracing::debug!(
                        what,
                        attempt,
                        error = %e,
                        pause_ms = pause.as_millis() as u64,
                        "retrying after a temporary failure"
                    );
                    self.opts.counter.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(pause);
                    retried = true;
                    attempt += 1;
                }
                Err(e) if e.is_retryable() => {
                    return Err(BackendError::Transient {
                        path: error_path(&e),
                        message: format!(
                            "{} (gave up after {attempts} attempts; check the network and the server, then run the \
                             command again)",
                            error_message(&e)
                        ),
                    })
                }
                other => return other,
            }
        }
    }
}

fn error_path(e: &BackendError) -> String {
    match e {
        BackendError::NotFound { path }
        | BackendError::AlreadyExists { path }
        | BackendError::Archived { path }
        | BackendError::Denied { path, .. }
        | BackendError::Retained { path, .. }
        | BackendError::OutOfRange { path, .. }
        | BackendError::NoSpace { path }
        | BackendError::Transient { path, .. }
        | BackendError::Other { path, .. } => path.clone(),
    }
}

fn error_message(e: &BackendError) -> String {
    match e {
        BackendError::Transient { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

impl<B: Backend> Backend for RetryBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn transfers(&self) -> usize {
        self.inner.transfers()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.with_retries("create", |_| self.inner.create())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.with_retries("list", |_| self.inner.list(kind))
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.with_retries("read", |_| self.inner.read(kind, name))
    }

    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        self.with_retries("read", |_| self.inner.read_into(kind, name, buf))
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.with_retries("read_range", |_| self.inner.read_range(kind, name, offset, len))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.write_with(kind, name, data, || self.inner.write(kind, name, data))
    }

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
        self.write_with(kind, name, data, || self.inner.write_bytes(kind, name, data))
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
        self.with_retries("remove", |retried| match self.inner.remove(kind, name) {
            // An earlier attempt removed it before failing to report success.
            Err(BackendError::NotFound { .. }) if retried => Ok(()),
            other => other,
        })
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
        self.with_retries("stat", |_| self.inner.stat(kind, name))
    }

    fn archive_state(&self, kind: ObjectKind, name: &str) -> Result<ArchiveState, BackendError> {
        self.with_retries("archive_state", |_| self.inner.archive_state(kind, name))
    }

    fn request_retrieval(&self, kind: ObjectKind, name: &str, how: RetrievalRequest) -> Result<(), BackendError> {
        self.with_retries("request_retrieval", |_| {
            self.inner.request_retrieval(kind, name, how)
        })
    }

    fn remove_temporaries(&self, older_than_ns: i64) -> Result<usize, BackendError> {
        self.with_retries("remove_temporaries", |_| self.inner.remove_temporaries(older_than_ns))
    }

    fn extend_retention(&self, kind: ObjectKind, name: &str, until_ns: i64, dry_run: bool) -> Result<Option<i64>, BackendError> {
        // Idempotent: a repeat sets now + the period again, never earlier.
        self.with_retries("extend_retention", |_| self.inner.extend_retention(kind, name, until_ns, dry_run))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;
    use crate::backend::memory::MemoryBackend;

    /// Fails the next `n` calls transiently; optionally performs the write
    /// before failing (a lost acknowledgement).
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryBackend,
        failures: Mutex<u32>,
        write_then_fail: bool,
        calls: AtomicU64,
    }

    impl Flaky {
        fn new(failures: u32, write_then_fail: bool) -> Self {
            Self {
                inner: MemoryBackend::new(),
                failures: Mutex::new(failures),
                write_then_fail,
                calls: AtomicU64::new(0),
            }
        }
        fn fail_now(&self) -> bool {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut f = self.failures.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                true
            } else {
                false
            }
        }
        fn transient() -> BackendError {
            BackendError::Transient {
                path: "x".into(),
                message: "503 SlowDown".into(),
            }
        }
    }

    impl Backend for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
            if self.fail_now() {
                return Err(Self::transient());
            }
            self.inner.list(kind)
        }
        crate::backend::forward!(inner: transfers, read, read_range);
        fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
            if self.fail_now() {
                // A body cut off part way: the buffer holds some of it.
                buf.clear();
                buf.extend_from_slice(b"half a bo");
                return Err(Self::transient());
            }
            self.inner.read_into(kind, name, buf)
        }
        fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
            self.write(kind, name, data)
        }

        fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            if self.fail_now() {
                if self.write_then_fail {
                    let _ = self.inner.write(kind, name, data);
                }
                return Err(Self::transient());
            }
            self.inner.write(kind, name, data)
        }
        fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
            if self.fail_now() {
                let _ = self.inner.remove(kind, name);
                return Err(Self::transient());
            }
            self.inner.remove(kind, name)
        }
        crate::backend::forward!(inner: create, stat, archive_state, request_retrieval, remove_temporaries, extend_retention);
    }

    fn fast(max_attempts: u32) -> RetryOptions {
        RetryOptions {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..Default::default()
        }
    }

    #[test]
    fn retries_transient_failures_and_counts_them() {
        let b = RetryBackend::new(Flaky::new(3, false), fast(8));
        assert!(b.list(ObjectKind::Index).unwrap().is_empty());
        assert_eq!(b.retries(), 3);
        assert_eq!(b.inner().calls.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let b = RetryBackend::new(Flaky::new(100, false), fast(4));
        let e = b.list(ObjectKind::Index).unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
        assert_eq!(b.inner().calls.load(Ordering::Relaxed), 4);
        assert_eq!(b.retries(), 3);
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let b = RetryBackend::new(Flaky::new(0, false), fast(8));
        let e = b.read(ObjectKind::Key, "missing").unwrap_err();
        assert!(matches!(e, BackendError::NotFound { .. }));
        assert_eq!(b.retries(), 0);
        b.write(ObjectKind::Snapshot, "s", b"a").unwrap();
        let e = b.write(ObjectKind::Snapshot, "s", b"b").unwrap_err();
        assert!(matches!(e, BackendError::AlreadyExists { .. }));
        assert_eq!(b.retries(), 0);
    }

    #[test]
    fn a_write_whose_ack_was_lost_succeeds_on_retry() {
        let b = RetryBackend::new(Flaky::new(1, true), fast(8));
        b.write(ObjectKind::Snapshot, "s", b"data").unwrap();
        assert_eq!(b.read(ObjectKind::Snapshot, "s").unwrap(), b"data");
        assert_eq!(b.retries(), 1);
        // Different bytes under the name are still a conflict.
        let b = RetryBackend::new(Flaky::new(0, true), fast(8));
        b.write(ObjectKind::Snapshot, "s", b"one").unwrap();
        *b.inner().failures.lock().unwrap() = 1;
        let e = b.write(ObjectKind::Snapshot, "s", b"two").unwrap_err();
        assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
    }

    #[test]
    fn a_read_into_cut_short_is_retried_into_the_same_buffer() {
        let b = RetryBackend::new(Flaky::new(0, false), fast(8));
        b.write(ObjectKind::Snapshot, "s", b"the whole object").unwrap();
        *b.inner().failures.lock().unwrap() = 2;
        let mut buf = Vec::new();
        b.read_into(ObjectKind::Snapshot, "s", &mut buf).unwrap();
        assert_eq!(buf, b"the whole object");
        assert_eq!(b.retries(), 2);
    }

    #[test]
    fn a_remove_whose_ack_was_lost_succeeds_on_retry() {
        let b = RetryBackend::new(Flaky::new(0, false), fast(8));
        b.write(ObjectKind::Lock, "l", b"x").unwrap();
        *b.inner().failures.lock().unwrap() = 1;
        b.remove(ObjectKind::Lock, "l").unwrap();
        assert_eq!(b.stat(ObjectKind::Lock, "l").unwrap(), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = RetryOptions::default();
        for retry in 0..40 {
            let d = o.delay(retry);
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
                .min(Duration::from_secs(10));
            assert!(d <= ceiling, "{retry}: {d:?} > {ceiling:?}");
        }
        // Full jitter: not always the ceiling.
        let ds: Vec<Duration> = (0..20).map(|_| o.delay(10)).collect();
        assert!(ds.iter().any(|d| *d < Duration::from_secs(9)));
    }
}
