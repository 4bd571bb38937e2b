//! The re-chunk path, snapshot by snapshot: each source tree rebuilt in the
//! destination by `rechunk::rechunk_tree` with the destination's chunker,
//! then its snapshot written. Each snapshot gets its own [`Saver`], finished
//! before its snapshot is written, and the destination's index is read
//! again for the next one: the next snapshot's prior copy (usually the one
//! just written) must be readable through it.
//!
//! Archived source packs are planned first, for every blob of every
//! snapshot to copy, through the retrieval driver: with `wait` the copy
//! starts once all are readable, without it the snapshots needing them wait
//! for the next run.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::plan::{self, PackPlan};
use super::rechunk::{self, RechunkError};
use super::{
    apply_pending, pending_packs, plan_retrievals, CopiedSnapshot, CopyError, FailedSnapshot, Progress, Run,
    PACKS_PER_INDEX,
};
use crate::backup::{BackupError, Saver};
use crate::index::Index;
use crate::retrieve::{self, DriveOptions, PackRef, Retrieved};

/// Copies `run.todo` re-chunking every file for the destination.
pub(super) fn rechunk_copy(run: &mut Run<'_>) -> Result<(), CopyError> {
    let (src, dst, opts) = (run.src, run.dst, run.opts);
    let src_index = src.load_index()?;
    let pending = plan_archived(run, &src_index)?;
    // Only file content is counted, as the snapshots' summaries say it.
    let bytes_total: u64 = run
        .todo
        .iter()
        .map(|(_, s)| s.summary.bytes_new + s.summary.bytes_changed + s.summary.bytes_unchanged)
        .sum();
    let progress = Progress::new(opts, run.todo.len(), bytes_total);
    let none = Index::new();
    let ready = run.not_waiting(&src_index, &none, &pending)?;
    if opts.dry_run {
        // What the destination would store is only known by cutting the
        // files: the plan says what is read, not what is written.
        run.report.bytes_read = bytes_total;
        for (id, _) in ready {
            run.report.copied.push(CopiedSnapshot {
                source: *id,
                destination: *id,
            });
        }
        return Ok(());
    }
    for (id, snap) in ready {
        if run.cancelled() {
            return Err(run.interrupted());
        }
        // Read again for each snapshot: it must hold the trees of the one
        // copied just before, the likely prior.
        let (known, deletions) = dst.load_index_for_backup()?;
        let known = Arc::new(known);
        // The saver is not cancelled itself: a stop ends the walk, and
        // finishing the saver stores and indexes every blob handed to it
        // (the open pack included), so the next run finds all of them.
        let saver = Saver::start_with(dst, known.clone(), run.sealers(), None, PACKS_PER_INDEX);
        let params = dst.config().chunker.for_sizes(snap.chunk_sizes.as_ref());
        let prior = run.prior(snap);
        let tell = |n: u64| progress.bytes(n);
        let cancel = opts.cancel.as_deref();
        let result = rechunk::rechunk_tree(
            src, &src_index, dst, &known, &saver, &params, &snap.tree, prior, &tell, cancel,
        );
        let stats = saver.stats.clone();
        let finished = saver.finish();
        let r = &mut run.report;
        r.blobs_written += stats.data_blobs.load(Ordering::Relaxed) + stats.tree_blobs.load(Ordering::Relaxed);
        r.bytes_written += stats.stored_bytes.load(Ordering::Relaxed);
        let root = match (result, finished) {
            (_, Err(BackupError::Interrupted)) | (Err(RechunkError::Save(BackupError::Interrupted)), _) => {
                return Err(run.interrupted())
            }
            (_, Err(e)) => return Err(e.into()),
            // Damaged or missing source data: this snapshot is not copied
            // (never a copy with wrong or missing data) and is named; the
            // others are.
            (Err(e), Ok(())) if e.is_source_damage() => {
                run.report.failed.push(FailedSnapshot {
                    source: *id,
                    reason: e.to_string(),
                });
                continue;
            }
            (Err(e), Ok(())) => return Err(e.into()),
            (Ok((root, st)), Ok(())) => {
                r.blobs_read += st.blobs_read;
                r.bytes_read += st.bytes_read;
                root
            }
        };
        run.write_snapshot(*id, snap, root, &deletions)?;
        progress.snapshots(run.report.copied.len());
    }
    Ok(())
}

/// Requests (once) the retrieval of every archived source pack the
/// snapshots' contents are in, and returns those not readable yet: all of
/// them without `wait`, none with it (the driver waits). Nothing is read
/// here; the source is asked only when it lists archived packs at all.
fn plan_archived(run: &mut Run<'_>, src_index: &Index) -> Result<HashSet<crate::id::PackId>, CopyError> {
    let (src, opts) = (run.src, run.opts);
    let archived = plan::archived_pack_names(src)?;
    if archived.is_empty() {
        return Ok(HashSet::new());
    }
    let roots: Vec<_> = run.todo.iter().map(|(_, s)| s.tree).collect();
    let needed = match plan::needed_blobs(src, src_index, &roots, None) {
        Ok(n) => n,
        // A damaged tree: the snapshots below it are named and left out.
        Err(e) => {
            run.screen(src_index, &Index::new(), &HashSet::new())?;
            if run.report.failed.is_empty() {
                return Err(e);
            }
            let roots: Vec<_> = run.todo.iter().map(|(_, s)| s.tree).collect();
            plan::needed_blobs(src, src_index, &roots, None)?
        }
    };
    let plans: Vec<PackPlan> = plan::group_by_pack(src_index, &needed)
        .0
        .into_iter()
        .filter(|p| archived.contains(&p.id.to_hex()))
        .collect();
    let refs: Vec<PackRef> = plans.iter().map(PackPlan::pack_ref).collect();
    let done = if refs.is_empty() {
        Retrieved::default()
    } else if opts.dry_run {
        plan_retrievals(src, &refs, opts)?
    } else {
        let drive = DriveOptions {
            retrieval: &opts.retrieval,
            ask_first: true,
            hook: opts.retrieval_hook.as_ref(),
        };
        // Reading is rechunk_tree's: here the packs only become readable.
        retrieve::drive(src, &refs, &drive, |_| Ok::<_, CopyError>(Vec::new()))?
    };
    apply_pending(&mut run.report, &done, &refs);
    Ok(pending_packs(&done, &refs))
}
