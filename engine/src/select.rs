//! Choosing snapshots as restic users know it: `latest`, an id prefix,
//! filtered by host, tag and path, optionally as of a point in time.

use crate::id::{find_by_prefix, PrefixError, SnapshotId};
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;

/// Errors of snapshot selection.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// Nothing matches.
    #[error("no snapshot matches `{0}`")]
    NotFound(String),
    /// An id prefix matches several snapshots.
    #[error("`{0}` matches {1} snapshots; give more digits")]
    Ambiguous(String, usize),
    /// Repository failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Filters applied before choosing.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts (empty: any host).
    pub hosts: Vec<String>,
    /// Any of these tag sets; a set is comma-separated and needs all its tags.
    pub tags: Vec<String>,
    /// Snapshots whose paths include all of these.
    pub paths: Vec<String>,
    /// Only snapshots at or before this time (Unix ns).
    pub as_of_ns: Option<i64>,
}

impl SnapshotFilter {
    /// Whether `s` passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty()
                || self.tags.iter().any(|set| {
                    set.split(',')
                        .filter(|t| !t.is_empty())
                        .all(|t| s.tags.iter().any(|x| x == t))
                }))
            && self
                .paths
                .iter()
                .all(|p| s.paths.iter().any(|x| x == p.trim_end_matches('/') || x == p))
            && self.as_of_ns.is_none_or(|t| s.time_ns <= t)
    }
}

/// Every snapshot passing `filter`, oldest first.
pub fn filter_snapshots(
    repo: &Repository,
    filter: &SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>, SelectError> {
    Ok(repo
        .list_snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect())
}

/// Resolves `spec` (`latest` or an id prefix) among the snapshots passing `filter`.
pub fn find_snapshot(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot), SelectError> {
    let all = filter_snapshots(repo, filter)?;
    resolve(&all, spec).cloned()
}

/// Resolves every spec of `specs` among the snapshots passing `filter`,
/// listing the repository once; duplicates are dropped.
pub fn find_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>, SelectError> {
    let all = filter_snapshots(repo, filter)?;
    let mut out: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for spec in specs {
        let hit = resolve(&all, spec)?;
        if !out.iter().any(|(id, _)| *id == hit.0) {
            out.push(hit.clone());
        }
    }
    Ok(out)
}

/// `latest` (the newest of `all`, which is oldest first) or the one id
/// starting with `spec`, by the one id-prefix resolver.
fn resolve<'a>(all: &'a [(SnapshotId, Snapshot)], spec: &str) -> Result<&'a (SnapshotId, Snapshot), SelectError> {
    if spec == "latest" {
        return all.last().ok_or_else(|| SelectError::NotFound(spec.to_string()));
    }
    find_by_prefix(all, |(id, _)| id.to_hex(), spec, "snapshot").map_err(|e| match e {
        PrefixError::NotFound { .. } => SelectError::NotFound(spec.to_string()),
        PrefixError::Ambiguous { count, .. } => SelectError::Ambiguous(spec.to_string(), count),
    })
}
