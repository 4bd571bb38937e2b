//! A wrapper that caps transfer speed: [`LimitBackend`].
//!
//! Uploads (`write`) and downloads (`read`, `read_range`) each draw from their
//! own token bucket, shared by every thread using the backend, so the total
//! rate stays under the limit however many transfers run at once. An upload
//! waits before it starts; a download is charged when it is known how many
//! bytes came (whole reads) or before it starts (ranges). A transfer larger
//! than the bucket goes into debt and later transfers wait it off, so the
//! long-run rate holds for objects of any size.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{forward, Backend, BackendError, ObjectKind};

/// A shared bytes-per-second budget.
#[derive(Debug)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: f64,
    /// Most bytes saved up while idle (one second's worth).
    burst: f64,
    /// Tokens available (negative: debt) as of an instant.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A bucket refilling at `bytes_per_second` (at least 1), starting full.
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        Self {
            rate,
            burst: rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes `bytes` tokens and returns how long the caller must wait before
    /// using them (zero when there were enough).
    pub fn reserve(&self, bytes: u64) -> Duration {
        // A poisoned lock only means another thread panicked while holding
        // two plain numbers; they are still usable.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst) - bytes as f64;
        s.1 = now;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / self.rate)
        }
    }

    /// Takes `bytes` tokens, sleeping as long as needed.
    pub fn take(&self, bytes: u64) {
        let wait = self.reserve(bytes);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Speed limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Upload limit in KiB/s.
    pub upload_kib: Option<u64>,
    /// Download limit in KiB/s.
    pub download_kib: Option<u64>,
}

impl Limits {
    /// True when neither direction is limited.
    pub fn is_unlimited(&self) -> bool {
        self.upload_kib.is_none() && self.download_kib.is_none()
    }
}

/// Caps the upload and download speed of the backend it wraps.
#[derive(Debug)]
pub struct LimitBackend<B> {
    inner: B,
    upload: Option<TokenBucket>,
    download: Option<TokenBucket>,
}

impl<B: Backend> LimitBackend<B> {
    /// Wraps `inner` with `limits` (unlimited directions pass straight through).
    pub fn new(inner: B, limits: Limits) -> Self {
        Self {
            inner,
            upload: limits.upload_kib.map(|k| TokenBucket::new(k.saturating_mul(1024))),
            download: limits.download_kib.map(|k| TokenBucket::new(k.saturating_mul(1024))),
        }
    }

    /// The wrapped backend.
    #[cfg(any(test, feature = "testing"))]
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: Backend> Backend for LimitBackend<B> {
    // Only transfers of object bytes are paced; listings, stats and archive
    // calls carry next to nothing.
    forward!(inner: transfers, location, create, list, remove, stat, archive_state, request_retrieval, remove_temporaries, extend_retention);

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let data = self.inner.read(kind, name)?;
        if let Some(b) = &self.download {
            b.take(data.len() as u64);
        }
        Ok(data)
    }

    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        self.inner.read_into(kind, name, buf)?;
        if let Some(b) = &self.download {
            b.take(buf.len() as u64);
        }
        Ok(())
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        if let Some(b) = &self.download {
            b.take(len);
        }
        self.inner.read_range(kind, name, offset, len)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        if let Some(b) = &self.upload {
            b.take(data.len() as u64);
        }
        self.inner.write(kind, name, data)
    }

    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &bytes::Bytes) -> Result<(), BackendError> {
        if let Some(b) = &self.upload {
            b.take(data.len() as u64);
        }
        self.inner.write_bytes(kind, name, data)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backend::memory::MemoryBackend;

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let b = TokenBucket::new(1000);
        assert_eq!(b.reserve(1000), Duration::ZERO);
        let w = b.reserve(500);
        assert!(
            w > Duration::from_millis(400) && w <= Duration::from_millis(500),
            "{w:?}"
        );
        // Debt accumulates: the next reservation waits for both.
        let w = b.reserve(500);
        assert!(w > Duration::from_millis(900), "{w:?}");
    }

    #[test]
    fn downloads_are_paced_by_read_and_read_into_alike() {
        let b = LimitBackend::new(
            MemoryBackend::new(),
            Limits {
                upload_kib: None,
                download_kib: Some(64),
            },
        );
        b.write(ObjectKind::Snapshot, "a", &vec![7u8; 64 * 1024]).unwrap();
        let start = Instant::now();
        // The first read spends the 64 KiB burst; the second waits ~1 s.
        assert_eq!(b.read(ObjectKind::Snapshot, "a").unwrap().len(), 64 * 1024);
        let mut buf = Vec::new();
        b.read_into(ObjectKind::Snapshot, "a", &mut buf).unwrap();
        assert_eq!(buf, vec![7u8; 64 * 1024]);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(900), "read_into was not paced: {took:?}");
    }

    #[test]
    fn uploads_are_paced_across_threads() {
        // 64 KiB/s; 4 threads write 32 KiB each after the 64 KiB burst is
        // spent: about 2 s for the whole 192 KiB.
        let b = std::sync::Arc::new(LimitBackend::new(
            MemoryBackend::new(),
            Limits {
                upload_kib: Some(64),
                download_kib: None,
            },
        ));
        let start = Instant::now();
        b.write(ObjectKind::Snapshot, "burst", &vec![0u8; 64 * 1024]).unwrap();
        std::thread::scope(|s| {
            for i in 0..4 {
                let b = b.clone();
                s.spawn(move || {
                    b.write(ObjectKind::Snapshot, &format!("t{i}"), &vec![1u8; 32 * 1024])
                        .unwrap()
                });
            }
        });
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        // Reads are not limited here.
        let start = Instant::now();
        for i in 0..4 {
            b.read(ObjectKind::Snapshot, &format!("t{i}")).unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(200));
    }
}
