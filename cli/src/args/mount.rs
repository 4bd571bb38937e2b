//! `cairn mount`.

use std::path::PathBuf;

use clap::Args;

use super::FilterArgs;

#[derive(Debug, Args)]
#[command(after_help = "\
Layout: snapshots/<time>/ holds each snapshot as backed up (its paths from the root down); \
hosts/<host>/<time>/ and tags/<tag>/<time>/ hold the same snapshots grouped; each of these \
folders has a `latest` link to its newest snapshot, and snapshots/<id prefix> (not listed) links \
to the snapshot with that id. Times are UTC; two snapshots of the same second get their short id \
appended. Snapshots taken while mounted appear within a second, without remounting.

Files read their data on demand through the index, so cp, diff, grep or sqlite3 work on them; \
modes, owners, times, symlinks and hard links are as recorded. A file whose data is in an archive \
storage class lists normally but reading it fails (EIO): no retrieval is started, and the log names \
the file and the `cairn restore` command that retrieves it.

Memory: the index, plus --read-cache MiB of file data and up to 32 MiB of folder listings. Nothing is \
written to the repository and no lock is taken; a prune that deletes data a mounted snapshot \
needs makes those reads fail, as for a restore.

Runs in the foreground: Ctrl-C (or `umount MOUNTPOINT`, `fusermount3 -u MOUNTPOINT`) unmounts and \
ends it. If something still has the mount open, Ctrl-C says so and keeps serving; press it again \
once it is closed. Needs /dev/fuse, and for users other than root the fusermount3 helper (Debian \
package fuse3).")]
pub struct MountArgs {
    /// An existing folder to mount the snapshots on.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Let other users see the mount (the kernel then checks the recorded
    /// modes); for users other than root, /etc/fuse.conf must allow it
    /// with `user_allow_other`.
    #[arg(long)]
    pub allow_other: bool,
    /// File data kept in memory between reads, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub read_cache: usize,
}
