//! Planning a restore: which entries to create, and which blobs of which
//! packs go to which file offsets.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::meta::Applied;
use super::{FailedEntry, Placement, RestoreError, RestoreOptions};
use crate::blob::BlobType;
use crate::id::{BlobId, PackId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::{self, ContentRef, Descend, Node, NodeKind, Visitor, Xattr};

/// One file to write.
#[derive(Debug)]
pub struct PlanFile {
    /// Destination.
    pub path: PathBuf,
    /// Its metadata and content list.
    pub node: FileNode,
    /// Index of an earlier file this one is a hard link to.
    pub link_to: Option<usize>,
    /// Whether a file already existed there (only with `overwrite`).
    pub existed: bool,
    /// Why it cannot be restored, when that is known before reading (a
    /// blob the index does not know).
    pub failed: Option<String>,
}

/// What a restore keeps of a file's node. A plan holds one for every file,
/// and a whole [`Node`] with its name and owner names was most of the
/// 420 bytes a file that a restore of many small files held.
#[derive(Debug)]
pub struct FileNode {
    /// Permission bits as stored.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Modification time, Unix ns.
    pub mtime_ns: i64,
    /// Length: the sum of its content's lengths (format-spec T5: an older
    /// backup may have recorded stat's size for a file that changed while
    /// read).
    pub size: u64,
    /// Extended attributes (nearly always none, then not allocated).
    pub xattrs: Box<[Xattr]>,
    /// Content list, kept only for `--verify`: the reads are planned as
    /// each file is added.
    pub content: Box<[ContentRef]>,
}

impl FileNode {
    fn of(n: &Node, keep_content: bool) -> Self {
        FileNode {
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime_ns: n.mtime_ns,
            size: n.content.iter().map(|c| u64::from(c.length)).sum(),
            xattrs: n.xattrs.as_slice().into(),
            content: if keep_content {
                n.content.as_slice().into()
            } else {
                Box::default()
            },
        }
    }

    /// The metadata applied to the restored file.
    pub(super) fn meta(&self) -> Applied<'_> {
        Applied {
            kind: NodeKind::File,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: self.mtime_ns,
            xattrs: &self.xattrs,
        }
    }
}

/// One blob to read, and where its plaintext goes.
#[derive(Debug)]
pub struct BlobJob {
    /// Blob id.
    pub id: BlobId,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length, as the tree records it.
    pub raw_length: u32,
    /// (file number, offset in that file) for every place it goes.
    pub targets: Vec<(usize, u64)>,
}

/// All blobs needed from one pack, in pack order.
#[derive(Debug)]
pub struct PackJob {
    /// The pack.
    pub pack: PackId,
    /// Its stored size (what a retrieval from archive storage moves).
    pub size: u64,
    /// Its blobs, sorted by offset.
    pub blobs: Vec<BlobJob>,
}

/// Everything a restore will do, decided before anything is written.
#[derive(Debug, Default)]
pub struct RestorePlan {
    /// The target folder.
    pub target: PathBuf,
    /// Folders to create, parents first.
    pub dirs: Vec<(PathBuf, Node)>,
    /// Files to write.
    pub files: Vec<PlanFile>,
    /// Symlinks and special files.
    pub others: Vec<(PathBuf, Node)>,
    /// Reads, grouped by pack.
    pub packs: Vec<PackJob>,
    /// Total content bytes.
    pub bytes: u64,
    /// Entries that cannot be restored, found while planning: unreadable
    /// trees, unsafe or duplicate names.
    pub failed: Vec<FailedEntry>,
}

fn globset(patterns: &[String]) -> Result<GlobSet, RestoreError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let bad = |e: globset::Error| RestoreError::BadPattern {
            pattern: p.clone(),
            detail: e.to_string(),
        };
        b.add(Glob::new(p).map_err(bad)?);
        if !p.contains('/') {
            b.add(Glob::new(&format!("**/{p}")).map_err(bad)?);
        }
    }
    b.build().map_err(|e| RestoreError::BadPattern {
        pattern: patterns.join(" "),
        detail: e.to_string(),
    })
}

fn safe_name(name: &[u8]) -> bool {
    !(name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0))
}

/// What every path a pattern matches starts with: the pattern up to its
/// first glob character. A pattern without a `/` matches at any depth, so
/// it has none. Restoring one file of a tree of millions then reads only
/// the folders on its way instead of every tree of the snapshot, and a
/// damaged folder elsewhere does not fail it.
fn literal_prefix(pattern: &str) -> Vec<u8> {
    if !pattern.contains('/') {
        return Vec::new();
    }
    let end = pattern.find(['*', '?', '[', '{', '\\']).unwrap_or(pattern.len());
    pattern.as_bytes()[..end].to_vec()
}

/// Whether a path below the folder `dir` could start with `prefix`.
fn may_lead_to(dir: &Path, prefix: &[u8]) -> bool {
    let d = dir.as_os_str().as_bytes();
    let below = |p: &[u8]| p.len() > d.len() && p.starts_with(d) && (d.ends_with(b"/") || p[d.len()] == b'/');
    // The prefix goes on below the folder, or stops at or above it.
    below(prefix) || d.starts_with(prefix)
}

/// A destination as the planner remembers it: 128 bits of its BLAKE3
/// hash instead of a second copy of every path (the set held about 100
/// bytes a file). Two different paths meeting here would take a collision
/// of BLAKE3, which no tree can be built to cause.
#[derive(PartialEq, Eq, Hash)]
struct PathKey([u8; 16]);

impl PathKey {
    fn of(p: &Path) -> Self {
        let h = blake3::hash(p.as_os_str().as_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.as_bytes()[..16]);
        PathKey(k)
    }
}

/// A folder whose entries are being visited.
struct OpenDir {
    /// Its position in `plan.dirs`.
    at: usize,
    /// Whether it matched the include patterns itself (or a parent did).
    included: bool,
    /// Whether anything below it was added.
    any: bool,
}

struct Builder<'a> {
    index: &'a Index,
    include: GlobSet,
    exclude: GlobSet,
    has_include: bool,
    /// The literal start of each include pattern: a folder none of them
    /// can lead into is not read at all ([`literal_prefix`]).
    include_prefixes: Vec<Vec<u8>>,
    plan: RestorePlan,
    links: HashMap<(u64, u64), usize>,
    /// Snapshot paths below this land below `dest_base`.
    snapshot_base: PathBuf,
    dest_base: PathBuf,
    open: Vec<OpenDir>,
    /// Every destination so far: a (hostile or damaged) tree naming one
    /// entry twice must not make the restore write one through the other.
    seen: HashSet<PathKey>,
    /// A layout's folders placed at one destination are merged.
    merge_dirs: bool,
    /// The blobs to read, by pack, filled as files are added.
    by_pack: HashMap<PackId, HashMap<BlobId, BlobJob>>,
    /// `--verify`: files keep their content lists.
    keep_content: bool,
}

impl Builder<'_> {
    fn dest(&self, spath: &Path) -> PathBuf {
        match spath.strip_prefix(&self.snapshot_base) {
            // A layout's placed folder itself (no trailing `/` added).
            Ok(rel) if rel.as_os_str().is_empty() => self.dest_base.clone(),
            Ok(rel) => self.dest_base.join(rel),
            Err(_) => self.dest_base.clone(),
        }
    }

    fn added_below(&mut self) {
        if let Some(p) = self.open.last_mut() {
            p.any = true;
        }
    }

    /// A folder is kept when it was included or anything below it was.
    fn close_dir(&mut self, d: OpenDir) {
        if d.any || d.included {
            self.added_below();
        } else {
            // Nothing below was wanted, and nothing was added after it.
            self.plan.dirs.truncate(d.at);
        }
    }

    fn refuse(&mut self, path: PathBuf, reason: String) {
        self.plan.failed.push(FailedEntry {
            path: path.to_string_lossy().into_owned(),
            reason,
            damaged: true,
        });
    }

    fn add_file(&mut self, dest: PathBuf, node: &Node) {
        let n = self.plan.files.len();
        let mut link_to = None;
        if node.is_hard_linked() {
            match self.links.get(&(node.device, node.inode)) {
                Some(&first) => link_to = Some(first),
                None => {
                    self.links.insert((node.device, node.inode), n);
                }
            }
        }
        let file = FileNode::of(node, self.keep_content);
        let failed = match link_to {
            Some(_) => None,
            None => {
                self.plan.bytes += file.size;
                self.plan_reads(n, &node.content)
            }
        };
        self.plan.files.push(PlanFile {
            path: dest,
            node: file,
            link_to,
            existed: false,
            failed,
        });
    }

    /// Plans the reads of file `f`'s `content`, or says why it cannot be
    /// restored. Every blob must be known before any is read: a file
    /// missing one is not restored, and its other blobs are not fetched.
    fn plan_reads(&mut self, f: usize, content: &[ContentRef]) -> Option<String> {
        let missing = content
            .iter()
            .find(|c| self.index.get(&c.id).is_none_or(|loc| loc.blob_type != BlobType::Data));
        if let Some(c) = missing {
            return Some(RepositoryError::MissingBlob { id: c.id }.to_string());
        }
        let mut off = 0u64;
        for c in content {
            let Some(loc) = self.index.get(&c.id) else { continue };
            self.by_pack
                .entry(loc.pack)
                .or_default()
                .entry(c.id)
                .or_insert_with(|| BlobJob {
                    id: c.id,
                    offset: loc.offset,
                    length: loc.length,
                    raw_length: c.length,
                    targets: Vec::new(),
                })
                .targets
                .push((f, off));
            off += u64::from(c.length);
        }
        None
    }
}

impl Visitor for Builder<'_> {
    type Error = RestoreError;

    fn enter(&mut self, spath: &Path, parent: &TreeId, node: &Node) -> Result<Descend, RestoreError> {
        if !safe_name(&node.name) {
            let name = OsStr::from_bytes(&node.name).to_string_lossy().into_owned();
            // Named by the folder holding it: its own path is what is unsafe.
            let at = match self.open.last() {
                Some(d) => self.plan.dirs[d.at].0.clone(),
                None => self.dest_base.clone(),
            };
            self.refuse(
                at,
                format!(
                    "tree {} holds the unsafe name {name:?}; that entry is left out",
                    parent.short()
                ),
            );
            self.added_below();
            return Ok(Descend::No);
        }
        if self.exclude.is_match(spath) {
            return Ok(Descend::No);
        }
        let parent_included = self.open.last().is_some_and(|d| d.included);
        let included = !self.has_include || parent_included || self.include.is_match(spath);
        let dest = self.dest(spath);
        if self.merge_dirs
            && node.kind == NodeKind::Dir
            && node.subtree.is_some()
            && self.seen.contains(&PathKey::of(&dest))
        {
            // A layout placing two folders at one destination merges them.
            self.open.push(OpenDir {
                at: self.plan.dirs.len(),
                included,
                any: false,
            });
            return Ok(Descend::Yes);
        }
        if !self.seen.insert(PathKey::of(&dest)) {
            self.refuse(
                dest,
                format!(
                    "tree {} names this entry twice; only the first is restored",
                    parent.short()
                ),
            );
            self.added_below();
            return Ok(Descend::No);
        }
        match node.kind {
            NodeKind::Dir if !included && !self.include_prefixes.iter().any(|p| may_lead_to(spath, p)) => {}
            NodeKind::Dir => {
                let d = OpenDir {
                    at: self.plan.dirs.len(),
                    included,
                    any: false,
                };
                self.plan.dirs.push((dest, node.clone()));
                if node.subtree.is_some() {
                    self.open.push(d);
                    return Ok(Descend::Yes);
                }
                self.close_dir(d);
            }
            _ if !included => {}
            NodeKind::File => {
                self.add_file(dest, node);
                self.added_below();
            }
            _ => {
                self.plan.others.push((dest, node.clone()));
                self.added_below();
            }
        }
        Ok(Descend::No)
    }

    fn leave(&mut self, _: &Path, _: &Node) -> Result<(), RestoreError> {
        if let Some(d) = self.open.pop() {
            self.close_dir(d);
        }
        Ok(())
    }

    /// A folder whose tree cannot be read: what it holds is unknown, so it
    /// is named as not restored and the walk goes on.
    fn tree_error(&mut self, spath: &Path, id: &TreeId, error: RepositoryError) -> Result<(), RestoreError> {
        let dest = self.dest(spath);
        self.refuse(
            dest,
            format!(
                "its contents are not restored: tree {} cannot be read: {error}",
                id.short()
            ),
        );
        self.added_below();
        Ok(())
    }
}

impl Builder<'_> {
    /// The planned reads, pack by pack.
    fn pack_jobs(&mut self) {
        let by_pack = std::mem::take(&mut self.by_pack);
        let mut packs: Vec<PackJob> = by_pack
            .into_iter()
            .map(|(pack, blobs)| {
                let mut blobs: Vec<BlobJob> = blobs.into_values().collect();
                blobs.sort_by_key(|b| b.offset);
                PackJob {
                    size: self.index.pack_size(&pack).unwrap_or_else(|| {
                        blobs
                            .iter()
                            .map(|b| u64::from(b.offset) + u64::from(b.length))
                            .max()
                            .unwrap_or(0)
                    }),
                    pack,
                    blobs,
                }
            })
            .collect();
        // Biggest first keeps both cores busy to the end.
        packs.sort_by_key(|p| std::cmp::Reverse(p.blobs.iter().map(|b| u64::from(b.length)).sum::<u64>()));
        self.plan.packs = packs;
    }
}

impl Builder<'_> {
    /// Follows a layout: each placed folder's entries land below its
    /// destination instead of their own paths.
    fn place(
        &mut self,
        repo: &Repository,
        index: &Index,
        snapshot: &Snapshot,
        target: &Path,
        places: &[Placement],
    ) -> Result<(), RestoreError> {
        for p in places {
            let node = tree::resolve_path(repo, index, &snapshot.tree, &p.from)?
                .filter(|n| n.kind == NodeKind::Dir)
                .ok_or_else(|| RestoreError::PathNotFound(p.from.clone()))?;
            if p.to.components().any(|c| !matches!(c, Component::Normal(_))) {
                // Nothing may land outside the target, whatever a layout says.
                let at = target.join(&p.to);
                self.refuse(at, format!("{} would be placed outside the target; left out", p.from));
                continue;
            }
            let spath = Path::new(&p.from);
            self.snapshot_base = spath.to_path_buf();
            self.dest_base = target.join(&p.to);
            if !p.contents {
                // Only the folder, as the parent of other placements.
                if self.seen.insert(PathKey::of(&self.dest_base)) {
                    self.plan.dirs.push((self.dest_base.clone(), node));
                }
                continue;
            }
            if self.enter(spath, &snapshot.tree, &node)? == Descend::Yes {
                if let Some(sub) = node.subtree {
                    tree::walk(repo, index, &sub, spath, self)?;
                }
                self.leave(spath, &node)?;
            }
        }
        Ok(())
    }
}

impl RestorePlan {
    /// Plans the restore of `snapshot` into `target` with `opts`.
    pub fn build(
        repo: &Repository,
        index: &Index,
        snapshot: &Snapshot,
        target: &Path,
        opts: &RestoreOptions,
    ) -> Result<Self, RestoreError> {
        let layout = opts.layout.as_ref();
        let include = [&opts.include[..], layout.map_or(&[][..], |l| &l.include[..])].concat();
        let exclude = [&opts.exclude[..], layout.map_or(&[][..], |l| &l.exclude[..])].concat();
        let mut b = Builder {
            index,
            include: globset(&include)?,
            exclude: globset(&exclude)?,
            has_include: !include.is_empty(),
            include_prefixes: include.iter().map(|p| literal_prefix(p)).collect(),
            merge_dirs: layout.is_some(),
            plan: RestorePlan {
                target: target.to_path_buf(),
                ..Default::default()
            },
            links: HashMap::new(),
            seen: HashSet::new(),
            snapshot_base: PathBuf::from("/"),
            dest_base: target.to_path_buf(),
            open: Vec::new(),
            by_pack: HashMap::new(),
            keep_content: opts.verify,
        };
        match &opts.subpath {
            _ if layout.is_some() => b.place(repo, index, snapshot, target, layout.map_or(&[][..], |l| &l.places))?,
            Some(sp) if Path::new(sp).components().any(|c| matches!(c, Component::Normal(_))) => {
                let node = tree::resolve_path(repo, index, &snapshot.tree, sp)?
                    .ok_or_else(|| RestoreError::PathNotFound(sp.clone()))?;
                let spath = Path::new(sp);
                b.snapshot_base = spath.parent().unwrap_or(Path::new("/")).to_path_buf();
                if b.enter(spath, &snapshot.tree, &node)? == Descend::Yes {
                    if let Some(sub) = node.subtree {
                        tree::walk(repo, index, &sub, spath, &mut b)?;
                    }
                    b.leave(spath, &node)?;
                }
            }
            _ => tree::walk(repo, index, &snapshot.tree, Path::new("/"), &mut b)?,
        }
        b.pack_jobs();
        let mut plan = b.plan;
        plan.files.shrink_to_fit();
        let mut existing = Vec::new();
        for f in &mut plan.files {
            if std::fs::symlink_metadata(&f.path).is_ok() {
                f.existed = true;
                existing.push(f.path.clone());
            }
        }
        for (p, _) in &plan.others {
            if std::fs::symlink_metadata(p).is_ok() {
                existing.push(p.clone());
            }
        }
        if !opts.overwrite && !existing.is_empty() {
            return Err(RestoreError::TargetExists {
                count: existing.len(),
                first: existing.swap_remove(0),
            });
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder is skipped only when no path below it can start with a
    /// pattern's literal part; patterns without a `/` match at any depth.
    #[test]
    fn only_folders_no_pattern_can_lead_into_are_skipped() {
        let lead = |dir: &str, pattern: &str| may_lead_to(Path::new(dir), &literal_prefix(pattern));
        let file = "/data/node1/ks/t1/big-Data.db";
        for on_the_way in ["/", "/data", "/data/node1", "/data/node1/ks", "/data/node1/ks/t1"] {
            assert!(lead(on_the_way, file), "{on_the_way}");
        }
        for aside in ["/data/node2", "/data/node1/k", "/data/node1/ksx", "/other"] {
            assert!(!lead(aside, file), "{aside}");
        }
        // Below the literal part, everything may match.
        assert!(lead("/data/node1/ks/t1x/deeper", "/data/node1/ks/t1*/x"));
        assert!(lead("/data/node1/ks/t1/a/b", "/data/node1/ks/t1/**"));
        assert!(!lead("/data/node2", "/data/node1/ks/t1/**"));
        assert!(lead("/anything/at/all", "*.db"));
        assert!(lead("/anything", "**/t1/*.db"));
        assert!(lead("/data/a", "/data/{a,b}/x"));
        assert!(lead("/data/esc", "/data/\\*/x"));
    }

    /// A plan holds one of these per file: a restore of millions of small
    /// files pays every byte of it.
    #[test]
    fn a_planned_file_stays_small() {
        assert!(
            std::mem::size_of::<PlanFile>() <= 144,
            "{}",
            std::mem::size_of::<PlanFile>()
        );
    }
}
