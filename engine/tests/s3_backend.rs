//! The S3 backend against real servers over HTTP on 127.0.0.1: SeaweedFS
//! (signatures, conditional writes, multipart) and moto (archive storage
//! classes as AWS keeps them).
//!
//! Start the servers first:
//!
//! ```sh
//! scripts/s3-servers.sh start && set -a && . target/s3-servers.env && set +a
//! cargo test -p cairn-engine --test s3_backend
//! scripts/s3-servers.sh stop
//! ```
//!
//! (`scripts/test-all.sh` does this.) Without the servers' settings every
//! test fails, saying so; `CAIRN_SKIP_S3=1` skips them, loudly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::backend::retry::RetryOptions;
use cairn_engine::backend::s3::{DataStorageClass, S3Backend, S3Credentials, S3Options};
use cairn_engine::backend::{
    open_location_with, suite, ArchiveState, Backend, BackendError, BackendOptions, ObjectKind, RetrievalRequest,
    RetrievalTier,
};
use cairn_engine::{backup, restore, BackupOptions, BackupSource, Repository, RestoreOptions};
use cairn_test_support::engine::{cheap_init, CHUNKER, MIB};
use cairn_test_support::pseudo_random;
use cairn_test_support::s3::{creds_file, moto, moto_restores, seaweed, skipped, unique, Server};
use cairn_test_support::tree::{assert_same_tree, manifest};
use rayon::prelude::*;

fn pack_name(i: u32) -> String {
    hex::encode(blake3::hash(&i.to_le_bytes()).as_bytes())
}

#[test]
fn seaweedfs_passes_the_backend_suite_through_open_location() {
    let Some(s) = seaweed() else { return };
    let (s3, _f) = s.options(|_| {});
    let opts = BackendOptions {
        s3,
        ..Default::default()
    };
    let b = open_location_with(&s.location(&unique("suite")), &opts).unwrap();
    b.create().unwrap();
    suite::run_all(b.as_ref());
    assert_eq!(opts.retries(), 0, "no retries expected on loopback");
}

#[test]
fn moto_keeps_the_write_read_contract() {
    let Some(m) = moto() else { return };
    let b = m.backend(&unique("moto-suite"), |_| {});
    b.create().unwrap();
    suite::write_read_stat_remove(&b);
    suite::never_overwrites(&b);
    suite::ranges(&b);
    suite::missing_objects(&b);
}

#[test]
fn large_object_goes_up_in_parts_and_comes_back_whole() {
    let Some(s) = seaweed() else { return };
    let b = s.backend(&unique("large"), |_| {});
    let data = pseudo_random(200 * 1000 * 1000, 7);
    let want = blake3::hash(&data);
    let name = pack_name(1);

    let t = Instant::now();
    b.write(ObjectKind::DataPack, &name, &data).unwrap();
    let up = t.elapsed();
    assert_eq!(b.stat(ObjectKind::DataPack, &name).unwrap(), Some(data.len() as u64));
    assert!(b.pending_multipart_uploads().unwrap().is_empty());

    let t = Instant::now();
    let back = b.read(ObjectKind::DataPack, &name).unwrap();
    let down = t.elapsed();
    assert_eq!(blake3::hash(&back), want);
    let mb = data.len() as f64 / 1e6;
    eprintln!(
        "200 MB over loopback to SeaweedFS: write {:.1} s ({:.0} MB/s, multipart 16 MiB parts, 8 connections), \
         read {:.1} s ({:.0} MB/s)",
        up.as_secs_f64(),
        mb / up.as_secs_f64(),
        down.as_secs_f64(),
        mb / down.as_secs_f64()
    );

    // Ranges across part boundaries, at the very end, and past it.
    for (offset, len) in [
        (0u64, 1u64),
        (16 * MIB as u64 - 10, 20),
        (48 * MIB as u64 - 1, 3 * MIB as u64),
        (data.len() as u64 - 5, 5),
    ] {
        let got = b.read_range(ObjectKind::DataPack, &name, offset, len).unwrap();
        assert_eq!(got, &data[offset as usize..(offset + len) as usize], "{offset}+{len}");
    }
    let size = data.len() as u64;
    assert_eq!(b.read_range(ObjectKind::DataPack, &name, size, 0).unwrap(), b"");
    for (offset, len) in [(size - 1, 2), (size, 1), (size + 10, 1), (u64::MAX - 1, 5)] {
        match b.read_range(ObjectKind::DataPack, &name, offset, len) {
            Err(BackendError::OutOfRange { size: s, .. }) => assert_eq!(s, size),
            other => panic!("{offset}+{len}: {other:?}"),
        }
    }
    // A second large write under the same name is refused (no new upload left behind).
    let e = b.write(ObjectKind::DataPack, &name, &data[..70 * MIB]).unwrap_err();
    assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
    b.remove(ObjectKind::DataPack, &name).unwrap();
    assert!(b.pending_multipart_uploads().unwrap().is_empty());
}

#[test]
fn an_interrupted_multipart_upload_leaves_nothing_visible() {
    let Some(s) = seaweed() else { return };
    let b = s.backend(&unique("interrupted"), |o| {
        o.multipart_threshold = 5 * MIB as u64;
        o.multipart_part_size = 5 * MIB as u64;
        o.connections = 2;
    });
    let data = pseudo_random(40 * MIB, 3);
    let name = pack_name(2);
    let source = |offset: u64, len: usize| {
        if offset >= 15 * MIB as u64 {
            Err(BackendError::Other {
                path: "source".into(),
                message: "the source broke mid-way".into(),
            })
        } else {
            Ok(data[offset as usize..offset as usize + len].to_vec())
        }
    };
    let e = b
        .write_from_source(ObjectKind::DataPack, &name, data.len() as u64, &source)
        .unwrap_err();
    assert!(e.to_string().contains("the source broke mid-way"), "{e}");
    assert_eq!(b.stat(ObjectKind::DataPack, &name).unwrap(), None);
    assert!(b.list(ObjectKind::DataPack).unwrap().is_empty());
    assert!(
        matches!(b.read(ObjectKind::DataPack, &name), Err(BackendError::NotFound { .. })),
        "a partial object is visible"
    );
    assert_eq!(
        b.pending_multipart_uploads().unwrap(),
        Vec::<String>::new(),
        "the upload was not aborted"
    );

    // The same name can be written whole afterwards.
    let whole = |offset: u64, len: usize| Ok(data[offset as usize..offset as usize + len].to_vec());
    b.write_from_source(ObjectKind::DataPack, &name, data.len() as u64, &whole)
        .unwrap();
    assert_eq!(
        blake3::hash(&b.read(ObjectKind::DataPack, &name).unwrap()),
        blake3::hash(&data)
    );
    b.remove(ObjectKind::DataPack, &name).unwrap();
}

#[test]
fn a_wrong_secret_is_denied_with_a_hint_about_credentials() {
    let Some(s) = seaweed() else { return };
    let bad = Server {
        secret: format!("{}-wrong", s.secret),
        ..s
    };
    let b = bad.backend(&unique("wrong-secret"), |_| {});
    let checks: Vec<(&str, Result<(), BackendError>)> = vec![
        ("write", b.write(ObjectKind::Snapshot, "s", b"x")),
        ("read", b.read(ObjectKind::Snapshot, "s").map(|_| ())),
        ("stat", b.stat(ObjectKind::Snapshot, "s").map(|_| ())),
        ("list", b.list(ObjectKind::Snapshot).map(|_| ())),
        ("create", b.create()),
    ];
    for (what, r) in checks {
        match r {
            Err(e @ BackendError::Denied { .. }) => {
                assert!(e.to_string().contains("credentials"), "{what}: {e}");
                assert!(
                    !e.to_string().contains(&bad.secret),
                    "{what}: the secret is in the message"
                );
                assert!(!e.is_retryable());
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn a_missing_bucket_is_denied_and_named() {
    let Some(s) = seaweed() else { return };
    let missing = Server {
        bucket: "cairn-no-such-bucket".into(),
        ..s
    };
    let b = missing.backend("repo", |_| {});
    for r in [b.create(), b.read(ObjectKind::Config, "config").map(|_| ())] {
        match r {
            Err(e @ BackendError::Denied { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("cairn-no-such-bucket") && m.contains("does not exist"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Repository::init fails the same way, before writing anything.
    let e = Repository::init(Arc::new(b), b"pw", cheap_init(CHUNKER)).err().unwrap();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn credentials_come_from_a_command_too() {
    let Some(s) = seaweed() else { return };
    let f = creds_file(&s.key, &s.secret);
    let o = S3Options {
        credentials: S3Credentials::Command(format!("cat '{}'", f.path().display())),
        ..Default::default()
    };
    let b = S3Backend::open(&s.location(&unique("command")), &o).unwrap();
    b.write(ObjectKind::Key, "k", b"key").unwrap();
    assert_eq!(b.read(ObjectKind::Key, "k").unwrap(), b"key");
    let o = S3Options {
        credentials: S3Credentials::Command("exit 3".into()),
        ..Default::default()
    };
    let e = S3Backend::open(&s.location("x"), &o).unwrap_err();
    assert!(e.to_string().contains("credentials command failed"), "{e}");
}

#[test]
fn calls_from_many_rayon_threads_and_from_inside_a_runtime() {
    let Some(s) = seaweed() else { return };
    let b = s.backend(&unique("parallel"), |o| o.connections = 4);
    let names: Vec<String> = (0..64).map(pack_name).collect();
    names.par_iter().enumerate().for_each(|(i, n)| {
        b.write(ObjectKind::DataPack, n, &pseudo_random(10_000 + i, i as u64))
            .unwrap();
    });
    names.par_iter().enumerate().for_each(|(i, n)| {
        assert_eq!(
            b.read(ObjectKind::DataPack, n).unwrap(),
            pseudo_random(10_000 + i, i as u64)
        );
    });
    let mut listed: Vec<String> = b
        .list(ObjectKind::DataPack)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    listed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(
        listed, want,
        "data packs are listed by bare name across fan-out folders"
    );

    // Called from async code (inside another tokio runtime) it still works.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let size = rt.block_on(async { b.stat(ObjectKind::DataPack, &names[0]) }).unwrap();
    assert_eq!(size, Some(10_000));
    names
        .par_iter()
        .for_each(|n| b.remove(ObjectKind::DataPack, n).unwrap());
}

#[test]
fn an_unreachable_server_is_transient_and_retries_are_counted() {
    if skipped() {
        return;
    }
    // A port that nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = creds_file("k", "s");
    let opts = BackendOptions {
        s3: S3Options {
            credentials: S3Credentials::File(f.path().to_path_buf()),
            ..Default::default()
        },
        retry: RetryOptions {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    };
    let b = open_location_with(&format!("s3:http://127.0.0.1:{port}/bucket/p"), &opts).unwrap();
    let e = b.stat(ObjectKind::Config, "config").unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!(opts.retries(), 2);
    assert_eq!(opts.retry.counter.load(Ordering::Relaxed), 2);
}

#[test]
fn a_repository_round_trips_through_s3() {
    let Some(s) = seaweed() else { return };
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    fs::write(tree.join("big.bin"), pseudo_random(5 * MIB, 11)).unwrap();
    fs::write(tree.join("a/small.txt"), b"hello s3\n").unwrap();
    fs::write(tree.join("a/b/empty"), b"").unwrap();
    fs::write(tree.join("a/b/dup.bin"), pseudo_random(5 * MIB, 11)).unwrap();

    let (s3, _f) = s.options(|_| {});
    let opts = BackendOptions {
        s3,
        ..Default::default()
    };
    let location = s.location(&unique("repo"));
    let repo = Repository::init(
        open_location_with(&location, &opts).unwrap(),
        b"pw",
        cheap_init(CHUNKER),
    )
    .unwrap();
    let out = backup(
        &repo,
        BackupSource::Paths(vec![tree.clone()]),
        &BackupOptions::default(),
    )
    .unwrap();
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    drop(repo);

    // Open it again from scratch, as a later restore would.
    let repo = Repository::open(open_location_with(&location, &opts).unwrap(), b"pw").unwrap();
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let packs = repo.storage().list(ObjectKind::DataPack).unwrap();
    // About 5 MiB of distinct data in 1 MiB packs: a pack closes once it
    // passes 1 MiB, with blobs of up to 1 MiB arriving in whatever order the
    // parallel sealers finish, so it is 3 to 5 packs, never one.
    assert!(packs.len() >= 3, "{packs:?}");
    let target = tempfile::tempdir().unwrap();
    let summary = restore(
        &repo,
        &snaps[0].1,
        target.path(),
        &RestoreOptions {
            subpath: Some(tree.to_string_lossy().into_owned()),
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(summary.files_verified >= 4);
    assert_same_tree(&manifest(&tree), &manifest(&target.path().join("tree")));
    assert_eq!(opts.retries(), 0);
}

#[test]
fn archived_data_packs_on_moto_are_retrieved_before_reading() {
    let Some(m) = moto() else { return };
    let restores = moto_restores(&m);
    let b = m.backend(&unique("glacier"), |o| o.data_storage_class = DataStorageClass::Glacier);
    let pack = pack_name(3);
    let data = pseudo_random(100_000, 5);
    b.write(ObjectKind::DataPack, &pack, &data).unwrap();
    b.write(ObjectKind::Index, "idx", b"index stays readable").unwrap();
    b.write(ObjectKind::TreePack, "tree", b"tree packs too").unwrap();

    // Only data packs went to the archive class.
    assert_eq!(b.read(ObjectKind::Index, "idx").unwrap(), b"index stays readable");
    assert_eq!(b.read(ObjectKind::TreePack, "tree").unwrap(), b"tree packs too");
    assert_eq!(
        b.archive_state(ObjectKind::Index, "idx").unwrap(),
        ArchiveState::Readable
    );
    assert_eq!(
        b.archive_state(ObjectKind::DataPack, &pack).unwrap(),
        ArchiveState::Archived {
            class: "GLACIER".into()
        }
    );
    for r in [
        b.read(ObjectKind::DataPack, &pack),
        b.read_range(ObjectKind::DataPack, &pack, 10, 10),
    ] {
        match r {
            Err(e @ BackendError::Archived { .. }) => assert!(!e.is_retryable()),
            other => panic!("{other:?}"),
        }
    }
    // Listing and stat work on archived objects.
    assert_eq!(b.stat(ObjectKind::DataPack, &pack).unwrap(), Some(data.len() as u64));
    assert_eq!(b.list(ObjectKind::DataPack).unwrap().len(), 1);

    b.request_retrieval(
        ObjectKind::DataPack,
        &pack,
        RetrievalRequest {
            tier: RetrievalTier::Bulk,
            days: 2,
        },
    )
    .unwrap();
    // moto finishes retrievals at once.
    assert_eq!(
        b.archive_state(ObjectKind::DataPack, &pack).unwrap(),
        ArchiveState::Readable
    );
    assert_eq!(b.read(ObjectKind::DataPack, &pack).unwrap(), data);
    assert_eq!(
        b.read_range(ObjectKind::DataPack, &pack, 10, 10).unwrap(),
        &data[10..20]
    );
    // Asking again succeeds and changes nothing.
    b.request_retrieval(
        ObjectKind::DataPack,
        &pack,
        RetrievalRequest {
            tier: RetrievalTier::Standard,
            days: 2,
        },
    )
    .unwrap();
    // So does asking for an object that is not archived at all.
    b.request_retrieval(
        ObjectKind::Index,
        "idx",
        RetrievalRequest {
            tier: RetrievalTier::Standard,
            days: 1,
        },
    )
    .unwrap();
    assert!(matches!(
        b.archive_state(ObjectKind::DataPack, "missing"),
        Err(BackendError::NotFound { .. })
    ));

    // A retrieval that takes a while (moto advances it as the object is
    // looked at): Retrieving, still refused, then Readable.
    let slow = pack_name(4);
    b.write(ObjectKind::DataPack, &slow, &data).unwrap();
    restores.manual(3);
    let standard = RetrievalRequest {
        tier: RetrievalTier::Standard,
        days: 1,
    };
    b.request_retrieval(ObjectKind::DataPack, &slow, standard).unwrap();
    assert_eq!(
        b.archive_state(ObjectKind::DataPack, &slow).unwrap(),
        ArchiveState::Retrieving {
            class: "GLACIER".into()
        }
    );
    // Asking again while it runs is fine too.
    b.request_retrieval(ObjectKind::DataPack, &slow, standard).unwrap();
    let mut polls = 0;
    while b.archive_state(ObjectKind::DataPack, &slow).unwrap() != ArchiveState::Readable {
        polls += 1;
        assert!(polls < 20, "the retrieval never finished");
    }
    assert_eq!(b.read(ObjectKind::DataPack, &slow).unwrap(), data);
}

#[test]
fn racing_writers_of_one_name_leave_exactly_one_winner() {
    for server in [seaweed(), moto()] {
        let Some(s) = server else { return };
        let b = s.backend(&unique("race"), |_| {});
        let results: Vec<(usize, Result<(), BackendError>)> = (0..8usize)
            .into_par_iter()
            .map(|i| {
                (
                    i,
                    b.write(ObjectKind::Snapshot, "same", format!("writer {i}").as_bytes()),
                )
            })
            .collect();
        let winners: Vec<usize> = results.iter().filter(|(_, r)| r.is_ok()).map(|(i, _)| *i).collect();
        assert_eq!(winners.len(), 1, "{} at {}: {results:?}", winners.len(), s.endpoint);
        for (_, r) in &results {
            if let Err(e) = r {
                assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
            }
        }
        assert_eq!(
            b.read(ObjectKind::Snapshot, "same").unwrap(),
            format!("writer {}", winners[0]).as_bytes()
        );
    }
}
