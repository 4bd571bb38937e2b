//! Choosing snapshots as restic users know it: `latest`, an id prefix,
//! filtered by host, tag and path, optionally as of a point in time.

use crate::backend::{ObjectInfo, ObjectKind};
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
    Ok(Listed::load(repo, None)?.filtered(filter))
}

/// Resolves `spec` (`latest` or an id prefix) among the snapshots passing `filter`.
pub fn find_snapshot(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot), SelectError> {
    // `latest` needs every snapshot's time; an id, usually only its own.
    let listed = if spec == "latest" {
        Listed::load(repo, None)?
    } else {
        let names = repo
            .backend()
            .list(ObjectKind::Snapshot)
            .map_err(RepositoryError::from)?;
        if let Some(hit) = named_alone(repo, &names, spec, filter) {
            return Ok(hit);
        }
        Listed::load(repo, Some(&names))?
    };
    let all = listed.filtered(filter);
    listed.resolve(&all, spec).cloned()
}

/// The snapshot `spec` names, read alone when exactly one of the listed
/// object `names` starts with it and that snapshot reads and passes
/// `filter`: what the full listing would resolve it to, without reading
/// every snapshot (a `dump` of one file from a repository of 10,000
/// snapshots spent half its time there). `None` otherwise, and the full
/// listing decides, with its errors.
fn named_alone(
    repo: &Repository,
    names: &[ObjectInfo],
    spec: &str,
    filter: &SnapshotFilter,
) -> Option<(SnapshotId, Snapshot)> {
    let wanted = spec.trim().to_ascii_lowercase();
    if wanted.is_empty() {
        return None;
    }
    let mut hits = names
        .iter()
        .filter(|o| o.name.to_ascii_lowercase().starts_with(&wanted));
    let (Some(one), None) = (hits.next(), hits.next()) else {
        return None;
    };
    let id = SnapshotId::from_hex(&one.name).ok()?;
    repo.load_snapshot(&id)
        .ok()
        .filter(|s| filter.matches(s))
        .map(|s| (id, s))
}

/// Resolves every spec of `specs` among the snapshots passing `filter`,
/// listing the repository once; duplicates are dropped.
pub fn find_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>, SelectError> {
    let listed = Listed::load(repo, None)?;
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
    /// Every snapshot, from `names` when the caller listed them already.
    fn load(repo: &Repository, names: Option<&[ObjectInfo]>) -> Result<Self, SelectError> {
        let list = match names {
            Some(names) => repo.load_listed_snapshots(names)?,
            None => repo.list_snapshots_lenient()?,
        };
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{Backend, BackendError};
    use crate::repository::InitOptions;
    use crate::testing::CHEAP_KDF;

    /// A memory backend that counts snapshot reads and listings.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryBackend,
        snapshot_reads: AtomicUsize,
        snapshot_lists: AtomicUsize,
    }

    impl Backend for Counting {
        crate::backend::forward!(inner: transfers, location, create, read_range, write, write_bytes, remove, stat, archive_state, request_retrieval, remove_temporaries, extend_retention);

        fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
            if kind == ObjectKind::Snapshot {
                self.snapshot_reads.fetch_add(1, Ordering::Relaxed);
            }
            self.inner.read(kind, name)
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<crate::backend::ObjectInfo>, BackendError> {
            if kind == ObjectKind::Snapshot {
                self.snapshot_lists.fetch_add(1, Ordering::Relaxed);
            }
            self.inner.list(kind)
        }
        crate::backend::read_into_by_read!();
    }

    fn snapshot(host: &str, time_ns: i64) -> Snapshot {
        Snapshot {
            time_ns,
            host: host.into(),
            paths: vec!["/data".into()],
            ..crate::testing::test_snapshot()
        }
    }

    /// Eight snapshots, the odd ones of host "b", and the counting backend.
    fn repo() -> (Repository, Arc<Counting>, Vec<SnapshotId>) {
        let backend = Arc::new(Counting::default());
        let opts = InitOptions {
            kdf: CHEAP_KDF,
            ..Default::default()
        };
        let repo = Repository::init(backend.clone(), b"pw", opts).unwrap();
        let ids = (0..8)
            .map(|i| {
                repo.save_snapshot(&snapshot(if i % 2 == 0 { "a" } else { "b" }, i))
                    .unwrap()
            })
            .collect();
        (repo, backend, ids)
    }

    /// Each way of naming a snapshot gives what the full listing gives;
    /// a full id or a prefix only one name starts with reads that one alone.
    #[test]
    fn a_snapshot_named_by_a_unique_prefix_is_read_alone() {
        let (repo, backend, ids) = repo();
        let none = SnapshotFilter::default();
        for id in &ids {
            let hex = id.to_hex();
            let unique = (1..=64)
                .map(|n| &hex[..n])
                .find(|p| ids.iter().filter(|i| i.to_hex().starts_with(p)).count() == 1)
                .unwrap();
            for spec in [hex.as_str(), unique, &hex.to_ascii_uppercase()] {
                let before = backend.snapshot_reads.load(Ordering::Relaxed);
                let (got, snap) = find_snapshot(&repo, spec, &none).unwrap();
                assert_eq!(&got, id);
                assert_eq!(snap, repo.load_snapshot(id).unwrap());
                assert_eq!(
                    backend.snapshot_reads.load(Ordering::Relaxed) - before,
                    2,
                    "{spec}: one read here, one above"
                );
            }
        }
        // "latest", a filter the named snapshot fails, a shared prefix: the
        // full listing decides, as before.
        let before = backend.snapshot_reads.load(Ordering::Relaxed);
        assert_eq!(find_snapshot(&repo, "latest", &none).unwrap().0, ids[7]);
        assert!(backend.snapshot_reads.load(Ordering::Relaxed) - before >= ids.len());
        let only_a = SnapshotFilter {
            hosts: vec!["a".into()],
            ..Default::default()
        };
        let lists = backend.snapshot_lists.load(Ordering::Relaxed);
        assert!(matches!(
            find_snapshot(&repo, &ids[1].to_hex(), &only_a),
            Err(SelectError::NotFound(_))
        ));
        assert_eq!(
            backend.snapshot_lists.load(Ordering::Relaxed) - lists,
            1,
            "falling back to every snapshot reuses the listing"
        );
        assert_eq!(find_snapshot(&repo, &ids[2].to_hex(), &only_a).unwrap().0, ids[2]);
        assert!(matches!(find_snapshot(&repo, "", &none), Err(SelectError::NotFound(_))));
    }

    /// A damaged snapshot named alone is refused with its damage, whichever
    /// way it is looked up.
    #[test]
    fn a_damaged_snapshot_named_alone_is_refused() {
        let (repo, backend, _) = repo();
        let name = "ff".repeat(32);
        backend
            .inner
            .write(ObjectKind::Snapshot, &name, b"not a snapshot")
            .unwrap();
        let none = SnapshotFilter::default();
        assert!(matches!(
            find_snapshot(&repo, &name, &none),
            Err(SelectError::Damaged { .. })
        ));
    }
}
