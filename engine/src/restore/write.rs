//! Executing a restore plan: folders, file data pack by pack, hard links,
//! symlinks and special files, folder metadata, and `--verify`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::files::{Files, State};
use super::meta::{self, MetaOptions, Special};
use super::plan::{BlobJob, PackJob, RestorePlan};
use super::{FailedEntry, RestoreError, RestoreOptions, RestoreSummary};
use crate::backend::{BackendError, ObjectKind};
use crate::blob::BlobType;
use crate::repository::Repository;
use crate::retrieve::{self, DriveOptions, PackRef};

/// Neighbouring blobs closer than this are read in one request.
const MAX_GAP: u64 = 1024 * 1024;
/// Largest single range request. Each reader thread holds one range, so
/// this times the readers (4 on two cores) bounds what restore buffers: at
/// 32 MiB a whole 16 MiB pack was one range, and four of them were the
/// largest part of a restore's peak memory (67 of 148 MB restoring 100,000
/// small files). Two requests a pack cost nothing measurable locally and
/// one more round trip a pack on S3.
const MAX_RANGE: u64 = 8 * 1024 * 1024;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

fn is_zero(d: &[u8]) -> bool {
    d.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

struct Counters {
    packs: AtomicU64,
    downloaded: AtomicU64,
}

/// Folders that could not be created: nothing below them is attempted, as
/// a path through one could lead outside the target (a symlink in its
/// place) and the folder is named as failed instead.
#[derive(Default)]
struct Blocked(HashSet<PathBuf>);

impl Blocked {
    fn covers(&self, p: &Path) -> bool {
        !self.0.is_empty() && p.ancestors().skip(1).any(|a| self.0.contains(a))
    }
}

fn failure(p: &Path, reason: String, damaged: bool) -> FailedEntry {
    FailedEntry {
        path: p.to_string_lossy().into_owned(),
        reason,
        damaged,
    }
}

pub(crate) fn execute(
    repo: &Repository,
    mut plan: RestorePlan,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    let mut summary = RestoreSummary::default();
    let mut failed = std::mem::take(&mut plan.failed);
    fs::create_dir_all(&plan.target).map_err(|e| RestoreError::io(&plan.target, e))?;
    let mut blocked = Blocked::default();
    for (p, _) in &plan.dirs {
        if blocked.covers(p) {
            continue;
        }
        if let Err(e) = make_dir(p) {
            failed.push(failure(p, format!("{e}; nothing below it is restored"), false));
            blocked.0.insert(p.clone());
        }
    }
    let meta_opts = MetaOptions {
        preserve_special: opts.preserve_special,
        xattrs: !opts.no_xattrs,
        root: nix::unistd::geteuid().is_root(),
    };
    if let Some(pr) = &opts.progress {
        pr.bytes_total.store(plan.bytes, Ordering::Relaxed);
        pr.files_total.store(plan.files.len() as u64, Ordering::Relaxed);
    }

    let files = Files::new(&plan, meta_opts, opts.progress.as_deref(), |p| blocked.covers(p));
    files.finish_empty();
    let counters = Counters {
        packs: AtomicU64::new(0),
        downloaded: AtomicU64::new(0),
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let threads = if opts.threads == 0 { cpus * 2 } else { opts.threads };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok();
    let read = restore_all_packs(repo, &plan, &files, &counters, opts, pool.as_ref());
    let fatal = files.stopped().then(|| files.abandon()).flatten();
    if let Err(e) = read {
        files.abandon();
        return Err(e);
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    tracing::debug!(
        "restore held at most {} files open",
        files.peak_open.load(Ordering::Relaxed)
    );

    let mut links = 0u64;
    for f in &plan.files {
        let Some(first) = f.link_to else { continue };
        if blocked.covers(&f.path) {
            continue;
        }
        let src = &plan.files[first].path;
        match files.state(first) {
            State::Done => match hard_link(src, &f.path, f.existed) {
                Ok(()) => links += 1,
                Err(e) => failed.push(failure(&f.path, format!("hard link not made: {e}"), false)),
            },
            State::Failed(..) => failed.push(failure(
                &f.path,
                format!("hard link to {}, which could not be restored", src.display()),
                true,
            )),
            State::Pending | State::Skipped => {}
        }
    }
    if let Some(p) = &opts.progress {
        p.files_done.fetch_add(links, Ordering::Relaxed);
    }
    let (done, file_failures, warnings) = files.outcome();
    failed.extend(file_failures);
    summary.warnings = warnings;

    // Symlinks and special files come after all file data, so a symlink
    // the restore makes can never redirect its own writes.
    let mut made = Vec::new();
    for (p, n) in &plan.others {
        if blocked.covers(p) {
            continue;
        }
        match meta::make_special(p, n, &meta_opts) {
            Ok(Special::Made) => made.push((p, n)),
            Ok(Special::LeftOut(w)) => summary.warnings.push(w),
            Err(reason) => failed.push(failure(p, format!("{} not made: {reason}", n.kind.name()), false)),
        }
    }
    for (p, n) in &made {
        meta::apply_to_link_or_special(p, n, &meta_opts, &mut summary.warnings);
    }
    // Deepest first, so setting a folder's mtime is not undone by writing
    // into it afterwards.
    for (p, n) in plan.dirs.iter().rev() {
        if !blocked.covers(p) && !blocked.0.contains(p) {
            meta::apply_to_dir(p, n, &meta_opts, &mut summary.warnings);
        }
    }

    summary.files = done + links;
    summary.dirs = (plan.dirs.len()
        - plan
            .dirs
            .iter()
            .filter(|(p, _)| blocked.covers(p) || blocked.0.contains(p))
            .count()) as u64;
    summary.others = made.len() as u64;
    // Only what was restored: a file that failed is named in `failed`.
    summary.bytes = plan
        .files
        .iter()
        .enumerate()
        .filter(|(i, f)| f.link_to.is_none() && matches!(files.state(*i), State::Done))
        .map(|(_, f)| f.node.size)
        .sum();
    summary.bytes_written = files.written.load(Ordering::Relaxed);
    summary.bytes_unchanged = files.unchanged.load(Ordering::Relaxed);
    summary.packs_read = counters.packs.load(Ordering::Relaxed);
    summary.bytes_downloaded = counters.downloaded.load(Ordering::Relaxed);
    if opts.verify {
        let restored: Vec<usize> = (0..plan.files.len())
            .filter(|&i| {
                let f = &plan.files[i];
                files.state(f.link_to.unwrap_or(i)) == State::Done && !blocked.covers(&f.path)
            })
            .collect();
        failed.extend(verify(repo, &plan, &restored));
        summary.files_verified = restored.len() as u64;
    }
    failed.sort_by(|a, b| a.path.cmp(&b.path));
    summary.failed = failed;
    Ok(summary)
}

/// Restores every pack through the retrieval driver: readable packs at
/// once, archived ones as they become readable, or the restore stops with
/// `RetrievalPending`. Damage costs only the files that need it.
fn restore_all_packs(
    repo: &Repository,
    plan: &RestorePlan,
    files: &Files<'_>,
    c: &Counters,
    opts: &RestoreOptions,
    pool: Option<&rayon::ThreadPool>,
) -> Result<(), RestoreError> {
    let packs: Vec<PackRef> = plan
        .packs
        .iter()
        .map(|p| PackRef {
            kind: ObjectKind::DataPack,
            id: p.pack,
            size: p.size,
        })
        .collect();
    let read = |idx: &[usize]| -> Result<Vec<usize>, RestoreError> {
        let archived = Mutex::new(Vec::new());
        let run = || {
            idx.par_iter().for_each(|&i| {
                if restore_pack(repo, &plan.packs[i], files, c, opts).is_err() {
                    archived.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                }
            })
        };
        match pool {
            Some(p) => p.install(run),
            None => run(),
        }
        Ok(archived.into_inner().unwrap_or_else(|p| p.into_inner()))
    };
    let drive_opts = DriveOptions {
        retrieval: &opts.retrieval,
        ask_first: opts.check_archive_first,
        hook: opts.on_retrieval.as_deref(),
    };
    let done = retrieve::drive(repo, &packs, &drive_opts, read)?;
    if done.pending.is_empty() {
        return Ok(());
    }
    let report = done.report.unwrap_or_default();
    Err(RestoreError::RetrievalPending {
        objects: done.pending.len(),
        bytes: done.pending.iter().map(|&i| packs[i].size).sum(),
        typical: report.typical_time(opts.retrieval.tier),
        report: Box::new(report),
    })
}

fn make_dir(p: &Path) -> std::io::Result<()> {
    match fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // An existing symlink here could send later writes elsewhere.
            if fs::symlink_metadata(p)?.is_dir() {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "something that is not a folder is in the way",
                ))
            }
        }
        Err(e) => Err(e),
    }
}

fn hard_link(src: &Path, dst: &Path, existed: bool) -> std::io::Result<()> {
    if existed {
        fs::remove_file(dst)?;
    }
    fs::hard_link(src, dst)
}

fn ranges(pj: &PackJob) -> Vec<(u64, u64, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pj.blobs.len() {
        let start = u64::from(pj.blobs[i].offset);
        let mut end = start + u64::from(pj.blobs[i].length);
        let mut j = i + 1;
        while j < pj.blobs.len() {
            let b = &pj.blobs[j];
            let (bs, be) = (u64::from(b.offset), u64::from(b.offset) + u64::from(b.length));
            if bs > end + MAX_GAP || be - start > MAX_RANGE {
                break;
            }
            end = end.max(be);
            j += 1;
        }
        out.push((start, end - start, i..j));
        i = j;
    }
    out
}

/// Every file needing `b` loses it, for `reason`.
fn lose(files: &Files<'_>, b: &BlobJob, reason: &str, opts: &RestoreOptions) {
    for &(f, _) in &b.targets {
        files.lose(f, reason);
        if let Some(p) = &opts.progress {
            p.bytes_done.fetch_add(u64::from(b.raw_length), Ordering::Relaxed);
        }
    }
}

/// Reads one pack's blobs into their files. The only error is the pack
/// being in archive storage before anything of it was read (the driver
/// retrieves it and calls again); any other failure is damage, charged to
/// the files that need the blobs concerned.
fn restore_pack(
    repo: &Repository,
    pj: &PackJob,
    files: &Files<'_>,
    c: &Counters,
    opts: &RestoreOptions,
) -> Result<(), BackendError> {
    let name = pj.pack.to_hex();
    for (n, (start, len, blobs)) in ranges(pj).into_iter().enumerate() {
        if files.stopped() {
            return Ok(());
        }
        let blobs = &pj.blobs[blobs];
        let mut buf = match repo.backend().read_range(ObjectKind::DataPack, &name, start, len) {
            Ok(b) => b,
            Err(e @ BackendError::Archived { .. }) if n == 0 => return Err(e),
            Err(e) => {
                let reason = format!("data pack {name} cannot be read: {e}");
                for b in blobs {
                    lose(files, b, &reason, opts);
                }
                continue;
            }
        };
        c.downloaded.fetch_add(len, Ordering::Relaxed);
        for b in blobs {
            let s = (u64::from(b.offset) - start) as usize;
            let Some(sealed) = buf.get_mut(s..s + b.length as usize) else {
                lose(
                    files,
                    b,
                    &format!("data pack {name}: short read of blob {}", b.id.short()),
                    opts,
                );
                continue;
            };
            // Each blob is decrypted where it lies in the range. Offsets come
            // from the index, which a damaged or hostile repository could
            // make overlap; that is still safe: a blob whose bytes an earlier
            // one overwrote fails authentication and is reported as damage,
            // never restored wrong.
            let data = match repo.open_blob_in_place(BlobType::Data, &b.id, &pj.pack, sealed) {
                Ok(d) => d,
                Err(e) => {
                    lose(files, b, &e.to_string(), opts);
                    continue;
                }
            };
            if data.len() != b.raw_length as usize {
                // Only a writer bug or a key holder could cause this; without
                // the check the file would silently get the wrong length.
                let reason = format!(
                    "data pack {name} is damaged: blob {} has {} bytes, the tree says {}",
                    b.id.short(),
                    data.len(),
                    b.raw_length
                );
                lose(files, b, &reason, opts);
                continue;
            }
            let zero = is_zero(&data);
            for &(f, off) in &b.targets {
                files.put(f, off, &data, zero);
                if let Some(p) = &opts.progress {
                    p.bytes_done.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }
    c.packs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Re-reads the files `which` (positions in `plan.files`) and names those
/// that differ from the snapshot.
fn verify(repo: &Repository, plan: &RestorePlan, which: &[usize]) -> Vec<FailedEntry> {
    which
        .par_iter()
        .filter_map(|&i| {
            let f = &plan.files[i];
            let ok = (|| -> std::io::Result<bool> {
                let file: File = OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&f.path)?;
                if file.metadata()?.len() != f.node.size {
                    return Ok(false);
                }
                let mut off = 0u64;
                let mut buf = Vec::new();
                for c in &f.node.content {
                    buf.resize(c.length as usize, 0);
                    file.read_exact_at(&mut buf, off)?;
                    if repo.keys().blob_id(&buf) != c.id {
                        return Ok(false);
                    }
                    off += u64::from(c.length);
                }
                Ok(off == f.node.size)
            })();
            match ok {
                Ok(true) => None,
                Ok(false) => Some(failure(&f.path, "verify: differs from the snapshot".into(), true)),
                Err(e) => Some(failure(&f.path, format!("verify: cannot read it back: {e}"), false)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BlobId, PackId};

    fn pack(blobs: &[(u32, u32)]) -> PackJob {
        PackJob {
            pack: PackId::from_bytes([1; 32]),
            size: 0,
            blobs: blobs
                .iter()
                .map(|&(offset, length)| BlobJob {
                    id: BlobId::from_bytes([2; 32]),
                    offset,
                    length,
                    raw_length: length,
                    targets: Vec::new(),
                })
                .collect(),
        }
    }

    /// A full 16 MiB pack is read in ranges of at most `MAX_RANGE` (what
    /// bounds a restore's buffers), covering every blob once and in order;
    /// a blob larger than that is still read, alone; a wide gap splits.
    #[test]
    fn ranges_cover_every_blob_within_the_size_bound() {
        let blob = 64 * 1024;
        let full: Vec<(u32, u32)> = (0..256).map(|i| (i * blob, blob)).collect();
        let r = ranges(&pack(&full));
        assert_eq!(r.len(), (16 << 20) / MAX_RANGE as usize);
        let mut next = 0;
        for (start, len, blobs) in &r {
            assert!(*len <= MAX_RANGE, "{len}");
            assert_eq!(blobs.start, next);
            assert_eq!(*start, u64::from(full[blobs.start].0));
            next = blobs.end;
        }
        assert_eq!(next, full.len());

        let huge = MAX_RANGE as u32 + 1;
        let r = ranges(&pack(&[(0, 10), (10, huge), (10 + huge, 10)]));
        assert_eq!(r.iter().map(|x| x.2.clone()).collect::<Vec<_>>(), [0..1, 1..2, 2..3]);

        let gap = MAX_GAP as u32 + 1;
        let r = ranges(&pack(&[(0, 10), (10 + gap, 10)]));
        assert_eq!(r.len(), 2);
    }
}
