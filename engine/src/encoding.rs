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

/// Decodes a value written by [`encode`] with a version at most `supported`.
/// Trailing bytes are an error: a decoder that ignores them could be fooled.
pub fn decode<T: DeserializeOwned>(what: &'static str, supported: u8, bytes: &[u8]) -> Result<(u8, T), EncodingError> {
    let (&version, body) = bytes.split_first().ok_or(EncodingError::Empty { what })?;
    if version == 0 || version > supported {
        return Err(EncodingError::UnknownVersion {
            what,
            found: version,
            supported,
        });
    }
    // bincode's own limit stops a corrupt length prefix from allocating
    // gigabytes before the data runs out.
    let cfg = bincode::config::standard().with_limit::<{ 256 * 1024 * 1024 }>();
    let (value, used) = bincode::serde::decode_from_slice(body, cfg).map_err(|e| EncodingError::Decode {
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
