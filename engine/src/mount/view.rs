//! What the listing folders of a mount show (`snapshots/`, `hosts/`,
//! `tags/`), kept current while mounted: the snapshot objects are listed
//! again at most once per refresh interval, only new ones are read, and the
//! index is reloaded when the index objects change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, ObjectKind};
use crate::id::{SnapshotId, TreeId};
use crate::index::Index;
use crate::repository::{Repository, RepositoryError};
use crate::select::SnapshotFilter;
use crate::snapshot::Snapshot;

/// A snapshot as the mount shows it.
#[derive(Debug)]
pub(super) struct SnapEntry {
    /// Its id.
    pub id: SnapshotId,
    /// Its folder name: the time in UTC to the second, with the short id
    /// appended where two snapshots share a second.
    pub name: String,
    /// Its time, Unix ns (the folder's modification time).
    pub time_ns: i64,
    /// Its root tree.
    pub tree: TreeId,
    /// Owner of the backup (the folder's owner).
    pub uid: u32,
    /// Group of the backup.
    pub gid: u32,
}

/// The snapshots as of one refresh, and how the listing folders group them.
#[derive(Debug, Default)]
pub(super) struct View {
    /// Oldest first.
    pub snaps: Vec<Arc<SnapEntry>>,
    by_name: HashMap<String, usize>,
    /// Host to its snapshots (positions in `snaps`, oldest first).
    pub hosts: BTreeMap<String, Vec<usize>>,
    /// Tag to its snapshots.
    pub tags: BTreeMap<String, Vec<usize>>,
}

/// Whether `name` can be one entry of a folder.
fn usable_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// A snapshot time as a folder name: RFC 3339 in UTC to the second.
fn time_name(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| format!("@{ns}"))
}

impl View {
    /// Groups `list` (any order) into the listing folders.
    pub fn build(mut list: Vec<(SnapshotId, Arc<Snapshot>)>) -> Self {
        list.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        let mut times: HashMap<String, usize> = HashMap::new();
        for (_, s) in &list {
            *times.entry(time_name(s.time_ns)).or_default() += 1;
        }
        let mut view = View::default();
        for (i, (id, s)) in list.iter().enumerate() {
            let time = time_name(s.time_ns);
            let name = if times.get(&time).copied().unwrap_or(0) > 1 {
                format!("{time}-{}", id.short())
            } else {
                time
            };
            view.by_name.insert(name.clone(), i);
            view.snaps.push(Arc::new(SnapEntry {
                id: *id,
                name,
                time_ns: s.time_ns,
                tree: s.tree,
                uid: s.uid,
                gid: s.gid,
            }));
            if usable_name(&s.host) {
                view.hosts.entry(s.host.clone()).or_default().push(i);
            }
            for t in s.tags.iter().filter(|t| usable_name(t)) {
                let of_tag = view.tags.entry(t.clone()).or_default();
                // A tag listed twice in one snapshot still lists it once.
                if of_tag.last() != Some(&i) {
                    of_tag.push(i);
                }
            }
        }
        view
    }

    /// The snapshot whose folder is `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<SnapEntry>> {
        self.by_name.get(name).map(|&i| &self.snaps[i])
    }

    /// The one snapshot whose id starts with `prefix` (at least 4 hex
    /// digits), for `snapshots/<id>` links that are not listed.
    pub fn by_id_prefix(&self, prefix: &str) -> Option<&Arc<SnapEntry>> {
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let prefix = prefix.to_ascii_lowercase();
        let mut hits = self.snaps.iter().filter(|s| s.id.to_hex().starts_with(&prefix));
        match (hits.next(), hits.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// Time of the newest snapshot (the listing folders' modification time).
    pub fn newest_ns(&self) -> i64 {
        self.snaps.last().map_or(0, |s| s.time_ns)
    }
}

/// The current view and the index reads go through, refreshed on demand.
pub(super) struct Views {
    repo: Arc<Repository>,
    filter: SnapshotFilter,
    refresh: Duration,
    state: Mutex<State>,
}

struct State {
    loaded: HashMap<SnapshotId, Arc<Snapshot>>,
    /// Snapshot objects that could not be read, not read again.
    damaged: HashSet<String>,
    view: Arc<View>,
    index: Arc<Index>,
    index_names: Vec<String>,
    checked: Instant,
}

impl Views {
    /// Lists and reads the snapshots and loads the index.
    pub fn open(repo: Arc<Repository>, filter: SnapshotFilter, refresh: Duration) -> Result<Self, RepositoryError> {
        let mut state = State {
            loaded: HashMap::new(),
            damaged: HashSet::new(),
            view: Arc::new(View::default()),
            index: Arc::new(Index::new()),
            index_names: Vec::new(),
            checked: Instant::now(),
        };
        refresh_state(&repo, &filter, &mut state, true)?;
        Ok(Self {
            repo,
            filter,
            refresh,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The view, listed again first when the last look is older than the
    /// refresh interval. A failed refresh keeps the previous view (and says
    /// why in the log): a flaky connection must not empty the folders.
    pub fn current(&self) -> Arc<View> {
        let mut st = self.lock();
        if st.checked.elapsed() >= self.refresh {
            if let Err(e) = refresh_state(&self.repo, &self.filter, &mut st, false) {
                tracing::warn!("mount: listing the repository again failed, showing what was listed before: {e}");
            }
            st.checked = Instant::now();
        }
        st.view.clone()
    }

    /// The index reads go through.
    pub fn index(&self) -> Arc<Index> {
        self.lock().index.clone()
    }

    /// Loads the index again (a blob was missing from it: a prune or a
    /// backup may have changed the index objects since the last look).
    /// Returns whether it changed.
    pub fn reload_index(&self) -> bool {
        let mut st = self.lock();
        match reload_index(&self.repo, &mut st) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!("mount: loading the index again failed: {e}");
                false
            }
        }
    }
}

/// Lists the snapshots (reading only new ones), then the index objects:
/// in that order, so the index covers every snapshot listed (a snapshot is
/// written after its index objects).
fn refresh_state(
    repo: &Repository,
    filter: &SnapshotFilter,
    st: &mut State,
    first: bool,
) -> Result<(), RepositoryError> {
    let listed = repo.backend().list(ObjectKind::Snapshot)?;
    let mut present = HashSet::new();
    let mut changed = first;
    for o in listed {
        let Ok(id) = SnapshotId::from_hex(&o.name) else {
            continue;
        };
        present.insert(id);
        if st.loaded.contains_key(&id) || st.damaged.contains(&o.name) {
            continue;
        }
        match repo.load_snapshot(&id) {
            Ok(s) => {
                st.loaded.insert(id, Arc::new(s));
                changed = true;
            }
            // Forgotten between the listing and the read.
            Err(RepositoryError::Backend(BackendError::NotFound { .. })) => {}
            Err(e @ RepositoryError::Corrupt { .. }) => {
                tracing::warn!("mount: leaving out a damaged snapshot: {e} (run `cairn check`)");
                st.damaged.insert(o.name);
            }
            Err(e) => return Err(e),
        }
    }
    let before = st.loaded.len();
    st.loaded.retain(|id, _| present.contains(id));
    changed |= st.loaded.len() != before;
    reload_index(repo, st)?;
    if changed {
        let shown = st
            .loaded
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        st.view = Arc::new(View::build(shown));
    }
    Ok(())
}

/// Loads the index when the index objects differ from those it was built
/// from; returns whether they did.
fn reload_index(repo: &Repository, st: &mut State) -> Result<bool, RepositoryError> {
    let mut names: Vec<String> = repo
        .backend()
        .list(ObjectKind::Index)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort();
    if names == st.index_names && !st.index_names.is_empty() {
        return Ok(false);
    }
    st.index = Arc::new(repo.load_index()?);
    st.index_names = names;
    Ok(true)
}
