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
/// Readers take the view and the index from their own short-held locks:
/// a refresh (listings and reads over the network) never stalls them.
pub(super) struct Views {
    repo: Arc<Repository>,
    filter: SnapshotFilter,
    refresh: Duration,
    view: Mutex<Arc<View>>,
    index: Mutex<Arc<Index>>,
    state: Mutex<State>,
}

/// What the refresh works from; one refresh at a time holds it.
struct State {
    loaded: HashMap<SnapshotId, Arc<Snapshot>>,
    /// Snapshot objects that could not be read, not read again.
    damaged: HashSet<String>,
    /// `loaded` changed since the view was last built (kept across a
    /// refresh that failed half-way, so its snapshots still appear).
    dirty: bool,
    /// Index and deletion-record objects the index was built from.
    index_from: Vec<String>,
    checked: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Views {
    /// Lists and reads the snapshots and loads the index.
    pub fn open(repo: Arc<Repository>, filter: SnapshotFilter, refresh: Duration) -> Result<Self, RepositoryError> {
        let views = Self {
            repo,
            filter,
            refresh,
            view: Mutex::new(Arc::new(View::default())),
            index: Mutex::new(Arc::new(Index::new())),
            state: Mutex::new(State {
                loaded: HashMap::new(),
                damaged: HashSet::new(),
                dirty: true,
                index_from: Vec::new(),
                checked: Instant::now(),
            }),
        };
        views.refresh(&mut lock(&views.state))?;
        Ok(views)
    }

    /// The view, listed again first when the last look is older than the
    /// refresh interval (unless another thread is at it: then the view as it
    /// is). A failed refresh keeps the previous view and says why in the
    /// log: a flaky connection must not empty the folders.
    pub fn current(&self) -> Arc<View> {
        let st = match self.state.try_lock() {
            Ok(st) => Some(st),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut st) = st {
            if st.checked.elapsed() >= self.refresh {
                if let Err(e) = self.refresh(&mut st) {
                    tracing::warn!("mount: listing the repository again failed, showing what was listed before: {e}");
                }
                st.checked = Instant::now();
            }
        }
        lock(&self.view).clone()
    }

    /// The index reads go through.
    pub fn index(&self) -> Arc<Index> {
        lock(&self.index).clone()
    }

    /// Loads the index again if the index objects or deletion records
    /// changed (a blob or pack was missing: a backup, or a prune that
    /// repacked, may have moved it since the last look). Returns whether
    /// it did.
    pub fn reload_index(&self) -> bool {
        match self.reload_index_in(&mut lock(&self.state)) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!("mount: loading the index again failed: {e}");
                false
            }
        }
    }

    /// Lists the snapshots (reading only new ones), then, when they changed,
    /// the index objects: in that order, so the index covers every snapshot
    /// listed (a snapshot is written after its index objects).
    fn refresh(&self, st: &mut State) -> Result<(), RepositoryError> {
        let listed = self.repo.backend().list(ObjectKind::Snapshot)?;
        let mut present = HashSet::new();
        for o in listed {
            let Ok(id) = SnapshotId::from_hex(&o.name) else {
                continue;
            };
            present.insert(id);
            if st.loaded.contains_key(&id) || st.damaged.contains(&o.name) {
                continue;
            }
            match self.repo.load_snapshot(&id) {
                Ok(s) => {
                    st.loaded.insert(id, Arc::new(s));
                    st.dirty = true;
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
        st.dirty |= st.loaded.len() != before;
        if !st.dirty {
            // Nothing new to show, so no new tree to find: the index is
            // looked at again only when a read misses (`reload_index`),
            // which spares two listings per refresh.
            return Ok(());
        }
        self.reload_index_in(st)?;
        let shown = st
            .loaded
            .iter()
            .filter(|(_, s)| self.filter.matches(s))
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        *lock(&self.view) = Arc::new(View::build(shown));
        st.dirty = false;
        Ok(())
    }

    /// Loads the index when the index objects or deletion records (which
    /// steer readers away from packs a prune will delete) differ from those
    /// it was built from; returns whether they did.
    fn reload_index_in(&self, st: &mut State) -> Result<bool, RepositoryError> {
        let mut from = Vec::new();
        for kind in [ObjectKind::Index, ObjectKind::Deletion] {
            from.extend(
                self.repo
                    .backend()
                    .list(kind)?
                    .into_iter()
                    .map(|o| format!("{kind:?}/{}", o.name)),
            );
        }
        from.sort();
        if from == st.index_from && !from.is_empty() {
            return Ok(false);
        }
        *lock(&self.index) = Arc::new(self.repo.load_index()?);
        st.index_from = from;
        Ok(true)
    }
}
