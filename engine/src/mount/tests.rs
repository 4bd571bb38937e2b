//! The mount's operations without a kernel: lookups, listings, reads,
//! links and refreshes against an in-memory repository. The real FUSE
//! mount is tested end to end (tests/tests/e2e/mount.rs).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{Errno, FileAttr, FileType};

use super::fs::MountFs;
use super::inodes::ROOT;
use super::view::Views;
use crate::backend::ObjectKind;
use crate::backup::{backup, BackupOptions, BackupSource};
use crate::repository::Repository;
use crate::select::SnapshotFilter;
use crate::testing::{memory_repo, noise};

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn back_up(repo: &Repository, src: &Path, host: &str, tags: &[&str], time_ns: Option<i64>) {
    let opts = BackupOptions {
        host: Some(host.into()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        time_ns,
        ..Default::default()
    };
    backup(repo, BackupSource::Paths(vec![src.to_path_buf()]), &opts).unwrap();
}

fn mounted(repo: Repository, refresh: Duration) -> MountFs {
    let repo = Arc::new(repo);
    let views = Views::open(repo.clone(), SnapshotFilter::default(), refresh).unwrap();
    MountFs::new(repo, views, 1 << 20)
}

/// Looks up each component of `path` from the root.
fn at(fs: &MountFs, path: &str) -> Result<FileAttr, Errno> {
    let mut attr = fs.getattr(ROOT)?;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        attr = fs.lookup(attr.ino.0, part.as_bytes())?;
    }
    Ok(attr)
}

fn names(fs: &MountFs, ino: u64) -> Vec<(String, u64, FileType)> {
    let mut out = Vec::new();
    fs.read_dir(ino, 0, &mut |child, _, kind, name| {
        out.push((String::from_utf8_lossy(name).into_owned(), child, kind));
        false
    })
    .unwrap();
    out
}

/// The folder `snapshots/latest` points at.
fn latest_name(fs: &MountFs) -> String {
    String::from_utf8(fs.readlink(at(fs, "snapshots/latest").unwrap().ino.0).unwrap()).unwrap()
}

/// The data packs the storage lists.
fn data_packs(backend: &Arc<dyn crate::backend::Backend>) -> Vec<String> {
    backend
        .list(ObjectKind::DataPack)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

fn read_all(fs: &MountFs, ino: u64, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let part = fs.read(ino, out.len() as u64, 128 * 1024).unwrap();
        assert!(!part.is_empty(), "a read before the end returned nothing");
        out.extend_from_slice(&part);
    }
    out
}

#[test]
fn files_folders_links_and_hard_links_read_as_recorded() {
    let repo = memory_repo();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let big = noise(3_000_000, 7);
    write(&src.join("data/big.bin"), &big);
    write(&src.join("a.txt"), b"hello\n");
    fs::hard_link(src.join("a.txt"), src.join("data/again.txt")).unwrap();
    symlink("../a.txt", src.join("data/link")).unwrap();
    back_up(&repo, &src, "h1", &["night"], None);
    let fs = mounted(repo, Duration::from_secs(60));

    let snaps = names(&fs, at(&fs, "snapshots").unwrap().ino.0);
    let listed: Vec<&str> = snaps.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(&listed[..2], [".", ".."]);
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed[3], "latest");
    let latest = at(&fs, "snapshots/latest").unwrap();
    assert_eq!(latest.kind, FileType::Symlink);
    assert_eq!(fs.readlink(latest.ino.0).unwrap(), listed[2].as_bytes());

    let base = format!("snapshots/{}{}", listed[2], src.display());
    let f = at(&fs, &format!("{base}/data/big.bin")).unwrap();
    assert_eq!((f.kind, f.size), (FileType::RegularFile, big.len() as u64));
    assert_eq!(read_all(&fs, f.ino.0, f.size), big);
    // Reads across blob boundaries and past the end.
    for (off, len) in [(0u64, 1u32), (1_048_570, 20_000), (2_999_990, 100), (3_000_000, 10)] {
        let got = fs.read(f.ino.0, off, len).unwrap();
        let end = (off as usize + len as usize).min(big.len());
        assert_eq!(got, big[(off as usize).min(end)..end], "read {off}+{len}");
    }

    let a = at(&fs, &format!("{base}/a.txt")).unwrap();
    let again = at(&fs, &format!("{base}/data/again.txt")).unwrap();
    assert_eq!(a.ino, again.ino, "hard links share one inode number");
    let meta = fs::metadata(src.join("a.txt")).unwrap();
    assert_eq!((a.nlink, u32::from(a.perm)), (2, meta.permissions().mode() & 0o7777));
    assert_eq!(a.mtime, meta.modified().unwrap());
    let link = at(&fs, &format!("{base}/data/link")).unwrap();
    assert_eq!(fs.readlink(link.ino.0).unwrap(), b"../a.txt");

    // readdir gives the numbers lookup gives.
    let data = at(&fs, &format!("{base}/data")).unwrap();
    for (name, ino, _) in names(&fs, data.ino.0).into_iter().skip(2) {
        assert_eq!(at(&fs, &format!("{base}/data/{name}")).unwrap().ino.0, ino, "{name}");
    }
    assert_eq!(at(&fs, &format!("{base}/nothing")).unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.open(f.ino.0, true).unwrap_err(), Errno::EROFS);

    // Grouped views of the same snapshot.
    assert_eq!(
        at(&fs, &format!("hosts/h1/{}{}/a.txt", listed[2], src.display()))
            .unwrap()
            .size,
        6
    );
    assert_eq!(at(&fs, "tags/night/latest").unwrap().kind, FileType::Symlink);
    assert_eq!(at(&fs, "tags/day").unwrap_err(), Errno::ENOENT);
}

#[test]
fn forgotten_entries_leave_the_table() {
    let repo = memory_repo();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        write(&dir.path().join(format!("f{i}")), format!("{i}").as_bytes());
    }
    back_up(&repo, dir.path(), "h", &[], None);
    let fs = mounted(repo, Duration::from_secs(60));
    let before = fs.held();
    let mut looked = Vec::new();
    let name = latest_name(&fs);
    let folder = format!("snapshots/{name}{}", dir.path().display());
    let parent = at(&fs, &folder).unwrap().ino.0;
    for i in 0..50 {
        looked.push(fs.lookup(parent, format!("f{i}").as_bytes()).unwrap().ino.0);
    }
    assert!(fs.held() >= before + 50);
    for ino in looked {
        fs.forget(ino, 1);
    }
    let held = fs.held();
    assert!(held < before + 50, "forgotten files stay held: {held} (from {before})");
}

#[test]
fn same_second_snapshots_get_their_ids_and_new_ones_appear() {
    let repo = memory_repo();
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("x"), b"x");
    let t = 1_700_000_000_000_000_000i64;
    back_up(&repo, dir.path(), "h", &[], Some(t));
    back_up(&repo, dir.path(), "h", &[], Some(t + 1000));
    let ids: Vec<String> = repo
        .list_snapshots()
        .unwrap()
        .iter()
        .map(|(id, _)| id.short())
        .collect();
    let repo_backend = repo.backend().clone();
    let fs = mounted(repo, Duration::ZERO);
    let listed: Vec<String> = names(&fs, at(&fs, "snapshots").unwrap().ino.0)
        .into_iter()
        .map(|(n, ..)| n)
        .skip(2)
        .collect();
    let mut want: Vec<String> = ids.iter().map(|id| format!("2023-11-14T22:13:20Z-{id}")).collect();
    want.push("latest".into());
    assert_eq!(listed, want);
    // An id prefix links to its folder without being listed.
    let by_id = at(&fs, &format!("snapshots/{}", ids[0])).unwrap();
    assert_eq!(fs.readlink(by_id.ino.0).unwrap(), want[0].as_bytes());

    // A snapshot written while mounted shows at the next listing.
    let repo2 = Repository::open(repo_backend.clone(), b"pw").unwrap();
    back_up(&repo2, dir.path(), "other", &["late"], Some(t + 5_000_000_000));
    let listed: Vec<String> = names(&fs, at(&fs, "snapshots").unwrap().ino.0)
        .into_iter()
        .map(|(n, ..)| n)
        .collect();
    assert!(listed.contains(&"2023-11-14T22:13:25Z".to_string()), "{listed:?}");
    let latest = at(&fs, "snapshots/latest").unwrap();
    assert_eq!(fs.readlink(latest.ino.0).unwrap(), b"2023-11-14T22:13:25Z");
    assert!(at(&fs, "hosts/other/latest").is_ok());
    assert!(at(&fs, "tags/late/2023-11-14T22:13:25Z").is_ok());

    // A forgotten snapshot goes.
    for o in repo_backend.list(ObjectKind::Snapshot).unwrap() {
        repo_backend.remove(ObjectKind::Snapshot, &o.name).unwrap();
    }
    assert_eq!(names(&fs, at(&fs, "snapshots").unwrap().ino.0).len(), 2);
    assert_eq!(at(&fs, "snapshots/latest").unwrap_err(), Errno::ENOENT);
}

#[test]
fn a_lost_pack_fails_only_the_reads_that_need_it() {
    let repo = memory_repo();
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("big"), &noise(2_000_000, 3));
    back_up(&repo, dir.path(), "h", &[], None);
    let backend = repo.backend().clone();
    for o in backend.list(ObjectKind::DataPack).unwrap() {
        backend.remove(ObjectKind::DataPack, &o.name).unwrap();
    }
    let fs = mounted(repo, Duration::from_secs(60));
    let name = latest_name(&fs);
    let folder = format!("snapshots/{name}{}", dir.path().display());
    // Folders come from tree packs, which are all there.
    let listed = names(&fs, at(&fs, &folder).unwrap().ino.0);
    assert_eq!(
        listed.iter().map(|(n, ..)| n.as_str()).collect::<Vec<_>>(),
        [".", "..", "big"]
    );
    let f = at(&fs, &format!("{folder}/big")).unwrap();
    assert_eq!(f.size, 2_000_000);
    assert_eq!(fs.read(f.ino.0, 0, 4096).unwrap_err(), Errno::EIO);
}

#[test]
fn a_prune_that_repacks_while_mounted_does_not_break_reads() {
    let repo = memory_repo();
    let dir = tempfile::tempdir().unwrap();
    let x = noise(400_000, 11);
    write(&dir.path().join("x"), &x);
    write(&dir.path().join("y"), &noise(400_000, 12));
    back_up(&repo, dir.path(), "h", &[], None);
    let first = repo.list_snapshots().unwrap()[0].0;
    let backend = repo.backend().clone();
    let fs = mounted(
        Repository::open(backend.clone(), b"pw").unwrap(),
        Duration::from_secs(60),
    );
    let name = latest_name(&fs);
    let file = at(&fs, &format!("snapshots/{name}{}/x", dir.path().display())).unwrap();
    let packs_before: Vec<String> = data_packs(&backend);

    // x alone in a new snapshot; the first goes; a prune repacks x's pack.
    fs::remove_file(dir.path().join("y")).unwrap();
    back_up(&repo, dir.path(), "h", &[], None);
    crate::forget::forget_snapshots(&repo, &[first]).unwrap();
    let opts = crate::prune::PruneOptions {
        max_unused: crate::prune::MaxUnused::Percent(0.0),
        instant_delete: true,
        ..Default::default()
    };
    crate::prune::prune(&repo, &opts).unwrap();
    let packs_after: Vec<String> = data_packs(&backend);
    assert!(
        packs_before.iter().all(|p| !packs_after.contains(p)),
        "the prune repacked nothing"
    );

    // The file looked up before the prune reads from its new pack.
    assert_eq!(read_all(&fs, file.ino.0, file.size), x);
}

#[test]
fn a_rewritten_snapshot_of_the_same_time_is_another_folder() {
    let repo = memory_repo();
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("secret"), b"erase me");
    let t = 1_700_000_000_000_000_000i64;
    back_up(&repo, dir.path(), "h", &[], Some(t));
    let backend = repo.backend().clone();
    let fs = mounted(Repository::open(backend.clone(), b"pw").unwrap(), Duration::ZERO);
    let folder = "snapshots/2023-11-14T22:13:20Z";
    let before = at(&fs, folder).unwrap().ino;
    assert!(at(&fs, &format!("{folder}{}/secret", dir.path().display())).is_ok());

    // What `rewrite --forget` leaves: another snapshot of the same time.
    fs::remove_file(dir.path().join("secret")).unwrap();
    write(&dir.path().join("kept"), b"kept");
    let old = repo.list_snapshots().unwrap()[0].0;
    back_up(&repo, dir.path(), "h", &[], Some(t));
    repo.remove_snapshot(&old).unwrap();
    let after = at(&fs, folder).unwrap().ino;
    assert_ne!(
        before, after,
        "the rewritten snapshot reuses the original's folder number"
    );
    assert_eq!(
        at(&fs, &format!("{folder}{}/secret", dir.path().display())).unwrap_err(),
        Errno::ENOENT
    );
    assert!(at(&fs, &format!("{folder}{}/kept", dir.path().display())).is_ok());
}
