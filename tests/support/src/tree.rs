//! File trees as a test sees them: a manifest of every entry (content hash
//! and the metadata a restore must reproduce), compared entry by entry, and
//! copying a tree.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What is compared between a source tree and its restored copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Permission bits, setuid, setgid and sticky (`st_mode & 0o7777`).
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Length in bytes.
        size: u64,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: i128,
        /// BLAKE3 of the content, in hex.
        blake3: String,
        /// For a file with several names in the tree (hard links): the
        /// first of them in path order, the same for each; `None` for a file
        /// with one name here.
        same_file_as: Option<PathBuf>,
    },
    /// A folder.
    Dir {
        /// Permission bits, setuid, setgid and sticky.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: i128,
    },
    /// A symbolic link (never followed).
    Symlink {
        /// What it points to, as stored.
        target: PathBuf,
        /// Modification time of the link itself.
        mtime_ns: i128,
    },
    /// FIFOs, sockets, devices.
    Other {
        /// The whole `st_mode` (type and permissions).
        mode: u32,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: i128,
    },
}

/// Every entry under a root by relative path (the root itself is "").
pub type Manifest = BTreeMap<PathBuf, Entry>;

/// BLAKE3 of a file's content, in hex (read as a stream: files may be large).
pub fn hash_file(path: &Path) -> String {
    let mut h = blake3::Hasher::new();
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    h.finalize().to_hex().to_string()
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// One entry, without following a symlink. A file's `same_file_as` is
/// `None` here: only [`manifest`] sees its other names.
pub fn entry(path: &Path) -> Entry {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let ft = m.file_type();
    if ft.is_symlink() {
        Entry::Symlink {
            target: fs::read_link(path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display())),
            mtime_ns: mtime_ns(&m),
        }
    } else if ft.is_dir() {
        Entry::Dir {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: mtime_ns(&m),
        }
    } else if ft.is_file() {
        Entry::File {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            mtime_ns: mtime_ns(&m),
            blake3: hash_file(path),
            same_file_as: None,
        }
    } else {
        Entry::Other {
            mode: m.mode(),
            mtime_ns: mtime_ns(&m),
        }
    }
}

fn read_dir(dir: &Path) -> Vec<fs::DirEntry> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|d| d.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())))
        .collect()
}

/// Every entry under `root` (`root` itself as ""), by relative path.
pub fn manifest(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    // (device, inode) of files with more than one link, to their names here.
    let mut names: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let e = entry(&abs);
        match e {
            Entry::Dir { .. } => stack.extend(read_dir(&abs).iter().map(|d| rel.join(d.file_name()))),
            Entry::File { .. } => {
                let m = fs::symlink_metadata(&abs).unwrap_or_else(|e| panic!("stat {}: {e}", abs.display()));
                if m.nlink() > 1 {
                    names.entry((m.dev(), m.ino())).or_default().push(rel.clone());
                }
            }
            _ => {}
        }
        out.insert(rel, e);
    }
    for mut group in names.into_values().filter(|g| g.len() > 1) {
        group.sort();
        let first = group[0].clone();
        for p in group {
            if let Some(Entry::File { same_file_as, .. }) = out.get_mut(&p) {
                *same_file_as = Some(first.clone());
            }
        }
    }
    out
}

/// Asserts two manifests are equal, naming the first difference.
pub fn assert_same_tree(expected: &Manifest, actual: &Manifest) {
    for (p, e) in expected {
        match actual.get(p) {
            None => panic!("{} is missing from the restored tree", p.display()),
            Some(a) => assert_eq!(a, e, "{} differs after restore (left: restored)", p.display()),
        }
    }
    for p in actual.keys() {
        assert!(
            expected.contains_key(p),
            "{} was restored but is not in the source",
            p.display()
        );
    }
}

/// Regular files under `root`: relative path and size.
pub fn regular_files(root: &Path) -> BTreeMap<PathBuf, u64> {
    manifest(root)
        .into_iter()
        .filter_map(|(p, e)| match e {
            Entry::File { size, .. } => Some((p, size)),
            _ => None,
        })
        .collect()
}

/// Where a restore into `target` puts the snapshot path `abs`.
pub fn under(target: &Path, abs: &Path) -> PathBuf {
    let rel = abs
        .strip_prefix("/")
        .unwrap_or_else(|_| panic!("{} is not an absolute path", abs.display()));
    target.join(rel)
}

/// Copies the folders and regular files under `from` into `to` (created if
/// missing); anything else is an error.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    for e in read_dir(from) {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap_or_else(|e| panic!("stat {}: {e}", src.display()));
        if ft.is_dir() {
            copy_dir(&src, &dst);
        } else {
            assert!(
                ft.is_file(),
                "copy_dir copies folders and files only: {}",
                src.display()
            );
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_sees_content_links_and_hard_links() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        fs::create_dir(root.join("sub")).expect("mkdir");
        fs::write(root.join("sub/a"), b"one").expect("write");
        fs::hard_link(root.join("sub/a"), root.join("b")).expect("link");
        std::os::unix::fs::symlink("sub/a", root.join("link")).expect("symlink");
        let m = manifest(root);
        let keys: Vec<&str> = m.keys().map(|p| p.to_str().expect("utf-8")).collect();
        assert_eq!(keys, ["", "b", "link", "sub", "sub/a"]);
        for name in ["b", "sub/a"] {
            assert!(
                matches!(&m[Path::new(name)], Entry::File { same_file_as: Some(f), size: 3, .. } if f == Path::new("b")),
                "{name}: {:?}",
                m[Path::new(name)]
            );
        }

        // A copy has the same content but no hard link: it differs.
        let c = tempfile::tempdir().expect("tempdir");
        copy_dir(&root.join("sub"), &c.path().join("sub"));
        fs::copy(root.join("b"), c.path().join("b")).expect("copy");
        let copied = manifest(c.path());
        assert_ne!(copied[Path::new("b")], m[Path::new("b")]);
        let r = std::panic::catch_unwind(|| assert_same_tree(&m, &copied));
        assert!(r.is_err(), "a missing symlink and lost hard links went unnoticed");
        assert_eq!(regular_files(c.path()).len(), 2);
        assert_eq!(under(Path::new("/t"), Path::new("/x/y")), Path::new("/t/x/y"));
    }
}
