//! Pack files: many sealed blobs in one stored object, followed by an
//! encrypted header that lists them and the header's length.
//!
//! ```text
//! blob_0 || blob_1 || ... || sealed_header || header_len (u32 LE)
//! header plaintext = version (u8 = 1) || count (u32 LE) || count × entry
//! entry (45 bytes) = type (u8) || id (32) || offset (u32 LE) || length (u32 LE) || raw_length (u32 LE)
//! ```

use crate::blob::{self, Aad, BlobError, BlobType, Compression};
use crate::crypto::Keys;
use crate::id::{BlobId, PackId};

/// Version byte of the pack header plaintext.
pub const HEADER_VERSION: u8 = 1;
/// Bytes of one header entry.
pub const ENTRY_LEN: usize = 45;
/// Object kind bound into the header's authenticated data.
pub const HEADER_KIND: &str = "pack-header";

/// Errors of writing and reading packs.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The pack is shorter than its own trailer says.
    #[error("pack {pack}: truncated or malformed ({detail})")]
    Malformed {
        /// Pack name.
        pack: String,
        /// What is wrong.
        detail: String,
    },
    /// The header does not decrypt.
    #[error("pack {pack}: header: {source}")]
    Header {
        /// Pack name.
        pack: String,
        /// Cause.
        source: BlobError,
    },
    /// A pack would exceed the 32-bit offsets of the format.
    #[error("pack too large ({0} bytes)")]
    TooLarge(usize),
}

/// One blob as listed in a pack header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Blob id.
    pub id: BlobId,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the blob's plaintext.
    pub raw_length: u32,
}

/// A finished pack ready to be stored.
#[derive(Debug)]
pub struct FinishedPack {
    /// Its name (plain BLAKE3 of `bytes`).
    pub id: PackId,
    /// Data or tree: decides the prefix it is stored under.
    pub blob_type: BlobType,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

impl FinishedPack {
    /// How an index object describes this pack, once it is stored.
    pub fn index_entry(&self) -> crate::index::IndexPack {
        crate::index::IndexPack {
            id: self.id,
            blob_type: self.blob_type,
            size: self.bytes.len() as u64,
            blobs: self
                .entries
                .iter()
                .map(|e| crate::index::IndexBlob {
                    id: e.id,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        }
    }
}

/// Collects sealed blobs of one type into a pack.
#[derive(Debug)]
pub struct Packer {
    blob_type: BlobType,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Packer {
    /// An empty pack of `blob_type` blobs, with room for `capacity` bytes.
    pub fn new(blob_type: BlobType, capacity: usize) -> Self {
        Self {
            blob_type,
            buf: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    /// An empty pack that reuses `buf`'s allocation.
    pub fn with_buffer(blob_type: BlobType, mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self {
            blob_type,
            buf,
            entries: Vec::new(),
        }
    }

    /// Bytes of blobs so far.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends one sealed blob.
    pub fn add(&mut self, id: BlobId, sealed: &[u8], raw_length: usize) -> Result<(), PackError> {
        let offset = u32::try_from(self.buf.len()).map_err(|_| PackError::TooLarge(self.buf.len()))?;
        let length = u32::try_from(sealed.len()).map_err(|_| PackError::TooLarge(sealed.len()))?;
        let raw_length = u32::try_from(raw_length).map_err(|_| PackError::TooLarge(raw_length))?;
        self.buf.extend_from_slice(sealed);
        self.entries.push(PackEntry {
            blob_type: self.blob_type,
            id,
            offset,
            length,
            raw_length,
        });
        Ok(())
    }

    /// Lists the blob last added a second time, at the same place (what a
    /// hostile or odd writer could do), for tests of the readers.
    #[cfg(test)]
    pub(crate) fn list_last_again(&mut self) {
        if let Some(e) = self.entries.last().cloned() {
            self.entries.push(e);
        }
    }

    /// Seals the header, appends it and its length, and names the pack.
    pub fn finish(self, keys: &Keys) -> Result<FinishedPack, PackError> {
        let mut header = Vec::with_capacity(5 + self.entries.len() * ENTRY_LEN);
        header.push(HEADER_VERSION);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            header.push(e.blob_type as u8);
            header.extend_from_slice(e.id.as_bytes());
            header.extend_from_slice(&e.offset.to_le_bytes());
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.raw_length.to_le_bytes());
        }
        let sealed =
            blob::seal(keys, Aad::Object(HEADER_KIND), &header, Compression { level: 0 }).map_err(|source| {
                PackError::Header {
                    pack: "(new)".into(),
                    source,
                }
            })?;
        let mut bytes = self.buf;
        bytes.extend_from_slice(&sealed);
        bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        if u32::try_from(bytes.len()).is_err() {
            return Err(PackError::TooLarge(bytes.len()));
        }
        let id = PackId::from(crate::id::ObjectId::of_bytes(&bytes));
        Ok(FinishedPack {
            id,
            blob_type: self.blob_type,
            bytes,
            entries: self.entries,
        })
    }
}

/// Reads the trailer of a pack of `pack_size` bytes: returns (offset, length)
/// of the sealed header.
pub fn header_location(pack: &str, pack_size: u64, trailer: &[u8]) -> Result<(u64, u64), PackError> {
    let bad = |detail: String| PackError::Malformed {
        pack: pack.to_string(),
        detail,
    };
    let arr: [u8; 4] = trailer.try_into().map_err(|_| bad("trailer is not 4 bytes".into()))?;
    let hlen = u64::from(u32::from_le_bytes(arr));
    if hlen + 4 > pack_size {
        return Err(bad(format!("header length {hlen} exceeds pack size {pack_size}")));
    }
    Ok((pack_size - 4 - hlen, hlen))
}

/// Decrypts and parses a pack header; every entry is checked to lie inside
/// the blob area (`data_len` bytes).
pub fn parse_header(keys: &Keys, pack: &str, sealed: &[u8], data_len: u64) -> Result<Vec<PackEntry>, PackError> {
    let plain = blob::open(keys, Aad::Object(HEADER_KIND), sealed).map_err(|source| PackError::Header {
        pack: pack.to_string(),
        source,
    })?;
    parse_header_plain(pack, &plain, data_len)
}

/// Parses a pack header's plaintext (after [`parse_header`] decrypted it).
/// The entry count is checked against the plaintext's length before
/// anything is allocated for the entries.
pub fn parse_header_plain(pack: &str, plain: &[u8], data_len: u64) -> Result<Vec<PackEntry>, PackError> {
    let bad = |detail: String| PackError::Malformed {
        pack: pack.to_string(),
        detail,
    };
    if plain.len() < 5 || plain[0] != HEADER_VERSION {
        return Err(bad("unknown header version or short header".into()));
    }
    let count = u32::from_le_bytes([plain[1], plain[2], plain[3], plain[4]]) as usize;
    if Some(plain.len()) != count.checked_mul(ENTRY_LEN).and_then(|n| n.checked_add(5)) {
        return Err(bad(format!(
            "header of {} bytes cannot hold {count} entries",
            plain.len()
        )));
    }
    let mut out = Vec::with_capacity(count);
    for chunk in plain[5..].chunks_exact(ENTRY_LEN) {
        let blob_type = BlobType::from_tag(chunk[0]).ok_or_else(|| bad(format!("unknown blob type {}", chunk[0])))?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&chunk[1..33]);
        let u = |i: usize| u32::from_le_bytes([chunk[i], chunk[i + 1], chunk[i + 2], chunk[i + 3]]);
        let e = PackEntry {
            blob_type,
            id: BlobId::from_bytes(id),
            offset: u(33),
            length: u(37),
            raw_length: u(41),
        };
        if u64::from(e.offset) + u64::from(e.length) > data_len {
            return Err(bad(format!("blob {} lies outside the pack", e.id.short())));
        }
        out.push(e);
    }
    Ok(out)
}

/// Splits a whole pack into its header entries.
pub fn read_whole(keys: &Keys, pack: &str, bytes: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let size = bytes.len() as u64;
    if size < 4 {
        return Err(PackError::Malformed {
            pack: pack.to_string(),
            detail: "shorter than its trailer".into(),
        });
    }
    let (off, len) = header_location(pack, size, &bytes[bytes.len() - 4..])?;
    parse_header(keys, pack, &bytes[off as usize..(off + len) as usize], off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn pack_round_trip_and_corruption() {
        let keys = MasterKey::from_bytes([9; 32]).derive();
        let mut p = Packer::new(BlobType::Data, 1024);
        let mut ids = vec![];
        for i in 0..5u8 {
            let data = vec![i; 1000 * (i as usize + 1)];
            let id = keys.blob_id(&data);
            let s = blob::seal(&keys, Aad::Blob(BlobType::Data, &id), &data, Compression { level: 1 }).unwrap();
            p.add(id, &s, data.len()).unwrap();
            ids.push((id, data));
        }
        let f = p.finish(&keys).unwrap();
        let entries = read_whole(&keys, "p", &f.bytes).unwrap();
        assert_eq!(entries.len(), 5);
        for (e, (id, data)) in entries.iter().zip(&ids) {
            assert_eq!(e.id, *id);
            let s = &f.bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&blob::open(&keys, Aad::Blob(BlobType::Data, id), s).unwrap(), data);
        }
        for cut in [0, 1, 3, 4, 10, f.bytes.len() - 1] {
            assert!(read_whole(&keys, "p", &f.bytes[..cut]).is_err());
        }
        let mut bad = f.bytes.clone();
        let n = bad.len();
        bad[n - 10] ^= 0x40;
        assert!(read_whole(&keys, "p", &bad).is_err());
    }
}
