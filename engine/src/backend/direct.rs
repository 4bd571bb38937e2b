//! Writing large objects of a local repository, and reading large ranges
//! of them, around the page cache (`O_DIRECT`).
//!
//! Why: on the 2-core machines this project is measured on, copying a
//! freshly sealed pack into the page cache cost 0.35–1.7 s of system time
//! per GB written (fresh page-cache pages are expensive to allocate in a
//! VM), a large share of a first backup that is otherwise CPU-bound.
//! Direct writes hand the device our own (already warm) buffer: `dd` of
//! 1 GB took 0.15–0.19 s of system time that way. The pack is then not in
//! the page cache, which is also what a repository written last night looks
//! like to a restore.
//!
//! Direct I/O wants the buffer address, the length and the file offset
//! aligned to the device's block size. We copy through a small aligned
//! buffer of our own (a user-space copy of warm memory costs a fraction of
//! the kernel's), pad the last block with zeros and cut the file back to
//! its length. Reads likewise start on a block boundary and drop what they
//! read before the range. A restore's range reads then cost the device's
//! time, on a reader thread of which there are several, instead of the
//! CPU's. A file system that refuses `O_DIRECT` (or a write that the
//! alignment does not satisfy) makes the caller fall back to a buffered
//! write; the bytes on disk are the same either way.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Alignment good for every block device Linux has (logical blocks are
/// 512 or 4096 bytes).
const ALIGN: usize = 4096;
/// Bytes copied and written per direct write (1 MiB writes took twice as
/// long on this machine's disk: `dd oflag=direct`).
const STAGE: usize = 4 << 20;
/// Bytes read per direct read: as fast as larger reads (`dd iflag=direct`),
/// and a restore has four reader threads, each with its buffer.
const READ_STAGE: usize = 1 << 20;
/// Objects smaller than this are written buffered: direct I/O would only
/// add a synchronous device round trip to what an fsync does anyway.
pub const MIN_DIRECT: usize = 1 << 20;

thread_local! {
    /// One staging buffer per thread, kept warm across objects.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What [`write_new`] did.
pub enum Outcome {
    /// The file was created and holds `data`.
    Written(File),
    /// Direct I/O is not available here; nothing was created.
    Unsupported,
}

/// Creates `path` (which must not exist) with `mode` and writes `data` to it
/// with direct I/O. Returns [`Outcome::Unsupported`] (having removed anything
/// it created) when the file system refuses direct I/O, so the caller
/// writes buffered instead. The returned file is not yet synced.
pub fn write_new(path: &Path, mode: u32, data: &[u8]) -> std::io::Result<Outcome> {
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
            // Linux checks O_DIRECT after creating the file (ramfs does
            // this); with O_EXCL a file that was there before would have
            // been EEXIST, so what is there now is ours.
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => return Ok(Outcome::Unsupported),
            }
        }
        Err(e) => return Err(e),
    };
    let result = with_staging(STAGE, |buf| {
        for piece in data.chunks(STAGE) {
            buf[..piece.len()].copy_from_slice(piece);
            let padded = piece.len().next_multiple_of(ALIGN);
            buf[piece.len()..padded].fill(0);
            f.write_all(&buf[..padded])?;
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            f.set_len(data.len() as u64)?;
            Ok(Outcome::Written(f))
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
            drop(f);
            std::fs::remove_file(path)?;
            Ok(Outcome::Unsupported)
        }
        Err(e) => Err(e),
    }
}

/// Reads `len` bytes at `offset` of the file at `path` with direct I/O,
/// through the thread's staging buffer, [`READ_STAGE`] at a time. `None`
/// when the file system refuses direct I/O, so the caller reads buffered.
/// A file shorter than `offset + len` is an `UnexpectedEof` error.
///
/// Reading straight into the returned buffer was tried: it must be
/// zeroed first (safe Rust cannot hand the kernel uninitialised memory),
/// and a full restore took 3.1-3.3 CPU-seconds against 2.1-2.4.
pub fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Option<Vec<u8>>> {
    if len == 0 {
        return Ok(Some(Vec::new()));
    }
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(len);
    let result = with_staging(READ_STAGE, |buf| {
        use std::os::unix::fs::FileExt;
        let end = offset + len as u64;
        // Reads start on a block boundary; the bytes before `offset` in
        // the first block are read and dropped.
        let mut at = offset - offset % ALIGN as u64;
        while at < end {
            let want = ((end - at) as usize).next_multiple_of(ALIGN).min(buf.len());
            let got = f.read_at(&mut buf[..want], at)?;
            let have = (at + got as u64).min(end);
            let from = offset.max(at);
            // A read that ends short of what was asked, off a block
            // boundary, met the end of the file.
            if have <= from || (got < want && have < end) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object is shorter than expected",
                ));
            }
            out.extend_from_slice(&buf[(from - at) as usize..(have - at) as usize]);
            at = have;
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(Some(out)),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `f` on `size` bytes of the thread's aligned staging buffer.
fn with_staging<T>(size: usize, f: impl FnOnce(&mut [u8]) -> std::io::Result<T>) -> std::io::Result<T> {
    STAGING.with(|s| {
        let mut stage = s.borrow_mut();
        if stage.len() < size + ALIGN {
            stage.resize(size + ALIGN, 0);
        }
        let off = stage.as_ptr().align_offset(ALIGN);
        f(&mut stage[off..off + size])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::backend::{Backend, ObjectKind};

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    /// Every length around the block and staging boundaries comes back
    /// exactly, with no padding left at the end.
    #[test]
    fn direct_writes_keep_exact_bytes_and_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut direct = 0;
        for (i, len) in [1, ALIGN - 1, ALIGN, ALIGN + 1, STAGE - 1, STAGE, STAGE + 1, 2 * STAGE + 12_345]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("f{i}"));
            let data = pattern(len);
            match write_new(&path, 0o600, &data).unwrap() {
                Outcome::Written(f) => {
                    f.sync_all().unwrap();
                    direct += 1;
                    assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
                }
                Outcome::Unsupported => assert!(!path.exists(), "a refused direct write left {path:?}"),
            }
        }
        // Says so when the folder's file system cannot test the direct path.
        if direct == 0 {
            eprintln!("note: {:?} refuses O_DIRECT; only the fallback was tested", dir.path());
        }
        // A second write to the same name is refused, as create_new promises.
        let again = write_new(&dir.path().join("f0"), 0o600, b"x");
        assert!(direct == 0 || again.is_err());
    }

    /// Ranges at every offset alignment and across staging boundaries read
    /// back exactly; a range past the end is an `UnexpectedEof`.
    #[test]
    fn direct_reads_give_exact_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(2 * STAGE + 3 * ALIGN + 77);
        std::fs::write(&path, &data).unwrap();
        let len = data.len();
        let cases = [
            (0, len),
            (1, len - 1),
            (ALIGN - 1, STAGE + 2),
            (ALIGN, STAGE),
            (STAGE - 5, 10),
            (READ_STAGE - 1, READ_STAGE + 2),
            (3 * READ_STAGE + 17, 2 * READ_STAGE),
            (len - 1, 1),
            (len - ALIGN - 77, ALIGN + 77),
            (123, 0),
        ];
        for (off, n) in cases {
            match read_at(&path, off as u64, n).unwrap() {
                Some(got) => assert_eq!(got, data[off..off + n], "offset {off} length {n}"),
                None => eprintln!("note: {:?} refuses O_DIRECT; the direct read path is untested", dir.path()),
            }
        }
        if let Ok(Some(_)) | Err(_) = read_at(&path, 0, 1) {
            let past = read_at(&path, (len - 10) as u64, 11);
            assert!(matches!(past, Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
            let far = read_at(&path, (len + 2 * ALIGN) as u64, 5);
            assert!(matches!(far, Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
        }
    }

    /// Through the backend: large objects (written directly) and small ones
    /// (buffered) read back whole and by range, and leave no temporaries.
    #[test]
    fn local_backend_round_trips_large_objects() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.create_layout().unwrap();
        for (name, len) in [("aa", MIN_DIRECT - 1), ("bb", MIN_DIRECT), ("cc", 3 * STAGE + 7)] {
            let data = pattern(len);
            b.write(ObjectKind::DataPack, &format!("{name}{}", "0".repeat(62)), &data)
                .unwrap();
            let full = format!("{name}{}", "0".repeat(62));
            assert_eq!(b.read(ObjectKind::DataPack, &full).unwrap(), data);
            assert_eq!(b.stat(ObjectKind::DataPack, &full).unwrap(), Some(len as u64));
            let (off, n) = (len as u64 / 3, 5000);
            assert_eq!(
                b.read_range(ObjectKind::DataPack, &full, off, n).unwrap(),
                data[off as usize..off as usize + n as usize]
            );
        }
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
