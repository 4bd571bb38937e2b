//! Where a Cassandra snapshot's tag folders go on restore: the layouts
//! `nodetool refresh`/`nodetool import` (`<keyspace>/<table>-<id>/`) and
//! `sstableloader` (`<keyspace>/<table>/`) read, without the
//! `snapshots/<TAG>/` level. Only the mapping lives here; the restore itself
//! is the one in `restore/`.

use std::path::{Path, PathBuf};

use super::{table_wanted, CassandraError};
use crate::restore::{Placement, RestoreLayout};
use crate::snapshot::{CassandraTable, Snapshot, SourceDetails, SourceKind};

/// The two folder layouts a Cassandra restore can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CassandraLayout {
    /// `DIR/<keyspace>/<table>-<id>/`: copy into a node's data folder and
    /// run `nodetool refresh` (or point `nodetool import` at it).
    Refresh,
    /// `DIR/<keyspace>/<table>/`: stream with `sstableloader -d HOST DIR/<ks>/<table>`.
    Sstableloader,
}

/// What to restore from a Cassandra snapshot.
#[derive(Debug, Clone)]
pub struct CassandraRestore {
    /// The folder layout.
    pub layout: CassandraLayout,
    /// Only these keyspaces (empty: all).
    pub keyspaces: Vec<String>,
    /// Only these tables, `TABLE` or `KEYSPACE.TABLE` (empty: all).
    pub tables: Vec<String>,
    /// A path in the snapshot: a table's tag folder, a folder above tag
    /// folders (a keyspace's), or one file of a tag folder; an SSTable
    /// component (`nb-1-big-Data.db`) stands for all components of that
    /// SSTable (`nb-1-big-*`).
    pub path: Option<String>,
}

/// `nb-1-big-Data.db` → `nb-1-big-`; `None` for a file that is no SSTable
/// component (`schema.cql`, `manifest.json`). Component names hold no `-`.
fn sstable_prefix(name: &str) -> Option<&str> {
    let cut = name.rfind('-')?;
    // At least `<version>-<generation>-`.
    (name[..cut].contains('-')).then(|| &name[..=cut])
}

/// The placements restoring `req` of `snapshot` need.
pub fn layout_for(snapshot: &Snapshot, req: &CassandraRestore) -> Result<RestoreLayout, CassandraError> {
    let details = match (&snapshot.source, &snapshot.details) {
        (SourceKind::Cassandra, SourceDetails::Cassandra(d)) => d,
        _ => {
            return Err(CassandraError::Invalid(format!(
                "--cassandra-layout restores snapshots made with `cairn backup --cassandra`; this one is a `{}` snapshot of {} (restore it without --cassandra-layout)",
                snapshot.source.label(),
                snapshot.paths.join(" ")
            )))
        }
    };
    let mut tables: Vec<&CassandraTable> = details
        .tables
        .iter()
        .filter(|t| req.keyspaces.is_empty() || req.keyspaces.contains(&t.keyspace))
        .filter(|t| table_wanted(&req.tables, &t.keyspace, &t.table))
        .collect();
    let mut include = Vec::new();
    if let Some(p) = &req.path {
        let p = p.trim_end_matches('/');
        let path = Path::new(p);
        if let Some(t) = tables
            .iter()
            .find(|t| Path::new(&t.path) == path.parent().unwrap_or(path))
        {
            // One file of a tag folder: an SSTable's components, or itself.
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = globset::escape(&t.path);
            include.push(match sstable_prefix(&name) {
                Some(prefix) => format!("{dir}/{}*", globset::escape(prefix)),
                None => format!("{dir}/{}", globset::escape(&name)),
            });
            let t = *t;
            tables = vec![t];
        } else {
            tables.retain(|t| Path::new(&t.path).starts_with(path));
        }
        if tables.is_empty() {
            return Err(CassandraError::NotFound(format!(
                "{p} is neither a table's snapshot folder, a folder above them, nor a file in one (of the tables the filters leave)"
            )));
        }
    }
    if tables.is_empty() {
        let all: Vec<String> = details
            .tables
            .iter()
            .map(|t| format!("{}.{}", t.keyspace, t.table))
            .collect();
        return Err(CassandraError::NotFound(format!(
            "no table of the snapshot passes --keyspace {} --table {}; it holds: {}",
            req.keyspaces.join(","),
            req.tables.join(","),
            all.join(", ")
        )));
    }
    let mut places: Vec<Placement> = Vec::new();
    let mut exclude = Vec::new();
    for t in tables {
        let tag_dir = Path::new(&t.path);
        // <data dir>/<keyspace>/<table>-<id>/snapshots/<tag>
        let Some(ks_dir) = tag_dir.ancestors().nth(3) else {
            return Err(CassandraError::Invalid(format!(
                "{} is not a <keyspace>/<table>-<id>/snapshots/<tag> folder",
                t.path
            )));
        };
        let safe = |n: &str| !(n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('\0'));
        if ![&t.keyspace, &t.table, &t.table_id].iter().all(|n| safe(n)) {
            return Err(CassandraError::Invalid(format!(
                "the snapshot's details name a table `{}.{}-{}` that is no folder name; not restored",
                t.keyspace, t.table, t.table_id
            )));
        }
        let ks_to = PathBuf::from(&t.keyspace);
        let to = match req.layout {
            CassandraLayout::Refresh => ks_to.join(format!("{}-{}", t.table, t.table_id)),
            CassandraLayout::Sstableloader => ks_to.join(&t.table),
        };
        if !places.iter().any(|p| p.to == ks_to) {
            places.push(Placement {
                from: ks_dir.to_string_lossy().into_owned(),
                to: ks_to,
                contents: false,
            });
        }
        if places.iter().any(|p| p.to == to) {
            // The same table in a second data folder: its SSTables join the
            // first's; the schema and manifest would only collide.
            let dir = globset::escape(&t.path);
            exclude.push(format!("{dir}/schema.cql"));
            exclude.push(format!("{dir}/manifest.json"));
        }
        places.push(Placement {
            from: t.path.clone(),
            to,
            contents: true,
        });
    }
    Ok(RestoreLayout {
        places,
        include,
        exclude,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sstable_prefixes() {
        assert_eq!(sstable_prefix("nb-1-big-Data.db"), Some("nb-1-big-"));
        assert_eq!(sstable_prefix("nb-12-big-TOC.txt"), Some("nb-12-big-"));
        assert_eq!(sstable_prefix("schema.cql"), None);
        assert_eq!(sstable_prefix("manifest.json"), None);
    }
}
