//! The shared suite run against the in-memory and the local-folder backend,
//! bare and through every wrapper, so that a wrapper that drops or bends a
//! method of the contract fails here. The dry run, which writes nothing,
//! runs the read side over a backend filled beforehand.

use std::sync::Arc;
use std::time::Duration;

use super::cache::{CacheBackend, CacheOptions};
use super::dryrun::DryRunBackend;
use super::limiter::{LimitBackend, Limits};
use super::local::LocalBackend;
use super::memory::MemoryBackend;
use super::retry::{RetryBackend, RetryOptions};
use super::{suite, Backend, ObjectKind};

/// A backend shared behind an `Arc`, so one test can wrap either base.
#[derive(Debug, Clone)]
struct Shared(Arc<dyn Backend>);

impl Backend for Shared {
    forward!(0: transfers, location, create, list, read, read_into, read_range, write, write_bytes, remove, stat, archive_state, request_retrieval, remove_temporaries, extend_retention);
}

/// The bases every wrapper is tested over: memory, and a local folder (with
/// the temporary folder that holds it).
fn bases() -> Vec<(Shared, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalBackend::new(dir.path().join("repo"));
    local.create().unwrap();
    vec![
        (Shared(Arc::new(MemoryBackend::new())), None),
        (Shared(Arc::new(local)), Some(dir)),
    ]
}

fn fast_retries() -> RetryOptions {
    RetryOptions {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..Default::default()
    }
}

fn generous_limits() -> Limits {
    Limits {
        upload_kib: Some(1 << 20),
        download_kib: Some(1 << 20),
    }
}

fn cache_options(dir: &tempfile::TempDir) -> CacheOptions {
    CacheOptions {
        dir: dir.path().into(),
        max_bytes: 1 << 30,
    }
}

#[test]
fn bare_backends_pass_the_suite() {
    for (base, _dir) in bases() {
        suite::run_all(&base);
    }
}

#[test]
fn retry_wrapper_passes_the_suite() {
    for (base, _dir) in bases() {
        let b = RetryBackend::new(base, fast_retries());
        suite::run_all(&b);
        assert_eq!(b.retries(), 0);
    }
}

#[test]
fn limit_wrapper_passes_the_suite() {
    for (base, _dir) in bases() {
        suite::run_all(&LimitBackend::new(base, generous_limits()));
    }
}

#[test]
fn cache_wrapper_passes_the_suite() {
    for (base, _dir) in bases() {
        let cache_dir = tempfile::tempdir().unwrap();
        let b = CacheBackend::new(base, cache_options(&cache_dir));
        suite::run_all(&b);
        // The suite's content-addressed objects did go through the cache.
        assert!(b.hits.load(std::sync::atomic::Ordering::Relaxed) > 0);
        // read_into is served from the cache as read is.
        let data = b"a cached snapshot".to_vec();
        let name = blake3::hash(&data).to_hex().to_string();
        b.write(ObjectKind::Snapshot, &name, &data).unwrap();
        let before = b.hits.load(std::sync::atomic::Ordering::Relaxed);
        let mut buf = b"left over".to_vec();
        b.read_into(ObjectKind::Snapshot, &name, &mut buf).unwrap();
        assert_eq!(buf, data);
        assert!(
            b.hits.load(std::sync::atomic::Ordering::Relaxed) > before,
            "read_into passed the cache by"
        );
    }
}

#[test]
fn wrappers_stacked_as_open_location_stacks_them_pass_the_suite() {
    for (base, _dir) in bases() {
        let cache_dir = tempfile::tempdir().unwrap();
        let limited = LimitBackend::new(base, generous_limits());
        let retried = RetryBackend::new(limited, fast_retries());
        suite::run_all(&CacheBackend::new(retried, cache_options(&cache_dir)));
    }
}

#[test]
fn dry_run_wrapper_passes_the_read_side_and_writes_nothing() {
    for (base, _dir) in bases() {
        let fixture = suite::fill(&base);
        let dry = DryRunBackend::new(base.0.clone());
        suite::read_side(&dry, &fixture);
        dry.write(ObjectKind::Snapshot, "00aa", b"discarded").unwrap();
        dry.write_bytes(ObjectKind::Snapshot, "00bb", &bytes::Bytes::from_static(b"discarded"))
            .unwrap();
        fixture.remove(&dry);
        // Nothing reached the base: the fixture is whole, the write absent.
        assert_eq!(base.stat(ObjectKind::Snapshot, "00aa").unwrap(), None);
        assert_eq!(base.stat(ObjectKind::Snapshot, "00bb").unwrap(), None);
        suite::read_side(&base, &fixture);
    }
}
