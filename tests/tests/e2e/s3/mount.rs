//! `cairn mount` of a repository whose data packs are in GLACIER (moto):
//! everything lists, file reads fail with EIO, the log names the file and
//! the restore that would retrieve it, and nothing is retrieved.

use cairn_test_support::s3::moto;

use super::*;
use crate::mount::{fuse_available, Mount};

#[test]
fn s3_moto_mount_lists_archived_files_and_fails_their_reads_without_retrieving() {
    let Some(m) = moto() else { return };
    if !fuse_available("s3_moto_mount_lists_archived_files_and_fails_their_reads_without_retrieving") {
        return;
    }
    let (f, prefix) = archive_fixture(&m, "mount");
    let src = f.path("src");
    s3_tree(&src);
    f.backup(&[&s(&src)]);

    let mount = Mount::start(&f, &f.path("mnt"));
    let file = under(&mount.at.join("snapshots/latest"), &src.join("data/random.bin"));
    let meta = fs::metadata(&file).expect("an archived file still lists");
    assert_eq!(meta.len(), BIG as u64);
    assert!(fs::read_dir(file.parent().expect("parent")).is_ok());
    let err = fs::read(&file).expect_err("reading archived data must fail");
    assert_eq!(err.raw_os_error(), Some(nix::errno::Errno::EIO as i32), "{err}");

    // Ended by an unmount from outside rather than Ctrl-C (the local test's way).
    let (status, stderr) = mount.unmount_from_outside();
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    let log = stderr.join("\n");
    let in_snapshot = s(&src.join("data/random.bin"));
    assert!(
        log.contains(&in_snapshot) && log.contains("archive storage") && log.contains("cairn restore"),
        "the log does not name the file and the restore that retrieves it:\n{log}"
    );
    assert_nothing_retrieved(&m, &prefix);
}
