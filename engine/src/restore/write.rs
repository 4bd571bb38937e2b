//! Executing a restore plan.

use std::fs::{self, File, OpenOptions, Permissions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::plan::{PackJob, RestorePlan};
use super::{RestoreError, RestoreOptions, RestoreSummary};
use crate::backend::{BackendError, ObjectKind};
use crate::blob::BlobType;
use crate::repository::Repository;
use crate::retrieve::{self, DriveOptions, PackRef};
use crate::tree::{Node, NodeKind};

/// Neighbouring blobs closer than this are read in one request.
const MAX_GAP: u64 = 1024 * 1024;
/// Largest single range request.
const MAX_RANGE: u64 = 32 * 1024 * 1024;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

fn is_zero(d: &[u8]) -> bool {
    d.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

struct FileState {
    handle: Mutex<Option<File>>,
    remaining: AtomicUsize,
    /// True when the file was created by this restore: holes are already zero.
    fresh: bool,
}

struct Counters {
    written: AtomicU64,
    unchanged: AtomicU64,
    packs: AtomicU64,
    downloaded: AtomicU64,
}

pub(crate) fn execute(
    repo: &Repository,
    plan: RestorePlan,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    let mut summary = RestoreSummary::default();
    fs::create_dir_all(&plan.target).map_err(|e| RestoreError::io(&plan.target, e))?;
    for (p, _) in &plan.dirs {
        make_dir(p)?;
    }
    summary.dirs = plan.dirs.len() as u64;
    if let Some(pr) = &opts.progress {
        pr.bytes_total.store(plan.bytes, Ordering::Relaxed);
        pr.files_total.store(plan.files.len() as u64, Ordering::Relaxed);
    }

    // Create and pre-size every file, so blobs can land in any order and
    // never-written ranges stay sparse holes.
    let mut states = Vec::with_capacity(plan.files.len());
    let mut targets = vec![0usize; plan.files.len()];
    for pj in &plan.packs {
        for b in &pj.blobs {
            for (f, _) in &b.targets {
                targets[*f] += 1;
            }
        }
    }
    for (i, f) in plan.files.iter().enumerate() {
        if f.link_to.is_some() {
            states.push(FileState {
                handle: Mutex::new(None),
                remaining: AtomicUsize::new(0),
                fresh: false,
            });
            continue;
        }
        let fresh = !f.existed;
        let file = open_target(&f.path, fresh)?;
        file.set_len(f.node.size).map_err(|e| RestoreError::io(&f.path, e))?;
        let handle = if targets[i] > 0 { Some(file) } else { None };
        states.push(FileState {
            handle: Mutex::new(handle),
            remaining: AtomicUsize::new(targets[i]),
            fresh,
        });
    }

    let counters = Counters {
        written: AtomicU64::new(0),
        unchanged: AtomicU64::new(0),
        packs: AtomicU64::new(0),
        downloaded: AtomicU64::new(0),
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let threads = if opts.threads == 0 { cpus * 2 } else { opts.threads };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok();
    restore_all_packs(repo, &plan, &states, &counters, opts, pool.as_ref())?;
    drop(states);

    for f in &plan.files {
        if let Some(first) = f.link_to {
            let src = &plan.files[first].path;
            if f.existed {
                fs::remove_file(&f.path).map_err(|e| RestoreError::io(&f.path, e))?;
            }
            fs::hard_link(src, &f.path).map_err(|e| RestoreError::io(&f.path, e))?;
        }
    }
    for (p, n) in &plan.others {
        if let Some(w) = make_special(p, n)? {
            summary.warnings.push(w);
        }
    }
    for f in &plan.files {
        if f.link_to.is_none() {
            apply_metadata(&f.path, &f.node, &mut summary.warnings);
        }
    }
    for (p, n) in &plan.others {
        if n.kind != NodeKind::Socket {
            apply_metadata(p, n, &mut summary.warnings);
        }
    }
    // Deepest first, so setting a folder's mtime is not undone by writing
    // into it afterwards.
    for (p, n) in plan.dirs.iter().rev() {
        apply_metadata(p, n, &mut summary.warnings);
    }

    summary.files = plan.files.len() as u64;
    summary.others = plan.others.len() as u64;
    summary.bytes = plan.bytes;
    summary.bytes_written = counters.written.load(Ordering::Relaxed);
    summary.bytes_unchanged = counters.unchanged.load(Ordering::Relaxed);
    summary.packs_read = counters.packs.load(Ordering::Relaxed);
    summary.bytes_downloaded = counters.downloaded.load(Ordering::Relaxed);
    if opts.verify {
        verify(repo, &plan, &mut summary)?;
    }
    Ok(summary)
}

/// Restores every pack through the retrieval driver: readable packs at
/// once, archived ones as they become readable, or the restore stops with
/// `RetrievalPending`.
fn restore_all_packs(
    repo: &Repository,
    plan: &RestorePlan,
    states: &[FileState],
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
            idx.par_iter()
                .try_for_each(|&i| match restore_pack(repo, plan, &plan.packs[i], states, c, opts) {
                    Err(RestoreError::Backend(BackendError::Archived { .. })) => {
                        archived.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                        Ok(())
                    }
                    other => other,
                })
        };
        match pool {
            Some(p) => p.install(run)?,
            None => run()?,
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

fn make_dir(p: &Path) -> Result<(), RestoreError> {
    match fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // An existing symlink here could send later writes elsewhere.
            let m = fs::symlink_metadata(p).map_err(|e| RestoreError::io(p, e))?;
            if m.is_dir() {
                Ok(())
            } else {
                Err(RestoreError::io(
                    p,
                    std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a folder"),
                ))
            }
        }
        Err(e) => Err(RestoreError::io(p, e)),
    }
}

fn open_target(p: &Path, fresh: bool) -> Result<File, RestoreError> {
    let mut o = OpenOptions::new();
    o.write(true).read(true).custom_flags(nix::libc::O_NOFOLLOW);
    if fresh {
        o.create_new(true);
    }
    o.open(p).map_err(|e| RestoreError::io(p, e))
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

fn restore_pack(
    repo: &Repository,
    plan: &RestorePlan,
    pj: &PackJob,
    states: &[FileState],
    c: &Counters,
    opts: &RestoreOptions,
) -> Result<(), RestoreError> {
    let name = pj.pack.to_hex();
    for (start, len, blobs) in ranges(pj) {
        let mut buf = repo.backend().read_range(ObjectKind::DataPack, &name, start, len)?;
        c.downloaded.fetch_add(len, Ordering::Relaxed);
        for b in &pj.blobs[blobs] {
            let s = (u64::from(b.offset) - start) as usize;
            let sealed = buf.get_mut(s..s + b.length as usize).ok_or_else(|| {
                RestoreError::Repository(crate::repository::RepositoryError::Corrupt {
                    kind: ObjectKind::DataPack,
                    name: name.clone(),
                    detail: "short range read".into(),
                })
            })?;
            // Each blob is decrypted where it lies in the range. Offsets come
            // from the index, which a damaged or hostile repository could
            // make overlap; that is still safe: a blob whose bytes an earlier
            // one overwrote fails authentication and is reported as damage,
            // never restored wrong.
            let data = repo.open_blob_in_place(BlobType::Data, &b.id, &pj.pack, sealed)?;
            if data.len() != b.raw_length as usize {
                // Only a writer bug or a key holder could cause this; without
                // the check the file would silently get the wrong length.
                return Err(RestoreError::Repository(crate::repository::RepositoryError::Corrupt {
                    kind: ObjectKind::DataPack,
                    name: name.clone(),
                    detail: format!(
                        "blob {} has {} bytes, the tree says {}",
                        b.id.short(),
                        data.len(),
                        b.raw_length
                    ),
                }));
            }
            let zero = is_zero(&data);
            for &(f, off) in &b.targets {
                write_at(plan, states, f, off, &data, zero, c)?;
                if let Some(p) = &opts.progress {
                    p.bytes_done.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if states[f].remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    // Last blob of this file: close it now to bound open files.
                    states[f].handle.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(p) = &opts.progress {
                        p.files_done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    c.packs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn write_at(
    plan: &RestorePlan,
    states: &[FileState],
    f: usize,
    off: u64,
    data: &[u8],
    zero: bool,
    c: &Counters,
) -> Result<(), RestoreError> {
    let st = &states[f];
    let path = &plan.files[f].path;
    if zero && st.fresh {
        c.unchanged.fetch_add(data.len() as u64, Ordering::Relaxed);
        return Ok(());
    }
    let guard = st.handle.lock().unwrap_or_else(|p| p.into_inner());
    let Some(file) = guard.as_ref() else {
        return Err(RestoreError::io(
            path,
            std::io::Error::other("file closed before all its data was written"),
        ));
    };
    if !st.fresh {
        // Leave data that is already right alone (a re-run, or --overwrite
        // over an older copy): reading is cheaper than writing on most disks.
        let mut cur = vec![0u8; data.len()];
        if file.read_exact_at(&mut cur, off).is_ok() && cur == data {
            c.unchanged.fetch_add(data.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
    }
    file.write_all_at(data, off).map_err(|e| RestoreError::io(path, e))?;
    c.written.fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok(())
}

fn make_special(p: &Path, n: &Node) -> Result<Option<String>, RestoreError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    if fs::symlink_metadata(p).is_ok() {
        fs::remove_file(p).map_err(|e| RestoreError::io(p, e))?;
    }
    let mode = Mode::from_bits_truncate(n.mode as nix::libc::mode_t);
    match n.kind {
        NodeKind::Symlink => {
            let target = std::ffi::OsStr::from_bytes_ext(n.symlink_target.as_deref().unwrap_or_default());
            std::os::unix::fs::symlink(target, p).map_err(|e| RestoreError::io(p, e))?;
        }
        NodeKind::Fifo => {
            nix::unistd::mkfifo(p, mode).map_err(|e| RestoreError::io(p, e.into()))?;
        }
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            let kind = if n.kind == NodeKind::CharDevice {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            if let Err(e) = mknod(p, kind, mode, n.rdev as nix::libc::dev_t) {
                return Ok(Some(format!("{}: device not created: {e}", p.display())));
            }
        }
        NodeKind::Socket => return Ok(Some(format!("{}: sockets are not restored", p.display()))),
        NodeKind::File | NodeKind::Dir => {}
    }
    Ok(None)
}

trait OsStrBytes {
    fn from_bytes_ext(b: &[u8]) -> &Self;
}
impl OsStrBytes for std::ffi::OsStr {
    fn from_bytes_ext(b: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn apply_metadata(p: &Path, n: &Node, warnings: &mut Vec<String>) {
    let is_link = n.kind == NodeKind::Symlink;
    if nix::unistd::geteuid().is_root() {
        if let Err(e) = std::os::unix::fs::lchown(p, Some(n.uid), Some(n.gid)) {
            warnings.push(format!("{}: owner not set: {e}", p.display()));
        }
    }
    if !is_link {
        if let Err(e) = fs::set_permissions(p, Permissions::from_mode(n.mode)) {
            warnings.push(format!("{}: mode not set: {e}", p.display()));
        }
    }
    for x in &n.xattrs {
        let name = std::ffi::OsStr::from_bytes_ext(&x.name);
        if let Err(e) = xattr::set(p, name, &x.value) {
            warnings.push(format!("{}: extended attribute not set: {e}", p.display()));
        }
    }
    let t = filetime::FileTime::from_unix_time(
        n.mtime_ns.div_euclid(1_000_000_000),
        n.mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    if let Err(e) = filetime::set_symlink_file_times(p, t, t) {
        warnings.push(format!("{}: times not set: {e}", p.display()));
    }
}

fn verify(repo: &Repository, plan: &RestorePlan, summary: &mut RestoreSummary) -> Result<(), RestoreError> {
    let bad: Vec<&Path> = plan
        .files
        .par_iter()
        .filter_map(|f| {
            let ok = (|| -> std::io::Result<bool> {
                let file = File::open(&f.path)?;
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
            if ok.unwrap_or(false) {
                None
            } else {
                Some(f.path.as_path())
            }
        })
        .collect();
    summary.files_verified = plan.files.len() as u64;
    if let Some(first) = bad.first() {
        return Err(RestoreError::VerifyFailed {
            count: bad.len(),
            first: first.to_path_buf(),
        });
    }
    Ok(())
}
