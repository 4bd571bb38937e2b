//! Newtype identifiers, so that a blob id can never be passed where a pack id
//! is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Length in bytes of every id in a repository.
pub const ID_LEN: usize = 32;

/// Error returned when a hexadecimal id cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a valid id (expected 64 hexadecimal digits)")]
pub struct ParseIdError {
    text: String,
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; ID_LEN]);

        // Binary encodings (bincode) get the 32 raw bytes, exactly what a
        // derived impl writes; JSON gets the hex form people can read.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_newtype_struct(stringify!($name), &self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    Self::from_hex(&s).map_err(serde::de::Error::custom)
                } else {
                    #[derive(Deserialize)]
                    struct Raw([u8; ID_LEN]);
                    Raw::deserialize(d).map(|r| Self(r.0))
                }
            }
        }

        impl $name {
            /// Lower-case hexadecimal form, as used in object names.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses the 64-digit hexadecimal form.
            pub fn from_hex(text: &str) -> Result<Self, ParseIdError> {
                let mut out = [0u8; ID_LEN];
                hex::decode_to_slice(text, &mut out).map_err(|_| ParseIdError {
                    text: text.chars().take(80).collect(),
                })?;
                Ok(Self(out))
            }

            /// The first eight hex digits, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

define_id!(
    /// Keyed BLAKE3 hash of a blob's plaintext (file chunk or encoded tree).
    BlobId
);
define_id!(
    /// Plain BLAKE3 hash of a stored object's bytes: its name in the backend.
    ObjectId
);

/// A tree blob's id. Trees are blobs, so this is a [`BlobId`] with a name that
/// says what it points to.
pub type TreeId = BlobId;
define_id!(
    /// A repository's random identity (for caches and messages).
    RepositoryId
);
define_id!(
    /// A pack's name: the plain BLAKE3 hash of its stored bytes.
    PackId
);
define_id!(
    /// A snapshot's name: the plain BLAKE3 hash of its stored bytes.
    SnapshotId
);

impl From<PackId> for ObjectId {
    fn from(id: PackId) -> Self {
        ObjectId(id.0)
    }
}

impl From<SnapshotId> for ObjectId {
    fn from(id: SnapshotId) -> Self {
        ObjectId(id.0)
    }
}

impl ObjectId {
    /// Names stored bytes by their plain BLAKE3 hash.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}
