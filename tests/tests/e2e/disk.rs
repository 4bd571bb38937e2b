//! Full disks: a repository, or a restore target, on a 4 MiB tmpfs that the
//! data does not fit in. The command fails with a clear error (the path and
//! "No space left on device"), and the repository stays consistent.
//!
//! Mounting needs root (CI runs as root). Where `mount` is refused these
//! tests fail, saying so, unless `CAIRN_SKIP_MOUNT=1`, which skips them
//! with a loud SKIPPED notice.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::crash::{assert_check_passes, assert_restores_exactly, tmp_files};
use crate::util::*;

/// A tmpfs mounted for a test; unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`4m`) at `dir` (created); `None` (after a
    /// loud notice) when mounting is impossible and `CAIRN_SKIP_MOUNT=1`.
    fn mount(dir: &Path, size: &str, test: &str) -> Option<Tmpfs> {
        Self::mount_fs("tmpfs", &["-o", &format!("size={size}")], dir, test)
    }

    /// Mounts a memory file system of type `fs` (`tmpfs`, `ramfs`) with
    /// `options` at `dir`; `None` as for [`Tmpfs::mount`].
    fn mount_fs(fs: &str, options: &[&str], dir: &Path, test: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", fs])
            .args(options)
            .arg(fs)
            .arg(dir)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir: dir.to_path_buf() }),
            Ok(o) => format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => e.to_string(),
        };
        if std::env::var_os("CAIRN_SKIP_MOUNT").is_some_and(|v| v == "1") {
            eprintln!("\n*** SKIPPED {test}: cannot mount a tmpfs ({why}); CAIRN_SKIP_MOUNT=1 ***\n");
            return None;
        }
        panic!(
            "{test} needs to mount a small tmpfs (as root) and could not: {why}. \
             Run as root, or set CAIRN_SKIP_MOUNT=1 to skip it (loudly)."
        );
    }

    /// Gives it `size` (`64m`) without touching what it holds.
    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("running mount");
        assert!(st.success(), "remounting {} with size={size}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// 8 MB in four pseudo-random files and a few small ones: twice the tmpfs.
fn eight_megabytes(data: &Path) {
    for i in 0..4u64 {
        write(&data.join(format!("part-{i}.bin")), Rng::new(70 + i).bytes(2_000_000));
    }
    for i in 0..20u64 {
        write(&data.join(format!("notes/n{i}.txt")), format!("note {i}\n").repeat(50));
    }
}

fn assert_says_disk_full(r: &Run, path: &str) {
    assert_no_panic(r);
    assert!(matches!(r.code(), Some(c) if c != 0), "a full disk is a failure\n{r}");
    let e = r.stderr();
    assert!(
        e.contains("No space left on device"),
        "the error says the disk is full\n{r}"
    );
    assert!(e.contains(path), "the error names the path ({path})\n{r}");
}

#[test]
fn a_backup_into_a_full_repository_disk_fails_clearly_and_leaves_it_consistent() {
    let mut f = Fixture::empty();
    let Some(disk) = Tmpfs::mount(&f.path("disk"), "4m", "full repository disk") else {
        return;
    };
    f.repo = disk.dir.join("repo");
    f.init_repo(&["--pack-size", "1"]);
    let data = f.path("data");
    eight_megabytes(&data);

    let r = f.cairn().args(["backup", &s(&data)]).run();
    assert_says_disk_full(&r, "data/");
    assert!(f.snapshots().is_empty(), "no snapshot on a full disk");
    assert_eq!(tmp_files(&f.repo), Vec::<PathBuf>::new(), "no temporary file left");
    assert_check_passes(&f, true, "after the full disk");

    // Once there is room, the next backup completes and restores exactly.
    disk.resize("64m");
    let expected = manifest(&data);
    let next = f.backup(&[&s(&data)]);
    assert_restores_exactly(
        &f,
        str_at(&next, "/snapshot_id"),
        &data,
        &expected,
        "after freeing space",
    );
    assert_check_passes(&f, true, "after the next backup");
}

#[test]
fn a_restore_onto_a_full_disk_fails_clearly() {
    let f = Fixture::init();
    let data = f.path("data");
    eight_megabytes(&data);
    let snap = f.backup(&[&s(&data)]);
    let Some(disk) = Tmpfs::mount(&f.path("target"), "4m", "full restore target") else {
        return;
    };
    let r = f
        .cairn()
        .args(["restore", str_at(&snap, "/snapshot_id"), "--target", &s(&disk.dir)])
        .run();
    assert_says_disk_full(&r, &s(&disk.dir));
    assert_check_passes(&f, false, "after the failed restore");
}

/// ramfs refuses `O_DIRECT` (with `EINVAL` when the file is opened), which
/// the local backend uses for objects of 1 MiB or more; there it writes and
/// reads them buffered, and nothing else changes.
#[test]
fn a_repository_on_a_file_system_without_direct_io_works() {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = Fixture::empty();
    let Some(disk) = Tmpfs::mount_fs("ramfs", &[], &f.path("disk"), "repository on ramfs") else {
        return;
    };
    // The premise: this file system does refuse direct I/O.
    let refused = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(disk.dir.join("probe"));
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.raw_os_error()),
        Err(Some(nix::libc::EINVAL)),
        "ramfs refuses O_DIRECT with EINVAL"
    );
    f.repo = disk.dir.join("repo");
    f.init_repo(&["--pack-size", "4"]);
    let data = f.path("data");
    eight_megabytes(&data);
    let expected = manifest(&data);
    let snap = f.backup(&[&s(&data)]);
    let big_packs = files_under(&f.repo.join("data"))
        .iter()
        .filter(|p| fs::metadata(p).unwrap().len() >= 1 << 20)
        .count();
    assert!(big_packs >= 1, "some pack is large enough for the direct path");
    assert_restores_exactly(&f, str_at(&snap, "/snapshot_id"), &data, &expected, "from ramfs");
    assert_check_passes(&f, true, "on ramfs");
}
