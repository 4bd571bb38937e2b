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
        pub struct $name([u8; ID_LEN]);

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

        // bincode's own codec (what stored metadata uses): the 32 raw bytes,
        // the same bytes as the serde path above.
        impl bincode::Encode for $name {
            fn encode<E: bincode::enc::Encoder>(&self, e: &mut E) -> Result<(), bincode::error::EncodeError> {
                bincode::Encode::encode(&self.0, e)
            }
        }

        impl<C> bincode::Decode<C> for $name {
            fn decode<D: bincode::de::Decoder<Context = C>>(d: &mut D) -> Result<Self, bincode::error::DecodeError> {
                <[u8; ID_LEN] as bincode::Decode<C>>::decode(d).map(Self)
            }
        }

        bincode::impl_borrow_decode!($name);

        impl $name {
            /// Lower-case hexadecimal form, as used in object names.
            pub fn to_hex(self) -> String {
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
            pub fn short(self) -> String {
                hex::encode(&self.0[..4])
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// An id from its raw bytes.
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
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

define_id!(
    /// A tree blob's id. Trees are blobs (same keyed hash, same index), but
    /// a separate type, so that a file's content id can never be walked as
    /// a folder or a tree id stored as file content.
    TreeId
);
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

impl TreeId {
    /// The id of a tree blob just stored under `id`: the one place a blob id
    /// becomes a tree id.
    pub(crate) fn of_stored_tree(id: BlobId) -> Self {
        TreeId(id.0)
    }

    /// The same id as a blob id, for the index and pack readers.
    pub fn blob(self) -> BlobId {
        BlobId(self.0)
    }
}

impl From<TreeId> for BlobId {
    fn from(id: TreeId) -> Self {
        id.blob()
    }
}

/// Conversions between ids that name the same bytes: a pack or snapshot
/// is named by the object id of its stored bytes, and back.
macro_rules! same_bytes {
    ($($from:ident => $to:ident),* $(,)?) => {
        $(impl From<$from> for $to {
            fn from(id: $from) -> Self {
                $to(id.0)
            }
        })*
    };
}

same_bytes!(ObjectId => SnapshotId, ObjectId => PackId, PackId => ObjectId, SnapshotId => ObjectId);

impl ObjectId {
    /// Names stored bytes by their plain BLAKE3 hash.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

/// Why an id prefix names no single object.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// Nothing has an id starting with the prefix.
    #[error("no {what} matches `{prefix}`")]
    NotFound {
        /// What was looked for (`snapshot`, `key`, `data pack`, ...).
        what: String,
        /// The prefix as given.
        prefix: String,
    },
    /// Several ids start with the prefix.
    #[error("`{prefix}` matches {count} objects of kind {what}; give more digits")]
    Ambiguous {
        /// What was looked for.
        what: String,
        /// The prefix as given.
        prefix: String,
        /// How many matched.
        count: usize,
    },
}

/// The one item of `items` whose hexadecimal id starts with `prefix`
/// (case-insensitive; the whole id is a prefix of itself). The single
/// resolver behind every "give an id prefix" argument, so that `restore`,
/// `key remove` and `cat` accept the same spellings.
pub(crate) fn find_by_prefix<T>(
    items: impl IntoIterator<Item = T>,
    hex: impl Fn(&T) -> String,
    prefix: &str,
    what: &str,
) -> Result<T, PrefixError> {
    let wanted = prefix.trim().to_ascii_lowercase();
    let mut hits: Vec<T> = if wanted.is_empty() {
        Vec::new()
    } else {
        items.into_iter().filter(|t| hex(t).starts_with(&wanted)).collect()
    };
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(PrefixError::NotFound {
            what: what.to_string(),
            prefix: prefix.to_string(),
        }),
        count => Err(PrefixError::Ambiguous {
            what: what.to_string(),
            prefix: prefix.to_string(),
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["ab12ff", "ab34ee", "cd56dd"];

    fn find(prefix: &str) -> Result<&'static str, PrefixError> {
        find_by_prefix(NAMES, |n| n.to_string(), prefix, "key")
    }

    #[test]
    fn one_resolver_for_every_id_prefix() {
        assert_eq!(find("ab1").unwrap(), "ab12ff");
        // Any case, and surrounding blanks from a copy and paste.
        assert_eq!(find("AB34").unwrap(), "ab34ee");
        assert_eq!(find(" cd56DD ").unwrap(), "cd56dd");
        assert!(matches!(find("ab"), Err(PrefixError::Ambiguous { count: 2, .. })));
        assert!(matches!(find("ef"), Err(PrefixError::NotFound { .. })));
        // An empty prefix names nothing, not everything.
        assert!(matches!(find(""), Err(PrefixError::NotFound { .. })));
        assert!(find("ab").unwrap_err().to_string().contains("give more digits"));
    }

    #[test]
    fn tree_ids_and_blob_ids_name_the_same_bytes_but_are_different_types() {
        let b = BlobId::from_bytes([7; ID_LEN]);
        let t = TreeId::of_stored_tree(b);
        assert_eq!(t.blob(), b);
        assert_eq!(t.to_hex(), b.to_hex());
        assert_eq!(TreeId::from_hex(&t.to_hex()).unwrap(), t);
    }
}
