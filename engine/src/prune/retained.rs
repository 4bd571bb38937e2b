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

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::plan::PackCount;
use crate::backend::{ObjectInfo, ObjectKind};
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
            if let Some(u) = o.retained_until_ns.filter(|u| *u > now) {
                r.indexes.insert(o.name, u);
            }
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

    /// The names of index objects among `names` that can be removed now.
    pub(crate) fn removable<'a>(&self, names: impl Iterator<Item = &'a String>) -> HashSet<&'a String> {
        names.filter(|n| !self.index_retained(n)).collect()
    }
}
