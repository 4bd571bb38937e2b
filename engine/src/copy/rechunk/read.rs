//! A file's contents read from the source as one byte stream: blobs that
//! follow one another in a pack are read with one range request, and
//! several such runs are read ahead of the chunker by a few threads.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{bounded, Receiver};

use super::RechunkError;
use crate::backup::BackupError;
use crate::index::{BlobLocation, Index};
use crate::repository::{pack_kind, Repository, RepositoryError};
use crate::tree::ContentRef;

/// Largest read of consecutive blobs of one pack in one request: a file's
/// blobs usually sit one after another in a pack, and one range request
/// for several of them costs one round trip instead of one per blob.
const MAX_RUN_BYTES: u64 = 4 * 1024 * 1024;

/// Bytes of other blobs a run may read along with its own.
const MAX_GAP_BYTES: u64 = 1024 * 1024;

/// Runs of a file read at once ahead of the chunker. Bounds memory to about
/// `2 × READ_AHEAD × MAX_RUN_BYTES` (a run being read and one waiting per
/// reader) besides the chunker's buffer, and hides a remote store's latency.
const READ_AHEAD: usize = 4;

/// What was read from source packs.
#[derive(Default, Clone, Copy)]
pub(super) struct ReadCount {
    /// Bytes read (sealed, as stored).
    pub bytes: u64,
    /// Blobs opened.
    pub blobs: u64,
}

/// Hands `use_reader` the contents `refs` of the file at `path` as a
/// reader. Its result comes back with, when it failed, the reader's own
/// error (a reader can only pass an `io::Error` through the chunker, this
/// keeps the file, the blob and the cause). Fails before reading anything
/// when a blob is not in the index.
#[allow(clippy::type_complexity)]
pub(super) fn with_contents<T, E>(
    src: &Repository,
    index: &Index,
    path: &Path,
    refs: &[ContentRef],
    cancel: Option<&AtomicBool>,
    use_reader: impl FnOnce(&mut dyn Read) -> Result<T, E>,
) -> Result<(Result<T, (E, Option<RechunkError>)>, ReadCount), RechunkError> {
    let runs = plan_runs(index, path, refs)?;
    Ok(std::thread::scope(|s| {
        let fetch = if runs.len() > 1 {
            Fetch::Ahead(spawn_readers(s, src, path, refs, &runs), runs.len())
        } else {
            Fetch::Inline(runs.iter())
        };
        let mut reader = RunReader {
            src,
            path,
            refs,
            fetch,
            cancel,
            next: 0,
            blobs: VecDeque::new(),
            pos: 0,
            error: None,
            read: ReadCount::default(),
        };
        let r = use_reader(&mut reader);
        let error = reader.error.take();
        let read = reader.read;
        // Dropping the reader drops the channels: readers still running
        // stop at their next send, and the scope joins them.
        drop(reader);
        (r.map_err(|e| (e, error)), read)
    }))
}

/// Consecutive blobs of one file stored close together in one pack: read
/// with one range request. The backup's sealers run in parallel, so a
/// file's blobs sit in its packs nearly, not exactly, in order; a run
/// therefore spans its blobs in any order, with at most a quarter of its
/// bytes, or 1 MiB, belonging to other blobs (measured on a 3 MiB file of
/// 41 blobs in 4 packs: 6 requests; 21 joining only exact successors).
pub(in crate::copy) struct Run {
    /// Index of its first blob in the file's content list.
    first: usize,
    /// Each blob's location, in content order.
    pub(in crate::copy) locs: Vec<BlobLocation>,
    /// Where the range read starts and ends in the pack.
    start: u64,
    end: u64,
    /// Bytes of the run's blobs in it (a repeated blob counts each time).
    useful: u64,
}

impl Run {
    fn new(first: usize, loc: BlobLocation) -> Self {
        let (start, len) = (u64::from(loc.offset), u64::from(loc.length));
        Self {
            first,
            locs: vec![loc],
            start,
            end: start + len,
            useful: len,
        }
    }

    /// Takes `loc` in when it is in the same pack and the range stays
    /// within [`MAX_RUN_BYTES`] and mostly this file's.
    fn join(&mut self, loc: BlobLocation) -> bool {
        let Some(last) = self.locs.last() else {
            return false;
        };
        let (from, len) = (u64::from(loc.offset), u64::from(loc.length));
        let (start, end) = (self.start.min(from), self.end.max(from + len));
        let useful = self.useful + len;
        // Reading up to 1 MiB (or a quarter) of other blobs costs about a
        // round trip to a remote store; a gap the sealers' reordering left
        // is usually filled by the file's next blobs anyway.
        let span = end - start;
        let fits = span <= MAX_RUN_BYTES && span.saturating_sub(useful) <= (span / 4).max(MAX_GAP_BYTES);
        if last.pack != loc.pack || last.blob_type != loc.blob_type || !fits {
            return false;
        }
        self.locs.push(loc);
        (self.start, self.end, self.useful) = (start, end, useful);
        true
    }
}

/// Groups a file's blobs into runs; fails on the first blob not indexed,
/// before anything is read.
pub(in crate::copy) fn plan_runs(index: &Index, path: &Path, content: &[ContentRef]) -> Result<Vec<Run>, RechunkError> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, c) in content.iter().enumerate() {
        let loc = index.get(&c.id).ok_or_else(|| RechunkError::Content {
            path: path.to_path_buf(),
            blob: c.id,
            source: RepositoryError::MissingBlob { id: c.id },
        })?;
        if !runs.last_mut().is_some_and(|run| run.join(loc)) {
            runs.push(Run::new(i, loc));
        }
    }
    Ok(runs)
}

/// A run read and opened: its blobs' plaintexts and the bytes read.
type Fetched = Result<(Vec<Vec<u8>>, u64), RechunkError>;

/// Reads run `run` and opens its blobs (which verifies them).
fn fetch(src: &Repository, path: &Path, refs: &[ContentRef], run: &Run) -> Fetched {
    let (start, len) = (run.start, run.end - run.start);
    let first = run.locs.first().copied();
    let err = |i: usize, source: RepositoryError| RechunkError::Content {
        path: path.to_path_buf(),
        blob: refs[run.first + i].id,
        source,
    };
    let Some(first) = first else {
        return Ok((Vec::new(), 0));
    };
    let sealed = src
        .backend()
        .read_range(pack_kind(first.blob_type), &first.pack.to_hex(), start, len)
        .map_err(|e| err(0, e.into()))?;
    let mut blobs = Vec::with_capacity(run.locs.len());
    for (i, loc) in run.locs.iter().enumerate() {
        let c = &refs[run.first + i];
        let from = (u64::from(loc.offset) - start) as usize;
        let to = from + loc.length as usize;
        let part = sealed.get(from..to).ok_or_else(|| {
            err(
                i,
                RepositoryError::corrupt(
                    pack_kind(loc.blob_type),
                    &loc.pack.to_hex(),
                    format!("shorter than its index says (blob {} at {from}..{to})", c.id.short()),
                ),
            )
        })?;
        let plain = src
            .open_blob(loc.blob_type, &c.id, &loc.pack, part)
            .map_err(|e| err(i, e))?;
        if plain.len() != c.length as usize {
            return Err(RechunkError::Length {
                path: path.to_path_buf(),
                blob: c.id,
                expected: c.length,
                found: plain.len(),
            });
        }
        blobs.push(plain);
    }
    Ok((blobs, sealed.len() as u64))
}

/// Starts `READ_AHEAD` readers over `runs`: reader `t` reads runs `t`,
/// `t + READ_AHEAD`, ... into its own channel of one, so taking from the
/// channels in turn gives the runs in order while several requests are
/// in flight.
fn spawn_readers<'s, 'e: 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    src: &'e Repository,
    path: &'e Path,
    refs: &'e [ContentRef],
    runs: &'e [Run],
) -> Vec<Receiver<Fetched>> {
    let readers = READ_AHEAD.min(runs.len());
    (0..readers)
        .map(|t| {
            let (tx, rx) = bounded::<Fetched>(1);
            s.spawn(move || {
                for run in runs.iter().skip(t).step_by(readers) {
                    let r = fetch(src, path, refs, run);
                    let failed = r.is_err();
                    // A closed channel: the file is done with (or failed).
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            });
            rx
        })
        .collect()
}

/// Where a file's runs come from.
enum Fetch<'a> {
    /// Read here, when there is one run (no thread is worth starting).
    Inline(std::slice::Iter<'a, Run>),
    /// From readers running ahead, taken in turn; how many runs in all.
    Ahead(Vec<Receiver<Fetched>>, usize),
}

/// A file's contents as one byte stream, read run by run from the source.
struct RunReader<'a> {
    src: &'a Repository,
    path: &'a Path,
    refs: &'a [ContentRef],
    fetch: Fetch<'a>,
    /// Set to stop: the next run is not taken (a copy stops within a file).
    cancel: Option<&'a AtomicBool>,
    /// Runs taken so far.
    next: usize,
    blobs: VecDeque<Vec<u8>>,
    pos: usize,
    /// Why reading stopped: the chunker only passes on an `io::Error`.
    error: Option<RechunkError>,
    read: ReadCount,
}

impl RunReader<'_> {
    fn next_run(&mut self) -> Option<Fetched> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Some(Err(RechunkError::Save(BackupError::Interrupted)));
        }
        let r = match &mut self.fetch {
            Fetch::Inline(runs) => runs.next().map(|run| fetch(self.src, self.path, self.refs, run)),
            Fetch::Ahead(_, total) if self.next >= *total => None,
            Fetch::Ahead(rxs, _) => {
                let rx = rxs.get(self.next % rxs.len().max(1))?;
                // A reader sends every run it owns, or an error and stops:
                // a channel closed early means the reader died (a panic),
                // which must not pass for the end of the file.
                Some(
                    rx.recv()
                        .unwrap_or(Err(RechunkError::Save(BackupError::ThreadPanicked))),
                )
            }
        };
        self.next += 1;
        r
    }
}

impl Read for RunReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(b) = self.blobs.front() {
                if self.pos < b.len() {
                    let n = buf.len().min(b.len() - self.pos);
                    buf[..n].copy_from_slice(&b[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                self.blobs.pop_front();
                self.pos = 0;
                continue;
            }
            match self.next_run() {
                None => return Ok(0),
                Some(Ok((blobs, bytes))) => {
                    self.read.bytes += bytes;
                    self.read.blobs += blobs.len() as u64;
                    self.blobs = blobs.into();
                }
                Some(Err(e)) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
    }
}
