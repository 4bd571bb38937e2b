//! What a copy must read: every blob the snapshots to copy reference that
//! the destination lacks, grouped by the source pack holding it.
//!
//! Every tree of every snapshot is walked, also those the destination has
//! already: a copy killed earlier may have stored (and indexed) a tree pack
//! before the data pack the tree refers to, so "the destination has this
//! tree" does not say it has what is below.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::CopyError;
use crate::backend::ObjectKind;
use crate::blob::BlobType;
use crate::id::{BlobId, PackId, TreeId};
use crate::index::Index;
use crate::repository::{pack_kind, Repository, RepositoryError};
use crate::retrieve::{needs_retrieval, PackRef};
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// Gaps between wanted blobs up to this size are read along (one request
/// instead of two).
const MERGE_GAP: u64 = 1 << 20;

/// A blob to copy out of a source pack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted {
    pub id: BlobId,
    pub offset: u32,
    pub length: u32,
}

/// One source pack and the blobs wanted from it, in pack order.
#[derive(Debug, Clone)]
pub(super) struct PackPlan {
    pub id: PackId,
    pub blob_type: BlobType,
    pub size: u64,
    pub blobs: Vec<Wanted>,
}

impl PackPlan {
    /// The byte ranges to read: the whole pack when the wanted blobs cover
    /// most of it, else the wanted blobs with small gaps merged in.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let wanted: u64 = self.blobs.iter().map(|b| u64::from(b.length)).sum();
        if wanted * 2 >= self.size {
            return vec![(0, self.size)];
        }
        let mut out: Vec<(u64, u64)> = Vec::new();
        for b in &self.blobs {
            let (start, end) = (u64::from(b.offset), u64::from(b.offset) + u64::from(b.length));
            match out.last_mut() {
                Some(last) if start <= last.1 + MERGE_GAP => last.1 = last.1.max(end),
                _ => out.push((start, end)),
            }
        }
        out
    }

    /// Bytes [`PackPlan::ranges`] reads.
    pub fn read_bytes(&self) -> u64 {
        self.ranges().iter().map(|(s, e)| e - s).sum()
    }

    /// The reference the retrieval driver takes.
    pub fn pack_ref(&self) -> PackRef {
        PackRef {
            kind: pack_kind(self.blob_type),
            id: self.id,
            size: self.size,
        }
    }
}

/// Blobs (data and trees) the snapshots reference, or those of them the
/// destination lacks.
#[derive(Debug, Default)]
pub(super) struct Needed {
    pub blobs: HashSet<BlobId>,
}

/// Collects the blobs below each root in `roots` that `known` does not
/// hold (all of them when `known` is `None`), walking every tree of the
/// source once.
pub(super) fn needed_blobs(
    src: &Repository,
    src_index: &Index,
    roots: &[TreeId],
    known: Option<&Index>,
) -> Result<Needed, CopyError> {
    let mut c = Collect {
        known,
        visited: HashSet::new(),
        out: Needed::default(),
    };
    for root in roots {
        if c.visited.insert(*root) {
            c.add(root.blob());
            tree::walk(src, src_index, root, Path::new("/"), &mut c)?;
        }
    }
    Ok(c.out)
}

struct Collect<'a> {
    known: Option<&'a Index>,
    visited: HashSet<TreeId>,
    out: Needed,
}

impl Collect<'_> {
    fn add(&mut self, id: BlobId) {
        if self.known.is_none_or(|k| !k.contains(&id)) {
            self.out.blobs.insert(id);
        }
    }
}

impl Visitor for Collect<'_> {
    type Error = CopyError;

    fn enter(&mut self, _: &Path, _: &TreeId, node: &Node) -> Result<Descend, CopyError> {
        for c in &node.content {
            self.add(c.id);
        }
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) if self.visited.insert(sub) => {
                self.add(sub.blob());
                Ok(Descend::Yes)
            }
            _ => Ok(Descend::No),
        }
    }
}

/// Whether any blob below `root` that `known` lacks is in one of `packs`
/// (per the source index): a snapshot that must wait for those packs.
pub(super) fn touches_packs(
    src: &Repository,
    src_index: &Index,
    root: &TreeId,
    known: &Index,
    packs: &HashSet<PackId>,
) -> Result<bool, CopyError> {
    let needed = needed_blobs(src, src_index, std::slice::from_ref(root), Some(known))?;
    Ok(needed
        .blobs
        .iter()
        .any(|id| src_index.get(id).is_some_and(|l| packs.contains(&l.pack))))
}

/// Groups `needed` by the source pack holding each blob (ordered by pack
/// id, blobs by offset). Blobs the source index lacks (missing data) come
/// back apart: the snapshots needing them are not copied.
pub(super) fn group_by_pack(src_index: &Index, needed: &Needed) -> (Vec<PackPlan>, HashSet<BlobId>) {
    let mut packs: BTreeMap<PackId, PackPlan> = BTreeMap::new();
    let mut missing = HashSet::new();
    for &id in &needed.blobs {
        let Some(loc) = src_index.get(&id) else {
            missing.insert(id);
            continue;
        };
        let size = src_index.pack_size(&loc.pack).unwrap_or(0);
        packs
            .entry(loc.pack)
            .or_insert_with(|| PackPlan {
                id: loc.pack,
                blob_type: loc.blob_type,
                size,
                blobs: Vec::new(),
            })
            .blobs
            .push(Wanted {
                id,
                offset: loc.offset,
                length: loc.length,
            });
    }
    let mut out: Vec<PackPlan> = packs.into_values().collect();
    for p in &mut out {
        p.blobs.sort_by_key(|b| b.offset);
    }
    (out, missing)
}

/// The first thing below `root` a copy cannot take from the source, said
/// with its path: a tree that cannot be read, or a blob `known` (the
/// destination) lacks that the source index lacks too or that is in `bad`
/// (found damaged while copying). `None` when all of it is there.
pub(super) fn damage_below(
    src: &Repository,
    src_index: &Index,
    root: &TreeId,
    known: &Index,
    bad: &HashSet<BlobId>,
) -> Result<Option<String>, CopyError> {
    let mut v = Screen {
        src_index,
        known,
        bad,
        visited: HashSet::new(),
        found: None,
    };
    if let Some(why) = v.problem(&root.blob()) {
        return Ok(Some(format!("/: tree {root} {why}")));
    }
    let r = tree::walk(src, src_index, root, Path::new("/"), &mut v);
    match (r, v.found) {
        (_, Some(found)) => Ok(Some(found)),
        (Ok(()), None) => Ok(None),
        (Err(e), None) => Err(e),
    }
}

struct Screen<'a> {
    src_index: &'a Index,
    known: &'a Index,
    bad: &'a HashSet<BlobId>,
    visited: HashSet<TreeId>,
    found: Option<String>,
}

impl Screen<'_> {
    fn problem(&self, id: &BlobId) -> Option<&'static str> {
        if self.known.contains(id) {
            None
        } else if self.bad.contains(id) {
            Some("is damaged in the source")
        } else if !self.src_index.contains(id) {
            Some("is missing from the source's index")
        } else {
            None
        }
    }

    /// Records `found` and stops the walk.
    fn stop(&mut self, found: String) -> Result<Descend, CopyError> {
        self.found = Some(found);
        Err(CopyError::Damaged(String::new()))
    }
}

impl Visitor for Screen<'_> {
    type Error = CopyError;

    fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, CopyError> {
        for c in &node.content {
            if let Some(why) = self.problem(&c.id) {
                return self.stop(format!("{}: blob {} of its contents {why}", path.display(), c.id));
            }
        }
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => {
                if let Some(why) = self.problem(&sub.blob()) {
                    return self.stop(format!("{}: the folder's tree {sub} {why}", path.display()));
                }
                Ok(if self.visited.insert(sub) {
                    Descend::Yes
                } else {
                    Descend::No
                })
            }
            _ => Ok(Descend::No),
        }
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, error: RepositoryError) -> Result<(), CopyError> {
        self.stop(format!(
            "{}: cannot read the folder's tree {id} from the source: {error}",
            path.display()
        ))
        .map(|_| ())
    }
}

/// Whether any of `packs` is in an archive storage class, from one listing
/// of the source's data packs (tree packs are never archived): then the
/// driver asks about each before reading, so every retrieval starts at once.
pub(super) fn any_archived(src: &Repository, packs: &[PackPlan]) -> Result<bool, CopyError> {
    if !packs.iter().any(|p| p.blob_type == BlobType::Data) {
        return Ok(false);
    }
    let archived = archived_pack_names(src)?;
    Ok(!archived.is_empty() && packs.iter().any(|p| archived.contains(&p.id.to_hex())))
}

/// The names of the source's data packs in an archive storage class, from
/// one listing.
pub(super) fn archived_pack_names(src: &Repository) -> Result<HashSet<String>, CopyError> {
    Ok(src
        .backend()
        .list(ObjectKind::DataPack)?
        .into_iter()
        .filter(|o| o.storage_class.as_deref().is_some_and(needs_retrieval))
        .map(|o| o.name)
        .collect())
}
