//! Snapshots: the root of one backup, with who, when, what and a summary.

use serde::{Deserialize, Serialize};

use crate::id::{SnapshotId, TreeId};

/// Version byte of an encoded snapshot object.
pub const SNAPSHOT_VERSION: u8 = 1;
/// Object kind bound into a snapshot's authenticated data.
pub const SNAPSHOT_KIND: &str = "snapshot";

/// Where the data of a snapshot came from. Variant order is part of the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl SourceKind {
    /// Every [`SourceKind::label`], for checking what a user wrote.
    pub const LABELS: [&'static str; 5] = ["files", "stdin", "command", "redis", "cassandra"];

    /// A short name for tables.
    pub fn label(&self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Stdin { .. } => "stdin",
            SourceKind::Command { .. } => "command",
            SourceKind::Redis => "redis",
            SourceKind::Cassandra => "cassandra",
        }
    }
}

/// What a backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}
