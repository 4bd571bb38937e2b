//! The tree phase of a check, in two walks by the one tree walker.
//!
//! The first visits every distinct tree once (nightly snapshots share most
//! of theirs), records damage, and marks each tree below which something
//! is damaged. The second walks each snapshot again, but only into marked
//! trees, to name every snapshot and path that depends on each damaged
//! object: on a healthy repository it reads nothing.

use std::collections::HashSet;
use std::path::Path;

use super::{CheckError, CheckReport, Damage, Dependent};
use crate::backend::ObjectKind;
use crate::blob::BlobType;
use crate::id::{SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::{self, Descend, Node, NodeKind, Visitor};

/// Every snapshot (or those in `only`), and every distinct tree they reach
/// (each once).
pub(super) fn check_snapshots(
    repo: &Repository,
    index: &Index,
    only: Option<&[SnapshotId]>,
    damage: &mut Damage,
    r: &mut CheckReport,
) -> Result<(), CheckError> {
    let mut names = repo.backend().list(ObjectKind::Snapshot)?;
    if let Some(only) = only {
        names.retain(|o| SnapshotId::from_hex(&o.name).is_ok_and(|id| only.contains(&id)));
    }
    let mut snaps: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for o in &names {
        match SnapshotId::from_hex(&o.name)
            .map_err(|e| e.to_string())
            .and_then(|id| repo.load_snapshot(&id).map(|s| (id, s)).map_err(|e| e.to_string()))
        {
            Ok(s) => snaps.push(s),
            Err(e) => r.errors.push(format!("snapshot {}: {e}", o.name)),
        }
    }
    snaps.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    r.snapshots = names.len();
    let mut first = TreeCheck {
        index,
        damage: &mut *damage,
        seen: HashSet::new(),
        clean: HashSet::new(),
        tainted: HashSet::new(),
        stack: Vec::new(),
        errors: Vec::new(),
    };
    for (_, s) in &snaps {
        if first.seen.insert(s.tree) {
            first.stack = vec![false];
            tree::walk(repo, index, &s.tree, Path::new("/"), &mut first)?;
            if first.stack.pop().unwrap_or(false) {
                first.tainted.insert(s.tree);
            }
        }
    }
    r.trees = first.seen.len();
    r.errors.append(&mut first.errors);
    let tainted = std::mem::take(&mut first.tainted);
    for (id, s) in &snaps {
        if tainted.contains(&s.tree) {
            let mut deps = Dependents {
                index,
                damage: &mut *damage,
                tainted: &tainted,
                snapshot: *id,
            };
            tree::walk(repo, index, &s.tree, Path::new("/"), &mut deps)?;
        }
    }
    Ok(())
}

/// The first walk: each tree once, damage recorded, never fatal.
struct TreeCheck<'a> {
    index: &'a Index,
    damage: &'a mut Damage,
    seen: HashSet<TreeId>,
    /// Content lists of at least [`REMEMBER_FROM`] blobs already found
    /// clean, by hash (see [`content_key`]).
    clean: HashSet<[u8; 16]>,
    /// Trees below which something is damaged.
    tainted: HashSet<TreeId>,
    /// Per folder being walked (the root first): whether anything below it
    /// is damaged so far.
    stack: Vec<bool>,
    /// Damage that depends on nothing else (e.g. a size that disagrees).
    errors: Vec<String>,
}

impl TreeCheck<'_> {
    fn taint(&mut self) {
        if let Some(top) = self.stack.last_mut() {
            *top = true;
        }
    }
}

impl Visitor for TreeCheck<'_> {
    type Error = CheckError;

    fn enter(&mut self, path: &Path, parent: &TreeId, n: &Node) -> Result<Descend, CheckError> {
        let at = || format!("{} (tree {})", path.display(), parent.short());
        match n.kind {
            NodeKind::Dir => match n.subtree {
                Some(s) if self.seen.insert(s) => {
                    self.stack.push(false);
                    return Ok(Descend::Yes);
                }
                Some(s) => {
                    if self.tainted.contains(&s) {
                        self.taint();
                    }
                }
                None => self.errors.push(format!("folder {}: has no subtree", at())),
            },
            NodeKind::File => {
                // A file that did not change sits in a new tree whenever a
                // sibling did: each night's trees repeat its content list,
                // and looking every blob up again (a cache miss each, in an
                // index of millions) is what made check grow with blobs
                // times nights. A list found clean once is clean again: the
                // damage known only grows by what the same ids lead to.
                let key = (n.content.len() >= REMEMBER_FROM).then(|| content_key(n));
                if !key.is_some_and(|k| self.clean.contains(&k)) {
                    let mut bad = false;
                    for c in &n.content {
                        bad |= file_blob_problem(self.index, self.damage, &c.id).is_some();
                    }
                    if bad {
                        self.taint();
                    } else if let Some(k) = key {
                        self.clean.insert(k);
                    }
                }
                let sum: u64 = n.content.iter().map(|c| u64::from(c.length)).sum();
                if sum != n.size {
                    self.errors.push(format!(
                        "file {}: content adds up to {sum} bytes, size says {}",
                        at(),
                        n.size
                    ));
                }
            }
            _ => {}
        }
        Ok(Descend::No)
    }

    fn leave(&mut self, _: &Path, node: &Node) -> Result<(), CheckError> {
        if self.stack.pop().unwrap_or(false) {
            if let Some(s) = node.subtree {
                self.tainted.insert(s);
            }
            self.taint();
        }
        Ok(())
    }

    fn tree_error(&mut self, _: &Path, id: &TreeId, e: RepositoryError) -> Result<(), CheckError> {
        tree_problem(self.index, self.damage, id, &e);
        self.taint();
        Ok(())
    }
}

/// Content lists shorter than this are looked up blob by blob every time:
/// hashing them would cost about as much as the look-ups.
const REMEMBER_FROM: usize = 8;

/// A file's content list, by the first half of its BLAKE3 hash: a
/// collision-resistant hash, so a repository cannot make a damaged list
/// pass for a clean one.
fn content_key(n: &Node) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    for c in &n.content {
        h.update(c.id.as_bytes());
    }
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

/// The problem a file's content blob runs into, recorded if new: damaged
/// or missing pack, damaged blob, not in the index, or not a data blob.
fn file_blob_problem(index: &Index, damage: &mut Damage, id: &crate::id::BlobId) -> Option<usize> {
    if let Some(i) = damage.of_blob(index, id, "data") {
        return Some(i);
    }
    match index.get(id) {
        Some(l) if l.blob_type != BlobType::Data => {
            let i = damage.add(format!("blob {id}"), "is a tree blob, named as file content".into());
            damage.blobs.insert(*id, i);
            Some(i)
        }
        _ => None,
    }
}

/// The problem of a tree that cannot be read: its pack's, when the pack is
/// known damaged or missing, else one of its own.
fn tree_problem(index: &Index, damage: &mut Damage, id: &TreeId, e: &RepositoryError) -> usize {
    let blob = id.blob();
    if let Some(&i) = damage.trees.get(&blob) {
        return i;
    }
    let i = match (index.get(&blob), damage.blobs.get(&blob)) {
        (_, Some(&i)) => i,
        (Some(loc), None) if damage.packs.contains_key(&loc.pack) => damage.packs[&loc.pack],
        _ => damage.add(format!("tree {id}"), format!("cannot be read: {e}")),
    };
    damage.trees.insert(blob, i);
    i
}

/// The second walk, of one snapshot: into tainted trees only, naming each
/// path that depends on a damaged object.
struct Dependents<'a> {
    index: &'a Index,
    damage: &'a mut Damage,
    tainted: &'a HashSet<TreeId>,
    snapshot: SnapshotId,
}

impl Dependents<'_> {
    fn depends(&mut self, problem: usize, path: &Path) {
        let d = Dependent {
            snapshot: self.snapshot,
            path: path.to_string_lossy().into_owned(),
        };
        if let Some(p) = self.damage.problems.get_mut(problem) {
            if p.dependents.last() != Some(&d) {
                p.dependents.push(d);
            }
        }
    }
}

impl Visitor for Dependents<'_> {
    type Error = CheckError;

    fn enter(&mut self, path: &Path, _: &TreeId, n: &Node) -> Result<Descend, CheckError> {
        match (n.kind, n.subtree) {
            (NodeKind::Dir, Some(s)) if self.tainted.contains(&s) => return Ok(Descend::Yes),
            (NodeKind::File, _) => {
                let mut named = Vec::new();
                for c in &n.content {
                    if let Some(i) = file_blob_problem(self.index, self.damage, &c.id) {
                        if !named.contains(&i) {
                            named.push(i);
                            self.depends(i, path);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(Descend::No)
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, e: RepositoryError) -> Result<(), CheckError> {
        let i = tree_problem(self.index, self.damage, id, &e);
        self.depends(i, path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fs;
    use std::sync::Arc;

    use crate::backend::memory::MemoryBackend;
    use crate::backend::ObjectKind;
    use crate::backup::{backup, BackupOptions, BackupSource};
    use crate::check::{check, CheckOptions};
    use crate::chunker::ChunkerParams;
    use crate::repository::{InitOptions, Repository};
    use crate::testing::{noise, CHEAP_KDF};

    /// A file of many blobs that stays the same while its sibling changes
    /// sits in a new tree each night. Its content list is remembered only
    /// when clean: once a blob of it is lost, every snapshot holding the
    /// file is named, not only the first one walked.
    #[test]
    fn a_repeated_content_list_is_checked_again_when_damaged() {
        let opts = InitOptions {
            kdf: CHEAP_KDF,
            chunker: Some(ChunkerParams {
                min_size: 4 * 1024,
                avg_size: 8 * 1024,
                max_size: 16 * 1024,
                ..ChunkerParams::with_seed(7)
            }),
            ..Default::default()
        };
        let repo = Repository::init(Arc::new(MemoryBackend::new()), b"pw", opts).unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("big"), noise(256 * 1024, 3)).unwrap();
        let mut snaps = HashSet::new();
        let mut first_packs = Vec::new();
        for night in 1..=3u8 {
            fs::write(src.path().join("small"), [night]).unwrap();
            let out = backup(
                &repo,
                BackupSource::Paths(vec![src.path().to_path_buf()]),
                &BackupOptions::default(),
            )
            .unwrap();
            snaps.insert(out.id.unwrap());
            if night == 1 {
                first_packs = repo.backend().list(ObjectKind::DataPack).unwrap();
            }
        }
        let clean = check(&repo, &CheckOptions::default()).unwrap();
        assert!(clean.ok(), "{clean:?}");
        assert_eq!(snaps.len(), 3);

        // Lose the first night's data packs: the big file's blobs (and that
        // night's small file). The later nights' small files stay intact,
        // so only the big file's content list can name their snapshots.
        for p in first_packs {
            repo.backend().remove(ObjectKind::DataPack, &p.name).unwrap();
        }
        let r = check(&repo, &CheckOptions::default()).unwrap();
        let named: HashSet<_> = r
            .problems
            .iter()
            .flat_map(|p| &p.dependents)
            .filter(|d| d.path.ends_with("/big"))
            .map(|d| d.snapshot)
            .collect();
        assert_eq!(named, snaps, "{:?}", r.problems);
    }
}
