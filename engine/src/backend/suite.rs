//! The test suite every backend must pass: local, memory, each wrapper, and
//! S3 against a real server. It checks the contract written on [`Backend`].
//! Built for the engine's own tests and, with the `testing` feature, for
//! integration tests of other backends; it panics on the first broken
//! promise, like any test.
#![allow(clippy::unwrap_used)]

use std::sync::Barrier;

use super::{ArchiveState, Backend, BackendError, ObjectKind, RetrievalRequest, RetrievalTier};

/// Threads that the parallel checks run at once.
const THREADS: usize = 8;

/// Runs every check against an empty backend that can be written to
/// (`create` already called, or not needed).
pub fn run_all(b: &dyn Backend) {
    write_read_stat_remove(b);
    never_overwrites(b);
    shared_buffer_writes(b);
    ranges(b);
    listing_by_kind(b, 1_100);
    missing_objects(b);
    let fixture = fill(b);
    read_side(b, &fixture);
    fixture.remove(b);
    create_is_repeatable(b);
    archive_methods(b);
    parallel_calls(b);
    racing_writers(b);
}

/// The hex name under which content-addressed objects are stored (what the
/// repository does, and what the metadata cache insists on).
fn name_of(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
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

/// `write_bytes` stores what `write` would, never overwrites, and lets go
/// of the caller's buffer when it returns (the backup takes each pack
/// buffer back for the next pack).
pub fn shared_buffer_writes(b: &dyn Backend) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let name = name_of(&data);
    let shared = bytes::Bytes::from(data.clone());
    b.write_bytes(ObjectKind::DataPack, &name, &shared).unwrap();
    assert_eq!(b.read(ObjectKind::DataPack, &name).unwrap(), data);
    let mut buf = b"left over".to_vec();
    b.read_into(ObjectKind::DataPack, &name, &mut buf).unwrap();
    assert_eq!(buf, data);
    // An empty object empties the buffer.
    let empty = name_of(b"");
    b.write(ObjectKind::DataPack, &empty, b"").unwrap();
    b.read_into(ObjectKind::DataPack, &empty, &mut buf).unwrap();
    assert!(buf.is_empty(), "{} bytes left in the buffer", buf.len());
    b.remove(ObjectKind::DataPack, &empty).unwrap();
    let e = b.write_bytes(ObjectKind::DataPack, &name, &shared).unwrap_err();
    assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
    assert!(shared.try_into_mut().is_ok(), "the backend still holds the buffer");
    b.remove(ObjectKind::DataPack, &name).unwrap();
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

/// Listing returns every object of one kind, sorted by name, and none of
/// another. `count` above 1,000 crosses S3's page size.
pub fn listing_by_kind(b: &dyn Backend, count: usize) {
    let names: Vec<String> = (0..count).map(|i| format!("{:064x}", i * 7919)).collect();
    for n in &names {
        b.write(ObjectKind::Index, n, n.as_bytes()).unwrap();
    }
    b.write(ObjectKind::Snapshot, "other", b"x").unwrap();
    let listed: Vec<String> = b.list(ObjectKind::Index).unwrap().into_iter().map(|o| o.name).collect();
    let mut want = names.clone();
    want.sort();
    // Not sorted here: the contract promises sorted listings.
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
    assert!(!e.is_retryable(), "{e:?}");
    missing_objects_read_side(b);
    assert!(matches!(
        b.remove(ObjectKind::Key, "nope"),
        Err(BackendError::NotFound { .. })
    ));
}

/// Objects written by [`fill`], for the checks that only read.
#[derive(Debug)]
pub struct Fixture {
    objects: Vec<(ObjectKind, String, Vec<u8>)>,
}

impl Fixture {
    /// Removes the fixture's objects again.
    pub fn remove(&self, b: &dyn Backend) {
        for (kind, name, _) in &self.objects {
            b.remove(*kind, name).unwrap();
        }
    }
}

/// Writes a few objects of every kind, content-addressed where the
/// repository's are, for [`read_side`] (which may then run through a
/// wrapper that cannot write, such as a dry run).
pub fn fill(b: &dyn Backend) -> Fixture {
    let mut objects = Vec::new();
    for (k, kind) in ObjectKind::ALL.iter().enumerate() {
        let count = if *kind == ObjectKind::Config { 1 } else { 3 };
        for i in 0..count {
            let data: Vec<u8> = (0..(2_000 + 700 * i + k)).map(|j| (j * 31 + k * 7 + i) as u8).collect();
            let name = if *kind == ObjectKind::Config {
                "config".to_string()
            } else {
                name_of(&data)
            };
            b.write(*kind, &name, &data).unwrap();
            objects.push((*kind, name, data));
        }
    }
    Fixture { objects }
}

/// Everything that only looks, over the objects of `f` (and nothing else
/// stored): reads, ranges, `stat`, sorted listings, archive states, missing
/// objects, and all of it from many threads at once.
pub fn read_side(b: &dyn Backend, f: &Fixture) {
    let check_one = |(kind, name, data): &(ObjectKind, String, Vec<u8>)| {
        let len = data.len() as u64;
        assert_eq!(&b.read(*kind, name).unwrap(), data, "{kind} {name}");
        // A reused buffer, longer than the object and full of other bytes,
        // ends up holding exactly the object.
        let mut buf = vec![0xA5; data.len() + 77];
        b.read_into(*kind, name, &mut buf).unwrap();
        assert_eq!(&buf, data, "read_into {kind} {name}");
        assert_eq!(b.stat(*kind, name).unwrap(), Some(len));
        assert_eq!(b.read_range(*kind, name, 10, 100).unwrap(), &data[10..110]);
        assert_eq!(b.read_range(*kind, name, len - 1, 1).unwrap(), &data[data.len() - 1..]);
        assert_eq!(b.read_range(*kind, name, len, 0).unwrap(), b"");
        let e = b.read_range(*kind, name, len - 1, 2).unwrap_err();
        assert!(matches!(e, BackendError::OutOfRange { .. }), "{e:?}");
        assert_eq!(b.archive_state(*kind, name).unwrap(), ArchiveState::Readable);
    };
    for o in &f.objects {
        check_one(o);
    }
    for kind in ObjectKind::ALL {
        let listed = b.list(kind).unwrap();
        let mut want: Vec<(String, u64)> = f
            .objects
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, n, d)| (n.clone(), d.len() as u64))
            .collect();
        want.sort();
        let got: Vec<(String, u64)> = listed.into_iter().map(|o| (o.name, o.size)).collect();
        assert_eq!(got, want, "{kind}");
    }
    missing_objects_read_side(b);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let check_one = &check_one;
            s.spawn(move || {
                for o in f.objects.iter().skip(t % 3) {
                    check_one(o);
                }
                assert_eq!(b.list(ObjectKind::Snapshot).unwrap().len(), 3);
            });
        }
    });
}

/// The reading half of [`missing_objects`].
fn missing_objects_read_side(b: &dyn Backend) {
    assert!(matches!(
        b.read(ObjectKind::Key, "nope"),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        b.read_into(ObjectKind::DataPack, "nope", &mut Vec::new()),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        b.read_range(ObjectKind::DataPack, "nope", 0, 1),
        Err(BackendError::NotFound { .. })
    ));
    assert_eq!(b.stat(ObjectKind::Index, "nope").unwrap(), None);
}

/// `create` on a prepared location succeeds and leaves its objects alone.
pub fn create_is_repeatable(b: &dyn Backend) {
    b.create().unwrap();
    b.write(ObjectKind::Key, "k1", b"key").unwrap();
    b.create().unwrap();
    assert_eq!(b.read(ObjectKind::Key, "k1").unwrap(), b"key");
    b.remove(ObjectKind::Key, "k1").unwrap();
}

/// An object written normally is readable; asking for its retrieval (twice)
/// is accepted and changes nothing.
pub fn archive_methods(b: &dyn Backend) {
    let data = b"a data pack in the normal class".to_vec();
    let name = name_of(&data);
    b.write(ObjectKind::DataPack, &name, &data).unwrap();
    assert_eq!(
        b.archive_state(ObjectKind::DataPack, &name).unwrap(),
        ArchiveState::Readable
    );
    for tier in [RetrievalTier::Bulk, RetrievalTier::Standard] {
        b.request_retrieval(ObjectKind::DataPack, &name, RetrievalRequest { tier, days: 1 })
            .unwrap();
    }
    assert_eq!(
        b.archive_state(ObjectKind::DataPack, &name).unwrap(),
        ArchiveState::Readable
    );
    assert_eq!(b.read(ObjectKind::DataPack, &name).unwrap(), data);
    b.remove(ObjectKind::DataPack, &name).unwrap();
}

/// Many threads write, read, list and remove distinct objects at once.
pub fn parallel_calls(b: &dyn Backend) {
    const PER_THREAD: usize = 4;
    let kinds = [ObjectKind::DataPack, ObjectKind::TreePack, ObjectKind::Index];
    let object = |t: usize, i: usize| {
        let data: Vec<u8> = (0..(5_000 + 1_000 * i)).map(|j| (j * 7 + t * 13 + i) as u8).collect();
        (kinds[(t + i) % kinds.len()], name_of(&data), data)
    };
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    let (kind, name, data) = object(t, i);
                    b.write(kind, &name, &data).unwrap();
                    assert_eq!(b.read(kind, &name).unwrap(), data);
                    assert_eq!(b.read_range(kind, &name, 100, 50).unwrap(), &data[100..150]);
                    assert_eq!(b.stat(kind, &name).unwrap(), Some(data.len() as u64));
                    let listed = b.list(kind).unwrap();
                    assert!(listed.iter().any(|o| o.name == name), "{kind} {name}");
                }
            });
        }
    });
    let mut want: Vec<(ObjectKind, String)> = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |i| (t, i)))
        .map(|(t, i)| {
            let (kind, name, _) = object(t, i);
            (kind, name)
        })
        .collect();
    want.sort();
    let mut got = Vec::new();
    for kind in kinds {
        let listed = b.list(kind).unwrap();
        let names: Vec<String> = listed.into_iter().map(|o| o.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{kind}: listing not sorted");
        got.extend(names.into_iter().map(|n| (kind, n)));
    }
    got.sort();
    assert_eq!(got, want);
    std::thread::scope(|s| {
        for chunk in want.chunks(PER_THREAD) {
            s.spawn(move || {
                for (kind, name) in chunk {
                    b.remove(*kind, name).unwrap();
                }
            });
        }
    });
    for kind in kinds {
        assert!(b.list(kind).unwrap().is_empty(), "{kind}");
    }
}

/// Threads racing to write one name: exactly one wins, every other one gets
/// `AlreadyExists`, and the stored bytes are the winner's.
pub fn racing_writers(b: &dyn Backend) {
    let name = "5a3e".repeat(16);
    let barrier = Barrier::new(THREADS);
    let results: Vec<Result<(), BackendError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (barrier, name) = (&barrier, &name);
                s.spawn(move || {
                    barrier.wait();
                    b.write(ObjectKind::Snapshot, name, format!("writer {t}").as_bytes())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..THREADS).filter(|t| results[*t].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
        }
    }
    assert_eq!(
        b.read(ObjectKind::Snapshot, &name).unwrap(),
        format!("writer {}", winners[0]).as_bytes()
    );
    b.remove(ObjectKind::Snapshot, &name).unwrap();
}
