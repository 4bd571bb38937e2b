use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, ObjectKind};
use crate::backup::{backup, BackupOptions, BackupSource, ParentChoice};
use crate::check::{check, CheckOptions};
use crate::chunker::ChunkerParams;
use crate::id::TreeId;
use crate::repository::InitOptions;
use crate::testing::CHEAP_KDF;
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// Small chunks and 1 MiB packs, so a few MiB of files make several packs.
pub(super) fn small_chunks(seed: u64) -> ChunkerParams {
    ChunkerParams {
        seed,
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 256 * 1024,
    }
}

pub(super) fn init(backend: &Arc<MemoryBackend>, password: &[u8], chunker: ChunkerParams) -> Repository {
    let opts = InitOptions {
        kdf: CHEAP_KDF,
        chunker: Some(chunker),
        pack_size: 1024 * 1024,
        ..Default::default()
    };
    Repository::init(backend.clone(), password, opts).unwrap()
}

/// A source and a destination made like it (`init --chunker-params-from`),
/// with different passwords, and the destination's storage.
pub(super) fn pair() -> (Repository, Repository, Arc<MemoryBackend>) {
    let src = init(&Arc::new(MemoryBackend::new()), b"source pw", small_chunks(7));
    let dst_storage = Arc::new(MemoryBackend::new());
    let mut opts = InitOptions {
        kdf: CHEAP_KDF,
        pack_size: 1024 * 1024,
        ..Default::default()
    };
    opts.dedup_like(&src);
    let dst = Repository::init(dst_storage.clone(), b"destination pw", opts).unwrap();
    assert!(src.same_blob_ids(&dst));
    (src, dst, dst_storage)
}

/// Deterministic bytes that do not compress.
pub(super) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Writes a tree of files (a few MiB in all) under `dir`, varied by `gen`.
pub(super) fn write_files(dir: &Path, gen: u64) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("big"), noise(1, 3 * 1024 * 1024)).unwrap();
    std::fs::write(dir.join("sub/medium"), noise(2, 700 * 1024)).unwrap();
    std::fs::write(dir.join("sub/deeper/changes"), noise(100 + gen, 900 * 1024)).unwrap();
    std::fs::write(dir.join("sub/small"), format!("generation {gen}")).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
}

pub(super) fn backup_dir(repo: &Repository, dir: &Path, time_ns: i64) -> SnapshotId {
    let opts = BackupOptions {
        time_ns: Some(time_ns),
        parent: ParentChoice::Auto,
        ..Default::default()
    };
    backup(repo, BackupSource::Paths(vec![dir.to_path_buf()]), &opts)
        .unwrap()
        .id
        .unwrap()
}

/// Every file below `root` with its contents, read through `repo`'s index.
pub(super) fn contents(repo: &Repository, root: &TreeId) -> BTreeMap<PathBuf, Vec<u8>> {
    struct Files<'a> {
        repo: &'a Repository,
        index: &'a crate::index::Index,
        out: BTreeMap<PathBuf, Vec<u8>>,
    }
    impl Visitor for Files<'_> {
        type Error = RepositoryError;
        fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, RepositoryError> {
            if node.kind == NodeKind::File {
                let mut data = Vec::new();
                for c in &node.content {
                    data.extend(self.repo.read_blob(self.index, &c.id)?);
                }
                self.out.insert(path.to_path_buf(), data);
            }
            Ok(Descend::Yes)
        }
    }
    let index = repo.load_index().unwrap();
    let mut v = Files {
        repo,
        index: &index,
        out: BTreeMap::new(),
    };
    tree::walk(repo, &index, root, Path::new("/"), &mut v).unwrap();
    v.out
}

/// The files of `dir` on disk, by their absolute path.
pub(super) fn on_disk(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

pub(super) fn object_names(storage: &MemoryBackend) -> Vec<(ObjectKind, String)> {
    let mut out = Vec::new();
    for kind in [
        ObjectKind::Snapshot,
        ObjectKind::Index,
        ObjectKind::DataPack,
        ObjectKind::TreePack,
        ObjectKind::Key,
        ObjectKind::Config,
    ] {
        for o in storage.list(kind).unwrap() {
            out.push((kind, o.name));
        }
    }
    out.sort_by(|a, b| (a.0.prefix(), &a.1).cmp(&(b.0.prefix(), &b.1)));
    out
}

/// (blob copies listed by all index objects, distinct blobs).
pub(super) fn index_copies(repo: &Repository) -> (usize, usize) {
    let mut all = 0;
    let mut distinct = HashSet::new();
    for o in repo.load_index_files().unwrap() {
        for p in o.file.unwrap().packs {
            all += p.blobs.len();
            distinct.extend(p.blobs.iter().map(|b| b.id));
        }
    }
    (all, distinct.len())
}

pub(super) fn assert_checks(repo: &Repository) {
    let report = check(
        repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "check failed: {:?}", report.errors);
}

#[test]
fn fast_copy_restores_identical_contents_and_records_origin_and_parent() {
    let (src, dst, _) = pair();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    let first = backup_dir(&src, dir.path(), 1_000);
    write_files(dir.path(), 2);
    let second = backup_dir(&src, dir.path(), 2_000);
    let selected = src.list_snapshots().unwrap();

    let report = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(report.path, CopyPath::Fast);
    assert_eq!(report.skipped, 0);
    let sources: Vec<SnapshotId> = report.copied.iter().map(|c| c.source).collect();
    assert_eq!(sources, [first, second], "oldest first");
    assert!(report.packs_read > 0 && report.blobs_written > 0 && report.bytes_written > 0);
    assert_eq!(report.blobs_read, report.blobs_written);
    assert_eq!(report.pending_packs, 0);

    let src_id = src.config().repository_id;
    let dst_of = |s: SnapshotId| report.copied.iter().find(|c| c.source == s).unwrap().destination;
    for (id, snap) in &selected {
        let copy = dst.load_snapshot(&dst_of(*id)).unwrap();
        assert_eq!(
            copy.copied_from,
            Some(CopyOrigin {
                repository: src_id,
                snapshot: *id
            })
        );
        assert_eq!(copy.tree, snap.tree, "trees keep their ids on the fast path");
        assert_eq!(
            (copy.time_ns, &copy.host, &copy.paths),
            (snap.time_ns, &snap.host, &snap.paths)
        );
        // The copy's contents, read through the destination alone, are the
        // source's and the files' as they were at that backup.
        assert_eq!(contents(&dst, &copy.tree), contents(&src, &snap.tree));
    }
    assert_eq!(dst.load_snapshot(&dst_of(first)).unwrap().parent, None);
    let second_copy = dst.load_snapshot(&dst_of(second)).unwrap();
    assert_eq!(selected[1].1.parent, Some(first), "the backup chose a parent");
    assert_eq!(second_copy.parent, Some(dst_of(first)), "parent mapped to its copy");
    let latest = contents(&dst, &second_copy.tree);
    assert_eq!(latest.len(), on_disk(dir.path()).len());
    for (path, data) in on_disk(dir.path()) {
        assert_eq!(latest.get(&path), Some(&data), "{}", path.display());
    }
    assert_checks(&dst);
    let (all, distinct) = index_copies(&dst);
    assert_eq!(all, distinct, "no blob stored twice");
}

#[test]
fn second_copy_reads_no_pack_and_writes_nothing_then_copies_only_the_new_snapshot() {
    let (src, dst, dst_storage) = pair();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    let first = backup_dir(&src, dir.path(), 1_000);
    let selected = src.list_snapshots().unwrap();
    let one = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(one.copied.len(), 1);

    let before = object_names(&dst_storage);
    let again = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert!(again.copied.is_empty());
    assert_eq!(again.skipped, 1);
    assert_eq!((again.packs_read, again.blobs_read, again.bytes_read), (0, 0, 0));
    assert_eq!((again.blobs_written, again.bytes_written), (0, 0));
    assert_eq!(object_names(&dst_storage), before, "the destination is unchanged");

    // One new backup: only it is copied, with only what changed.
    write_files(dir.path(), 2);
    let second = backup_dir(&src, dir.path(), 2_000);
    let selected = src.list_snapshots().unwrap();
    let third = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(third.skipped, 1);
    assert_eq!(third.copied.len(), 1);
    assert_eq!(third.copied[0].source, second);
    assert!(
        third.bytes_read < one.bytes_read,
        "only the changed file's blobs and trees are read ({} of {})",
        third.bytes_read,
        one.bytes_read
    );
    let copy2 = dst.load_snapshot(&third.copied[0].destination).unwrap();
    assert_eq!(copy2.parent, Some(one.copied[0].destination));
    assert_eq!(one.copied[0].source, first);
    assert_eq!(contents(&dst, &copy2.tree), on_disk(dir.path()));
    assert_checks(&dst);
}

#[test]
fn interrupted_copy_resumes_without_storing_anything_twice() {
    let (src, dst, dst_storage) = pair();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    backup_dir(&src, dir.path(), 1_000);
    write_files(dir.path(), 2);
    backup_dir(&src, dir.path(), 2_000);
    let selected = src.list_snapshots().unwrap();

    // Stop once more than half the source is read, after the destination
    // stored a data pack (the reader waits for it, so the stop is never
    // before anything was stored).
    let cancel = Arc::new(AtomicBool::new(false));
    let (flag, storage) = (cancel.clone(), dst_storage.clone());
    let opts = CopyOptions {
        cancel: Some(cancel.clone()),
        progress: Some(Arc::new(move |p: &CopyProgress| {
            if p.bytes_done * 2 > p.bytes_total && !flag.load(Ordering::Relaxed) {
                let deadline = Instant::now() + Duration::from_secs(20);
                while storage.list(ObjectKind::DataPack).unwrap().is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                flag.store(true, Ordering::Relaxed);
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
    let stored_after_stop = dst.load_index().unwrap().len();
    assert!(stored_after_stop > 0, "the packs stored before the stop are indexed");
    assert_eq!(
        dst_storage.list(ObjectKind::DataPack).unwrap().len() + dst_storage.list(ObjectKind::TreePack).unwrap().len(),
        dst.load_index().unwrap().packs().len(),
        "every stored pack is indexed"
    );

    let resumed = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(resumed.copied.len(), 2);
    let (all, distinct) = index_copies(&dst);
    assert_eq!(all, distinct, "no blob stored twice");
    // Everything the snapshots need: what the first run stored plus what
    // the second did.
    assert_eq!(distinct, stored_after_stop + resumed.blobs_written as usize);
    for (id, snap) in &selected {
        let c = resumed.copied.iter().find(|c| c.source == *id).unwrap();
        let copy = dst.load_snapshot(&c.destination).unwrap();
        assert_eq!(contents(&dst, &copy.tree), contents(&src, &snap.tree));
    }
    assert_checks(&dst);
}

#[test]
fn dry_run_reports_the_plan_and_writes_nothing() {
    let (src, dst, dst_storage) = pair();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    let first = backup_dir(&src, dir.path(), 1_000);
    let selected = src.list_snapshots().unwrap();
    let before = object_names(&dst_storage);
    let opts = CopyOptions {
        dry_run: true,
        ..Default::default()
    };
    let plan = copy(&src, &dst, &selected, &opts).unwrap();
    assert!(plan.dry_run);
    assert_eq!(object_names(&dst_storage), before, "a dry run writes nothing");
    assert_eq!(plan.copied.iter().map(|c| c.source).collect::<Vec<_>>(), [first]);
    assert_eq!(plan.packs_read, 0);
    assert!(plan.bytes_read > 0 && plan.blobs_written > 0);

    // The real copy writes what the plan said.
    let real = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(real.blobs_written, plan.blobs_written);
    assert_eq!(real.bytes_read, plan.bytes_read);
}

#[test]
fn only_copies_of_this_source_count_as_already_copied() {
    let (src, dst, _) = pair();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    backup_dir(&src, dir.path(), 1_000);
    let selected = src.list_snapshots().unwrap();
    // A destination snapshot copied from another repository's snapshot of
    // the same id is not this source's copy.
    let mut foreign = selected[0].1.clone();
    foreign.copied_from = Some(CopyOrigin {
        repository: crate::id::RepositoryId::from_bytes([9; 32]),
        snapshot: selected[0].0,
    });
    dst.save_snapshot(&foreign).unwrap();
    let nothing = copy(&src, &dst, &[], &CopyOptions::default()).unwrap();
    assert!(nothing.copied.is_empty() && nothing.skipped == 0);
    let report = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!((report.copied.len(), report.skipped), (1, 0));
    // Selecting the same snapshot twice copies it once.
    let twice = [selected[0].clone(), selected[0].clone()];
    let again = copy(&src, &dst, &twice, &CopyOptions::default()).unwrap();
    assert_eq!((again.copied.len(), again.skipped), (0, 1));
}

#[test]
fn other_chunker_takes_the_rechunk_path_and_reuses_the_prior_copy() {
    let src = init(&Arc::new(MemoryBackend::new()), b"source pw", small_chunks(7));
    let dst = init(&Arc::new(MemoryBackend::new()), b"destination pw", small_chunks(8));
    assert!(!src.same_blob_ids(&dst));
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    let first = backup_dir(&src, dir.path(), 1_000);
    let selected = src.list_snapshots().unwrap();
    let one = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(one.path, CopyPath::Rechunk);
    assert_eq!(one.copied.len(), 1);
    assert_eq!(one.copied[0].source, first);
    let copy1 = dst.load_snapshot(&one.copied[0].destination).unwrap();
    assert_ne!(
        copy1.tree, selected[0].1.tree,
        "trees are rebuilt with the destination's blob ids"
    );
    assert_eq!(contents(&dst, &copy1.tree), contents(&src, &selected[0].1.tree));
    assert_eq!(copy1.copied_from.map(|o| o.snapshot), Some(first));

    // A second backup changes one file: the next copy reads only it.
    write_files(dir.path(), 2);
    backup_dir(&src, dir.path(), 2_000);
    let selected = src.list_snapshots().unwrap();
    let two = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!((two.copied.len(), two.skipped), (1, 1));
    assert!(
        two.bytes_read < one.bytes_read / 2,
        "the prior copy's unchanged files are reused ({} of {} bytes read)",
        two.bytes_read,
        one.bytes_read
    );
    let copy2 = dst.load_snapshot(&two.copied[0].destination).unwrap();
    assert_eq!(copy2.parent, Some(one.copied[0].destination));
    assert_eq!(contents(&dst, &copy2.tree), on_disk(dir.path()));
    assert_checks(&dst);
}

/// A memory backend whose data packs sit in GLACIER once `frozen`: they
/// refuse reads until their retrieval was requested and `thaw` ran.
#[derive(Debug, Default)]
struct Glacier {
    inner: MemoryBackend,
    frozen: AtomicBool,
    requested: std::sync::Mutex<Vec<String>>,
    retrieved: std::sync::Mutex<HashSet<String>>,
}

impl Glacier {
    fn cold(&self, kind: ObjectKind, name: &str) -> bool {
        kind == ObjectKind::DataPack
            && self.frozen.load(Ordering::Relaxed)
            && !self.retrieved.lock().unwrap().contains(name)
    }

    fn refuse(&self, kind: ObjectKind, name: &str) -> Result<(), crate::backend::BackendError> {
        if self.cold(kind, name) {
            return Err(crate::backend::BackendError::Archived { path: kind.path(name) });
        }
        Ok(())
    }

    /// Every requested retrieval finishes.
    fn thaw(&self) {
        let done: Vec<String> = self.requested.lock().unwrap().clone();
        self.retrieved.lock().unwrap().extend(done);
    }
}

impl Backend for Glacier {
    crate::backend::forward!(inner: transfers, location, create, write, write_bytes, remove, stat, remove_temporaries, extend_retention);

    fn list(&self, kind: ObjectKind) -> Result<Vec<crate::backend::ObjectInfo>, crate::backend::BackendError> {
        let mut out = self.inner.list(kind)?;
        for o in &mut out {
            if self.cold(kind, &o.name) {
                o.storage_class = Some("GLACIER".into());
            }
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, crate::backend::BackendError> {
        self.refuse(kind, name)?;
        self.inner.read(kind, name)
    }
    crate::backend::read_into_by_read!();

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, crate::backend::BackendError> {
        self.refuse(kind, name)?;
        self.inner.read_range(kind, name, offset, len)
    }

    fn archive_state(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<crate::backend::ArchiveState, crate::backend::BackendError> {
        use crate::backend::ArchiveState;
        if !self.cold(kind, name) {
            return Ok(ArchiveState::Readable);
        }
        let class = "GLACIER".to_string();
        if self.requested.lock().unwrap().iter().any(|n| n == name) {
            Ok(ArchiveState::Retrieving { class })
        } else {
            Ok(ArchiveState::Archived { class })
        }
    }

    fn request_retrieval(
        &self,
        kind: ObjectKind,
        name: &str,
        _how: crate::backend::RetrievalRequest,
    ) -> Result<(), crate::backend::BackendError> {
        assert_eq!(kind, ObjectKind::DataPack);
        self.requested.lock().unwrap().push(name.to_string());
        Ok(())
    }
}

#[test]
fn archived_source_packs_are_requested_once_and_their_snapshot_waits_for_them() {
    let storage = Arc::new(Glacier::default());
    let opts = InitOptions {
        kdf: CHEAP_KDF,
        chunker: Some(small_chunks(7)),
        pack_size: 1024 * 1024,
        ..Default::default()
    };
    let src = Repository::init(storage.clone(), b"source pw", opts).unwrap();
    let dst_storage = Arc::new(MemoryBackend::new());
    let mut dst_opts = InitOptions {
        kdf: CHEAP_KDF,
        pack_size: 1024 * 1024,
        ..Default::default()
    };
    dst_opts.dedup_like(&src);
    let dst = Repository::init(dst_storage.clone(), b"destination pw", dst_opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), 1);
    let first = backup_dir(&src, dir.path(), 1_000);
    let selected = src.list_snapshots().unwrap();
    storage.frozen.store(true, Ordering::Relaxed);
    let data_packs = storage.inner.list(ObjectKind::DataPack).unwrap().len();

    // A dry run says what must be retrieved and requests nothing.
    let dry = CopyOptions {
        dry_run: true,
        ..Default::default()
    };
    let plan = copy(&src, &dst, &selected, &dry).unwrap();
    assert_eq!(plan.pending_packs, data_packs);
    assert_eq!(plan.retrieval.as_ref().map(|r| r.archived), Some(data_packs));
    assert!(plan.copied.is_empty() && plan.waiting == 1);
    assert!(
        storage.requested.lock().unwrap().is_empty(),
        "a dry run requests no retrieval"
    );

    // Without waiting: every needed pack requested, no snapshot written.
    let first_run = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(first_run.pending_packs, data_packs);
    assert_eq!((first_run.copied.len(), first_run.waiting), (0, 1));
    assert_eq!(storage.requested.lock().unwrap().len(), data_packs);
    let err = first_run.pending_error(&CopyOptions::default()).unwrap();
    assert_eq!(
        crate::error::ErrorKind::of(&err),
        Some(crate::error::ErrorKind::RetrievalPending)
    );
    assert!(
        dst.list_snapshots().unwrap().is_empty(),
        "no snapshot whose data is pending"
    );

    // Run again before the retrievals finish: nothing is requested twice.
    let second_run = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(second_run.pending_packs, data_packs);
    assert_eq!(
        second_run.retrieval.as_ref().map(|r| r.already_in_progress),
        Some(data_packs)
    );
    assert_eq!(storage.requested.lock().unwrap().len(), data_packs);

    // Once readable, the copy completes.
    storage.thaw();
    let done = copy(&src, &dst, &selected, &CopyOptions::default()).unwrap();
    assert_eq!(done.pending_packs, 0);
    assert_eq!(done.copied.len(), 1);
    assert_eq!(done.copied[0].source, first);
    assert!(done.pending_error(&CopyOptions::default()).is_none());
    assert_eq!(storage.requested.lock().unwrap().len(), data_packs);
    let copy1 = dst.load_snapshot(&done.copied[0].destination).unwrap();
    assert_eq!(contents(&dst, &copy1.tree), on_disk(dir.path()));
    assert_checks(&dst);
}
