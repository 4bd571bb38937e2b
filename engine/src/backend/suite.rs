//! The test suite every backend must pass (local, memory, and S3 against a
//! real server). Public so that integration tests of other backends can run
//! it; it panics on the first broken promise, like any test.
#![allow(clippy::unwrap_used)]

use super::{Backend, BackendError, ObjectKind};

/// Runs every check against an empty backend.
pub fn run_all(b: &dyn Backend) {
    write_read_stat_remove(b);
    never_overwrites(b);
    ranges(b);
    listing_by_kind(b, 1_100);
    missing_objects(b);
}

/// Round trip of one object of each kind.
pub fn write_read_stat_remove(b: &dyn Backend) {
    for (i, kind) in ObjectKind::ALL.iter().enumerate() {
        let name = if *kind == ObjectKind::Config {
            "config".to_string()
        } else {
            format!("{i:02}{}", "ab".repeat(31))
        };
        let data = vec![i as u8; 1000 + i];
        assert_eq!(b.stat(*kind, &name).unwrap(), None);
        b.write(*kind, &name, &data).unwrap();
        assert_eq!(b.stat(*kind, &name).unwrap(), Some(data.len() as u64));
        assert_eq!(b.read(*kind, &name).unwrap(), data);
        let listed = b.list(*kind).unwrap();
        assert!(
            listed.iter().any(|o| o.name == name && o.size == data.len() as u64),
            "{kind}: {listed:?}"
        );
        b.remove(*kind, &name).unwrap();
        assert_eq!(b.stat(*kind, &name).unwrap(), None);
    }
}

/// An exclusive write refuses to replace and leaves the original intact.
pub fn never_overwrites(b: &dyn Backend) {
    b.write(ObjectKind::Snapshot, "same", b"first").unwrap();
    let e = b.write(ObjectKind::Snapshot, "same", b"second").unwrap_err();
    assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(b.read(ObjectKind::Snapshot, "same").unwrap(), b"first");
    b.remove(ObjectKind::Snapshot, "same").unwrap();
}

/// Range reads return exactly the bytes asked for and refuse ranges outside.
pub fn ranges(b: &dyn Backend) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    b.write(ObjectKind::DataPack, "ffee", &data).unwrap();
    assert_eq!(b.read_range(ObjectKind::DataPack, "ffee", 0, 10).unwrap(), &data[..10]);
    assert_eq!(
        b.read_range(ObjectKind::DataPack, "ffee", 99_990, 10).unwrap(),
        &data[99_990..]
    );
    assert_eq!(b.read_range(ObjectKind::DataPack, "ffee", 5_000, 0).unwrap(), b"");
    let e = b.read_range(ObjectKind::DataPack, "ffee", 99_995, 10).unwrap_err();
    assert!(matches!(e, BackendError::OutOfRange { .. }), "{e:?}");
    b.remove(ObjectKind::DataPack, "ffee").unwrap();
}

/// Listing returns every object of one kind and none of another.
pub fn listing_by_kind(b: &dyn Backend, count: usize) {
    let names: Vec<String> = (0..count).map(|i| format!("{:064x}", i * 7919)).collect();
    for n in &names {
        b.write(ObjectKind::Index, n, n.as_bytes()).unwrap();
    }
    b.write(ObjectKind::Snapshot, "other", b"x").unwrap();
    let mut listed: Vec<String> = b.list(ObjectKind::Index).unwrap().into_iter().map(|o| o.name).collect();
    listed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want);
    for n in &names {
        b.remove(ObjectKind::Index, n).unwrap();
    }
    b.remove(ObjectKind::Snapshot, "other").unwrap();
    assert!(b.list(ObjectKind::Index).unwrap().is_empty());
}

/// Missing objects give `NotFound`, which is permanent.
pub fn missing_objects(b: &dyn Backend) {
    let e = b.read(ObjectKind::Key, "nope").unwrap_err();
    assert!(matches!(e, BackendError::NotFound { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert!(matches!(
        b.remove(ObjectKind::Key, "nope"),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        b.read_range(ObjectKind::DataPack, "nope", 0, 1),
        Err(BackendError::NotFound { .. })
    ));
}
