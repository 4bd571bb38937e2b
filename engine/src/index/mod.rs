//! The index: which pack holds each blob, at which offset.
//!
//! On disk: encrypted index objects, each listing whole packs (see
//! [`IndexFile`]). In memory: [`Index`], a sorted array of 28-byte entries
//! keyed by the first 16 bytes of the blob id, plus a 65,536-slot bucket
//! table on the first two bytes so a lookup is a binary search over about
//! n/65,536 entries. Cost: 28 bytes per blob plus about 60 bytes per pack
//! (the pack table and a hash table of pack numbers: under 4 bytes per blob
//! at 16 blobs a pack), as [`Index::memory_bytes`] measures — see
//! format-spec "Index".

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::blob::BlobType;
use crate::id::{BlobId, PackId};

/// Version byte of an encoded index object.
pub const INDEX_VERSION: u8 = 1;
/// Object kind bound into an index object's authenticated data.
pub const INDEX_KIND: &str = "index";
/// The most bytes an index object's decoder may claim (format-spec "Decoder
/// bounds"): 88 per blob (its 44 in-memory bytes as a list element, then
/// its fields), so about 12 million blobs in one object; writers put at most
/// 512 packs in one.
pub const INDEX_LIMIT: crate::encoding::Limit = crate::encoding::Limit::Gib1;
/// Bytes of the blob id kept in memory. 128 bits: with 10^9 blobs the chance
/// that any two share a prefix is about 10^-21 (birthday bound); ids are keyed
/// hashes, so nobody without the key can aim for a collision.
pub const PREFIX_LEN: usize = 16;

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index names more packs than a 32-bit pack number can count
    /// (the in-memory index stores a pack number, not the pack id, per blob).
    #[error("too many packs in the index")]
    TooManyPacks,
}

/// One blob in an index object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct IndexBlob {
    /// Blob id.
    pub id: BlobId,
    /// Offset of the sealed blob in its pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of its plaintext.
    pub raw_length: u32,
}

/// One pack in an index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct IndexPack {
    /// Pack name.
    pub id: PackId,
    /// What the pack holds (decides its prefix).
    pub blob_type: BlobType,
    /// Stored size of the pack.
    pub size: u64,
    /// Its blobs, in pack order.
    pub blobs: Vec<IndexBlob>,
}

/// The body of an index object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct IndexFile {
    /// Packs described by this object.
    pub packs: Vec<IndexPack>,
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack.
    pub pack: PackId,
    /// Data or tree.
    pub blob_type: BlobType,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    prefix: [u8; PREFIX_LEN],
    pack: u32,
    offset: u32,
    length: u32,
}

fn prefix_of(id: &BlobId) -> [u8; PREFIX_LEN] {
    let mut p = [0u8; PREFIX_LEN];
    p.copy_from_slice(&id.as_bytes()[..PREFIX_LEN]);
    p
}

/// What [`Index::from_files_avoiding`] does with blobs whose only copies
/// are in avoided packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Avoid {
    /// Keep them (readers: such a pack is valid until it is removed, R1).
    PreferOthers,
    /// Leave them out (a backup's deduplication, B3).
    Exclude,
}

/// Information kept per pack in memory. Packed to 4-byte alignment: 44
/// bytes where natural alignment pads it to 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct PackInfo {
    /// Pack name.
    pub id: PackId,
    /// Data or tree.
    pub blob_type: BlobType,
    /// Stored size.
    pub size: u64,
}

/// The in-memory index.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    /// Pack numbers, found by hashing the id that `packs` holds, so an id is
    /// stored once: 5 bytes a slot where a map from id to number took 45.
    pack_numbers: HashTable<u32>,
    /// Seeded per process: pack ids come from the repository, and one that
    /// chose them must not be able to make lookups collide.
    hasher: RandomState,
    sorted: Vec<Entry>,
    buckets: Vec<u32>,
    pending: HashMap<[u8; PREFIX_LEN], Entry>,
}

/// Builds an [`Index`] from index objects added one at a time, so that a
/// caller can decode an object, add it and drop it: the decoded objects of
/// a large repository take twice the memory of the index built from them.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    idx: Index,
    /// Every copy of every blob, in the order added.
    entries: Vec<Entry>,
}

impl IndexBuilder {
    /// Adds the packs of one index object.
    pub fn add_file(&mut self, f: &IndexFile) -> Result<(), IndexError> {
        f.packs.iter().try_for_each(|p| self.add_pack(p))
    }

    /// Adds one pack.
    pub fn add_pack(&mut self, p: &IndexPack) -> Result<(), IndexError> {
        let n = self.idx.pack_number(p.id, p.blob_type, p.size)?;
        self.entries.extend(p.blobs.iter().map(|b| Entry {
            prefix: prefix_of(&b.id),
            pack: n,
            offset: b.offset,
            length: b.length,
        }));
        Ok(())
    }

    /// Blob copies added so far (a blob in two packs counts twice).
    pub fn copies(&self) -> usize {
        self.entries.len()
    }

    /// Every pack added so far.
    pub fn packs(&self) -> &[PackInfo] {
        &self.idx.packs
    }

    /// The index, keeping for each blob a location outside the packs in
    /// `avoid` whenever there is one (see [`Index::from_files_avoiding`]).
    pub fn build(self, avoid: &HashSet<PackId>, how: Avoid) -> Index {
        let Self { mut idx, mut entries } = self;
        let avoided: Vec<bool> = idx.packs.iter().map(|p| avoid.contains(&p.id)).collect();
        let bad = |e: &Entry| avoided.get(e.pack as usize).copied().unwrap_or(false);
        if avoid.is_empty() {
            entries.par_sort_unstable();
        } else {
            // Among a blob's copies the first one wins, so avoided packs sort last.
            entries.par_sort_unstable_by(|a, b| a.prefix.cmp(&b.prefix).then(bad(a).cmp(&bad(b))).then(a.cmp(b)));
        }
        entries.dedup_by(|a, b| a.prefix == b.prefix);
        if how == Avoid::Exclude && !avoid.is_empty() {
            entries.retain(|e| !bad(e));
        }
        // Built by pushing, the vector may hold up to twice what it needs.
        entries.shrink_to_fit();
        idx.sorted = entries;
        idx.rebuild_buckets();
        idx
    }
}

/// Entries added since the last sort before they are merged in.
const MERGE_THRESHOLD: usize = 1 << 18;

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the index from decoded index objects, sorting in parallel.
    pub fn from_files(files: Vec<IndexFile>) -> Result<Self, IndexError> {
        Self::from_files_avoiding(&files, &HashSet::new(), Avoid::PreferOthers)
    }

    /// Builds the index, keeping for each blob a location outside the packs
    /// in `avoid` (those a deletion record lists) whenever there is one.
    /// With [`Avoid::Exclude`], a blob whose every copy is in such a pack is
    /// left out, as if the repository did not have it: a backup then stores
    /// it again (format-spec B3).
    pub fn from_files_avoiding<'a>(
        files: impl IntoIterator<Item = &'a IndexFile> + Clone,
        avoid: &HashSet<PackId>,
        how: Avoid,
    ) -> Result<Self, IndexError> {
        let mut b = IndexBuilder::default();
        let blobs = files.clone().into_iter().flat_map(|f| &f.packs).map(|p| p.blobs.len()).sum();
        b.entries.reserve_exact(blobs);
        for f in files {
            b.add_file(f)?;
        }
        Ok(b.build(avoid, how))
    }

    fn pack_number(&mut self, id: PackId, blob_type: BlobType, size: u64) -> Result<u32, IndexError> {
        let hash = self.hasher.hash_one(id);
        if let Some(&n) = self.pack_numbers.find(hash, |&n| self.packs[n as usize].id == id) {
            return Ok(n);
        }
        let n = u32::try_from(self.packs.len()).map_err(|_| IndexError::TooManyPacks)?;
        self.packs.push(PackInfo { id, blob_type, size });
        let (packs, hasher) = (&self.packs, &self.hasher);
        self.pack_numbers.insert_unique(hash, n, |&m| hasher.hash_one(packs[m as usize].id));
        Ok(n)
    }

    fn find_pack(&self, id: &PackId) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.pack_numbers.find(hash, |&n| self.packs[n as usize].id == *id).copied()
    }

    fn rebuild_buckets(&mut self) {
        let mut b = vec![0u32; 65_537];
        for e in &self.sorted {
            let k = u16::from_be_bytes([e.prefix[0], e.prefix[1]]) as usize;
            b[k + 1] += 1;
        }
        for i in 1..b.len() {
            b[i] += b[i - 1];
        }
        self.buckets = b;
    }

    /// Adds every blob of a newly stored pack.
    pub fn add_pack(&mut self, pack: &IndexPack) -> Result<(), IndexError> {
        let n = self.pack_number(pack.id, pack.blob_type, pack.size)?;
        for b in &pack.blobs {
            let e = Entry {
                prefix: prefix_of(&b.id),
                pack: n,
                offset: b.offset,
                length: b.length,
            };
            self.pending.entry(e.prefix).or_insert(e);
        }
        if self.pending.len() >= MERGE_THRESHOLD {
            self.merge();
        }
        Ok(())
    }

    fn merge(&mut self) {
        let mut all = std::mem::take(&mut self.sorted);
        all.extend(self.pending.drain().map(|(_, e)| e));
        all.par_sort_unstable();
        all.dedup_by(|a, b| a.prefix == b.prefix);
        self.sorted = all;
        self.rebuild_buckets();
    }

    fn find(&self, id: &BlobId) -> Option<&Entry> {
        let p = prefix_of(id);
        if let Some(e) = self.pending.get(&p) {
            return Some(e);
        }
        self.position(&p).map(|i| &self.sorted[i])
    }

    /// Where the merged entry with prefix `p` sits in `sorted`. Its bucket
    /// (the first two bytes) bounds the search, and ids are keyed hashes,
    /// so within a bucket the next two bytes are spread evenly: the search
    /// starts where the entry would sit if they were exactly even, and
    /// widens from there. That touches one or two cache lines where a
    /// binary search over a bucket of a 3 M-blob index took six dependent
    /// misses (`Index::find` was a quarter of `check`'s samples). Uneven
    /// ids (a hostile repository's) only cost the widening, at most twice
    /// a binary search's steps.
    fn position(&self, p: &[u8; PREFIX_LEN]) -> Option<usize> {
        let k = u16::from_be_bytes([p[0], p[1]]) as usize;
        let (lo, hi) = (*self.buckets.get(k)? as usize, *self.buckets.get(k + 1)? as usize);
        let bucket = self.sorted.get(lo..hi)?;
        let guess = (usize::from(u16::from_be_bytes([p[2], p[3]])) * bucket.len()) >> 16;
        let (from, to) = match bucket.get(guess)?.prefix.cmp(p) {
            Ordering::Equal => return Some(lo + guess),
            Ordering::Less => {
                // bucket[from - 1] < p throughout.
                let (mut from, mut step) = (guess + 1, 1);
                loop {
                    let to = (from + step).min(bucket.len());
                    if to == bucket.len() || bucket[to - 1].prefix >= *p {
                        break (from, to);
                    }
                    (from, step) = (to, step * 2);
                }
            }
            Ordering::Greater => {
                // bucket[to] > p throughout.
                let (mut to, mut step) = (guess, 1);
                loop {
                    let from = to.saturating_sub(step);
                    if from == 0 || bucket[from].prefix <= *p {
                        break (from, to);
                    }
                    (to, step) = (from, step * 2);
                }
            }
        };
        let range = &bucket[from..to];
        range.binary_search_by(|e| e.prefix.cmp(p)).ok().map(|i| lo + from + i)
    }

    /// Whether the blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.find(id).is_some()
    }

    /// Where the blob is stored.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.find(id).map(|e| {
            let p = self.packs[e.pack as usize];
            BlobLocation {
                pack: p.id,
                blob_type: p.blob_type,
                offset: e.offset,
                length: e.length,
            }
        })
    }

    /// The blob's rank among the merged entries (`0..ranked()`), so a
    /// caller can keep a bit or a counter per blob in a plain array instead
    /// of a hash map keyed by id (stats: one array slot per blob). `None`
    /// for a blob that is not indexed or only added since the last merge;
    /// ranks change when [`Index::add_pack`] merges, so they are for an
    /// index that is only read (as [`Index::from_files`] builds it).
    pub(crate) fn rank(&self, id: &BlobId) -> Option<usize> {
        self.position(&prefix_of(id))
    }

    /// The number of ranks [`Index::rank`] hands out.
    pub(crate) fn ranked(&self) -> usize {
        self.sorted.len()
    }

    /// The pack (as a position in [`Index::packs`]) and sealed length of
    /// the blob of rank `rank`.
    pub(crate) fn at_rank(&self, rank: usize) -> Option<(usize, u32)> {
        self.sorted.get(rank).map(|e| (e.pack as usize, e.length))
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.pending.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored size of a pack, when the index knows it.
    pub fn pack_size(&self, id: &PackId) -> Option<u64> {
        self.find_pack(id).map(|n| self.packs[n as usize].size)
    }

    /// Every pack known to the index.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// Memory held by the index's tables, in bytes (for the stated cost).
    pub fn memory_bytes(&self) -> usize {
        self.sorted.capacity() * std::mem::size_of::<Entry>()
            + self.buckets.capacity() * 4
            + self.packs.capacity() * std::mem::size_of::<PackInfo>()
            // A slot is the number and a control byte; the table keeps
            // at least one slot in eight free.
            + self.pack_numbers.capacity().div_ceil(7) * 8 * 5
            + self.pending.capacity() * (PREFIX_LEN + std::mem::size_of::<Entry>() + 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> BlobId {
        BlobId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn entry_is_28_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 28);
        assert_eq!(std::mem::size_of::<PackInfo>(), 44);
    }

    /// Issue 14's bound: at most 32 bytes a blob at the default shape of
    /// 16 blobs a pack, fixed bucket table included, at a million blobs.
    #[test]
    fn a_million_blobs_take_at_most_32_bytes_each() {
        let n = 1_000_000u64;
        // Cheap distinct ids: hashing a million ids would dominate a debug test.
        let key = |i: u64, salt: u64| {
            let mut b = [0u8; 32];
            for (k, c) in b.chunks_mut(8).enumerate() {
                let x = (i ^ salt).wrapping_add(k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                c.copy_from_slice(&(x ^ (x >> 29)).to_le_bytes());
            }
            b
        };
        let packs = (0..n / 16)
            .map(|p| IndexPack {
                id: PackId::from_bytes(key(p, 1 << 40)),
                blob_type: BlobType::Data,
                size: 16 << 20,
                blobs: (0..16)
                    .map(|j| IndexBlob {
                        id: BlobId::from_bytes(key(p * 16 + j, 0)),
                        offset: j as u32 * 1000,
                        length: 1000,
                        raw_length: 1000,
                    })
                    .collect(),
            })
            .collect();
        let idx = Index::from_files(vec![IndexFile { packs }]).unwrap();
        assert_eq!(idx.len(), n as usize);
        assert_eq!(idx.packs().len(), (n / 16) as usize);
        let per_blob = idx.memory_bytes() as f64 / n as f64;
        assert!(per_blob <= 32.0, "{per_blob:.2} bytes a blob");
        // Every pack is still found by its id.
        let probe = PackId::from_bytes(key(12_345, 1 << 40));
        assert_eq!(idx.pack_size(&probe), Some(16 << 20));
        assert_eq!(idx.pack_size(&PackId::from_bytes([7; 32])), None);
    }

    /// The search starts where an evenly spread bucket would hold the id;
    /// ids that are not spread evenly (one bucket, bytes 2-3 all zero or
    /// all 0xff, as a hostile repository could write) must still be found
    /// at their own rank, and absent neighbours of each must not be.
    #[test]
    fn lookups_find_every_id_however_unevenly_ids_are_spread() {
        let shaped = |i: u64, shape: u64| {
            let mut b = *blake3::hash(&i.to_le_bytes()).as_bytes();
            match shape {
                0 => {}
                1 => b[..4].copy_from_slice(&[9, 9, 0, 0]),
                2 => b[..4].copy_from_slice(&[9, 9, 0xff, 0xff]),
                _ => b[..2].copy_from_slice(&[9, 9]),
            }
            b
        };
        let ids: Vec<[u8; 32]> = (0..4u64).flat_map(|s| (0..700).map(move |i| shaped(i, s))).collect();
        let packs = ids
            .chunks(16)
            .enumerate()
            .map(|(p, chunk)| IndexPack {
                id: PackId::from_bytes([p as u8; 32]),
                blob_type: BlobType::Data,
                size: 1,
                blobs: chunk
                    .iter()
                    .enumerate()
                    .map(|(j, b)| IndexBlob {
                        id: BlobId::from_bytes(*b),
                        offset: j as u32,
                        length: 1,
                        raw_length: 1,
                    })
                    .collect(),
            })
            .collect();
        let idx = Index::from_files(vec![IndexFile { packs }]).unwrap();
        assert_eq!(idx.ranked(), ids.len());
        for b in &ids {
            let r = idx.rank(&BlobId::from_bytes(*b)).unwrap();
            assert_eq!(idx.sorted[r].prefix, b[..PREFIX_LEN], "{b:02x?}");
            for flip in [3, PREFIX_LEN - 1] {
                let mut absent = *b;
                absent[flip] ^= 0x80;
                let want = ids.iter().any(|x| x[..PREFIX_LEN] == absent[..PREFIX_LEN]);
                assert_eq!(idx.contains(&BlobId::from_bytes(absent)), want, "{absent:02x?}");
            }
        }
    }

    #[test]
    fn lookups_across_sorted_and_pending() {
        let mk = |start: u64, n: u64, pack: u8| IndexPack {
            id: PackId::from_bytes([pack; 32]),
            blob_type: BlobType::Data,
            size: 1,
            blobs: (start..start + n)
                .map(|i| IndexBlob {
                    id: id(i),
                    offset: i as u32,
                    length: 7,
                    raw_length: 9,
                })
                .collect(),
        };
        let mut idx = Index::from_files(vec![IndexFile {
            packs: vec![mk(0, 1000, 1)],
        }])
        .unwrap();
        idx.add_pack(&mk(1000, 500, 2)).unwrap();
        for i in 0..1500 {
            let loc = idx.get(&id(i)).unwrap();
            assert_eq!(loc.offset, i as u32);
            assert_eq!(loc.pack, PackId::from_bytes([if i < 1000 { 1 } else { 2 }; 32]));
        }
        assert!(!idx.contains(&id(5000)));
        assert_eq!(idx.len(), 1500);
        // Pending entries have no rank until they are merged.
        assert_eq!(idx.ranked(), 1000);
        assert!(idx.rank(&id(1200)).is_none());
        idx.merge();
        assert!(idx.contains(&id(1499)));
        assert_eq!(idx.len(), 1500);
        // Ranks are a permutation of 0..ranked(), each naming its own blob.
        let mut seen = vec![false; idx.ranked()];
        for i in 0..1500 {
            let r = idx.rank(&id(i)).unwrap();
            assert!(!std::mem::replace(&mut seen[r], true), "rank {r} given twice");
            assert_eq!(idx.at_rank(r), Some((if i < 1000 { 0 } else { 1 }, 7)));
        }
        assert!(idx.rank(&id(5000)).is_none());
        assert_eq!(idx.at_rank(1500), None);
    }
}
