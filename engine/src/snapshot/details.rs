//! What a data-platform source recorded about the data it read (snapshot
//! field 15, version 3): enough for `snapshots`, the restore drill and
//! per-store restores to know what a snapshot holds without reading it.

use serde::{Deserialize, Serialize};

/// Source-specific facts of a snapshot. Variant order is part of the format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum SourceDetails {
    /// Nothing beyond [`super::SourceKind`] (files, stdin, and every
    /// version 1 and 2 object).
    #[default]
    None,
    /// A command's standard output (`--stdin-from-command`).
    Command(CommandDetails),
    /// A Redis RDB (`--redis`, `--redis-rdb`, `--redis-data-dir`).
    Redis(RedisDetails),
    /// Cassandra snapshot folders (`--cassandra`).
    Cassandra(CassandraDetails),
    /// Objects of an S3 bucket (`--s3-source`).
    S3(S3Details),
}

/// How a command whose output was backed up ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct CommandDetails {
    /// Its exit code (a snapshot is only written when it is 0, so this
    /// records that the command was seen to succeed).
    pub exit_code: i32,
}

/// A Redis dump and the server it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct RedisDetails {
    /// Where it came from: the server's URL without any password, or the
    /// dump file's or data folder's path.
    pub origin: String,
    /// `redis_version` from `INFO server`; empty for a file.
    pub server_version: String,
    /// `role` from `INFO replication` (`master`, `slave`); empty for a file.
    pub role: String,
    /// The RDB format version from its header (`REDIS0011` → 11).
    pub rdb_version: u32,
    /// The RDB's length in bytes.
    pub rdb_size: u64,
    /// The RDB's CRC-64 trailer (Jones polynomial, as Redis computes it),
    /// checked against the bytes read; `None` when the dump carries none
    /// (version < 5, or written with `rdbchecksum no`).
    pub rdb_crc64: Option<u64>,
    /// Keys per database from `INFO keyspace` at backup time; empty when
    /// unknown (a dump file).
    pub keyspace: Vec<RedisKeyspace>,
    /// Whether the append-only folder (`appendonlydir/`) was backed up too.
    pub aof: bool,
}

/// One line of `INFO keyspace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct RedisKeyspace {
    /// Database number (`db0` → 0).
    pub db: u32,
    /// `keys=`.
    pub keys: u64,
    /// `expires=`.
    pub expires: u64,
}

/// Cassandra snapshot folders of one node, backed up by tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct CassandraDetails {
    /// The snapshot tag (`nodetool snapshot -t TAG`).
    pub tag: String,
    /// The data folders searched (absolute).
    pub data_dirs: Vec<String>,
    /// Every table snapshot backed up.
    pub tables: Vec<CassandraTable>,
}

/// One `<keyspace>/<table>-<id>/snapshots/<tag>/` folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct CassandraTable {
    /// Keyspace name.
    pub keyspace: String,
    /// Table name.
    pub table: String,
    /// The table id: the 32 hex digits after the table name's `-`.
    pub table_id: String,
    /// The snapshot folder's absolute path, as it is in the snapshot's tree.
    pub path: String,
    /// Files in it.
    pub files: u64,
    /// Bytes in it.
    pub bytes: u64,
}

/// A bucket (and prefix) backed up as files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct S3Details {
    /// The source URL without credentials (`s3:http://host:port/bucket/prefix`).
    pub url: String,
    /// Whether non-current versions were included.
    pub versions: bool,
    /// Objects (or object versions) backed up.
    pub objects: u64,
}

/// Chunk sizes of a source that does not use the repository's (snapshot
/// field 16): the repository's chunker seed with these bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ChunkSizes {
    /// Smallest chunk, bytes.
    pub min_size: u32,
    /// Average chunk, bytes.
    pub avg_size: u32,
    /// Largest chunk, bytes.
    pub max_size: u32,
}
