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
    /// The snapshot named is damaged (cannot be read or decoded).
    #[error("snapshot `{spec}` cannot be used: {error}")]
    Damaged {
        /// What was asked for.
        spec: String,
        /// The damage.
        error: RepositoryError,
    },
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

/// Every readable snapshot passing `filter`, oldest first. A damaged
/// snapshot object (or a stray file in `snapshots/`) affects only itself:
/// it is left out with a warning, and naming it fails (see [`find_snapshot`]).
pub fn filter_snapshots(
    repo: &Repository,
    filter: &SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>, SelectError> {
    Ok(Listed::load(repo)?.filtered(filter))
}

/// Resolves `spec` (`latest` or an id prefix) among the snapshots passing `filter`.
pub fn find_snapshot(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot), SelectError> {
    let listed = Listed::load(repo)?;
    let all = listed.filtered(filter);
    listed.resolve(&all, spec).cloned()
}

/// Resolves every spec of `specs` among the snapshots passing `filter`,
/// listing the repository once; duplicates are dropped.
pub fn find_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>, SelectError> {
    let listed = Listed::load(repo)?;
    let all = listed.filtered(filter);
    let mut out: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for spec in specs {
        let hit = listed.resolve(&all, spec)?;
        if !out.iter().any(|(id, _)| *id == hit.0) {
            out.push(hit.clone());
        }
    }
    Ok(out)
}

/// The snapshots as listed once: the readable ones, and the damaged ones by
/// object name.
struct Listed {
    snapshots: Vec<(SnapshotId, Snapshot)>,
    damaged: Vec<(String, RepositoryError)>,
}

impl Listed {
    fn load(repo: &Repository) -> Result<Self, SelectError> {
        let list = repo.list_snapshots_lenient()?;
        let mut damaged = Vec::new();
        for e in list.damaged {
            tracing::warn!("skipping a damaged snapshot: {e} (run `cairn check`)");
            let name = match &e {
                RepositoryError::Corrupt { name, .. } => name.to_ascii_lowercase(),
                _ => String::new(),
            };
            damaged.push((name, e));
        }
        Ok(Self {
            snapshots: list.snapshots,
            damaged,
        })
    }

    fn filtered(&self, filter: &SnapshotFilter) -> Vec<(SnapshotId, Snapshot)> {
        self.snapshots
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect()
    }

    /// `latest` (the newest of `all`, which is oldest first) or the one id
    /// starting with `spec`, by the one id-prefix resolver; a prefix that
    /// names a damaged snapshot (alone or with others) is refused.
    fn resolve<'a>(
        &self,
        all: &'a [(SnapshotId, Snapshot)],
        spec: &str,
    ) -> Result<&'a (SnapshotId, Snapshot), SelectError> {
        if spec == "latest" {
            return all.last().ok_or_else(|| SelectError::NotFound(spec.to_string()));
        }
        let wanted = spec.trim().to_ascii_lowercase();
        let damaged: Vec<&(String, RepositoryError)> = self
            .damaged
            .iter()
            .filter(|(n, _)| !wanted.is_empty() && n.starts_with(&wanted))
            .collect();
        let found = find_by_prefix(all, |(id, _)| id.to_hex(), spec, "snapshot");
        match (found, damaged.as_slice()) {
            (Ok(hit), []) => Ok(hit),
            (Err(PrefixError::NotFound { .. }), [(_, e)]) => Err(SelectError::Damaged {
                spec: spec.to_string(),
                error: copy_error(e),
            }),
            (Err(PrefixError::NotFound { .. }), []) => Err(SelectError::NotFound(spec.to_string())),
            (Ok(_), d) => Err(SelectError::Ambiguous(spec.to_string(), 1 + d.len())),
            (Err(PrefixError::NotFound { .. }), d) => Err(SelectError::Ambiguous(spec.to_string(), d.len())),
            (Err(PrefixError::Ambiguous { count, .. }), d) => {
                Err(SelectError::Ambiguous(spec.to_string(), count + d.len()))
            }
        }
    }
}

/// The damage of a listed snapshot, for an error of its own.
fn copy_error(e: &RepositoryError) -> RepositoryError {
    match e {
        RepositoryError::Corrupt { kind, name, detail } => RepositoryError::Corrupt {
            kind: *kind,
            name: name.clone(),
            detail: detail.clone(),
        },
        other => RepositoryError::corrupt(crate::backend::ObjectKind::Snapshot, "?", other.to_string()),
    }
}
