//! Snapshots: the root of one backup, with who, when, what and a summary.

use serde::{Deserialize, Serialize};

use crate::encoding::{self, EncodingError, Limit};
use crate::id::{RepositoryId, SnapshotId, TreeId};

mod details;

pub use details::{
    CassandraDetails, CassandraTable, ChunkSizes, CommandDetails, RedisDetails, RedisKeyspace, S3Details, SourceDetails,
};

/// Version byte of the snapshot objects this program writes. Versions 1
/// (without `rewritten_from`), 2 (without `details` and `chunk_sizes`) and
/// 3 (without `copied_from`) are still read.
pub const SNAPSHOT_VERSION: u8 = 4;
/// Object kind bound into a snapshot's authenticated data.
pub const SNAPSHOT_KIND: &str = "snapshot";
/// The most bytes a snapshot's decoder may claim (format-spec "Decoder
/// bounds"): room for millions of paths, tags and excludes.
pub const SNAPSHOT_LIMIT: Limit = Limit::Mib256;

/// Where the data of a snapshot came from. Variant order is part of the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum SourceKind {
    /// Files and folders.
    Files,
    /// Standard input, stored as one file of this name.
    Stdin {
        /// Name given to the stream.
        filename: String,
    },
    /// The standard output of a command.
    Command {
        /// The command and its arguments.
        argv: Vec<String>,
        /// Name given to the stream.
        filename: String,
    },
    /// A Redis RDB dump.
    Redis,
    /// Cassandra snapshot folders.
    Cassandra,
    /// Objects of an S3 bucket, stored as files (version 3).
    S3,
}

impl SourceKind {
    /// Every [`SourceKind::label`], for checking what a user wrote.
    pub const LABELS: [&'static str; 6] = ["files", "stdin", "command", "redis", "cassandra", "s3"];

    /// A short name for tables.
    pub fn label(&self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Stdin { .. } => "stdin",
            SourceKind::Command { .. } => "command",
            SourceKind::Redis => "redis",
            SourceKind::Cassandra => "cassandra",
            SourceKind::S3 => "s3",
        }
    }
}

/// What a backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Summary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose content was read again because they changed.
    pub files_changed: u64,
    /// Files found unchanged and not read.
    pub files_unchanged: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes of new files.
    pub bytes_new: u64,
    /// Bytes of changed files.
    pub bytes_changed: u64,
    /// Bytes of unchanged files (not read).
    pub bytes_unchanged: u64,
    /// Bytes actually read from the source.
    pub bytes_read: u64,
    /// Data blobs added to the repository.
    pub data_blobs_added: u64,
    /// Tree blobs added to the repository.
    pub tree_blobs_added: u64,
    /// Plaintext bytes of the blobs added.
    pub bytes_added_raw: u64,
    /// Stored bytes added to the repository (packs and index).
    pub bytes_added_stored: u64,
    /// Entries that could not be read and were skipped.
    pub errors: u64,
    /// Wall time of the backup, ns.
    pub duration_ns: u64,
}

/// A snapshot object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Snapshot {
    /// Time of the snapshot, Unix ns (settable for imports).
    pub time_ns: i64,
    /// Host name.
    pub host: String,
    /// User name.
    pub user: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Tags.
    pub tags: Vec<String>,
    /// Paths backed up, absolute (or the stream's name).
    pub paths: Vec<String>,
    /// Exclude patterns in force.
    pub excludes: Vec<String>,
    /// Where the data came from.
    pub source: SourceKind,
    /// Root tree.
    pub tree: TreeId,
    /// Parent used for change detection.
    pub parent: Option<SnapshotId>,
    /// Version of the program that wrote it.
    pub program_version: String,
    /// What the backup did.
    pub summary: Summary,
    /// The snapshot this one is a rewritten copy of (`cairn rewrite`, `cairn
    /// tag`, `cairn repair snapshots`), which may be gone since; `None` for a
    /// backup and for every version 1 object.
    pub rewritten_from: Option<SnapshotId>,
    /// What the source recorded about its data; [`SourceDetails::None`] for
    /// files, stdin and every version 1 and 2 object.
    pub details: SourceDetails,
    /// The chunk sizes this source's files were cut with, when not the
    /// repository's; `None` for every version 1 and 2 object.
    pub chunk_sizes: Option<ChunkSizes>,
    /// The repository and snapshot this one is a copy of (`cairn copy`),
    /// so a later copy skips it; `None` for everything else and for every
    /// object before version 4.
    pub copied_from: Option<CopyOrigin>,
}

/// Where a copied snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct CopyOrigin {
    /// The source repository's id (its config's `repository_id`).
    pub repository: RepositoryId,
    /// The snapshot's id in the source repository.
    pub snapshot: SnapshotId,
}

impl Snapshot {
    /// This snapshot with the values in a command's argv that look like
    /// secrets masked (`secrets::mask_argv`); every other source is as it was.
    pub fn secrets_masked(mut self) -> Self {
        if let SourceKind::Command { argv, .. } = &mut self.source {
            *argv = crate::secrets::mask_argv(argv);
        }
        self
    }
}

/// A version 3 snapshot object: [`Snapshot`] without `copied_from`.
#[derive(bincode::Decode)]
struct SnapshotV3 {
    time_ns: i64,
    host: String,
    user: String,
    uid: u32,
    gid: u32,
    tags: Vec<String>,
    paths: Vec<String>,
    excludes: Vec<String>,
    source: SourceKind,
    tree: TreeId,
    parent: Option<SnapshotId>,
    program_version: String,
    summary: Summary,
    rewritten_from: Option<SnapshotId>,
    details: SourceDetails,
    chunk_sizes: Option<ChunkSizes>,
}

impl From<SnapshotV3> for Snapshot {
    fn from(v: SnapshotV3) -> Self {
        Snapshot {
            time_ns: v.time_ns,
            host: v.host,
            user: v.user,
            uid: v.uid,
            gid: v.gid,
            tags: v.tags,
            paths: v.paths,
            excludes: v.excludes,
            source: v.source,
            tree: v.tree,
            parent: v.parent,
            program_version: v.program_version,
            summary: v.summary,
            rewritten_from: v.rewritten_from,
            details: v.details,
            chunk_sizes: v.chunk_sizes,
            copied_from: None,
        }
    }
}

/// A version 2 snapshot object: [`Snapshot`] without its last three fields.
#[derive(bincode::Decode)]
struct SnapshotV2 {
    time_ns: i64,
    host: String,
    user: String,
    uid: u32,
    gid: u32,
    tags: Vec<String>,
    paths: Vec<String>,
    excludes: Vec<String>,
    source: SourceKind,
    tree: TreeId,
    parent: Option<SnapshotId>,
    program_version: String,
    summary: Summary,
    rewritten_from: Option<SnapshotId>,
}

impl From<SnapshotV2> for Snapshot {
    fn from(v: SnapshotV2) -> Self {
        SnapshotV3 {
            time_ns: v.time_ns,
            host: v.host,
            user: v.user,
            uid: v.uid,
            gid: v.gid,
            tags: v.tags,
            paths: v.paths,
            excludes: v.excludes,
            source: v.source,
            tree: v.tree,
            parent: v.parent,
            program_version: v.program_version,
            summary: v.summary,
            rewritten_from: v.rewritten_from,
            details: SourceDetails::None,
            chunk_sizes: None,
        }
        .into()
    }
}

/// A version 1 snapshot object: [`Snapshot`] without its last four fields. bincode
/// writes no field count, so a version 1 body must be read with the version
/// 1 layout, not the current one.
#[derive(bincode::Decode)]
struct SnapshotV1 {
    time_ns: i64,
    host: String,
    user: String,
    uid: u32,
    gid: u32,
    tags: Vec<String>,
    paths: Vec<String>,
    excludes: Vec<String>,
    source: SourceKind,
    tree: TreeId,
    parent: Option<SnapshotId>,
    program_version: String,
    summary: Summary,
}

impl From<SnapshotV1> for Snapshot {
    fn from(v: SnapshotV1) -> Self {
        SnapshotV2 {
            time_ns: v.time_ns,
            host: v.host,
            user: v.user,
            uid: v.uid,
            gid: v.gid,
            tags: v.tags,
            paths: v.paths,
            excludes: v.excludes,
            source: v.source,
            tree: v.tree,
            parent: v.parent,
            program_version: v.program_version,
            summary: v.summary,
            rewritten_from: None,
        }
        .into()
    }
}

/// Decodes a snapshot object's plaintext (version byte + bincode) of any
/// version this program reads (1 to 4).
pub(crate) fn decode(plain: &[u8]) -> Result<Snapshot, EncodingError> {
    match plain.first() {
        Some(1) => {
            let (_, v1) = encoding::decode::<SnapshotV1>(SNAPSHOT_KIND, 1, SNAPSHOT_LIMIT, plain)?;
            return Ok(v1.into());
        }
        Some(2) => {
            let (_, v2) = encoding::decode::<SnapshotV2>(SNAPSHOT_KIND, 2, SNAPSHOT_LIMIT, plain)?;
            return Ok(v2.into());
        }
        Some(3) => {
            let (_, v3) = encoding::decode::<SnapshotV3>(SNAPSHOT_KIND, 3, SNAPSHOT_LIMIT, plain)?;
            return Ok(v3.into());
        }
        _ => {}
    }
    Ok(encoding::decode(SNAPSHOT_KIND, SNAPSHOT_VERSION, SNAPSHOT_LIMIT, plain)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            time_ns: -5,
            host: "h".into(),
            user: "u".into(),
            uid: 1000,
            gid: 100,
            tags: vec!["t".into()],
            paths: vec!["/p".into()],
            excludes: vec!["*.tmp".into()],
            source: SourceKind::Stdin { filename: "f".into() },
            tree: TreeId::from_bytes([7; 32]),
            parent: Some(SnapshotId::from_bytes([8; 32])),
            program_version: "0.1.0".into(),
            summary: Summary {
                files_new: 3,
                duration_ns: 9,
                ..Default::default()
            },
            rewritten_from: None,
            details: SourceDetails::None,
            chunk_sizes: None,
            copied_from: None,
        }
    }

    /// A version 1 object as the first writers made it: the thirteen fields
    /// in order (bincode encodes a tuple exactly like a struct).
    fn v1_bytes(s: &Snapshot) -> Vec<u8> {
        let fields = (
            s.time_ns,
            &s.host,
            &s.user,
            s.uid,
            s.gid,
            &s.tags,
            &s.paths,
            &s.excludes,
            &s.source,
            s.tree,
            s.parent,
            &s.program_version,
            &s.summary,
        );
        encoding::encode(SNAPSHOT_KIND, 1, &fields).unwrap()
    }

    #[test]
    fn version_1_objects_read_with_no_rewritten_from() {
        let s = sample();
        assert_eq!(decode(&v1_bytes(&s)).unwrap(), s);
    }

    /// A version 2 object: the fourteen fields of version 2 in order.
    fn v2_bytes(s: &Snapshot) -> Vec<u8> {
        let fields = (
            (s.time_ns, &s.host, &s.user, s.uid, s.gid, &s.tags, &s.paths),
            (&s.excludes, &s.source, s.tree, s.parent, &s.program_version),
            (&s.summary, s.rewritten_from),
        );
        encoding::encode(SNAPSHOT_KIND, 2, &fields).unwrap()
    }

    #[test]
    fn version_2_objects_read_with_no_details() {
        let mut s = sample();
        s.rewritten_from = Some(SnapshotId::from_bytes([9; 32]));
        assert_eq!(decode(&v2_bytes(&s)).unwrap(), s);
    }

    /// A version 3 object: the sixteen fields of version 3 in order.
    fn v3_bytes(s: &Snapshot) -> Vec<u8> {
        let fields = (
            (s.time_ns, &s.host, &s.user, s.uid, s.gid, &s.tags, &s.paths),
            (&s.excludes, &s.source, s.tree, s.parent, &s.program_version),
            (&s.summary, s.rewritten_from, &s.details, s.chunk_sizes),
        );
        encoding::encode(SNAPSHOT_KIND, 3, &fields).unwrap()
    }

    fn redis_sample() -> Snapshot {
        let mut s = sample();
        s.rewritten_from = Some(SnapshotId::from_bytes([9; 32]));
        s.source = SourceKind::Redis;
        s.details = SourceDetails::Redis(RedisDetails {
            origin: "redis://127.0.0.1:6379".into(),
            rdb_version: 11,
            rdb_size: 1234,
            rdb_crc64: Some(0x1234_5678_9abc_def0),
            keyspace: vec![RedisKeyspace {
                db: 0,
                keys: 10,
                expires: 2,
            }],
            ..Default::default()
        });
        s.chunk_sizes = Some(ChunkSizes {
            min_size: 16 << 10,
            avg_size: 64 << 10,
            max_size: 512 << 10,
        });
        s
    }

    #[test]
    fn version_3_objects_read_with_no_copied_from() {
        let s = redis_sample();
        assert_eq!(decode(&v3_bytes(&s)).unwrap(), s);
    }

    #[test]
    fn version_4_objects_round_trip_and_other_versions_are_refused() {
        let mut s = redis_sample();
        s.copied_from = Some(CopyOrigin {
            repository: RepositoryId::from_bytes([3; 32]),
            snapshot: SnapshotId::from_bytes([4; 32]),
        });
        let v4 = encoding::encode(SNAPSHOT_KIND, SNAPSHOT_VERSION, &s).unwrap();
        assert_eq!(v4[0], 4);
        assert_eq!(decode(&v4).unwrap(), s);
        // The layouts are not interchangeable: each version byte means its own.
        for older in [1, 2, 3] {
            let mut v4_labelled_older = v4.clone();
            v4_labelled_older[0] = older;
            assert!(
                matches!(decode(&v4_labelled_older), Err(EncodingError::Decode { .. })),
                "version {older}"
            );
        }
        let mut v1_labelled_2 = v1_bytes(&s);
        v1_labelled_2[0] = 2;
        assert!(matches!(decode(&v1_labelled_2), Err(EncodingError::Decode { .. })));
        let mut v2_labelled_3 = v2_bytes(&s);
        v2_labelled_3[0] = 3;
        assert!(matches!(decode(&v2_labelled_3), Err(EncodingError::Decode { .. })));
        let mut v3_labelled_4 = v3_bytes(&s);
        v3_labelled_4[0] = 4;
        assert!(matches!(decode(&v3_labelled_4), Err(EncodingError::Decode { .. })));
        for version in [0, 5] {
            let mut other = v4.clone();
            other[0] = version;
            assert!(
                matches!(decode(&other), Err(EncodingError::UnknownVersion { found, supported: 4, .. }) if found == version),
                "version {version}"
            );
        }
    }
}
