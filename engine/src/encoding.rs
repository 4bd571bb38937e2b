//! Metadata encoding: one version byte, then bincode 2.0.1 with
//! `config::standard()` (little-endian, variable-length integers).
//!
//! Stored types derive bincode's own `Encode`/`Decode`, not serde's traits:
//! the bytes are the same (format-spec "Encoding"), but serde's path decodes
//! a 32-byte id as a 32-element tuple, one visitor call per byte, which was
//! over half of `check`'s time on a large repository.

use bincode::{Decode, Encode};

/// Errors of encoding and decoding metadata.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    /// The object is empty.
    #[error("empty {what}")]
    Empty {
        /// What was being decoded.
        what: &'static str,
    },
    /// The version byte is one this program does not know.
    #[error("{what} has format version {found}; this cairn reads up to version {supported}; upgrade cairn")]
    UnknownVersion {
        /// What was being decoded.
        what: &'static str,
        /// Version found.
        found: u8,
        /// Highest version supported.
        supported: u8,
    },
    /// bincode could not decode the body.
    #[error("{what} does not decode: {detail}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// bincode's message.
        detail: String,
    },
    /// bincode could not encode (should not happen for our types).
    #[error("{what} does not encode: {detail}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// bincode's message.
        detail: String,
    },
}

/// Encodes `value` behind `version`.
pub fn encode<T: Encode>(what: &'static str, version: u8, value: &T) -> Result<Vec<u8>, EncodingError> {
    let mut out = vec![version];
    bincode::encode_into_std_write(value, &mut out, bincode::config::standard()).map_err(|e| {
        EncodingError::Encode {
            what,
            detail: e.to_string(),
        }
    })?;
    Ok(out)
}

/// Most bytes the bincode decoder may claim while decoding one object (its
/// running count of decoded primitive and container sizes, checked before
/// each allocation): the per-type bounds of format-spec "Decoder bounds".
/// Powers of four, because bincode takes the limit as a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    /// 4 KiB.
    Kib4,
    /// 16 KiB.
    Kib16,
    /// 64 KiB.
    Kib64,
    /// 256 KiB.
    Kib256,
    /// 1 MiB.
    Mib1,
    /// 4 MiB.
    Mib4,
    /// 16 MiB.
    Mib16,
    /// 64 MiB.
    Mib64,
    /// 256 MiB.
    Mib256,
    /// 1 GiB.
    Gib1,
}

impl Limit {
    const ALL: [Limit; 10] = [
        Limit::Kib4,
        Limit::Kib16,
        Limit::Kib64,
        Limit::Kib256,
        Limit::Mib1,
        Limit::Mib4,
        Limit::Mib16,
        Limit::Mib64,
        Limit::Mib256,
        Limit::Gib1,
    ];

    /// The limit in bytes.
    pub const fn bytes(self) -> usize {
        4096 << (2 * self as usize)
    }

    /// The limit that decoding `len` bytes of body uses: the smallest one
    /// of at least [`CLAIM_PER_BYTE`] × `len` + [`CLAIM_SLACK`], but never
    /// above `self`. bincode claims at most 32 bytes per byte it reads (a
    /// one-byte varint claims the 8 bytes of its u64, and an element of a
    /// list claims its in-memory size: an empty string in a list of strings
    /// takes 1 byte and claims 24 + 8; trees, whose entries would claim
    /// more, are decoded entry by entry, see `Tree`'s `Decode`), so a valid
    /// body always fits, and a hostile length prefix can make the decoder
    /// allocate at most a small multiple of the bytes it was given.
    pub fn for_body(self, len: usize) -> Limit {
        let need = len.saturating_mul(CLAIM_PER_BYTE).saturating_add(CLAIM_SLACK);
        Self::ALL
            .into_iter()
            .find(|l| l.bytes() >= need)
            .map_or(self, |l| l.min(self))
    }
}

/// Bytes bincode may claim per byte of body (see [`Limit::for_body`]).
pub const CLAIM_PER_BYTE: usize = 32;
/// Bytes bincode may claim beyond [`CLAIM_PER_BYTE`] per byte.
pub const CLAIM_SLACK: usize = 64;

fn decode_body<T: Decode<()>>(body: &[u8], limit: Limit) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::config::standard;
    use bincode::decode_from_slice as d;
    match limit.for_body(body.len()) {
        Limit::Kib4 => d(body, standard().with_limit::<{ Limit::Kib4.bytes() }>()),
        Limit::Kib16 => d(body, standard().with_limit::<{ Limit::Kib16.bytes() }>()),
        Limit::Kib64 => d(body, standard().with_limit::<{ Limit::Kib64.bytes() }>()),
        Limit::Kib256 => d(body, standard().with_limit::<{ Limit::Kib256.bytes() }>()),
        Limit::Mib1 => d(body, standard().with_limit::<{ Limit::Mib1.bytes() }>()),
        Limit::Mib4 => d(body, standard().with_limit::<{ Limit::Mib4.bytes() }>()),
        Limit::Mib16 => d(body, standard().with_limit::<{ Limit::Mib16.bytes() }>()),
        Limit::Mib64 => d(body, standard().with_limit::<{ Limit::Mib64.bytes() }>()),
        Limit::Mib256 => d(body, standard().with_limit::<{ Limit::Mib256.bytes() }>()),
        Limit::Gib1 => d(body, standard().with_limit::<{ Limit::Gib1.bytes() }>()),
    }
}

/// Decodes a value written by [`encode`] with a version at most `supported`,
/// letting bincode claim at most `limit` (and at most a small multiple of
/// the input's length, see [`Limit::for_body`]) before it allocates.
/// Trailing bytes are an error: a decoder that ignores them could be fooled.
pub fn decode<T: Decode<()>>(
    what: &'static str,
    supported: u8,
    limit: Limit,
    bytes: &[u8],
) -> Result<(u8, T), EncodingError> {
    let (&version, body) = bytes.split_first().ok_or(EncodingError::Empty { what })?;
    if version == 0 || version > supported {
        return Err(EncodingError::UnknownVersion {
            what,
            found: version,
            supported,
        });
    }
    let (value, used) = decode_body(body, limit).map_err(|e| EncodingError::Decode {
        what,
        detail: e.to_string(),
    })?;
    if used != body.len() {
        return Err(EncodingError::Decode {
            what,
            detail: format!("{} trailing bytes", body.len() - used),
        });
    }
    Ok((version, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_powers_of_four_from_4_kib_to_1_gib() {
        assert_eq!(Limit::Kib4.bytes(), 4096);
        assert_eq!(Limit::Kib64.bytes(), 64 * 1024);
        assert_eq!(Limit::Mib256.bytes(), 256 * 1024 * 1024);
        assert_eq!(Limit::Gib1.bytes(), 1 << 30);
    }

    #[test]
    fn the_limit_follows_the_input_length_up_to_the_type_s_own() {
        assert_eq!(Limit::Gib1.for_body(10), Limit::Kib4);
        assert_eq!(Limit::Gib1.for_body(100), Limit::Kib4);
        assert_eq!(Limit::Gib1.for_body(1000), Limit::Kib64);
        assert_eq!(Limit::Kib4.for_body(1 << 20), Limit::Kib4);
        assert_eq!(Limit::Gib1.for_body(usize::MAX), Limit::Gib1);
        for len in [0, 1, 100, 5000, 1 << 20, 100 << 20] {
            let l = Limit::Gib1.for_body(len);
            let need = len * CLAIM_PER_BYTE + CLAIM_SLACK;
            // Never below what the body may claim, except at the type's own limit.
            assert!(l.bytes() >= need || l == Limit::Gib1, "{len}: {l:?}");
            assert!(l.bytes() < 4 * need.max(Limit::Kib4.bytes()), "{len}: {l:?}");
        }
    }

    /// A 6-byte body whose string claims 4 GiB is refused by the limit, not
    /// by an allocation.
    #[test]
    fn a_huge_length_prefix_is_refused_before_allocating() {
        // Version 1, then a u64 varint (tag 253) of 2^32 as a string length.
        let mut bytes = vec![1u8, 253];
        bytes.extend_from_slice(&(1u64 << 32).to_le_bytes());
        let r = decode::<String>("test", 1, Limit::Gib1, &bytes);
        let Err(EncodingError::Decode { detail, .. }) = r else {
            panic!("expected a decode error, got {r:?}");
        };
        assert!(detail.contains("LimitExceeded"), "{detail}");
    }

    /// What serde's bincode path writes, which is what every repository
    /// written before the native codec holds.
    fn same_bytes_as_serde<T>(value: &T)
    where
        T: Encode + Decode<()> + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let serde_bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap();
        let native = encode("test", 1, value).unwrap();
        assert_eq!(&native[1..], &serde_bytes[..], "{value:?}");
        let (_, back): (u8, T) = decode("test", 1, Limit::Gib1, &native).unwrap();
        assert_eq!(&back, value);
    }

    /// 64 hex digits that differ from `byte` to `byte` and within the id.
    fn hex(byte: u8) -> String {
        (0..32u8)
            .map(|i| format!("{:02x}", byte.wrapping_add(i.wrapping_mul(37))))
            .collect()
    }

    /// Trees and index objects are the bulk of a repository's metadata and
    /// have no encoding vector of their own (the committed repository is
    /// read, never written again), so every field shape they use is
    /// compared with serde's bytes here: each node kind, `None` and `Some`,
    /// negative times, varint boundaries, both blob types.
    #[test]
    fn trees_and_index_objects_encode_as_serde_did() {
        use crate::blob::BlobType;
        use crate::id::{BlobId, PackId, TreeId};
        use crate::index::{IndexBlob, IndexFile, IndexPack};
        use crate::tree::{ContentRef, Node, NodeKind, Tree, Xattr};
        let kinds = [
            NodeKind::File,
            NodeKind::Dir,
            NodeKind::Symlink,
            NodeKind::Fifo,
            NodeKind::CharDevice,
            NodeKind::BlockDevice,
            NodeKind::Socket,
        ];
        let nodes = kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                let mut n = Node::new(format!("entry-{i}-\u{e9}").into_bytes(), kind);
                n.mode = 0o4755;
                n.uid = 250 + i as u32;
                n.gid = u32::MAX;
                n.user = "cass".into();
                n.group = String::new();
                n.mtime_ns = -1_234_567_890_123 * (i as i64 + 1);
                n.ctime_ns = i64::MAX - i as i64;
                n.inode = 1 << (8 * i);
                n.device = 65_535;
                n.nlink = 2;
                n.rdev = 0x0801;
                n.size = u64::MAX >> i;
                n.symlink_target = (kind == NodeKind::Symlink).then(|| b"../t\xff".to_vec());
                n.xattrs = vec![Xattr {
                    name: b"user.a".to_vec(),
                    value: vec![0, 255, 7],
                }];
                if kind == NodeKind::File {
                    n.content = (0..3)
                        .map(|j| ContentRef {
                            id: BlobId::from_hex(&hex(j)).unwrap(),
                            length: 250 << (8 * j),
                        })
                        .collect();
                }
                n.subtree = (kind == NodeKind::Dir).then(|| TreeId::from_hex(&hex(9)).unwrap());
                n
            })
            .collect();
        same_bytes_as_serde(&Tree { nodes });
        same_bytes_as_serde(&Tree::default());
        let packs = [BlobType::Data, BlobType::Tree]
            .into_iter()
            .enumerate()
            .map(|(i, blob_type)| IndexPack {
                id: PackId::from_hex(&hex(i as u8)).unwrap(),
                blob_type,
                size: 16_777_216 + i as u64,
                blobs: (0..4)
                    .map(|j| IndexBlob {
                        id: BlobId::from_hex(&hex(40 + j)).unwrap(),
                        offset: 251 * u32::from(j),
                        length: 65_536 + u32::from(j),
                        raw_length: u32::MAX - u32::from(j),
                    })
                    .collect(),
            })
            .collect();
        same_bytes_as_serde(&IndexFile { packs });
    }

    #[test]
    fn values_round_trip_under_their_limit() {
        let v: Vec<String> = (0..1000).map(|i| format!("path {i}")).collect();
        let bytes = encode("test", 1, &v).unwrap();
        let (_, back): (u8, Vec<String>) = decode("test", 1, Limit::Mib1, &bytes).unwrap();
        assert_eq!(back, v);
        let r = decode::<Vec<String>>("test", 1, Limit::Kib4, &bytes);
        assert!(matches!(r, Err(EncodingError::Decode { .. })), "{r:?}");
    }
}
