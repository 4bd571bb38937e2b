//! Who references what: per source (host, paths, tags) and per tag, the
//! bytes only it references and the bytes it shares.
//!
//! Sources are walked one after the other, each tree once per source that
//! reaches it (a tree shared by several sources is read once for each, so
//! the walk costs what prune's mark costs times the sources sharing trees).
//! Per blob (by its index rank) the walk keeps the last source that reached
//! it and a bit for "reached by more than one": a blob is a source's own
//! when the bit is clear and the source is the last. For tags, per blob the
//! AND and the OR of the tag bits of the sources that reached it: a tag
//! frees a blob when it is in the AND, and references it when in the OR.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::cost::{Listing, Prices};
use super::{SourceStats, StatsError, TagStats};
use crate::forget::{GroupBy, GroupKey};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::index::Index;
use crate::prune::mark::{key_of, BlobKey};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// No source reached the blob.
const NONE: u32 = u32::MAX;

/// What [`breakdown`] found.
#[derive(Debug, Default)]
pub(super) struct Breakdown {
    /// Sealed bytes of the blobs some snapshot references.
    pub referenced: u64,
    /// Sealed bytes of the indexed blobs none references.
    pub unreferenced: u64,
    /// References to blobs the index does not know.
    pub missing: u64,
    /// Per source.
    pub sources: Vec<SourceStats>,
    /// Per tag.
    pub tags: Vec<TagStats>,
    /// What is left out, in words.
    pub notes: Vec<String>,
}

/// Tags tracked per blob, as bits of a `u64`: a repository's tags are
/// few (nightly, weekly, audit, db, ...). Above this, the per-tag
/// breakdown is left out with a note rather than growing per blob.
const MAX_TAGS: usize = 64;

struct Marks<'a> {
    index: &'a Index,
    listing: &'a Listing,
    last: Vec<u32>,
    shared: Vec<u64>,
    /// Per blob, the tags of every source that reached it (bits by tag
    /// number) and those of any; empty when no tag is tracked.
    tag_and: Vec<u64>,
    tag_or: Vec<u64>,
    group: u32,
    group_tags: u64,
    /// Per source, sealed bytes referenced per class.
    referenced: Vec<Vec<u64>>,
    /// Distinct blobs referenced that the index does not know.
    missing: HashSet<BlobKey>,
}

impl Marks<'_> {
    /// Records that the current source reaches `id`; true the first time
    /// it does (a tree is then walked).
    fn touch(&mut self, id: &BlobId) -> bool {
        let Some(r) = self.index.rank(id) else {
            self.missing.insert(key_of(id));
            return false;
        };
        let last = self.last[r];
        if last == self.group {
            return false;
        }
        let tagged = !self.tag_and.is_empty();
        if last != NONE {
            self.shared[r / 64] |= 1 << (r % 64);
            if tagged {
                self.tag_and[r] &= self.group_tags;
                self.tag_or[r] |= self.group_tags;
            }
        } else if tagged {
            self.tag_and[r] = self.group_tags;
            self.tag_or[r] = self.group_tags;
        }
        self.last[r] = self.group;
        if let Some((pack, len)) = self.index.at_rank(r) {
            let c = self.listing.class_of(pack);
            let slot = &mut self.referenced[self.group as usize][c];
            *slot = slot.saturating_add(u64::from(len));
        }
        true
    }
}

impl Visitor for Marks<'_> {
    type Error = StatsError;

    fn enter(&mut self, _: &Path, _: &TreeId, node: &Node) -> Result<Descend, StatsError> {
        if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
            return Ok(if self.touch(&sub.blob()) {
                Descend::Yes
            } else {
                Descend::No
            });
        }
        for c in &node.content {
            self.touch(&c.id);
        }
        Ok(Descend::No)
    }
}

/// Walks every snapshot by source; `sizes` are their restore sizes in the
/// same order.
pub(super) fn breakdown(
    repo: &Repository,
    index: &Index,
    listing: &Listing,
    snapshots: &[(SnapshotId, Snapshot)],
    sizes: &[u64],
    prices: Option<&Prices>,
    progress: &dyn Fn(usize),
) -> Result<Breakdown, StatsError> {
    let by = GroupBy {
        host: true,
        paths: true,
        tags: true,
    };
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, (_, s)) in snapshots.iter().enumerate() {
        groups.entry(GroupKey::of(s, by)).or_default().push(i);
    }
    let groups: Vec<(GroupKey, Vec<usize>)> = groups.into_iter().collect();
    let mut tag_names: Vec<String> = snapshots.iter().flat_map(|(_, s)| s.tags.iter().cloned()).collect();
    tag_names.sort();
    tag_names.dedup();
    let mut notes = Vec::new();
    if tag_names.len() > MAX_TAGS {
        notes.push(format!(
            "{} distinct tags: the per-tag breakdown covers at most {MAX_TAGS} and is left out",
            tag_names.len()
        ));
        tag_names.clear();
    }
    let n = index.ranked();
    let classes = listing.class_count();
    let mut m = Marks {
        index,
        listing,
        last: vec![NONE; n],
        shared: vec![0; n.div_ceil(64)],
        tag_and: if tag_names.is_empty() { Vec::new() } else { vec![0; n] },
        tag_or: if tag_names.is_empty() { Vec::new() } else { vec![0; n] },
        group: 0,
        group_tags: 0,
        referenced: vec![vec![0; classes]; groups.len()],
        missing: HashSet::new(),
    };
    let mut walked = 0;
    for (g, (key, members)) in groups.iter().enumerate() {
        m.group_tags = key
            .tags
            .iter()
            .flatten()
            .filter_map(|t| tag_names.binary_search(t).ok())
            .fold(0u64, |bits, i| bits | 1 << i);
        m.group = g as u32;
        for &i in members {
            progress(walked);
            walked += 1;
            let root = snapshots[i].1.tree;
            if m.touch(&root.blob()) {
                tree::walk(repo, index, &root, Path::new("/"), &mut m)?;
            }
        }
    }
    progress(walked);

    let mut out = Breakdown {
        missing: m.missing.len() as u64,
        notes,
        ..Default::default()
    };
    let mut unique = vec![vec![0u64; classes]; groups.len()];
    let mut early = vec![0f64; groups.len()];
    let mut tag_unique = vec![vec![0u64; classes]; tag_names.len()];
    let mut tag_referenced = vec![vec![0u64; classes]; tag_names.len()];
    let mut tag_early = vec![0f64; tag_names.len()];
    for r in 0..n {
        let Some((pack, len)) = index.at_rank(r) else { continue };
        let len = u64::from(len);
        let owner = m.last[r];
        if owner == NONE {
            out.unreferenced += len;
            continue;
        }
        out.referenced += len;
        let c = listing.class_of(pack);
        let charge = prices.map(|p| listing.early_deletion(p, pack, len)).unwrap_or(0.0);
        if m.shared[r / 64] & (1 << (r % 64)) == 0 {
            unique[owner as usize][c] += len;
            early[owner as usize] += charge;
        }
        if !m.tag_and.is_empty() {
            for (t, name) in tag_referenced.iter_mut().enumerate() {
                if m.tag_or[r] & (1 << t) != 0 {
                    name[c] += len;
                }
                if m.tag_and[r] & (1 << t) != 0 {
                    tag_unique[t][c] += len;
                    tag_early[t] += charge;
                }
            }
        }
    }

    let cost = |u: &[u64], r: &[u64], e: f64| prices.map(|p| listing.source_cost(p, u, r, e));
    for (g, (key, members)) in groups.iter().enumerate() {
        let referenced: u64 = m.referenced[g].iter().sum();
        let own: u64 = unique[g].iter().sum();
        let latest = members.iter().map(|&i| snapshots[i].1.time_ns).max().unwrap_or(0);
        out.sources.push(SourceStats {
            host: key.host.clone().unwrap_or_default(),
            paths: key.paths.clone().unwrap_or_default(),
            tags: key.tags.clone().unwrap_or_default(),
            snapshots: members.len(),
            latest: crate::time::format_ns(latest),
            restore_size: members.iter().map(|&i| sizes.get(i).copied().unwrap_or(0)).sum(),
            referenced_bytes: referenced,
            unique_bytes: own,
            shared_bytes: referenced - own,
            cost: cost(&unique[g], &m.referenced[g], early[g]),
        });
    }
    out.sources.sort_by_key(|s| std::cmp::Reverse(s.unique_bytes));
    for (t, name) in tag_names.iter().enumerate() {
        let referenced: u64 = tag_referenced[t].iter().sum();
        let own: u64 = tag_unique[t].iter().sum();
        out.tags.push(TagStats {
            tag: name.clone(),
            snapshots: snapshots.iter().filter(|(_, s)| s.tags.contains(name)).count(),
            referenced_bytes: referenced,
            unique_bytes: own,
            shared_bytes: referenced.saturating_sub(own),
            cost: cost(&tag_unique[t], &tag_referenced[t], tag_early[t]),
        });
    }
    Ok(out)
}
