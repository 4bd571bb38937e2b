//! Objects under S3 Object Lock retention (see `backend::s3::object_lock`):
//! the storage refuses to delete them before their date, so prune plans
//! around them instead of failing half-way.
//!
//! The rules, which keep the repository consistent whatever the dates:
//! - A pack under retention is neither deleted nor repacked (a repack would
//!   store copies of blobs whose originals cannot go).
//! - An index object under retention cannot be removed, so every pack it
//!   describes is **pinned**: kept too, or the index would name missing
//!   packs. Such index objects are never recorded for deletion.
//! - A pack kept only for its retention and used by no snapshot is not
//!   described again in the index prune writes: that new index would carry
//!   a fresh retention date and pin the pack for another whole period, at
//!   every prune, for ever. The retained index objects (or none, and it is
//!   an unindexed pack) describe it until a prune after the date deletes it.
//!
//! The dates come from the storage's listing (`ObjectInfo::retained_until_ns`,
//! filled by an S3 backend with `object-lock` set) and are compared with the
//! real clock (not a prune's `at_ns`): the storage judges by its clock.
//!
//! Prune also **extends** the retention of what is still in use, as kopia's
//! maintenance does ([`extend`]): data a kept snapshot references stays
//! protected however long ago it was written, not just `days` after. In use
//! are the packs the index keeps that a snapshot uses, the snapshots, keys
//! and config, and the index objects describing those packs. Not extended:
//! packs no snapshot uses (kept only for their date, they go after it), and
//! index objects superseded by a newer one or also describing such packs
//! (extending them would pin those packs for ever, as above).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::plan::{PackCount, StoredPack};
use crate::backend::{BackendError, ObjectInfo, ObjectKind};
use crate::blob::BlobType;
use crate::id::PackId;
use crate::index::IndexFile;
use crate::repository::Repository;

/// What prune kept because of Object Lock retention.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetainedReport {
    /// Packs kept (not deleted or repacked) because they, or an index
    /// object describing them, are under retention.
    pub packs: PackCount,
    /// Index objects under retention, kept.
    pub index_objects: usize,
    /// The latest retention date among them (RFC 3339, UTC): when prune can
    /// remove all of them.
    pub until: Option<String>,
    /// The latest retention date, Unix ns.
    #[serde(skip)]
    pub until_ns: Option<i64>,
}

impl RetainedReport {
    /// True when nothing was kept for retention.
    pub fn is_empty(&self) -> bool {
        self.packs.packs == 0 && self.index_objects == 0
    }

    fn saw(&mut self, until: i64) {
        if self.until_ns.is_none_or(|u| u < until) {
            self.until_ns = Some(until);
            self.until = Some(crate::time::format_ns(until));
        }
    }

    /// Counts a pack of `size` kept until `until`.
    pub(crate) fn pack(&mut self, size: u64, until: i64) {
        self.packs.add(size);
        self.saw(until);
    }

    /// Adds `other`'s counts.
    pub(crate) fn merge(&mut self, other: &RetainedReport) {
        self.packs.packs += other.packs.packs;
        self.packs.bytes += other.packs.bytes;
        self.index_objects += other.index_objects;
        if let Some(u) = other.until_ns {
            self.saw(u);
        }
    }
}

/// The retention dates that matter to this prune.
#[derive(Debug, Default)]
pub(crate) struct Retention {
    /// Index objects under retention, and their dates.
    indexes: HashMap<String, i64>,
    /// Packs pinned by those index objects, with the latest date pinning each.
    pinned: HashMap<PackId, i64>,
    /// Every dated index object's date, past ones too (for [`extend`]).
    dates: HashMap<String, i64>,
    now: i64,
}

impl Retention {
    /// Lists the index objects' retention (a no-op listing on storage that
    /// has none) and pins the packs they describe.
    pub(crate) fn load(repo: &Repository, files: &[(String, IndexFile)]) -> Result<Self, super::PruneError> {
        let now = crate::time::now_ns();
        let mut r = Retention {
            now,
            ..Default::default()
        };
        for o in repo.backend().list(ObjectKind::Index)? {
            let Some(u) = o.retained_until_ns else { continue };
            if u > now {
                r.indexes.insert(o.name.clone(), u);
            }
            r.dates.insert(o.name, u);
        }
        for (name, f) in files {
            let Some(&u) = r.indexes.get(name) else { continue };
            for p in &f.packs {
                let e = r.pinned.entry(p.id).or_insert(u);
                *e = (*e).max(u);
            }
        }
        Ok(r)
    }

    /// The date until which pack `id` (listed as `info`) cannot be deleted,
    /// if that is still ahead: its own retention or an index object's.
    pub(crate) fn pack_until(&self, id: &PackId, info: Option<&ObjectInfo>) -> Option<i64> {
        let own = info.and_then(|i| i.retained_until_ns).filter(|u| *u > self.now);
        let pin = self.pinned.get(id).copied();
        own.max(pin)
    }

    /// Whether the index object `name` is under retention.
    pub(crate) fn index_retained(&self, name: &str) -> bool {
        self.indexes.contains_key(name)
    }

    /// Whether this storage dates retention at all (an S3 repository with
    /// `object-lock`): every object written there carries a date.
    pub(crate) fn dated(info: &ObjectInfo) -> bool {
        info.retained_until_ns.is_some()
    }

    /// The report's index part: how many index objects are kept, until when.
    pub(crate) fn index_report(&self) -> RetainedReport {
        let mut r = RetainedReport {
            index_objects: self.indexes.len(),
            ..Default::default()
        };
        if let Some(&u) = self.indexes.values().max() {
            r.saw(u);
        }
        r
    }

    /// The packs among `ids` that cannot be deleted now, with their dates.
    pub(crate) fn held<'a>(
        &self,
        ids: impl Iterator<Item = &'a PackId>,
        stored: &HashMap<PackId, super::plan::StoredPack>,
    ) -> HashMap<PackId, i64> {
        let mut out = HashMap::new();
        for id in ids {
            if let Some(u) = self.pack_until(id, stored.get(id).map(|s| &s.info)) {
                out.insert(*id, u);
            }
        }
        out
    }

    /// The index objects to keep protected when prune writes no new index:
    /// of those describing only packs in use and listed in no deletion
    /// record, newest date first, each that describes a pack none before it
    /// does. An index object superseded by a newer one (left by an earlier
    /// prune while under retention) is not extended, so it can go after its
    /// date; nor is one also describing packs no snapshot uses.
    pub(crate) fn indexes_in_use<'a>(
        &self,
        files: &'a [(String, IndexFile)],
        doomed: &HashSet<String>,
        in_use: &HashSet<PackId>,
    ) -> Vec<(&'a str, i64)> {
        let mut candidates: Vec<(&str, i64, &IndexFile)> = files
            .iter()
            .filter(|(n, f)| {
                !doomed.contains(n) && !f.packs.is_empty() && f.packs.iter().all(|p| in_use.contains(&p.id))
            })
            .filter_map(|(n, f)| self.dates.get(n).map(|d| (n.as_str(), *d, f)))
            .collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut covered = HashSet::new();
        let mut out = Vec::new();
        for (n, d, f) in candidates {
            let mut adds = false;
            for p in &f.packs {
                adds |= covered.insert(p.id);
            }
            if adds {
                out.push((n, d));
            }
        }
        out
    }

    /// The names of index objects among `names` that can be removed now.
    pub(crate) fn removable<'a>(&self, names: impl Iterator<Item = &'a String>) -> HashSet<&'a String> {
        names.filter(|n| !self.index_retained(n)).collect()
    }
}

/// Objects still in use whose Object Lock retention prune extended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExtendedReport {
    /// How many objects (with `--dry-run`: would be extended).
    pub objects: usize,
    /// Of which data and tree packs.
    pub packs: usize,
    /// Of which index objects.
    pub index_objects: usize,
    /// Of which snapshots.
    pub snapshots: usize,
    /// Of which keys and the config.
    pub other: usize,
    /// The new retention date (RFC 3339, UTC; the latest set).
    pub until: Option<String>,
    /// The same, Unix ns.
    #[serde(skip)]
    pub until_ns: Option<i64>,
}

impl ExtendedReport {
    fn count(&mut self, kind: ObjectKind, until: i64) {
        self.objects += 1;
        match kind {
            ObjectKind::DataPack | ObjectKind::TreePack => self.packs += 1,
            ObjectKind::Index => self.index_objects += 1,
            ObjectKind::Snapshot => self.snapshots += 1,
            _ => self.other += 1,
        }
        if self.until_ns.is_none_or(|u| u < until) {
            self.until_ns = Some(until);
            self.until = Some(crate::time::format_ns(until));
        }
    }
}

/// Parallel `PutObjectRetention` calls: enough to hide round trips, and the
/// S3 backend bounds its connections itself.
const EXTENDERS: usize = 16;

/// Extends the retention of the objects still in use (see the module
/// comment): the packs `in_use` (dated by `stored`), the index objects
/// `indexes`, and every snapshot, key and the config. Each object is asked
/// once; the backend extends those whose date is less than half the period
/// ahead (`Backend::extend_retention`). Storage without dates lists none,
/// and nothing is asked. A failure fails the prune and names the object;
/// an extension that did not happen loses nothing (the next prune tries again).
pub(crate) fn extend(
    repo: &Repository,
    stored: &HashMap<PackId, StoredPack>,
    in_use: &HashSet<PackId>,
    indexes: &[(&str, i64)],
    dry_run: bool,
) -> Result<ExtendedReport, super::PruneError> {
    let mut jobs: Vec<(ObjectKind, String, i64)> = Vec::new();
    for id in in_use {
        let Some(s) = stored.get(id) else { continue };
        let Some(u) = s.info.retained_until_ns else { continue };
        let kind = match s.blob_type {
            BlobType::Data => ObjectKind::DataPack,
            BlobType::Tree => ObjectKind::TreePack,
        };
        jobs.push((kind, id.to_hex(), u));
    }
    // The config tells whether this storage dates objects at all (every
    // object written with `object-lock` set carries a date): without, no
    // other listing is needed.
    let config = repo.backend().list(ObjectKind::Config)?;
    if jobs.is_empty() && indexes.is_empty() && config.iter().all(|o| o.retained_until_ns.is_none()) {
        return Ok(ExtendedReport::default());
    }
    jobs.extend(indexes.iter().map(|(n, u)| (ObjectKind::Index, n.to_string(), *u)));
    let mut lists = vec![(ObjectKind::Config, config)];
    for kind in [ObjectKind::Snapshot, ObjectKind::Key] {
        lists.push((kind, repo.backend().list(kind)?));
    }
    for (kind, list) in lists {
        jobs.extend(
            list.into_iter()
                .filter_map(|o| o.retained_until_ns.map(|u| (kind, o.name, u))),
        );
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(ObjectKind, i64)>> = Mutex::new(Vec::new());
    let failed: Mutex<Vec<BackendError>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..EXTENDERS.min(jobs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((kind, name, until)) = jobs.get(i) else { break };
                match repo.backend().extend_retention(*kind, name, *until, dry_run) {
                    Ok(Some(new)) => done.lock().unwrap_or_else(|e| e.into_inner()).push((*kind, new)),
                    Ok(None) => {}
                    Err(e) => failed.lock().unwrap_or_else(|e| e.into_inner()).push(e),
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    let count = failed.len();
    if let Some(first) = failed.into_iter().next() {
        return Err(super::PruneError::NotExtended { count, first });
    }
    let mut report = ExtendedReport::default();
    for (kind, until) in done.into_inner().unwrap_or_else(|e| e.into_inner()) {
        report.count(kind, until);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexPack;

    fn pack(n: u8) -> IndexPack {
        IndexPack {
            id: PackId::from_bytes([n; 32]),
            blob_type: BlobType::Data,
            size: 1,
            blobs: Vec::new(),
        }
    }

    fn file(name: &str, packs: &[u8]) -> (String, IndexFile) {
        (
            name.to_string(),
            IndexFile {
                packs: packs.iter().map(|n| pack(*n)).collect(),
            },
        )
    }

    #[test]
    fn index_objects_in_use_skip_the_superseded_the_mixed_and_the_doomed() {
        let r = Retention {
            dates: [("old", 10), ("new", 20), ("mixed", 30), ("doomed", 40), ("other", 5)]
                .into_iter()
                .map(|(n, d)| (n.to_string(), d))
                .collect(),
            ..Default::default()
        };
        let files = vec![
            // Superseded: "new" describes the same packs and is newer.
            file("old", &[1, 2]),
            file("new", &[1, 2, 3]),
            // Also describes pack 9, which no snapshot uses.
            file("mixed", &[4, 9]),
            // Listed in a deletion record.
            file("doomed", &[5]),
            file("other", &[6]),
            // No date (storage without retention): nothing to extend.
            file("undated", &[7]),
        ];
        let in_use: HashSet<PackId> = [1, 2, 3, 4, 5, 6, 7].iter().map(|n| pack(*n).id).collect();
        let doomed: HashSet<String> = ["doomed".to_string()].into_iter().collect();
        let got = r.indexes_in_use(&files, &doomed, &in_use);
        assert_eq!(got, vec![("new", 20), ("other", 5)]);
    }
}
