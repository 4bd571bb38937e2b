//! Rewrite: copies of snapshots without the entries that exclude patterns
//! match, for erasing files from existing backups (restic `rewrite`, borg
//! `recreate`).
//!
//! Only trees change: a rewritten snapshot refers to the same data blobs for
//! everything it keeps, and the removed files' blobs stay in their packs
//! until a prune finds nothing referring to them any more. Order of durable
//! writes (format-spec "Crash consistency"): the new trees' packs and index
//! objects, then each new snapshot, and only then (with `forget`) the removal
//! of its original. A crash leaves at worst unused tree packs, or both the
//! original and its copy. Like forget (spec rule F1), rewrite takes no lock:
//! it only adds objects and removes snapshot objects.

mod rebuild;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

pub use rebuild::RemovedPath;

use crate::backup::{BackupError, Saver};
use crate::browse::{BrowseError, NameMatcher};
use crate::id::SnapshotId;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;

/// Threads sealing the new trees: they are few and small.
const SEALERS: usize = 2;

/// Errors of a rewrite.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// No exclude pattern: the rewrite would change nothing.
    #[error("no exclude pattern given: a rewrite removes what the patterns match")]
    NoPatterns,
    /// An exclude pattern does not parse.
    #[error(transparent)]
    Pattern(#[from] BrowseError),
    /// Reading the snapshots' trees or writing a snapshot failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storing the new trees failed.
    #[error(transparent)]
    Save(#[from] BackupError),
    /// The tree walk broke its own promise (a bug).
    #[error("rewrite: {0}")]
    Internal(&'static str),
}

/// What to remove, and what to do with the originals.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// Globs of entries to remove, by [`NameMatcher`]'s rules (without `/`
    /// a name at any depth, with `/` the absolute path); a matching folder
    /// goes with everything below it.
    pub excludes: Vec<String>,
    /// Remove each original snapshot once its copy is stored.
    pub forget: bool,
    /// Find what would be removed; store and remove nothing.
    pub dry_run: bool,
}

/// What happened to one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRewrite {
    /// The snapshot that was rewritten.
    pub original: SnapshotId,
    /// Its rewritten copy; `None` when nothing matched or in a dry run.
    pub rewritten: Option<SnapshotId>,
    /// The entries removed (would be, in a dry run), in tree order; a
    /// removed folder is one entry, counting the files below it.
    pub removed: Vec<RemovedPath>,
    /// Files removed, those inside removed folders included.
    pub files_removed: u64,
    /// Bytes of those files.
    pub bytes_removed: u64,
    /// Whether the original's snapshot object was removed.
    pub forgotten: bool,
}

impl SnapshotRewrite {
    /// Whether the patterns matched anything (otherwise the snapshot is left
    /// alone).
    pub fn changed(&self) -> bool {
        !self.removed.is_empty()
    }
}

/// The outcome of a rewrite, one entry per snapshot given.
#[derive(Debug, Clone, Serialize)]
pub struct RewriteReport {
    /// Whether this was a dry run (nothing stored or removed).
    pub dry_run: bool,
    /// Each snapshot, in the order given.
    pub snapshots: Vec<SnapshotRewrite>,
    /// New tree blobs stored.
    pub tree_blobs_added: u64,
    /// Bytes stored for them (packs and index objects).
    pub bytes_added_stored: u64,
}

/// Writes a copy of each of `snapshots` without the entries `opts.excludes`
/// match: same time, host, user, tags, paths, source, parent and summary,
/// the patterns added to its excludes, and `rewritten_from` naming the
/// original. Snapshots where nothing matches are left alone. With
/// `opts.forget`, each original is removed right after its copy is stored.
///
/// The data of the removed files stays in the repository until a prune: a
/// rewrite writes only trees and snapshots. Costs one read of every tree of
/// every snapshot given (through the cache, on S3).
pub fn rewrite_snapshots(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &RewriteOptions,
) -> crate::error::Result<RewriteReport> {
    Ok(rewrite(repo, snapshots, opts)?)
}

fn rewrite(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &RewriteOptions,
) -> Result<RewriteReport, RewriteError> {
    if opts.excludes.is_empty() {
        return Err(RewriteError::NoPatterns);
    }
    let excludes = opts
        .excludes
        .iter()
        .map(|p| NameMatcher::new(p))
        .collect::<Result<Vec<_>, _>>()?;
    // A dry run takes the same path, into storage that discards the writes.
    let repo = if opts.dry_run {
        repo.with_dry_run()
    } else {
        repo.clone()
    };
    let started = std::time::Instant::now();
    // Trees are read through the readers' index; new trees are deduplicated
    // as a backup does (B3): not against blobs only recorded packs hold,
    // which a prune may remove before this copy is written.
    let index = Arc::new(repo.load_index()?);
    let (known, deletions) = repo.load_index_for_backup()?;
    let saver = Saver::start(&repo, Arc::new(known), SEALERS);
    let mut rebuilt = Vec::with_capacity(snapshots.len());
    let mut seen = rebuild::Seen::default();
    for (_, snap) in snapshots {
        match rebuild::rebuild(&repo, &index, &saver, &snap.tree, &excludes, &mut seen) {
            Ok(r) => rebuilt.push(r),
            Err(e) => {
                let _ = saver.finish();
                return Err(e);
            }
        }
    }
    let stats = saver.stats.clone();
    // Every new tree is durably stored, and indexed, from here on.
    saver.finish()?;

    let mut report = RewriteReport {
        dry_run: opts.dry_run,
        snapshots: Vec::with_capacity(snapshots.len()),
        tree_blobs_added: stats.tree_blobs.load(Ordering::Relaxed),
        bytes_added_stored: stats.stored_bytes.load(Ordering::Relaxed),
    };
    for ((id, snap), r) in snapshots.iter().zip(rebuilt) {
        let mut done = SnapshotRewrite {
            original: *id,
            rewritten: None,
            files_removed: r.removed.iter().map(|p| p.files).sum(),
            bytes_removed: r.removed.iter().map(|p| p.bytes).sum(),
            removed: r.removed,
            forgotten: false,
        };
        if let (Some(root), false) = (r.root, opts.dry_run) {
            let copy = rewritten(snap, *id, root, &opts.excludes);
            // B4: a prune that ran meanwhile may have recorded what it reuses.
            crate::backup::verify_reuse(&repo, &deletions, started.elapsed(), &root)?;
            done.rewritten = Some(repo.save_snapshot(&copy)?);
            if opts.forget {
                repo.remove_snapshot(id)?;
                done.forgotten = true;
            }
        }
        report.snapshots.push(done);
    }
    Ok(report)
}

/// The copy of `snap` (id `id`) with root tree `root`.
fn rewritten(snap: &Snapshot, id: SnapshotId, root: crate::id::TreeId, excludes: &[String]) -> Snapshot {
    let mut copy = snap.clone();
    copy.tree = root;
    for p in excludes {
        if !copy.excludes.contains(p) {
            copy.excludes.push(p.clone());
        }
    }
    copy.program_version = crate::VERSION.to_string();
    copy.rewritten_from = Some(id);
    copy
}

#[cfg(test)]
mod tests;
