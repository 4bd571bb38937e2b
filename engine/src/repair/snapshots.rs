//! `repair snapshots`: copies of snapshots that reference only data the
//! repository still has.
//!
//! As restic's `repair snapshots` does, a file whose data blobs are partly
//! lost keeps the blobs that are still stored (so its size shrinks to theirs)
//! and is renamed with the suffix [`DAMAGED_SUFFIX`](super::DAMAGED_SUFFIX), so nobody takes it for
//! the original; a folder whose tree is lost becomes an empty folder with the
//! same suffix. With `drop_damaged` both are left out instead. The copy is a
//! rewritten snapshot (format-spec "Snapshots"): `rewritten_from` names the
//! original, and it carries the tag [`REPAIRED_TAG`].
//!
//! A blob counts as lost when no index object names it, or when every pack
//! holding it is missing from storage. Run `repair index` first, so blobs in
//! packs only a lost index object named are found.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use super::{RepairError, REPAIRED_TAG};
use crate::backup::{store_tree, Saver};
use crate::blob::BlobType;
use crate::id::{SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::{self, Descend, Node, NodeKind, Tree, Visitor};

/// Threads sealing the new trees: they are few and small.
const SEALERS: usize = 2;

/// Settings of `repair snapshots`.
#[derive(Debug, Clone, Default)]
pub struct RepairSnapshotsOptions {
    /// Leave damaged files and folders out instead of keeping them renamed.
    pub drop_damaged: bool,
    /// Remove each original snapshot once its repaired copy is stored.
    pub forget: bool,
    /// Find what is damaged; store and remove nothing.
    pub dry_run: bool,
}

/// What was done to a damaged entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairAction {
    /// Kept, renamed with the suffix, with the data that is left.
    Marked,
    /// Left out.
    Dropped,
}

/// One damaged file or folder of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedEntry {
    /// Its path in the original snapshot.
    pub path: String,
    /// `file` or `dir`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What is lost.
    pub problem: String,
    /// What the copy holds instead.
    pub action: RepairAction,
    /// Its path in the copy, when kept.
    pub new_path: Option<String>,
}

/// What happened to one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRepair {
    /// The snapshot examined.
    pub original: SnapshotId,
    /// Its repaired copy; `None` when nothing is damaged, in a dry run, or
    /// when its root tree is lost.
    pub repaired: Option<SnapshotId>,
    /// The damaged entries, in tree order.
    pub damaged: Vec<DamagedEntry>,
    /// The root tree is lost: nothing of the snapshot can be read, and no
    /// copy is written (forget it).
    pub root_lost: Option<String>,
    /// Whether the original's snapshot object was removed.
    pub forgotten: bool,
}

/// The outcome of `repair snapshots`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotsRepairReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Each snapshot, in the order given.
    pub snapshots: Vec<SnapshotRepair>,
    /// New tree blobs stored.
    pub tree_blobs_added: u64,
    /// Bytes stored for them.
    pub bytes_added_stored: u64,
}

/// Writes, for each of `snapshots` that references lost data, a copy
/// without it (see the module documentation); undamaged snapshots are left
/// alone. With `opts.forget`, each original is removed right after its copy
/// is stored.
pub fn repair_snapshots(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &RepairSnapshotsOptions,
) -> crate::error::Result<SnapshotsRepairReport> {
    Ok(run(repo, snapshots, opts)?)
}

fn run(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &RepairSnapshotsOptions,
) -> Result<SnapshotsRepairReport, RepairError> {
    let repo = if opts.dry_run {
        repo.with_dry_run()
    } else {
        repo.clone()
    };
    let started = std::time::Instant::now();
    // What is readable: every indexed blob in a pack the storage has.
    let readable = repo.load_index_of_present_packs(&HashSet::new())?;
    let (known, deletions) = repo.load_index_for_backup()?;
    let saver = Saver::start(&repo, Arc::new(known), SEALERS);
    let mut seen = HashMap::new();
    let mut found = Vec::with_capacity(snapshots.len());
    for (_, snap) in snapshots {
        match repair_tree(&repo, &readable, &saver, &snap.tree, opts.drop_damaged, &mut seen) {
            Ok(r) => found.push(r),
            Err(e) => {
                let _ = saver.finish();
                return Err(e);
            }
        }
    }
    let stats = saver.stats.clone();
    saver.finish()?;
    let mut report = SnapshotsRepairReport {
        dry_run: opts.dry_run,
        snapshots: Vec::with_capacity(snapshots.len()),
        tree_blobs_added: stats.tree_blobs.load(Ordering::Relaxed),
        bytes_added_stored: stats.stored_bytes.load(Ordering::Relaxed),
    };
    for ((id, snap), r) in snapshots.iter().zip(found) {
        let mut done = SnapshotRepair {
            original: *id,
            repaired: None,
            damaged: r.damaged,
            root_lost: r.root_lost,
            forgotten: false,
        };
        if let (Some(root), false) = (r.root, opts.dry_run) {
            let mut copy = snap.clone();
            copy.tree = root;
            if !copy.tags.iter().any(|t| t == REPAIRED_TAG) {
                copy.tags.push(REPAIRED_TAG.to_string());
            }
            copy.program_version = crate::VERSION.to_string();
            copy.rewritten_from = Some(*id);
            // B4: a prune that ran meanwhile may have recorded what it reuses.
            crate::backup::verify_reuse(&repo, &deletions, started.elapsed(), &root)?;
            done.repaired = Some(repo.save_snapshot(&copy)?);
            if opts.forget {
                repo.remove_snapshot(id)?;
                done.forgotten = true;
            }
        }
        report.snapshots.push(done);
    }
    Ok(report)
}

/// One snapshot's walk: the new root (`None` when nothing is damaged) and
/// what is damaged.
struct Repaired {
    root: Option<TreeId>,
    damaged: Vec<DamagedEntry>,
    root_lost: Option<String>,
}

/// What repairing a folder at a path gave: the same tree at the same path
/// always gives the same result, so nightly snapshots' shared folders are
/// walked once.
#[derive(Clone)]
struct Outcome {
    /// `Some(None)`: the folder is dropped; `Some(Some(t))`: its new tree;
    /// `None`: unchanged.
    replaced: Option<Option<TreeId>>,
    /// Its tree is lost (the folder is marked or dropped).
    lost: bool,
    damaged: Vec<DamagedEntry>,
}

#[derive(Default)]
struct Folder {
    /// Entries kept, each with whether it is to get the damaged suffix.
    nodes: Vec<(Node, bool)>,
    changed: bool,
    lost: bool,
    damaged_from: usize,
}

struct Repair<'a> {
    repo: &'a Repository,
    readable: &'a Index,
    saver: &'a Saver,
    drop_damaged: bool,
    seen: &'a mut HashMap<(TreeId, PathBuf), Outcome>,
    folders: Vec<Folder>,
    damaged: Vec<DamagedEntry>,
    root_lost: Option<String>,
}

fn repair_tree(
    repo: &Repository,
    readable: &Index,
    saver: &Saver,
    root: &TreeId,
    drop_damaged: bool,
    seen: &mut HashMap<(TreeId, PathBuf), Outcome>,
) -> Result<Repaired, RepairError> {
    let mut v = Repair {
        repo,
        readable,
        saver,
        drop_damaged,
        seen,
        folders: vec![Folder::default()],
        damaged: Vec::new(),
        root_lost: None,
    };
    tree::walk(repo, readable, root, Path::new("/"), &mut v)?;
    let top = v.folders.pop().ok_or(RepairError::Internal("the walk lost the root"))?;
    if !v.folders.is_empty() {
        return Err(RepairError::Internal("the walk left folders open"));
    }
    if v.root_lost.is_some() {
        return Ok(Repaired {
            root: None,
            damaged: v.damaged,
            root_lost: v.root_lost,
        });
    }
    let root = if top.changed {
        Some(v.store(top.nodes, Path::new("/"))?)
    } else {
        None
    };
    Ok(Repaired {
        root,
        damaged: v.damaged,
        root_lost: None,
    })
}

impl Repair<'_> {
    fn current(&mut self) -> Result<&mut Folder, RepairError> {
        self.folders
            .last_mut()
            .ok_or(RepairError::Internal("the walk left the root"))
    }

    fn blob_ok(&self, id: &crate::id::BlobId, t: BlobType) -> bool {
        self.readable.get(id).is_some_and(|l| l.blob_type == t)
    }

    /// Stores a folder's entries, the damaged ones renamed with the suffix
    /// (made unique among their siblings); records their new paths.
    fn store(&mut self, mut nodes: Vec<(Node, bool)>, at: &Path) -> Result<TreeId, RepairError> {
        for (old, new) in super::rename_damaged(&mut nodes) {
            let old = at.join(OsStr::from_bytes(&old)).to_string_lossy().into_owned();
            if let Some(d) = self.damaged.iter_mut().rev().find(|d| d.path == old) {
                d.new_path = Some(at.join(OsStr::from_bytes(&new)).to_string_lossy().into_owned());
            }
        }
        let mut out: Vec<Node> = nodes.into_iter().map(|(n, _)| n).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(store_tree(self.repo, self.saver, &Tree { nodes: out })?)
    }
}

impl Visitor for Repair<'_> {
    type Error = RepairError;

    fn enter(&mut self, path: &Path, _: &TreeId, node: &Node) -> Result<Descend, RepairError> {
        let p = || path.to_string_lossy().into_owned();
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => {
                if let Some(done) = self.seen.get(&(sub, path.to_path_buf())).cloned() {
                    self.damaged.extend(done.damaged);
                    let folder = self.current()?;
                    match done.replaced {
                        None => folder.nodes.push((node.clone(), false)),
                        Some(None) => folder.changed = true,
                        Some(Some(t)) => {
                            let mut n = node.clone();
                            n.subtree = Some(t);
                            folder.nodes.push((n, done.lost));
                            folder.changed = true;
                        }
                    }
                    return Ok(Descend::No);
                }
                let damaged_from = self.damaged.len();
                self.folders.push(Folder {
                    damaged_from,
                    ..Default::default()
                });
                Ok(Descend::Yes)
            }
            (NodeKind::File, _) => {
                let lost = node
                    .content
                    .iter()
                    .filter(|c| !self.blob_ok(&c.id, BlobType::Data))
                    .count();
                if lost == 0 {
                    self.current()?.nodes.push((node.clone(), false));
                    return Ok(Descend::No);
                }
                let action = if self.drop_damaged {
                    RepairAction::Dropped
                } else {
                    RepairAction::Marked
                };
                self.damaged.push(DamagedEntry {
                    path: p(),
                    kind: "file",
                    problem: format!("{lost} of its {} data blob(s) are lost", node.content.len()),
                    action,
                    new_path: None,
                });
                let folder = self.current()?;
                folder.changed = true;
                if action == RepairAction::Marked {
                    let mut n = node.clone();
                    n.content
                        .retain(|c| self.readable.get(&c.id).is_some_and(|l| l.blob_type == BlobType::Data));
                    n.size = n.content.iter().map(|c| u64::from(c.length)).sum();
                    self.current()?.nodes.push((n, true));
                }
                Ok(Descend::No)
            }
            _ => {
                self.current()?.nodes.push((node.clone(), false));
                Ok(Descend::No)
            }
        }
    }

    fn leave(&mut self, path: &Path, node: &Node) -> Result<(), RepairError> {
        let folder = self.folders.pop().ok_or(RepairError::Internal("left a folder twice"))?;
        let replaced = if folder.lost {
            if self.drop_damaged {
                Some(None)
            } else {
                Some(Some(store_tree(self.repo, self.saver, &Tree::default())?))
            }
        } else if folder.changed {
            Some(Some(self.store(folder.nodes, path)?))
        } else {
            None
        };
        let damaged = self.damaged.get(folder.damaged_from..).unwrap_or_default().to_vec();
        if let Some(sub) = node.subtree {
            let outcome = Outcome {
                replaced,
                lost: folder.lost,
                damaged,
            };
            self.seen.insert((sub, path.to_path_buf()), outcome);
        }
        let parent = self.current()?;
        match replaced {
            None => parent.nodes.push((node.clone(), false)),
            Some(None) => parent.changed = true,
            Some(Some(t)) => {
                let mut n = node.clone();
                n.subtree = Some(t);
                parent.nodes.push((n, folder.lost));
                parent.changed = true;
            }
        }
        Ok(())
    }

    fn tree_error(&mut self, path: &Path, id: &TreeId, error: RepositoryError) -> Result<(), RepairError> {
        if error.kind() != crate::error::ErrorKind::Damaged {
            return Err(error.into());
        }
        let problem = format!("its tree {} is lost: {error}", id.short());
        if self.folders.len() <= 1 {
            // The root itself: the walk ends here.
            self.root_lost = Some(problem);
            return Ok(());
        }
        let action = if self.drop_damaged {
            RepairAction::Dropped
        } else {
            RepairAction::Marked
        };
        self.damaged.push(DamagedEntry {
            path: path.to_string_lossy().into_owned(),
            kind: "dir",
            problem,
            action,
            new_path: None,
        });
        self.current()?.lost = true;
        Ok(())
    }
}
