//! The fast path's data movement: read the planned source packs (whole, or
//! the wanted ranges), open each wanted blob (which authenticates it) and
//! hand its plaintext to the destination's [`Saver`], which seals it with
//! the destination's keys into new packs. Packs are read by a few threads
//! at once, so at most a few packs are in memory, and the saver's bounded
//! queues slow the readers when the destination is the slower side.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::plan::{self, PackPlan};
use super::PACKS_PER_INDEX;
use super::{apply_pending, pending_packs, plan_retrievals, CopiedSnapshot, CopyError, CopyOptions, Progress, Run};
use crate::backend::BackendError;
use crate::backup::{BackupError, Saver};
use crate::error::ErrorKind;
use crate::id::BlobId;
use crate::repository::{pack_kind, Repository};
use crate::retrieve::{self, DriveOptions, PackRef, Retrieved};

/// Source packs read at once: enough to keep a remote source busy, few
/// enough that memory stays a few packs.
const READERS: usize = 4;

/// What was read from the source.
#[derive(Debug, Default)]
struct ReadCounters {
    pub blobs: AtomicU64,
    pub bytes: AtomicU64,
    pub packs: AtomicU64,
}

/// True once the caller asked to stop.
fn cancelled(cancel: &Option<Arc<AtomicBool>>) -> bool {
    cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
}

/// The fast path: blobs and trees keep their ids, so the blobs the
/// destination lacks are copied pack by pack and each snapshot is written
/// as it was, once all of it is stored.
pub(super) fn fast_copy(run: &mut Run<'_>) -> Result<(), CopyError> {
    let (src, dst, opts) = (run.src, run.dst, run.opts);
    let src_index = src.load_index()?;
    // Deduplicated as a backup does (B3): not against blobs that only packs
    // a prune recorded, or lost packs, hold.
    let (known, deletions) = dst.load_index_for_backup()?;
    let known = Arc::new(known);
    let roots: Vec<_> = run.todo.iter().map(|(_, s)| s.tree).collect();
    let needed = match plan::needed_blobs(src, &src_index, &roots, Some(&known)) {
        Ok(n) => n,
        // A damaged tree: the snapshots below it are named and left out,
        // the others are copied.
        Err(e) => {
            run.screen(&src_index, &known, &HashSet::new())?;
            if run.report.failed.is_empty() {
                return Err(e);
            }
            let roots: Vec<_> = run.todo.iter().map(|(_, s)| s.tree).collect();
            plan::needed_blobs(src, &src_index, &roots, Some(&known))?
        }
    };
    // Blobs the source index lacks are never read: the snapshots needing
    // them are found below, after the copy, with those found damaged.
    let (plans, missing) = plan::group_by_pack(&src_index, &needed);
    let refs: Vec<PackRef> = plans.iter().map(PackPlan::pack_ref).collect();
    let ask_first = plan::any_archived(src, &plans)?;
    let bytes_total: u64 = plans.iter().map(PackPlan::read_bytes).sum();
    let progress = Progress::new(opts, run.todo.len(), bytes_total);

    if opts.dry_run {
        // Blobs the source lacks: those snapshots would not be copied.
        if !missing.is_empty() {
            run.screen(&src_index, &known, &missing)?;
        }
        let done = if ask_first {
            plan_retrievals(src, &refs, opts)?
        } else {
            Retrieved::default()
        };
        apply_pending(&mut run.report, &done, &refs);
        let r = &mut run.report;
        r.blobs_read = needed.blobs.len() as u64;
        r.bytes_read = bytes_total;
        r.blobs_written = r.blobs_read;
        // The sealed sizes in the source: the destination's are close.
        r.bytes_written = plans.iter().flat_map(|p| &p.blobs).map(|b| u64::from(b.length)).sum();
        for (id, _) in run.not_waiting(&src_index, &known, &pending_packs(&done, &refs))? {
            // No snapshot is written, so it has no id of its own yet.
            run.report.copied.push(CopiedSnapshot {
                source: *id,
                destination: *id,
            });
        }
        return Ok(());
    }

    // The saver is not cancelled itself: the readers stop at the next blob,
    // and finishing the saver stores and indexes every blob handed to it
    // (the open pack included), so the next run reads none of them again.
    let saver = Saver::start_with(dst, known.clone(), run.sealers(), None, PACKS_PER_INDEX);
    let counters = ReadCounters::default();
    let tell = |n: u64| progress.bytes(n);
    let bad = Mutex::new(HashSet::new());
    let result = copy_packs(src, &plans, &saver, opts, ask_first, &counters, &bad, &tell);
    let stats = saver.stats.clone();
    let finished = saver.finish();
    let r = &mut run.report;
    r.blobs_read = counters.blobs.load(Ordering::Relaxed);
    r.bytes_read = counters.bytes.load(Ordering::Relaxed);
    r.packs_read = counters.packs.load(Ordering::Relaxed);
    r.blobs_written = stats.data_blobs.load(Ordering::Relaxed) + stats.tree_blobs.load(Ordering::Relaxed);
    r.bytes_written = stats.stored_bytes.load(Ordering::Relaxed);
    let done = match (result, finished) {
        (_, Err(BackupError::Interrupted)) => return Err(run.interrupted()),
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => return Err(e.into()),
        (Ok(done), Ok(())) => done,
    };
    if run.cancelled() {
        return Err(run.interrupted());
    }
    apply_pending(&mut run.report, &done, &refs);
    // Damaged or missing source data: the snapshots needing it are named
    // and not written (never a copy with missing data), the others are.
    let mut bad = bad.into_inner().unwrap_or_else(|p| p.into_inner());
    bad.extend(missing);
    if !bad.is_empty() {
        run.screen(&src_index, &known, &bad)?;
    }
    // Everything read is stored and indexed from here on.
    crate::failpoint::hit("copy-before-snapshots");
    for (id, snap) in run.not_waiting(&src_index, &known, &pending_packs(&done, &refs))? {
        if run.cancelled() {
            return Err(run.interrupted());
        }
        run.write_snapshot(*id, snap, snap.tree, &deletions)?;
        progress.snapshots(run.report.copied.len());
    }
    Ok(())
}

/// Copies the wanted blobs of every pack of `plans` into `saver`, through
/// the retrieval driver: readable packs at once, archived ones requested
/// (once) and copied when readable, or left pending when not waiting.
/// Stops early (returning what it did) once the saver failed or the copy
/// was cancelled; [`Saver::finish`] then says why. Blobs found missing or
/// damaged in the source go into `bad` and are not copied.
#[allow(clippy::too_many_arguments)]
fn copy_packs(
    src: &Repository,
    plans: &[PackPlan],
    saver: &Saver,
    opts: &CopyOptions,
    ask_first: bool,
    counters: &ReadCounters,
    bad: &Mutex<HashSet<BlobId>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Retrieved, CopyError> {
    let refs: Vec<PackRef> = plans.iter().map(PackPlan::pack_ref).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(READERS)
        .thread_name(|i| format!("cairn-copy-read-{i}"))
        .build()
        .map_err(|e| CopyError::Thread(e.to_string()))?;
    let read = |positions: &[usize]| -> Result<Vec<usize>, CopyError> {
        let refused = Mutex::new(Vec::new());
        pool.install(|| {
            positions.par_iter().try_for_each(|&i| {
                if saver.failed() || cancelled(&opts.cancel) {
                    return Ok(());
                }
                match copy_pack(src, &plans[i], saver, opts, counters, bad, progress) {
                    Ok(()) => Ok(()),
                    Err(CopyError::Backend(BackendError::Archived { .. })) => {
                        refused.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })
        })?;
        Ok(refused.into_inner().unwrap_or_else(|p| p.into_inner()))
    };
    let drive = DriveOptions {
        retrieval: &opts.retrieval,
        ask_first,
        hook: opts.retrieval_hook.as_ref(),
    };
    retrieve::drive(src, &refs, &drive, read)
}

/// Reads the planned ranges of one pack and saves each wanted blob; blobs
/// the source cannot give intact (pack gone or short, blob damaged) go
/// into `bad`. Stops at the next blob once the copy is cancelled.
fn copy_pack(
    src: &Repository,
    p: &PackPlan,
    saver: &Saver,
    opts: &CopyOptions,
    c: &ReadCounters,
    bad: &Mutex<HashSet<BlobId>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), CopyError> {
    let kind = pack_kind(p.blob_type);
    let name = p.id.to_hex();
    let mark = |id: BlobId| {
        bad.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
    };
    let mut next = 0;
    for (start, end) in p.ranges() {
        let read = if start == 0 && end == p.size {
            src.backend().read(kind, &name)
        } else {
            src.backend().read_range(kind, &name, start, end - start)
        };
        let bytes = match read {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Damaged => {
                while let Some(b) = p.blobs.get(next).filter(|b| u64::from(b.offset) < end) {
                    tracing::warn!("{kind} {name}: cannot read blob {} from the source: {e}", b.id.short());
                    mark(b.id);
                    next += 1;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        c.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        progress(bytes.len() as u64);
        while let Some(b) = p.blobs.get(next).filter(|b| u64::from(b.offset) < end) {
            if cancelled(&opts.cancel) {
                return Ok(());
            }
            next += 1;
            let from = (u64::from(b.offset) - start) as usize;
            let to = from + b.length as usize;
            let Some(sealed) = bytes.get(from..to) else {
                tracing::warn!(
                    "{kind} {name} is shorter than the index says (blob {} at {}..{})",
                    b.id.short(),
                    b.offset,
                    u64::from(b.offset) + u64::from(b.length)
                );
                mark(b.id);
                continue;
            };
            match src.open_blob(p.blob_type, &b.id, &p.id, sealed) {
                Ok(plain) => {
                    saver.save(p.blob_type, b.id, plain)?;
                    c.blobs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::Damaged => {
                    tracing::warn!("{kind} {name}: blob {} is damaged in the source: {e}", b.id.short());
                    mark(b.id);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    c.packs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
