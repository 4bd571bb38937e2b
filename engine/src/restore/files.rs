//! The files a restore writes, and the few it holds open.
//!
//! A new file is written under a temporary name in its folder
//! ([`PART_PREFIX`]), created (sparse, at its full size) when its first blob
//! lands, and renamed to its real name, after its metadata is applied
//! through the open descriptor, when its last blob lands. A file that cannot
//! be restored loses its temporary file, so nothing is left under its real
//! name. An existing file replaced with `--overwrite` (or by a resumed
//! restore) is updated in place, so data already correct is only read; that
//! is done only when it is a plain file with no other hard links, which
//! could be outside the target.
//!
//! Blobs arrive in pack order, so one file may get data from packs read far
//! apart. At most [`MAX_OPEN_FILES`] descriptors are held: opening one more
//! first closes the one opened longest ago (it is reopened when more of its
//! data arrives), which keeps a restore well under the usual limit of 1,024
//! open files whatever the shape of the tree.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use super::meta::{self, MetaOptions};
use super::plan::RestorePlan;
use super::{FailedEntry, RestoreError, RestoreProgress, PART_PREFIX};

/// Most file descriptors held open for writing at once.
pub(super) const MAX_OPEN_FILES: usize = 256;

/// What became of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Still waiting for data.
    Pending,
    /// Restored under its real name.
    Done,
    /// Not restored, with the reason and whether it is damage.
    Failed(String, bool),
    /// Not attempted: a folder above it could not be created (that folder
    /// is named instead), or it is a hard link handled separately.
    Skipped,
}

struct Slot {
    file: Option<File>,
    /// The temporary name, until renamed into place.
    part: Option<PathBuf>,
    /// Updating an existing file where it is.
    in_place: bool,
    /// `in_place` and something was written into it.
    touched: bool,
    /// Blob placements still to come.
    remaining: usize,
    state: State,
}

/// The files of one restore and their state.
pub(super) struct Files<'a> {
    plan: &'a RestorePlan,
    slots: Vec<Mutex<Slot>>,
    /// Files opened, oldest first (entries of files closed since are
    /// skipped when met).
    opened: Mutex<VecDeque<usize>>,
    open_now: AtomicUsize,
    /// Most files open at once in this restore.
    pub peak_open: AtomicUsize,
    /// Random part of this run's temporary names.
    run: String,
    meta: MetaOptions,
    /// A failure that makes going on pointless (a full or read-only target).
    fatal: Mutex<Option<RestoreError>>,
    stopped: AtomicBool,
    warnings: Mutex<Vec<String>>,
    progress: Option<&'a RestoreProgress>,
    /// Bytes written.
    pub written: AtomicU64,
    /// Bytes found already correct.
    pub unchanged: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Errors after which no other file can be written either.
fn is_fatal(e: &std::io::Error) -> bool {
    use nix::libc::{EDQUOT, ENOSPC, EROFS};
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT | EROFS))
}

fn open_rw(p: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)
}

impl<'a> Files<'a> {
    /// One slot per planned file; `blocked` says which lie below a folder
    /// that could not be created.
    pub(super) fn new(
        plan: &'a RestorePlan,
        meta: MetaOptions,
        progress: Option<&'a RestoreProgress>,
        blocked: impl Fn(&Path) -> bool,
    ) -> Self {
        let mut remaining = vec![0usize; plan.files.len()];
        for pj in &plan.packs {
            for b in &pj.blobs {
                for (f, _) in &b.targets {
                    remaining[*f] += 1;
                }
            }
        }
        let slots = plan
            .files
            .iter()
            .zip(remaining)
            .map(|(f, remaining)| {
                let state = if f.link_to.is_some() || blocked(&f.path) {
                    State::Skipped
                } else if let Some(r) = &f.failed {
                    State::Failed(r.clone(), true)
                } else {
                    State::Pending
                };
                Mutex::new(Slot {
                    file: None,
                    part: None,
                    in_place: false,
                    touched: false,
                    remaining,
                    state,
                })
            })
            .collect();
        let mut r = [0u8; 8];
        let run = match getrandom::getrandom(&mut r) {
            Ok(()) => hex::encode(r),
            Err(_) => format!("{:x}", std::process::id()),
        };
        Files {
            plan,
            slots,
            opened: Mutex::new(VecDeque::new()),
            open_now: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            run,
            meta,
            fatal: Mutex::new(None),
            stopped: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
            progress,
            written: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
        }
    }

    /// Whether a fatal failure stopped the restore.
    pub(super) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Finishes every file that has no data to wait for (empty files).
    pub(super) fn finish_empty(&self) {
        for f in 0..self.slots.len() {
            let mut s = lock(&self.slots[f]);
            if s.remaining == 0 && s.state == State::Pending {
                self.finish(f, &mut s);
            }
        }
    }

    /// Places `data` at `off` in file `f` (`zero`: it is all zeros).
    pub(super) fn put(&self, f: usize, off: u64, data: &[u8], zero: bool) {
        let mut s = lock(&self.slots[f]);
        if s.state == State::Pending {
            if let Err(e) = self.write(f, &mut s, off, data, zero) {
                self.write_failed(f, &mut s, "writing it failed", e);
            }
        }
        self.placed(f, &mut s);
    }

    /// One placement of file `f` will not come: its blob is damaged or
    /// missing, for `reason`.
    pub(super) fn lose(&self, f: usize, reason: &str) {
        let mut s = lock(&self.slots[f]);
        if s.state == State::Pending {
            self.fail(&mut s, reason.to_string(), true);
        }
        self.placed(f, &mut s);
    }

    fn placed(&self, f: usize, s: &mut Slot) {
        s.remaining = s.remaining.saturating_sub(1);
        if s.remaining == 0 && s.state == State::Pending {
            self.finish(f, s);
        }
    }

    fn write(&self, f: usize, s: &mut Slot, off: u64, data: &[u8], zero: bool) -> std::io::Result<()> {
        self.ensure_open(f, s)?;
        let Some(file) = s.file.as_ref() else {
            return Err(std::io::Error::other("file closed before its data was written"));
        };
        if !s.in_place {
            if zero {
                // A new file is created sparse: its holes already read as zeros.
                self.unchanged.fetch_add(data.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
        } else {
            // Leave data that is already right alone (a re-run, or
            // --overwrite over an older copy): reading is cheaper than writing.
            let mut cur = vec![0u8; data.len()];
            if file.read_exact_at(&mut cur, off).is_ok() && cur == data {
                self.unchanged.fetch_add(data.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
            s.touched = true;
        }
        file.write_all_at(data, off)?;
        self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Opens file `f` for writing unless it is open: the first time, its
    /// temporary file is created (or the existing file opened in place);
    /// after being closed to make room, it is reopened.
    fn ensure_open(&self, f: usize, s: &mut Slot) -> std::io::Result<()> {
        if s.file.is_some() {
            return Ok(());
        }
        self.make_room(f);
        let path = &self.plan.files[f].path;
        let file = match &s.part {
            Some(part) => open_rw(part)?,
            None if s.in_place => open_rw(path)?,
            None => match self.open_in_place(f) {
                Some(file) => {
                    s.in_place = true;
                    file
                }
                None => {
                    let (part, file) = self.create_part(f)?;
                    s.part = Some(part);
                    file
                }
            },
        };
        s.file = Some(file);
        let now = self.open_now.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_open.fetch_max(now, Ordering::Relaxed);
        lock(&self.opened).push_back(f);
        Ok(())
    }

    /// The existing file at `f`'s name, when it may be updated where it is:
    /// a plain file with no other hard link.
    fn open_in_place(&self, f: usize) -> Option<File> {
        let pf = &self.plan.files[f];
        if !pf.existed {
            return None;
        }
        let before = fs::symlink_metadata(&pf.path).ok()?;
        if !before.is_file() || before.nlink() != 1 {
            return None;
        }
        let file = open_rw(&pf.path).ok()?;
        let m = file.metadata().ok()?;
        (m.is_file() && m.ino() == before.ino() && m.dev() == before.dev()).then_some(file)
    }

    fn create_part(&self, f: usize) -> std::io::Result<(PathBuf, File)> {
        let pf = &self.plan.files[f];
        let dir = pf.path.parent().unwrap_or(&self.plan.target);
        let part = dir.join(format!("{PART_PREFIX}{}-{f}", self.run));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&part)?;
        // Full size up front: blobs land in any order, and ranges never
        // written (zeros) stay holes.
        if let Err(e) = file.set_len(pf.node.size) {
            let _ = fs::remove_file(&part);
            return Err(e);
        }
        Ok((part, file))
    }

    /// Closes the files opened longest ago until there is room for one
    /// more. Files busy in another thread are passed over (never waited
    /// for, so two threads cannot wait on each other).
    fn make_room(&self, me: usize) {
        if self.open_now.load(Ordering::Acquire) < MAX_OPEN_FILES {
            return;
        }
        let mut q = lock(&self.opened);
        let mut tries = q.len();
        while tries > 0 && self.open_now.load(Ordering::Acquire) >= MAX_OPEN_FILES {
            tries -= 1;
            let Some(g) = q.pop_front() else { break };
            if g == me {
                continue;
            }
            match self.slots[g].try_lock() {
                Ok(mut s) => self.close(&mut s),
                Err(TryLockError::Poisoned(p)) => self.close(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => q.push_back(g),
            }
        }
    }

    fn close(&self, s: &mut Slot) {
        if s.file.take().is_some() {
            self.open_now.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// All of `f`'s data is there: size, metadata, then its real name.
    fn finish(&self, f: usize, s: &mut Slot) {
        let pf = &self.plan.files[f];
        if let Err(e) = self.ensure_open(f, s) {
            return self.write_failed(f, s, "creating it failed", e);
        }
        let mut warnings = Vec::new();
        if let Some(file) = &s.file {
            if s.in_place {
                if let Err(e) = file.set_len(pf.node.size) {
                    return self.write_failed(f, s, "setting its size failed", e);
                }
            }
            meta::apply_to_fd(file, &pf.path, pf.node.meta(), &self.meta, &mut warnings);
        }
        self.close(s);
        if let Some(part) = s.part.take() {
            // Whatever is at the real name (an older file, or a symlink
            // that was there) is replaced, never written through.
            if let Err(e) = fs::rename(&part, &pf.path) {
                let _ = fs::remove_file(&part);
                return self.write_failed(f, s, "moving it into place failed", e);
            }
        }
        if !warnings.is_empty() {
            lock(&self.warnings).extend(warnings);
        }
        s.state = State::Done;
        if let Some(p) = self.progress {
            p.files_done.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write_failed(&self, f: usize, s: &mut Slot, what: &str, e: std::io::Error) {
        if is_fatal(&e) {
            self.stopped.store(true, Ordering::Relaxed);
            let path = &self.plan.files[f].path;
            lock(&self.fatal)
                .get_or_insert_with(|| RestoreError::io(path, std::io::Error::new(e.kind(), e.to_string())));
        }
        self.fail(s, format!("{what}: {e}"), false);
    }

    /// Marks the file failed and removes what was written of it.
    fn fail(&self, s: &mut Slot, reason: String, damaged: bool) {
        self.close(s);
        if let Some(part) = s.part.take() {
            let _ = fs::remove_file(part);
        }
        let reason = if s.touched {
            format!("{reason} (the file that was there is partly overwritten)")
        } else {
            reason
        };
        s.state = State::Failed(reason, damaged);
        if let Some(p) = self.progress {
            p.files_done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What became of file `f`.
    pub(super) fn state(&self, f: usize) -> State {
        lock(&self.slots[f]).state.clone()
    }

    /// Removes the temporary files of files not finished (the restore
    /// stopped early) and returns the fatal failure, if any.
    pub(super) fn abandon(&self) -> Option<RestoreError> {
        for m in &self.slots {
            let mut s = lock(m);
            self.close(&mut s);
            if let Some(part) = s.part.take() {
                let _ = fs::remove_file(part);
            }
        }
        lock(&self.fatal).take()
    }

    /// Files restored, failures (with the path each is at), and warnings.
    pub(super) fn outcome(&self) -> (u64, Vec<FailedEntry>, Vec<String>) {
        let mut done = 0;
        let mut failed = Vec::new();
        for (f, m) in self.slots.iter().enumerate() {
            match &lock(m).state {
                State::Done => done += 1,
                State::Failed(reason, damaged) => failed.push(FailedEntry {
                    path: self.plan.files[f].path.to_string_lossy().into_owned(),
                    reason: reason.clone(),
                    damaged: *damaged,
                }),
                State::Pending | State::Skipped => {}
            }
        }
        (done, failed, std::mem::take(&mut lock(&self.warnings)))
    }
}

/// Removes temporary files a stopped restore left in the folders this one
/// writes to.
pub(super) fn remove_leftover_parts(plan: &RestorePlan) {
    let mut dirs: Vec<&Path> = plan.dirs.iter().map(|(p, _)| p.as_path()).collect();
    dirs.push(&plan.target);
    dirs.extend(plan.files.iter().filter_map(|f| f.path.parent()));
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        let Ok(entries) = fs::read_dir(d) else { continue };
        for e in entries.flatten() {
            let ours = e.file_name().as_encoded_bytes().starts_with(PART_PREFIX.as_bytes());
            if ours && e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
