//! A stopped re-chunking copy resumed, and damage in the source failing
//! only the snapshots that need the damaged data.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::tests::{assert_checks, backup_dir, contents, index_copies, init, noise, small_chunks, write_files};
use super::*;
use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, ObjectKind};
use crate::blob::BlobType;
use crate::repository::InitOptions;
use crate::testing::CHEAP_KDF;

/// Bytes of every pack and index object in `storage`: what a copy stored.
fn stored_bytes(storage: &MemoryBackend) -> u64 {
    [ObjectKind::DataPack, ObjectKind::TreePack, ObjectKind::Index]
        .iter()
        .flat_map(|k| storage.list(*k).unwrap())
        .map(|o| o.size)
        .sum()
}

/// Plaintext bytes of the data blobs `repo` indexes.
fn indexed_data_bytes(repo: &Repository) -> u64 {
    let mut seen = HashSet::new();
    let mut sum = 0;
    for o in repo.load_index_files().unwrap() {
        for p in o.file.unwrap().packs.iter().filter(|p| p.blob_type == BlobType::Data) {
            for b in &p.blobs {
                if seen.insert(b.id) {
                    sum += u64::from(b.raw_length);
                }
            }
        }
    }
    sum
}

#[test]
fn a_stopped_rechunking_copy_stores_what_it_cut_and_the_next_run_writes_only_the_rest() {
    let src = init(&Arc::new(MemoryBackend::new()), b"source pw", small_chunks(7));
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    std::fs::write(dir.path().join("sub/more"), noise(3, 2 * 1024 * 1024)).unwrap();
    backup_dir(&src, dir.path(), 1_000);
    let selected = src.list_snapshots().unwrap();

    // The reference: the same copy, never stopped, into a destination made
    // alike (same chunker, same pack size, so the same blobs).
    let full_storage = Arc::new(MemoryBackend::new());
    let full_dst = init(&full_storage, b"destination pw", small_chunks(8));
    let full = copy(&src, &full_dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(full.path, CopyPath::Rechunk);

    // Stopped once half the content was cut and handed to the saver.
    let dst_storage = Arc::new(MemoryBackend::new());
    let dst = init(&dst_storage, b"destination pw", small_chunks(8));
    let cancel = Arc::new(AtomicBool::new(false));
    let at_stop = Arc::new(AtomicU64::new(0));
    let (flag, seen) = (cancel.clone(), at_stop.clone());
    let opts = CopyOptions {
        cancel: Some(cancel.clone()),
        progress: Some(Arc::new(move |p: &CopyProgress| {
            if p.bytes_done * 2 > p.bytes_total && !flag.swap(true, Ordering::Relaxed) {
                seen.store(p.bytes_done, Ordering::Relaxed);
            }
        })),
        ..Default::default()
    };
    let err = copy(&src, &dst, &selected, &opts).unwrap_err();
    assert!(matches!(err, CopyError::Interrupted { copied: 0 }), "{err}");
    assert!(
        dst.list_snapshots().unwrap().is_empty(),
        "no snapshot of an unfinished copy"
    );
    // Everything cut before the stop is stored and indexed, the open pack
    // included (before the fix it was dropped: with 16 MiB packs, nearly
    // all of a 20 MB copy).
    let kept = indexed_data_bytes(&dst);
    let cut = at_stop.load(Ordering::Relaxed);
    assert!(
        kept >= cut,
        "the stopped run indexed {kept} bytes of content, it had cut {cut}"
    );
    let first_blobs = dst.load_index().unwrap().len();
    let first_bytes = stored_bytes(&dst_storage);

    let second = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(second.copied.len(), 1);
    let (all, distinct) = index_copies(&dst);
    assert_eq!(all, distinct, "no blob stored twice");
    // Same file, same chunker, same blobs: the two runs together wrote
    // exactly the blobs of the full copy, none of them twice.
    assert_eq!(
        first_blobs as u64 + second.blobs_written,
        full.blobs_written,
        "blobs of the stopped run + the resumed run = the full copy's"
    );
    assert!(
        second.bytes_written * 10 < full.bytes_written * 6,
        "the resumed run wrote {} of the full copy's {} bytes",
        second.bytes_written,
        full.bytes_written
    );
    // Both runs' bytes add up to the full copy's, up to the extra pack
    // and index headers of more, smaller packs and index objects.
    let both = stored_bytes(&dst_storage);
    let reference = stored_bytes(&full_storage);
    assert!(
        both <= reference + reference / 50,
        "both runs stored {both} bytes ({first_bytes} by the first), a full copy {reference}"
    );
    let snap = &selected[0].1;
    let copied = dst.load_snapshot(&second.copied[0].destination).unwrap();
    assert_eq!(contents(&dst, &copied.tree), contents(&src, &snap.tree));
    assert_checks(&dst);
}

/// Three snapshots; the data pack holding only the second one's new file is
/// damaged (one byte flipped) in the source. Returns the source, the
/// snapshots oldest first and the damaged file's name.
fn three_with_one_damaged() -> (Repository, Vec<(SnapshotId, Snapshot)>, &'static str) {
    let storage = Arc::new(MemoryBackend::new());
    let src = init(&storage, b"source pw", small_chunks(7));
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    backup_dir(&src, dir.path(), 1_000);
    let before: HashSet<String> = storage
        .list(ObjectKind::DataPack)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    std::fs::write(dir.path().join("only-in-second"), noise(40, 300 * 1024)).unwrap();
    backup_dir(&src, dir.path(), 2_000);
    let new: Vec<String> = storage
        .list(ObjectKind::DataPack)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "the second backup stored one data pack: its new file");
    storage.tamper(ObjectKind::DataPack, &new[0], |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
    });
    std::fs::remove_file(dir.path().join("only-in-second")).unwrap();
    std::fs::write(dir.path().join("only-in-third"), noise(41, 200 * 1024)).unwrap();
    backup_dir(&src, dir.path(), 3_000);
    let selected = src.list_snapshots().unwrap();
    (src, selected, "only-in-second")
}

/// Copies the three snapshots into the destination `make_dst` makes for
/// the source: the intact two are copied and restore, the damaged one is
/// named, with its file, and has no copy.
fn assert_copies_the_intact_and_names_the_damaged(make_dst: impl FnOnce(&Repository) -> Repository, path: CopyPath) {
    let (src, mut selected, damaged_file) = three_with_one_damaged();
    selected.sort_by_key(|(_, s)| s.time_ns);
    let dst = make_dst(&src);
    let report = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(report.path, path);
    let copied: Vec<SnapshotId> = report.copied.iter().map(|c| c.source).collect();
    assert_eq!(
        copied,
        [selected[0].0, selected[2].0],
        "the intact snapshots are copied"
    );
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].source, selected[1].0);
    assert!(
        report.failed[0].reason.contains(damaged_file),
        "the reason names the file: {}",
        report.failed[0].reason
    );
    let err = report.damage_error().unwrap();
    assert_eq!(err.kind(), crate::error::ErrorKind::Damaged);
    // No destination snapshot of the damaged one; the others restore.
    let snaps = dst.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 2, "no snapshot of the damaged one");
    for c in &report.copied {
        let (_, s) = snaps.iter().find(|(id, _)| *id == c.destination).unwrap();
        let (_, orig) = selected.iter().find(|(id, _)| *id == c.source).unwrap();
        assert_eq!(contents(&dst, &s.tree), contents(&src, &orig.tree));
    }
    assert_checks(&dst);
    // Run again: the damaged snapshot is named again, nothing else is done.
    let again = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!((again.copied.len(), again.skipped, again.failed.len()), (0, 2, 1));
}

#[test]
fn a_damaged_source_pack_fails_only_its_snapshot_on_the_fast_path() {
    let make_dst = |src: &Repository| {
        let mut opts = InitOptions {
            kdf: CHEAP_KDF,
            pack_size: 1024 * 1024,
            ..Default::default()
        };
        opts.dedup_like(src);
        let dst = Repository::init(Arc::new(MemoryBackend::new()), b"destination pw", opts).unwrap();
        assert!(src.same_blob_ids(&dst));
        dst
    };
    assert_copies_the_intact_and_names_the_damaged(make_dst, CopyPath::Fast);
}

#[test]
fn a_damaged_source_pack_fails_only_its_snapshot_on_the_rechunk_path() {
    let make_dst = |_: &Repository| init(&Arc::new(MemoryBackend::new()), b"destination pw", small_chunks(8));
    assert_copies_the_intact_and_names_the_damaged(make_dst, CopyPath::Rechunk);
}
