//! Cassandra snapshot folders as a backup source.
//!
//! `nodetool snapshot -t TAG` hard-links every live SSTable of every table
//! into `<data dir>/<keyspace>/<table>-<32 hex id>/snapshots/<TAG>/`, next to
//! the table's `schema.cql` and a `manifest.json`. A backup by tag finds those
//! folders ([`discover`]) and hands them to the one file walker
//! (`backup::walk`) as paths: the SSTables a previous night already stored
//! are the same inodes, so change detection rule 2 (format-spec "Change
//! detection") takes them from the parent without reading them.
//!
//! The snapshot records the data folders as its `paths` (what the user gave,
//! the same every night), so the parent (same host, kind and paths) is the
//! previous night's snapshot of the same node, and retention grouped by
//! host and paths counts per node, although the tag folders change nightly.
//! [`restore`] maps the tag folders back into the layouts `nodetool refresh`
//! and `sstableloader` read.

pub(crate) mod restore;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::snapshot::{CassandraDetails, CassandraTable};

pub use restore::{layout_for, CassandraLayout, CassandraRestore};

/// Errors of the Cassandra source.
#[derive(Debug, thiserror::Error)]
pub enum CassandraError {
    /// A data folder given does not exist or is not a folder.
    #[error("Cassandra data folder {path}: {detail}")]
    DataDirMissing {
        /// The folder.
        path: PathBuf,
        /// Why it cannot be used.
        detail: String,
    },
    /// No `snapshots/<TAG>/` folder was found.
    #[error("no Cassandra snapshot tagged `{tag}` found under {searched}{filters}; tags that exist: {existing}; no snapshot was saved")]
    TagNotFound {
        /// The tag asked for.
        tag: String,
        /// The data folders searched, joined.
        searched: String,
        /// The keyspace/table filters, as text (empty when none).
        filters: String,
        /// The tags found instead, joined (or "none").
        existing: String,
    },
    /// Reading a data folder failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Bad arguments (an empty tag, a layout restore of another kind of
    /// snapshot, a keyspace that is not in the snapshot, ...).
    #[error("{0}")]
    Invalid(String),
    /// What was asked for is not in the snapshot.
    #[error("{0}")]
    NotFound(String),
}

impl CassandraError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            CassandraError::DataDirMissing { .. } | CassandraError::Invalid(_) => ErrorKind::InvalidInput,
            CassandraError::TagNotFound { .. } | CassandraError::NotFound(_) => ErrorKind::NotFound,
            CassandraError::Io { .. } => ErrorKind::Io,
        }
    }
}

/// What to back up: the snapshot folders of one tag on one node.
#[derive(Debug, Clone, Default)]
pub struct CassandraSource {
    /// The node's data folders (`data_file_directories`).
    pub data_dirs: Vec<PathBuf>,
    /// The snapshot tag (`nodetool snapshot -t TAG`).
    pub tag: String,
    /// Only these keyspaces (empty: all).
    pub keyspaces: Vec<String>,
    /// Only these tables: `TABLE` or `KEYSPACE.TABLE` (empty: all).
    pub tables: Vec<String>,
    /// Include the `system*` keyspaces (left out by default: a node
    /// rebuilds them, and restoring them onto another node is harmful).
    pub include_system: bool,
}

/// The folders a backup by tag walks, and what the snapshot records.
#[derive(Debug)]
pub(crate) struct Found {
    /// The data folders, absolute and clean (the snapshot's `paths`).
    pub data_dirs: Vec<PathBuf>,
    /// Every `snapshots/<TAG>/` folder, sorted (what the walker reads).
    pub folders: Vec<PathBuf>,
    /// The snapshot's details.
    pub details: CassandraDetails,
}

/// Splits `<table>-<32 hex id>` (the table folder's name).
pub(crate) fn split_table_dir(name: &str) -> Option<(&str, &str)> {
    let (table, id) = name.rsplit_once('-')?;
    (!table.is_empty() && id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some((table, id))
}

/// Whether a keyspace is one of Cassandra's own (`system`, `system_schema`,
/// `system_auth`, `system_distributed`, `system_traces`, `system_views`, ...).
pub(crate) fn is_system_keyspace(name: &str) -> bool {
    name.starts_with("system")
}

/// Whether `keyspace.table` passes `--table` filters (`T` or `KS.T`).
pub(crate) fn table_wanted(filters: &[String], keyspace: &str, table: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| match f.split_once('.') {
            Some((k, t)) => k == keyspace && t == table,
            None => f == table,
        })
}

fn absolute(p: &Path) -> Result<PathBuf, CassandraError> {
    let abs = std::path::absolute(p).map_err(|source| CassandraError::Io {
        path: p.to_path_buf(),
        source,
    })?;
    Ok(crate::backup::lexically_clean(&abs))
}

fn sorted_dir(path: &Path) -> Result<Vec<(String, fs::Metadata)>, CassandraError> {
    let io = |source| CassandraError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for ent in fs::read_dir(path).map_err(io)? {
        let ent = ent.map_err(io)?;
        // Names that are not UTF-8 are no keyspace, table or tag Cassandra makes.
        let Ok(name) = ent.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = fs::symlink_metadata(ent.path()) else {
            continue;
        };
        out.push((name, meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Files and bytes below `dir` (secondary index snapshots are subfolders).
fn count(dir: &Path) -> Result<(u64, u64), CassandraError> {
    let (mut files, mut bytes) = (0, 0);
    for (name, meta) in sorted_dir(dir)? {
        if meta.is_dir() {
            let (f, b) = count(&dir.join(name))?;
            files += f;
            bytes += b;
        } else if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

/// Finds every `<keyspace>/<table>-<id>/snapshots/<TAG>/` folder of `src`.
pub(crate) fn discover(src: &CassandraSource) -> Result<Found, CassandraError> {
    let tag = src.tag.as_str();
    if tag.is_empty() || tag == "." || tag == ".." || tag.contains('/') {
        return Err(CassandraError::Invalid(format!(
            "`{tag}` is not a Cassandra snapshot tag (give --snapshot-tag TAG, as in `nodetool snapshot -t TAG`)"
        )));
    }
    if src.data_dirs.is_empty() {
        return Err(CassandraError::Invalid(
            "no Cassandra data folder was given (--cassandra DATA_DIR)".into(),
        ));
    }
    let mut data_dirs = Vec::new();
    for d in &src.data_dirs {
        let abs = absolute(d)?;
        match fs::metadata(&abs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(CassandraError::DataDirMissing {
                    path: abs,
                    detail: "not a folder".into(),
                })
            }
            Err(e) => {
                return Err(CassandraError::DataDirMissing {
                    path: abs,
                    detail: e.to_string(),
                })
            }
        }
        if !data_dirs.contains(&abs) {
            data_dirs.push(abs);
        }
    }
    let mut folders = Vec::new();
    let mut tables = Vec::new();
    let mut existing = BTreeSet::new();
    for dir in &data_dirs {
        for (keyspace, meta) in sorted_dir(dir)? {
            if !meta.is_dir()
                || (is_system_keyspace(&keyspace) && !src.include_system)
                || (!src.keyspaces.is_empty() && !src.keyspaces.contains(&keyspace))
            {
                continue;
            }
            let ks_dir = dir.join(&keyspace);
            for (table_dir, meta) in sorted_dir(&ks_dir)? {
                let Some((table, table_id)) = split_table_dir(&table_dir) else {
                    continue;
                };
                if !meta.is_dir() || !table_wanted(&src.tables, &keyspace, table) {
                    continue;
                }
                let snapshots = ks_dir.join(&table_dir).join("snapshots");
                if !snapshots.is_dir() {
                    continue;
                }
                for (t, meta) in sorted_dir(&snapshots)? {
                    if meta.is_dir() && t != tag {
                        existing.insert(t);
                    }
                }
                let folder = snapshots.join(tag);
                if !fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                let (files, bytes) = count(&folder)?;
                tables.push(CassandraTable {
                    keyspace: keyspace.clone(),
                    table: table.to_string(),
                    table_id: table_id.to_ascii_lowercase(),
                    path: folder.to_string_lossy().into_owned(),
                    files,
                    bytes,
                });
                folders.push(folder);
            }
        }
    }
    if folders.is_empty() {
        let mut filters = Vec::new();
        if !src.keyspaces.is_empty() {
            filters.push(format!("keyspace {}", src.keyspaces.join(", ")));
        }
        if !src.tables.is_empty() {
            filters.push(format!("table {}", src.tables.join(", ")));
        }
        if !src.include_system {
            filters.push("system keyspaces left out".into());
        }
        return Err(CassandraError::TagNotFound {
            tag: tag.to_string(),
            searched: data_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            filters: if filters.is_empty() {
                String::new()
            } else {
                format!(" ({})", filters.join("; "))
            },
            existing: if existing.is_empty() {
                "none".into()
            } else {
                existing.into_iter().collect::<Vec<_>>().join(", ")
            },
        });
    }
    let details = CassandraDetails {
        tag: tag.to_string(),
        data_dirs: data_dirs.iter().map(|d| d.to_string_lossy().into_owned()).collect(),
        tables,
    };
    Ok(Found {
        data_dirs,
        folders,
        details,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn finds_tag_folders_and_leaves_system_out() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        write(
            &root.join(format!("chat/messages-{ID}/snapshots/n1/nb-1-big-Data.db")),
            b"abc",
        );
        write(
            &root.join(format!("chat/messages-{ID}/snapshots/n1/schema.cql")),
            b"CREATE",
        );
        write(
            &root.join(format!("chat/messages-{ID}/snapshots/n0/nb-1-big-Data.db")),
            b"x",
        );
        write(
            &root.join(format!("system/local-{ID}/snapshots/n1/nb-1-big-Data.db")),
            b"s",
        );
        write(&root.join("chat/not-a-table/snapshots/n1/x"), b"s");
        let src = CassandraSource {
            data_dirs: vec![root.to_path_buf()],
            tag: "n1".into(),
            ..Default::default()
        };
        let f = discover(&src).unwrap();
        assert_eq!(f.folders.len(), 1);
        assert_eq!(f.details.tables[0].keyspace, "chat");
        assert_eq!(f.details.tables[0].table, "messages");
        assert_eq!(f.details.tables[0].table_id, ID);
        assert_eq!((f.details.tables[0].files, f.details.tables[0].bytes), (2, 9));
        let with_system = discover(&CassandraSource {
            include_system: true,
            ..src.clone()
        })
        .unwrap();
        assert_eq!(with_system.folders.len(), 2);
        let missing = discover(&CassandraSource {
            tag: "n9".into(),
            ..src.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("`n9`") && missing.contains("n0, n1") && missing.contains(&root.display().to_string()),
            "{missing}"
        );
        let gone = discover(&CassandraSource {
            data_dirs: vec![root.join("nope")],
            ..src
        })
        .unwrap_err();
        assert!(matches!(gone, CassandraError::DataDirMissing { .. }), "{gone}");
    }

    #[test]
    fn table_filters() {
        assert!(table_wanted(&[], "chat", "messages"));
        assert!(table_wanted(&["messages".into()], "chat", "messages"));
        assert!(table_wanted(&["chat.messages".into()], "chat", "messages"));
        assert!(!table_wanted(&["billing.messages".into()], "chat", "messages"));
        assert_eq!(split_table_dir(&format!("a-b-{ID}")), Some(("a-b", ID)));
        assert_eq!(split_table_dir("messages-123"), None);
    }
}
