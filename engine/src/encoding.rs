//! Metadata encoding: one version byte, then serde + bincode 2.0.1 with
//! `config::standard()` (little-endian, variable-length integers).

use serde::de::DeserializeOwned;
use serde::Serialize;

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
pub fn encode<T: Serialize>(what: &'static str, version: u8, value: &T) -> Result<Vec<u8>, EncodingError> {
    let mut out = vec![version];
    let body =
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| EncodingError::Encode {
            what,
            detail: e.to_string(),
        })?;
    out.extend_from_slice(&body);
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
    /// above `self`. bincode claims at most 8 bytes per byte it reads (a
    /// one-byte varint claims the 8 bytes of its u64), so a valid body always
    /// fits, and a hostile length prefix can make the decoder allocate at
    /// most a small multiple of the bytes it was given.
    pub fn for_body(self, len: usize) -> Limit {
        let need = len.saturating_mul(CLAIM_PER_BYTE).saturating_add(CLAIM_SLACK);
        Self::ALL
            .into_iter()
            .find(|l| l.bytes() >= need)
            .map_or(self, |l| l.min(self))
    }
}

/// Bytes bincode may claim per byte of body (see [`Limit::for_body`]).
pub const CLAIM_PER_BYTE: usize = 8;
/// Bytes bincode may claim beyond [`CLAIM_PER_BYTE`] per byte.
pub const CLAIM_SLACK: usize = 64;

fn decode_body<T: DeserializeOwned>(body: &[u8], limit: Limit) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::config::standard;
    use bincode::serde::decode_from_slice as d;
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
pub fn decode<T: DeserializeOwned>(
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
        assert_eq!(Limit::Gib1.for_body(1000), Limit::Kib16);
        assert_eq!(Limit::Kib4.for_body(1 << 20), Limit::Kib4);
        assert_eq!(Limit::Gib1.for_body(usize::MAX), Limit::Gib1);
        for len in [0, 1, 100, 5000, 1 << 20, 100 << 20] {
            let l = Limit::Gib1.for_body(len);
            assert!(l.bytes() >= len * CLAIM_PER_BYTE + CLAIM_SLACK, "{len}: {l:?}");
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
