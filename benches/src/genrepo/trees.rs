//! Building each snapshot's trees from the [`Shape`] and storing the ones
//! not stored yet. A partition folder's tree is built once per distinct
//! content and remembered, so a partition that did not change since last
//! night costs a map lookup, not an encoding of its thousands of content
//! references.

use std::collections::{HashMap, HashSet};

use cairn_engine::blob::{self, Aad, BlobType, Compression};
use cairn_engine::crypto::Keys;
use cairn_engine::id::BlobId;
use cairn_engine::{ContentRef, Node, NodeKind, Snapshot, SourceKind, Summary, Tree, TreeId};
use rayon::prelude::*;

use super::shape::{Shape, FILES_PER_PART, TABLES};
use super::writer::PackSink;
use super::Result;

/// 2023-01-01T02:00:00Z, in ns: the first night's backup time. A fixed date
/// keeps a seed's repository the same from run to run (apart from nonces).
const FIRST_NIGHT_NS: i64 = (1_672_531_200 + 2 * 3600) * 1_000_000_000;
const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Bytes a sealed blob adds to its plaintext (nonce, flag byte, tag): for
/// the approximate `bytes_added_stored` of a snapshot's summary.
const SEAL_OVERHEAD: u64 = 24 + 1 + 16;
/// Owner recorded on every node.
const UID: u32 = 1000;
/// Device number recorded on every node.
const DEVICE: u64 = 2049;

/// The time of night `i`'s backup.
pub fn night_ns(i: u64) -> i64 {
    FIRST_NIGHT_NS + i as i64 * DAY_NS
}

/// Builds and stores the trees of consecutive snapshots.
pub struct TreeBuilder<'a> {
    shape: Shape,
    ids: &'a [BlobId],
    blob_size: u32,
    keys: &'a Keys,
    compression: Compression,
    /// Partition folder nodes by (partition, first file, content end).
    parts: HashMap<(u64, u64, u64), Node>,
    stored: HashSet<BlobId>,
    /// Trees of the snapshot being built that are not stored yet.
    new_trees: Vec<(BlobId, Vec<u8>)>,
    /// Tree blobs stored so far.
    pub tree_blobs: u64,
}

impl<'a> TreeBuilder<'a> {
    /// A builder over the data blob ids `ids` (index = blob number).
    pub fn new(shape: Shape, ids: &'a [BlobId], blob_size: u32, keys: &'a Keys, compression: Compression) -> Self {
        Self {
            shape,
            ids,
            blob_size,
            keys,
            compression,
            parts: HashMap::new(),
            stored: HashSet::new(),
            new_trees: Vec::new(),
            tree_blobs: 0,
        }
    }

    /// Builds snapshot `i`, seals its new trees into `sink` and returns the
    /// snapshot object (without a parent: the caller chains them as it
    /// stores them).
    pub fn snapshot(&mut self, i: u64, sink: &mut PackSink) -> Result<Snapshot> {
        let (f0, f1) = self.shape.files_of(i);
        let mut by_table: Vec<Vec<Node>> = vec![Vec::new(); TABLES as usize];
        let (p0, p1) = (f0 / FILES_PER_PART, f1.div_ceil(FILES_PER_PART));
        for g in p0..p1 {
            let first = f0.max(g * FILES_PER_PART);
            let last = f1.min((g + 1) * FILES_PER_PART);
            let node = self.part(g, first, last, i)?;
            by_table[(g % TABLES) as usize].push(node);
        }
        let mut tables = Vec::new();
        for (t, mut parts) in by_table.into_iter().enumerate() {
            if parts.is_empty() {
                continue;
            }
            parts.sort_by(|a, b| a.name.cmp(&b.name));
            let inode = self.shape.files() + self.shape.files().div_ceil(FILES_PER_PART) + t as u64 + 1;
            tables.push(self.dir(format!("table-{t}"), inode, Tree { nodes: parts })?);
        }
        let data = self.dir("data".into(), 2, Tree { nodes: tables })?;
        let root_tree = Tree { nodes: vec![data] };
        let root = self.add_tree(&root_tree)?;
        let tree_blobs_added = self.new_trees.len() as u64;
        let tree_bytes = self.seal_new_trees(sink)?;
        Ok(Snapshot {
            time_ns: night_ns(i),
            host: "gen-repo".into(),
            user: "cairn".into(),
            uid: UID,
            gid: UID,
            tags: vec!["gen-repo".into()],
            paths: vec!["/data".into()],
            excludes: Vec::new(),
            source: SourceKind::Files,
            tree: root,
            parent: None,
            program_version: cairn_engine::VERSION.to_string(),
            summary: self.summary(i, p1 - p0, tree_blobs_added, tree_bytes),
            rewritten_from: None,
            details: Default::default(),
            chunk_sizes: None,
            copied_from: None,
        })
    }

    /// The node of partition `g` holding files `[first, last)` as night `i`
    /// sees them, built on first use.
    fn part(&mut self, g: u64, first: u64, last: u64, i: u64) -> Result<Node> {
        let end = self.shape.file_content(last - 1, i).1;
        if let Some(n) = self.parts.get(&(g, first, end)) {
            return Ok(n.clone());
        }
        let files = (first..last).map(|k| self.file(k, i)).collect();
        let node = self.dir(
            format!("part-{g:08}"),
            self.shape.files() + g + 1,
            Tree { nodes: files },
        )?;
        self.parts.insert((g, first, end), node.clone());
        Ok(node)
    }

    /// File `k` as night `i` sees it.
    fn file(&self, k: u64, i: u64) -> Node {
        let (a, b) = self.shape.file_content(k, i);
        let mut n = Node::new(format!("file-{k:08}.db").into_bytes(), NodeKind::File);
        n.mode = 0o640;
        self.owner(&mut n);
        n.mtime_ns = night_ns(self.shape.file_night(k, i));
        n.ctime_ns = n.mtime_ns;
        n.inode = k + 1;
        n.size = (b - a) * u64::from(self.blob_size);
        n.content = self.ids[a as usize..b as usize]
            .iter()
            .map(|&id| ContentRef {
                id,
                length: self.blob_size,
            })
            .collect();
        n
    }

    /// A folder node for `tree` (queued for storing when new), dated by its
    /// newest entry so that an unchanged folder encodes the same.
    fn dir(&mut self, name: String, inode: u64, tree: Tree) -> Result<Node> {
        let mut n = Node::new(name.into_bytes(), NodeKind::Dir);
        n.mode = 0o755;
        self.owner(&mut n);
        n.mtime_ns = tree.nodes.iter().map(|c| c.mtime_ns).max().unwrap_or(FIRST_NIGHT_NS);
        n.ctime_ns = n.mtime_ns;
        n.inode = inode;
        n.subtree = Some(self.add_tree(&tree)?);
        Ok(n)
    }

    fn owner(&self, n: &mut Node) {
        n.uid = UID;
        n.gid = UID;
        n.user = "cairn".into();
        n.group = "cairn".into();
        n.device = DEVICE;
    }

    /// Encodes `tree` and queues it unless it is stored already.
    fn add_tree(&mut self, tree: &Tree) -> Result<TreeId> {
        let (id, bytes) = tree.encode_blob(self.keys)?;
        if self.stored.insert(id.blob()) {
            self.new_trees.push((id.blob(), bytes));
        }
        Ok(id)
    }

    /// Seals the queued trees in parallel and packs them; returns their
    /// plaintext bytes.
    fn seal_new_trees(&mut self, sink: &mut PackSink) -> Result<u64> {
        let trees = std::mem::take(&mut self.new_trees);
        let sealed = trees
            .par_iter()
            .map(|(id, bytes)| {
                Ok(blob::seal(
                    self.keys,
                    Aad::Blob(BlobType::Tree, id),
                    bytes,
                    self.compression,
                )?)
            })
            .collect::<Result<Vec<Vec<u8>>>>()?;
        let mut raw = 0;
        for ((id, bytes), s) in trees.iter().zip(&sealed) {
            sink.add(*id, s, bytes.len())?;
            raw += bytes.len() as u64;
        }
        self.tree_blobs += trees.len() as u64;
        Ok(raw)
    }

    /// What a backup of night `i` would have reported, from the model.
    fn summary(&self, i: u64, parts: u64, tree_blobs: u64, tree_bytes: u64) -> Summary {
        let s = &self.shape;
        let bs = u64::from(self.blob_size);
        let prev_end = if i == 0 { 0 } else { s.end(i - 1) };
        let (f0, f1) = s.files_of(i);
        let mut sum = Summary {
            dirs: 1 + TABLES.min(parts) + parts,
            ..Summary::default()
        };
        for k in f0..f1 {
            let (a, b) = s.file_content(k, i);
            let bytes = (b - a) * bs;
            if a >= prev_end {
                sum.files_new += 1;
                sum.bytes_new += bytes;
            } else if b > prev_end {
                sum.files_changed += 1;
                sum.bytes_changed += bytes;
            } else {
                sum.files_unchanged += 1;
                sum.bytes_unchanged += bytes;
            }
        }
        sum.bytes_read = sum.bytes_new + sum.bytes_changed;
        sum.data_blobs_added = s.end(i) - prev_end;
        sum.tree_blobs_added = tree_blobs;
        sum.bytes_added_raw = sum.data_blobs_added * bs + tree_bytes;
        sum.bytes_added_stored = sum.bytes_added_raw + (sum.data_blobs_added + tree_blobs) * SEAL_OVERHEAD;
        sum
    }
}
