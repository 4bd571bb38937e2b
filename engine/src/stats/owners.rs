//! Who references what: per source (host, paths, tags) and per tag, the
//! bytes only it references and the bytes it shares.
//!
//! Sources are walked one after the other, each tree once per source. Per
//! blob (by its index rank) the walk keeps the last source that reached it
//! and a bit for "reached by more than one": a blob is a source's own when
//! the bit is clear and the source is the last. For tags, per blob the
//! intersection and the union of the tag sets that reached it, interned as
//! numbers: a tag frees a blob when it is in the intersection, and
//! references it when it is in the union.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::cost::{Listing, Prices};
use super::{SourceStats, StatsError, TagStats};
use crate::forget::{GroupBy, GroupKey};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::index::Index;
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
}

/// Sets of tags (as sorted tag numbers) by number, with their
/// intersections and unions remembered: a repository has few distinct sets.
#[derive(Default)]
struct TagSets {
    sets: Vec<Vec<u32>>,
    ids: HashMap<Vec<u32>, u32>,
    and: HashMap<(u32, u32), u32>,
    or: HashMap<(u32, u32), u32>,
}

impl TagSets {
    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    fn combine(&mut self, a: u32, b: u32, union: bool) -> u32 {
        if a == b {
            return a;
        }
        let key = (a.min(b), a.max(b));
        let cached = if union { self.or.get(&key) } else { self.and.get(&key) };
        if let Some(&id) = cached {
            return id;
        }
        let (x, y) = (&self.sets[a as usize], &self.sets[b as usize]);
        let set: Vec<u32> = if union {
            let mut v: Vec<u32> = x.iter().chain(y).copied().collect();
            v.sort_unstable();
            v.dedup();
            v
        } else {
            x.iter().filter(|t| y.contains(t)).copied().collect()
        };
        let id = self.intern(set);
        if union {
            self.or.insert(key, id);
        } else {
            self.and.insert(key, id);
        }
        id
    }
}

struct Marks<'a> {
    index: &'a Index,
    listing: &'a Listing,
    last: Vec<u32>,
    shared: Vec<u64>,
    /// Empty when no snapshot has tags.
    tag_and: Vec<u32>,
    tag_or: Vec<u32>,
    sets: TagSets,
    group: u32,
    group_tags: u32,
    /// Per source, sealed bytes referenced per class.
    referenced: Vec<Vec<u64>>,
    missing: u64,
}

impl Marks<'_> {
    /// Records that the current source reaches `id`; true the first time
    /// it does (a tree is then walked).
    fn touch(&mut self, id: &BlobId) -> bool {
        let Some(r) = self.index.rank(id) else {
            self.missing += 1;
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
                self.tag_and[r] = self.sets.combine(self.tag_and[r], self.group_tags, false);
                self.tag_or[r] = self.sets.combine(self.tag_or[r], self.group_tags, true);
            }
        } else if tagged {
            self.tag_and[r] = self.group_tags;
            self.tag_or[r] = self.group_tags;
        }
        self.last[r] = self.group;
        if let Some((pack, len)) = self.index.at_rank(r) {
            let c = self.listing.class_of(pack);
            self.referenced[self.group as usize][c] += u64::from(len);
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
    let n = index.ranked();
    let classes = listing.class_count();
    let mut m = Marks {
        index,
        listing,
        last: vec![NONE; n],
        shared: vec![0; n.div_ceil(64)],
        tag_and: if tag_names.is_empty() { Vec::new() } else { vec![0; n] },
        tag_or: if tag_names.is_empty() { Vec::new() } else { vec![0; n] },
        sets: TagSets::default(),
        group: 0,
        group_tags: 0,
        referenced: vec![vec![0; classes]; groups.len()],
        missing: 0,
    };
    let mut walked = 0;
    for (g, (key, members)) in groups.iter().enumerate() {
        let mut set: Vec<u32> = key
            .tags
            .iter()
            .flatten()
            .filter_map(|t| tag_names.binary_search(t).ok().map(|i| i as u32))
            .collect();
        set.sort_unstable();
        set.dedup();
        m.group_tags = m.sets.intern(set);
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
        missing: m.missing,
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
            for &t in &m.sets.sets[m.tag_and[r] as usize] {
                tag_unique[t as usize][c] += len;
                tag_early[t as usize] += charge;
            }
            for &t in &m.sets.sets[m.tag_or[r] as usize] {
                tag_referenced[t as usize][c] += len;
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
