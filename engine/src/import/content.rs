//! A restic file's contents as one byte stream for Cairn's chunker: its
//! data blobs in order, read ahead of the chunker by one thread for files
//! of several blobs. A blob that cannot be read is left out and recorded:
//! the file is imported with what is intact and marked damaged, as `cairn
//! repair snapshots` marks its own.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{bounded, Receiver};

use super::restic::{ResticError, ResticIndex, ResticRepo};

/// Blobs read ahead of the chunker: restic's blobs are at most 8 MiB, so
/// this bounds the read-ahead to 32 MiB besides the blob being chunked.
const READ_AHEAD: usize = 4;

/// A blob of the file that could not be read.
pub(super) struct Missing {
    /// Its place in the file's content list.
    pub position: usize,
    /// Why.
    pub error: ResticError,
}

/// What reading a file's contents found.
#[derive(Default)]
pub(super) struct ReadOutcome {
    /// Blobs left out.
    pub missing: Vec<Missing>,
    /// Bytes of blobs read.
    pub bytes: u64,
    /// The storage failed for good (not damage): the import stops.
    pub fatal: Option<ResticError>,
}

/// Threads that read the blobs of a folder's small files at once.
const PREFETCH_THREADS: usize = 8;

/// A blob read in advance, or why it could not be.
pub(super) type Ready = Result<Vec<u8>, ResticError>;

/// Reads the blobs `ids` on several threads at once: a folder's small
/// files are one blob each, and reading them one after another would cost
/// one round trip each on S3 (and leave a core idle locally).
pub(super) fn prefetch(repo: &ResticRepo, index: &ResticIndex, ids: &[[u8; 32]]) -> Vec<([u8; 32], Ready)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = PREFETCH_THREADS.min(ids.len());
    let results = std::sync::Mutex::new(Vec::with_capacity(ids.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { return };
                let r = repo.read_blob(index, id, false);
                results.lock().unwrap_or_else(|p| p.into_inner()).push((*id, r));
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Hands `use_reader` a reader over the blobs `ids` and returns its result
/// with what the reading found. `ready` is the first blob, read in advance.
pub(super) fn with_contents<T>(
    repo: &ResticRepo,
    index: &ResticIndex,
    ids: &[[u8; 32]],
    ready: Option<Ready>,
    cancel: Option<&AtomicBool>,
    use_reader: impl FnOnce(&mut dyn Read) -> T,
) -> (T, ReadOutcome) {
    std::thread::scope(|s| {
        let ahead = if ids.len() > 1 {
            let (tx, rx) = bounded(READ_AHEAD);
            s.spawn(move || {
                let mut last: Option<([u8; 32], Vec<u8>)> = None;
                for (i, id) in ids.iter().enumerate() {
                    let r = match last.take() {
                        Some((l, data)) if l == *id => Ok(data),
                        _ => repo.read_blob(index, id, false),
                    };
                    // A sparse file's runs of zeros are one blob again and
                    // again: a copy is kept only when the next is the same.
                    if let (Ok(data), Some(next)) = (&r, ids.get(i + 1)) {
                        if next == id {
                            last = Some((*id, data.clone()));
                        }
                    }
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            });
            Some(rx)
        } else {
            None
        };
        let mut reader = BlobReader {
            repo,
            index,
            ids,
            ahead,
            cancel,
            next: 0,
            ready,
            buf: Vec::new(),
            pos: 0,
            outcome: ReadOutcome::default(),
        };
        let r = use_reader(&mut reader);
        let outcome = std::mem::take(&mut reader.outcome);
        // Dropping the reader drops the receiver: the read-ahead thread
        // stops at its next send and the scope joins it.
        drop(reader);
        (r, outcome)
    })
}

struct BlobReader<'a> {
    repo: &'a ResticRepo,
    index: &'a ResticIndex,
    ids: &'a [[u8; 32]],
    ahead: Option<Receiver<Result<Vec<u8>, ResticError>>>,
    cancel: Option<&'a AtomicBool>,
    next: usize,
    ready: Option<Ready>,
    buf: Vec<u8>,
    pos: usize,
    outcome: ReadOutcome,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.next >= self.ids.len() {
                return Ok(0);
            }
            if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                // Not `ErrorKind::Interrupted`: readers retry that kind.
                return Err(std::io::Error::other("interrupted"));
            }
            let r = match &self.ahead {
                Some(rx) => rx
                    .recv()
                    .map_err(|_| std::io::Error::other("the read-ahead thread stopped"))?,
                None => match self.ready.take() {
                    Some(r) => r,
                    // Without a read-ahead thread the file is one blob.
                    None => self.repo.read_blob(self.index, &self.ids[self.next], false),
                },
            };
            let position = self.next;
            self.next += 1;
            match r {
                Ok(data) => {
                    self.outcome.bytes += data.len() as u64;
                    self.buf = data;
                    self.pos = 0;
                }
                Err(error) if error.kind() == crate::error::ErrorKind::Damaged => {
                    self.outcome.missing.push(Missing { position, error });
                }
                Err(error) => {
                    let text = error.to_string();
                    self.outcome.fatal = Some(error);
                    return Err(std::io::Error::other(text));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
