//! Sealing and opening of blobs and metadata objects: compression, then
//! encryption. [`seal`] and [`open`] are the only callers of zstd, and the only
//! callers of the cipher for repository data.

use std::cell::RefCell;

use crate::crypto::{CryptoError, Keys};
use crate::id::BlobId;

/// Plaintext marker: the payload follows as stored.
pub const FLAG_RAW: u8 = 0;
/// Plaintext marker: the payload is one zstd frame.
pub const FLAG_ZSTD: u8 = 1;
/// Largest plaintext [`open`] will inflate to; anything claiming more is corrupt.
pub const MAX_PLAINTEXT: usize = 1 << 30;

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The cipher failed (wrong key or modified bytes).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// zstd failed to compress.
    #[error("compression failed: {0}")]
    Compress(std::io::Error),
    /// The plaintext does not decode.
    #[error("corrupt payload: {0}")]
    Corrupt(String),
}

/// What a sealed payload is, bound into the authenticated data so that a blob
/// can never be accepted as a different blob or as a metadata object.
#[derive(Debug, Clone, Copy)]
pub enum Aad<'a> {
    /// A blob of the given type and id.
    Blob(BlobType, &'a BlobId),
    /// A whole metadata object of the given kind (config, snapshot, index, pack header).
    Object(&'static str),
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Aad::Blob(t, id) => {
                let mut v = Vec::with_capacity(11 + 32);
                v.extend_from_slice(b"cairn.blob");
                v.push(*t as u8);
                v.extend_from_slice(id.as_bytes());
                v
            }
            Aad::Object(kind) => {
                let mut v = b"cairn.object.".to_vec();
                v.extend_from_slice(kind.as_bytes());
                v
            }
        }
    }
}

/// The two kinds of blob. The tag byte is part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, bincode::Encode, bincode::Decode)]
#[repr(u8)]
pub enum BlobType {
    /// A chunk of file content.
    Data = 0,
    /// An encoded directory tree.
    Tree = 1,
}

impl BlobType {
    /// Decodes the tag byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Self::Data),
            1 => Some(Self::Tree),
            _ => None,
        }
    }
}

/// How to compress: a zstd level, or 0 for none.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    /// zstd level; 0 stores everything raw.
    pub level: i32,
}

thread_local! {
    // Reusing one compression context per thread saves its allocation on every
    // chunk, which is measurable at 500 MB/s.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

thread_local! {
    // One decompression context per thread, as for compression: creating
    // one per blob (ZSTD_createDCtx, and the zeroed pages of its ~100 KiB)
    // showed in restore profiles.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Shannon entropy of a sample of `data`, in bits per byte. Encrypted, random
/// or already strongly compressed data sits above 7.9; looking at 32 KiB costs
/// far less than compressing the whole chunk to find out it does not shrink.
fn sample_entropy(data: &[u8]) -> f64 {
    const SLICES: usize = 8;
    const SLICE: usize = 4096;
    let mut hist = [0u32; 256];
    let mut n = 0u32;
    if data.len() <= SLICES * SLICE {
        for &b in data {
            hist[b as usize] += 1;
        }
        n = data.len() as u32;
    } else {
        let step = (data.len() - SLICE) / (SLICES - 1);
        for i in 0..SLICES {
            for &b in &data[i * step..i * step + SLICE] {
                hist[b as usize] += 1;
            }
            n += SLICE as u32;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Threshold above which a chunk is stored raw without trying zstd.
pub const INCOMPRESSIBLE_ENTROPY: f64 = 7.97;

/// Appends `flag || payload` to `out` (which already holds the nonce
/// space): zstd output when it is worth it, else the raw bytes. Compressing
/// straight into the final buffer saves a copy and the zeroing of a scratch
/// buffer per chunk (both showed in profiles at 500 MB/s).
fn append_payload(level: i32, data: &[u8], out: &mut Vec<u8>) -> Result<(), BlobError> {
    let start = out.len();
    let worth_trying = level != 0 && data.len() >= 64 && sample_entropy(data) <= INCOMPRESSIBLE_ENTROPY;
    if worth_trying {
        out.push(FLAG_ZSTD);
        let compressed = COMPRESSOR.with(|cell| -> Result<usize, BlobError> {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(l, _)| *l) != Some(level) {
                let c = zstd::bulk::Compressor::new(level).map_err(BlobError::Compress)?;
                *slot = Some((level, c));
            }
            let Some((_, comp)) = slot.as_mut() else {
                return Err(BlobError::Corrupt("compressor missing".into()));
            };
            let mut cursor = std::io::Cursor::new(std::mem::take(out));
            cursor.set_position((start + 1) as u64);
            let r = comp.compress_to_buffer(data, &mut cursor);
            *out = cursor.into_inner();
            r.map_err(BlobError::Compress)
        })?;
        // Kept only when strictly shorter (format-spec "Compression", rule 3):
        // at the same length decompressing would cost time for nothing.
        if compressed < data.len() {
            return Ok(());
        }
        out.truncate(start);
    }
    out.push(FLAG_RAW);
    out.extend_from_slice(data);
    Ok(())
}

/// Compresses (when it helps) and encrypts `data`.
/// Output: nonce || E(flag || payload) || tag, see format-spec "Sealed payload".
pub fn seal(keys: &Keys, aad: Aad<'_>, data: &[u8], compression: Compression) -> Result<Vec<u8>, BlobError> {
    // Room for the worst case up front: growing later would double the buffer.
    let room = zstd::zstd_safe::compress_bound(data.len()).max(data.len());
    let mut out = Vec::with_capacity(crate::crypto::SEAL_OVERHEAD + 1 + room);
    out.resize(crate::crypto::NONCE_LEN, 0);
    append_payload(compression.level, data, &mut out)?;
    Ok(keys.seal_in_place(&aad.bytes(), out)?)
}

/// A blob's plaintext: borrowed from the decrypted buffer when it was stored
/// raw, owned when it had to be decompressed.
pub type Plain<'a> = std::borrow::Cow<'a, [u8]>;

/// Like [`open`], but decrypts inside `sealed` (a buffer the caller owns and
/// no longer needs), so raw blobs cost no copy at all. Restore and check read
/// many blobs from one range read; this saved a copy and a shift per blob.
pub fn open_in_place<'a>(keys: &Keys, aad: Aad<'_>, sealed: &'a mut [u8]) -> Result<Plain<'a>, BlobError> {
    let plain = keys.open_in_place(&aad.bytes(), sealed)?;
    match plain.split_first() {
        Some((&FLAG_RAW, rest)) => Ok(Plain::Borrowed(rest)),
        Some((&FLAG_ZSTD, frame)) => Ok(Plain::Owned(decompress(frame)?)),
        Some((other, _)) => Err(BlobError::Corrupt(format!("unknown compression flag {other}"))),
        None => Err(BlobError::Corrupt("empty plaintext".into())),
    }
}

/// The magic number that starts a Zstandard frame (RFC 8878 §3.1.1), LE.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Inflates the payload of a flag-1 plaintext, which must be exactly one
/// Zstandard frame with its content size. zstd itself would also decode
/// further frames after the first (an empty one, or a skippable one, fits
/// in the output), so the frame's end is found first and anything after it is
/// refused as corruption (format-spec "Sealed payload").
fn decompress(frame: &[u8]) -> Result<Vec<u8>, BlobError> {
    if !frame.starts_with(&ZSTD_MAGIC) {
        return Err(BlobError::Corrupt("payload is not a zstd frame".into()));
    }
    let frame_len = zstd::zstd_safe::find_frame_compressed_size(frame)
        .map_err(|_| BlobError::Corrupt("zstd frame truncated or unreadable".into()))?;
    if frame_len != frame.len() {
        return Err(BlobError::Corrupt(format!(
            "{} bytes after the zstd frame",
            frame.len().saturating_sub(frame_len)
        )));
    }
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| BlobError::Corrupt("zstd frame header unreadable".into()))?
        .ok_or_else(|| BlobError::Corrupt("zstd frame has no content size".into()))?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > MAX_PLAINTEXT {
        return Err(BlobError::Corrupt(format!("claims {size} bytes of plaintext")));
    }
    // zstd checks the decoded length against the content size. Each call
    // starts a fresh frame on the thread's context, so a corrupt frame
    // leaves nothing behind for the next one.
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| BlobError::Corrupt(format!("zstd: {e}")))?);
        }
        let Some(d) = slot.as_mut() else {
            return Err(BlobError::Corrupt("decompressor missing".into()));
        };
        d.decompress(frame, size).map_err(|e| BlobError::Corrupt(format!("zstd: {e}")))
    })
}

/// Decrypts and decompresses what [`seal`] produced with the same `aad`.
pub fn open(keys: &Keys, aad: Aad<'_>, sealed: &[u8]) -> Result<Vec<u8>, BlobError> {
    let mut plain = keys.open(&aad.bytes(), sealed)?;
    match plain.first() {
        Some(&FLAG_RAW) => {
            plain.remove(0);
            Ok(plain)
        }
        Some(&FLAG_ZSTD) => decompress(&plain[1..]),
        Some(other) => Err(BlobError::Corrupt(format!("unknown compression flag {other}"))),
        None => Err(BlobError::Corrupt("empty plaintext".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn keys() -> Keys {
        MasterKey::from_bytes([3; 32]).derive()
    }

    #[test]
    fn compressible_shrinks_random_is_raw() {
        let k = keys();
        let text = b"SELECT * FROM users WHERE id = 42;\n".repeat(2000);
        let id = k.blob_id(&text);
        let s = seal(&k, Aad::Blob(BlobType::Data, &id), &text, Compression { level: 1 }).unwrap();
        assert!(s.len() < text.len() / 4);
        assert_eq!(open(&k, Aad::Blob(BlobType::Data, &id), &s).unwrap(), text);

        let mut rnd = vec![0u8; 100_000];
        crate::crypto::random_bytes(&mut rnd).unwrap();
        assert!(sample_entropy(&rnd) > INCOMPRESSIBLE_ENTROPY);
        let s = seal(&k, Aad::Blob(BlobType::Data, &id), &rnd, Compression { level: 1 }).unwrap();
        assert_eq!(s.len(), rnd.len() + 1 + crate::crypto::SEAL_OVERHEAD);
    }

    /// Regression (issue 8): bytes after the one zstd frame of a flag-1
    /// payload were accepted whenever zstd could decode or skip them.
    #[test]
    fn anything_but_exactly_one_zstd_frame_is_corrupt() {
        let k = keys();
        let text = b"compressible text, compressible text ".repeat(50);
        let id = k.blob_id(&text);
        let aad = Aad::Blob(BlobType::Data, &id);
        let seal_frame = |payload: &[u8]| {
            let mut buf = vec![0u8; crate::crypto::NONCE_LEN];
            buf.push(FLAG_ZSTD);
            buf.extend_from_slice(payload);
            k.seal_in_place(&aad.bytes(), buf).unwrap()
        };
        let frame = zstd::bulk::compress(&text, 1).unwrap();
        assert_eq!(open(&k, aad, &seal_frame(&frame)).unwrap(), text);
        let empty = zstd::bulk::compress(b"", 1).unwrap();
        let skippable = [0x50, 0x2A, 0x4D, 0x18, 0, 0, 0, 0];
        for (what, bad) in [
            ("garbage after", [&frame[..], b"x"].concat()),
            ("empty frame after", [&frame[..], &empty].concat()),
            ("skippable frame after", [&frame[..], &skippable].concat()),
            ("skippable frame first", [&skippable[..], &frame].concat()),
            ("truncated", frame[..frame.len() - 1].to_vec()),
            ("nothing", Vec::new()),
        ] {
            let mut sealed = seal_frame(&bad);
            let r = open(&k, aad, &sealed).map(|p| p.len());
            assert!(matches!(r, Err(BlobError::Corrupt(_))), "{what}: {r:?}");
            let r = open_in_place(&k, aad, &mut sealed).map(|p| p.len());
            assert!(matches!(r, Err(BlobError::Corrupt(_))), "{what} (in place): {r:?}");
        }
        // A body the decoder itself trips over, then a good frame on the
        // same thread's reused context: nothing of the first is left.
        let mut broken = frame.clone();
        let n = broken.len();
        broken[n / 2..].fill(0xFF);
        let r = open(&k, aad, &seal_frame(&broken));
        assert!(
            matches!(&r, Err(BlobError::Corrupt(m)) if m.starts_with("zstd:")),
            "the decoder itself must refuse it: {r:?}"
        );
        assert_eq!(open(&k, aad, &seal_frame(&frame)).unwrap(), text);
    }

    #[test]
    fn blob_cannot_pass_as_another() {
        let k = keys();
        let a = k.blob_id(b"a");
        let b = k.blob_id(b"b");
        let s = seal(&k, Aad::Blob(BlobType::Data, &a), b"a", Compression { level: 1 }).unwrap();
        assert!(open(&k, Aad::Blob(BlobType::Data, &b), &s).is_err());
        assert!(open(&k, Aad::Blob(BlobType::Tree, &a), &s).is_err());
        assert!(open(&k, Aad::Object("snapshot"), &s).is_err());
    }
}
