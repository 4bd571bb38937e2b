//! Inode numbers of a mount and what each stands for.
//!
//! A number is a hash of what the entry is (its parent and name, or for a
//! hard-linked file its snapshot, device and inode), so `readdir` and
//! `lookup` give the same number without remembering entries nobody looked
//! up, and every name of a hard-linked file has the same number. The table
//! holds only entries the kernel has looked up and not yet forgotten, so it
//! is bounded by the kernel's own inode cache, whatever the snapshot size.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::view::SnapEntry;
use crate::id::SnapshotId;
use crate::tree::Node;

/// The root folder's number (FUSE's).
pub(super) const ROOT: u64 = 1;

/// What identifies an entry across lookups.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Ident {
    /// The entry `name` of folder `parent`.
    Child(u64, Vec<u8>),
    /// A file with several names: one number for all of them.
    Linked(SnapshotId, u64, u64),
    /// A snapshot's folder in listing folder `parent`: by id, not by name,
    /// so a rewritten snapshot of the same time (same name) is another
    /// folder to the kernel, never the original's cached entries.
    Snapshot(u64, SnapshotId),
}

/// A listing folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Listing {
    /// `snapshots/`.
    Snapshots,
    /// `hosts/`.
    Hosts,
    /// `tags/`.
    Tags,
    /// `hosts/<host>/`.
    Host(String),
    /// `tags/<tag>/`.
    Tag(String),
}

/// An entry inside a snapshot (its root folder included).
#[derive(Debug)]
pub(super) struct Entry {
    /// The snapshot holding it.
    pub snap: Arc<SnapEntry>,
    /// Its path in the snapshot ("/" for the root), for messages.
    pub path: PathBuf,
    /// Its metadata and content.
    pub node: Node,
    /// For a file, where each content blob starts in it.
    pub starts: Vec<u64>,
}

impl Entry {
    /// An entry for `node` at `path`.
    pub fn new(snap: Arc<SnapEntry>, path: PathBuf, node: Node) -> Self {
        let mut at = 0u64;
        let starts = node
            .content
            .iter()
            .map(|c| {
                let s = at;
                at += u64::from(c.length);
                s
            })
            .collect();
        Self {
            snap,
            path,
            node,
            starts,
        }
    }

    /// Bytes the content blobs hold.
    pub fn content_len(&self) -> u64 {
        match (self.starts.last(), self.node.content.last()) {
            (Some(s), Some(c)) => s + u64::from(c.length),
            _ => 0,
        }
    }
}

/// What a number stands for.
// Always behind an `Arc` in the table: its size is paid once per entry.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum What {
    /// The mount's root.
    Root,
    /// A listing folder.
    Listing(Listing),
    /// A symbolic link the mount makes (`latest`, `snapshots/<id>`).
    Link {
        /// Where it points.
        target: Vec<u8>,
        /// Its modification time (the snapshot's).
        time_ns: i64,
    },
    /// An entry of a snapshot.
    Entry(Entry),
}

struct Slot {
    ident: Ident,
    what: Arc<What>,
    lookups: u64,
    pinned: bool,
}

/// The looked-up entries by number.
pub(super) struct Inodes {
    slots: Mutex<HashMap<u64, Slot>>,
}

fn hash_of(ident: &Ident) -> u64 {
    // SipHash with fixed keys: the same number for the same entry for the
    // whole mount (and across mounts).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ident.hash(&mut h);
    step(h.finish().wrapping_sub(1))
}

/// The next candidate number: 0 is not an inode and 1 is the root.
fn step(n: u64) -> u64 {
    let n = n.wrapping_add(1);
    if n <= ROOT {
        ROOT + 1
    } else {
        n
    }
}

impl Inodes {
    /// A table with the root and the three top listing folders, which are
    /// never forgotten.
    pub fn new() -> Self {
        let t = Self {
            slots: Mutex::new(HashMap::new()),
        };
        {
            let mut s = t.lock();
            s.insert(
                ROOT,
                Slot {
                    ident: Ident::Child(0, b"/".to_vec()),
                    what: Arc::new(What::Root),
                    lookups: 0,
                    pinned: true,
                },
            );
        }
        for (name, l) in [
            ("snapshots", Listing::Snapshots),
            ("hosts", Listing::Hosts),
            ("tags", Listing::Tags),
        ] {
            let ino = t
                .put(Ident::Child(ROOT, name.as_bytes().to_vec()), What::Listing(l), false)
                .0;
            if let Some(slot) = t.lock().get_mut(&ino) {
                slot.pinned = true;
            }
        }
        t
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `ino` stands for, if the kernel still knows it.
    pub fn get(&self, ino: u64) -> Option<Arc<What>> {
        self.lock().get(&ino).map(|s| s.what.clone())
    }

    /// The number `ident` has, or would get if looked up now (for readdir).
    pub fn number(&self, ident: &Ident) -> u64 {
        let slots = self.lock();
        let mut ino = hash_of(ident);
        loop {
            match slots.get(&ino) {
                Some(s) if s.ident != *ident => ino = step(ino),
                _ => return ino,
            }
        }
    }

    /// Records `what` under `ident`'s number (replacing what it stood for:
    /// `latest` moves), counting one kernel lookup when `lookup` is set.
    pub fn put(&self, ident: Ident, what: What, lookup: bool) -> (u64, Arc<What>) {
        let mut slots = self.lock();
        let mut ino = hash_of(&ident);
        let what = Arc::new(what);
        loop {
            match slots.get_mut(&ino) {
                Some(s) if s.ident == ident => {
                    s.what = what.clone();
                    s.lookups += u64::from(lookup);
                    return (ino, what);
                }
                Some(_) => ino = step(ino),
                None => {
                    slots.insert(
                        ino,
                        Slot {
                            ident,
                            what: what.clone(),
                            lookups: u64::from(lookup),
                            pinned: false,
                        },
                    );
                    return (ino, what);
                }
            }
        }
    }

    /// The kernel dropped `n` lookups of `ino`; at none left it is removed.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut slots = self.lock();
        if let Some(s) = slots.get_mut(&ino) {
            s.lookups = s.lookups.saturating_sub(n);
            if s.lookups == 0 && !s.pinned {
                slots.remove(&ino);
            }
        }
    }

    /// How many entries are held (tests: memory stays bounded).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}
