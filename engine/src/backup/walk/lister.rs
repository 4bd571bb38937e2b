//! Folder listings taken on a thread of their own, ahead of the walk.
//!
//! An unchanged backup of many small files is the kernel's `readdir` and
//! `lstat` (half of its samples) and, on the walk's thread, the comparison
//! with the parent and the trees it stores. Done one after the other they
//! used one of the two cores; the lister takes the kernel's share to the
//! other. `lstat` of one folder's entries on rayon's threads was tried
//! first and gained nothing: a folder is too small a unit to hand out.
//!
//! The lister enters folders in exactly the order the walk does (sorted
//! names, depth first, the same exclusions and the same rule for other file
//! systems), so the walk takes each listing as the next one off the
//! channel. It still checks the path, and lists the folder itself, without
//! the lister, if the two ever disagree.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use globset::GlobSet;
use nix::libc;

use crate::backup::meta::Stat;

/// One entry of a folder: its name, its path and its `lstat`.
pub(crate) type Entry = (Vec<u8>, PathBuf, io::Result<Stat>);

/// A folder's entries that are not excluded, sorted by name.
pub(crate) struct Listing {
    /// The folder listed.
    pub(crate) path: PathBuf,
    /// Its entries, or why it could not be listed.
    pub(crate) entries: io::Result<Vec<Entry>>,
    /// Errors `readdir` returned for single entries, which are left out.
    pub(crate) unreadable: Vec<io::Error>,
}

/// Lists `path`. Each entry is stat'ed relative to the open folder, and the
/// folder is closed before anything goes into its subfolders, so a deep tree
/// holds no descriptors.
pub(crate) fn list_folder(path: &Path, excludes: &GlobSet) -> Listing {
    let mut unreadable = Vec::new();
    let entries = entries(path, excludes, &mut unreadable);
    Listing {
        path: path.to_path_buf(),
        entries,
        unreadable,
    }
}

fn entries(path: &Path, excludes: &GlobSet, unreadable: &mut Vec<io::Error>) -> io::Result<Vec<Entry>> {
    // Names from std's reader, which reports an error in the middle of a
    // listing (nix 0.29's `Dir` takes one for the end of the folder).
    let mut names: Vec<Vec<u8>> = Vec::new();
    for ent in fs::read_dir(path)? {
        match ent {
            Ok(ent) => names.push(ent.file_name().as_bytes().to_vec()),
            Err(e) => unreadable.push(e),
        }
    }
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)?;
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let child_path = path.join(OsStr::from_bytes(&n));
        // Matching builds a candidate path each time, even for no pattern.
        if !excludes.is_empty() && excludes.is_match(&child_path) {
            continue;
        }
        let st = Stat::at(dir.as_raw_fd(), &n);
        out.push((n, child_path, st));
    }
    Ok(out)
}

/// What the walk needs to know to enter the same folders.
pub(crate) struct Rules<'a> {
    /// Patterns of paths left out.
    pub(crate) excludes: &'a GlobSet,
    /// Stay on the device of each path given.
    pub(crate) one_file_system: bool,
}

/// Lists every folder the walk enters below `roots` (the folders among the
/// paths given, each with its device), in the walk's order, into `tx`;
/// stops early when the walk hangs up. The roots' `lstat` is the walk's
/// own, so the two cannot disagree about them.
pub(crate) fn list_ahead(roots: &[(&Path, u64)], rules: &Rules<'_>, tx: &Sender<Listing>) {
    for &(root, dev) in roots {
        if !descend(root, dev, rules, tx) {
            return;
        }
    }
}

/// Sends the listing of `path` and of the folders below it; false once the
/// walk no longer listens.
fn descend(path: &Path, root_dev: u64, rules: &Rules<'_>, tx: &Sender<Listing>) -> bool {
    let listing = list_folder(path, rules.excludes);
    let below: Vec<PathBuf> = match &listing.entries {
        Ok(entries) => entries
            .iter()
            .filter_map(|(_, child, st)| match st {
                Ok(st) if st.is_dir() && (!rules.one_file_system || st.device() == root_dev) => Some(child.clone()),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if tx.send(listing).is_err() {
        return false;
    }
    below.iter().all(|child| descend(child, root_dev, rules, tx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use globset::{Glob, GlobSetBuilder};
    use std::os::unix::fs::MetadataExt;

    /// The lister enters folders in the walk's order: sorted by bytes,
    /// depth first, never through a symlink, never into what is excluded.
    #[test]
    fn lists_folders_in_the_walks_order() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["b/c", "b/d/e", "a", "X", "skip/inner"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("b/file"), "x").unwrap();
        std::os::unix::fs::symlink("b", r.join("link")).unwrap();
        let mut excludes = GlobSetBuilder::new();
        excludes.add(Glob::new("**/skip").unwrap());
        let excludes = excludes.build().unwrap();
        let rules = Rules {
            excludes: &excludes,
            one_file_system: true,
        };
        let dev = fs::metadata(r).unwrap().dev();
        let (tx, rx) = crossbeam_channel::unbounded();
        list_ahead(&[(r, dev)], &rules, &tx);
        drop(tx);
        let listed: Vec<PathBuf> = rx.iter().map(|l| l.path).collect();
        let want: Vec<PathBuf> = ["", "X", "a", "b", "b/c", "b/d", "b/d/e"]
            .iter()
            .map(|d| r.join(d))
            .collect();
        assert_eq!(listed, want);
    }

    /// When the walk hangs up, the lister stops instead of listing on.
    #[test]
    fn stops_when_the_walk_hangs_up() {
        let root = tempfile::tempdir().unwrap();
        for d in 0..5 {
            fs::create_dir(root.path().join(format!("d{d}"))).unwrap();
        }
        let excludes = GlobSet::empty();
        let rules = Rules {
            excludes: &excludes,
            one_file_system: false,
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let got = std::thread::scope(|s| {
            let t = s.spawn(|| list_ahead(&[(root.path(), 0)], &rules, &tx));
            let first = rx.recv().unwrap().path;
            drop(rx);
            t.join().unwrap();
            first
        });
        assert_eq!(got, root.path());
    }
}
