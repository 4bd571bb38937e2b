//! The plan: what happens to each pack, decided before anything is touched
//! (rustic's `PrunePlan` idea): delete the wholly unused, repack the partly
//! used where that is worth it, keep the rest.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::mark::{key_of, BlobSet};
use super::record::RecordedPack;
use super::retained::{RetainedReport, Retention};
use super::{MaxUnused, PruneError, PruneOptions};
use crate::backend::ObjectInfo;
use crate::blob::BlobType;
use crate::id::PackId;
use crate::index::{IndexBlob, IndexFile, IndexPack};
use crate::retrieve::{age_days, early_deletion_usd, minimum_storage, needs_retrieval, DAY_NS};

/// Packs and their stored bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PackCount {
    /// Number of packs.
    pub packs: usize,
    /// Their stored bytes.
    pub bytes: u64,
}

impl PackCount {
    /// Counts one more pack of `bytes`.
    pub(crate) fn add(&mut self, bytes: u64) {
        self.packs += 1;
        self.bytes += bytes;
    }
}

/// What becomes of one pack in an archive (or minimum-duration) storage class.
#[derive(Debug, Clone, Serialize)]
pub struct ColdPack {
    /// The pack.
    pub pack: PackId,
    /// Its storage class.
    pub class: String,
    /// Its stored size.
    pub size: u64,
    /// Days since it was stored, when the storage says.
    pub age_days: Option<f64>,
    /// The class's minimum storage duration in days.
    pub minimum_days: u32,
    /// `delete` (wholly unused), `wait` (wholly unused, younger than
    /// `--cold-min-age`), `keep` (partly used, not repacked), `repack`.
    pub action: &'static str,
    /// The early-deletion charge (US dollars) deleting it now incurs, or,
    /// for `wait`, the charge avoided by waiting (an estimate at AWS prices).
    pub early_deletion_usd: f64,
}

/// What a prune does (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    /// Snapshots whose blobs were marked.
    pub snapshots: usize,
    /// Distinct trees walked.
    pub trees: usize,
    /// Distinct blobs the snapshots use.
    pub used_blobs: usize,
    /// Stored bytes of those blobs (one copy each).
    pub used_bytes: u64,
    /// Stored bytes in indexed packs that no snapshot uses (duplicates,
    /// headers and the blobs of removed snapshots).
    pub unused_bytes: u64,
    /// Packs kept as they are.
    pub keep: PackCount,
    /// Packs no snapshot uses, to delete.
    pub delete: PackCount,
    /// Partly used packs to repack (bytes: their whole size).
    pub repack: PackCount,
    /// Stored bytes the repack copies into new packs.
    pub repack_used_bytes: u64,
    /// Packs no index object names (left by killed backups), to delete.
    pub unindexed: PackCount,
    /// Packs younger than the grace period, left as they are whatever they
    /// hold: they may belong to a backup still running, whose snapshot
    /// (or index object) is not written yet. Included in `keep`, except
    /// those no index names yet.
    pub young: PackCount,
    /// Blobs in use whose only copies are in packs an earlier prune recorded
    /// for deletion: copied into new packs so that deletion can go ahead.
    pub rescued_blobs: usize,
    /// Unused bytes left after this prune.
    pub unused_after: u64,
    /// Packs in classes with a minimum storage duration, and their fate.
    pub cold: Vec<ColdPack>,
    /// Index objects replaced by new ones.
    pub index_objects: usize,
    /// Packs and index objects kept because the storage refuses to delete
    /// them yet (S3 Object Lock retention); included in `keep`.
    pub retained: RetainedReport,
    /// Objects still in use whose Object Lock retention this prune
    /// extended (with `--dry-run`: would extend).
    pub retention_extended: super::retained::ExtendedReport,
}

/// One pack to copy blobs out of.
#[derive(Debug, Clone)]
pub(crate) struct CopyFrom {
    /// The pack.
    pub pack: RecordedPack,
    /// Whether it needs a retrieval first.
    pub archived: bool,
    /// The blobs to copy.
    pub blobs: Vec<IndexBlob>,
}

/// A pack as the storage lists it.
#[derive(Debug, Clone)]
pub(crate) struct StoredPack {
    /// Data or tree (which listing it came from).
    pub blob_type: BlobType,
    /// Size, date and class.
    pub info: ObjectInfo,
}

/// The work behind a plan.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// Packs to delete once the copies are stored.
    pub delete: Vec<RecordedPack>,
    /// Partly used packs to repack (then delete).
    pub repack: Vec<CopyFrom>,
    /// Blobs to copy out of packs already recorded for deletion (those
    /// packs are not deleted again here).
    pub rescue: Vec<CopyFrom>,
    /// Packs for the new index, as the old index described them.
    pub keep: Vec<IndexPack>,
    /// Packs in `keep` that no snapshot uses (archived ones waiting out
    /// their minimum storage duration, packs already recorded for deletion):
    /// their Object Lock retention is not extended.
    pub idle: HashSet<PackId>,
}

impl Work {
    /// True when the prune changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.repack.is_empty() && self.rescue.is_empty()
    }
}

struct Partial<'a> {
    desc: &'a IndexPack,
    used: Vec<IndexBlob>,
    used_bytes: u64,
    unused_bytes: u64,
    archived: bool,
}

/// Decides every pack. `used` is consumed: each used blob is claimed by the
/// first pack that holds it (its other copies count as unused), and what
/// remains afterwards is in no pack prune may keep.
pub(crate) fn plan(
    files: &[(String, IndexFile)],
    stored: &HashMap<PackId, StoredPack>,
    doomed: &HashSet<PackId>,
    used: &mut BlobSet,
    opts: &PruneOptions,
    now_ns: i64,
    ret: &Retention,
) -> Result<(PrunePlan, Work), PruneError> {
    let mut p = PrunePlan {
        used_blobs: used.len(),
        ..Default::default()
    };
    let mut w = Work::default();
    let mut described: HashSet<PackId> = HashSet::new();
    let mut partial: Vec<Partial> = Vec::new();
    let mut missing_packs = Vec::new();
    let mut doomed_descs = Vec::new();
    for desc in files.iter().flat_map(|(_, f)| &f.packs) {
        if !described.insert(desc.id) {
            continue;
        }
        if doomed.contains(&desc.id) {
            // Still described by the new index while it exists: the old
            // index objects go with this prune's record, and the pack's own
            // record drops the description when it removes the pack.
            // Not on storage with retention dates: a new index naming
            // it would pin it for another retention period (`retained`).
            if stored.get(&desc.id).is_some_and(|s| !Retention::dated(&s.info)) {
                w.keep.push(desc.clone());
                w.idle.insert(desc.id);
            }
            doomed_descs.push(desc);
            continue;
        }
        let Some(info) = stored.get(&desc.id) else {
            missing_packs.push(desc.id.to_hex());
            continue;
        };
        let mut used_here = Vec::new();
        let mut used_bytes = 0u64;
        for b in &desc.blobs {
            if used.remove(&key_of(&b.id)) {
                used_bytes += u64::from(b.length);
                used_here.push(*b);
            }
        }
        p.used_bytes += used_bytes;
        let unused_bytes = desc.size.saturating_sub(used_bytes);
        let class = info.info.storage_class.as_deref();
        let rec = RecordedPack {
            id: desc.id,
            blob_type: desc.blob_type,
            size: desc.size,
        };
        if is_young(&info.info, opts, now_ns) {
            p.young.add(desc.size);
            p.keep.add(desc.size);
            p.unused_bytes += unused_bytes;
            p.unused_after += unused_bytes;
            w.keep.push(desc.clone());
        } else if let Some(until) = ret.pack_until(&desc.id, Some(&info.info)) {
            // Neither deleted nor repacked before its date; described again
            // only while in use (see `retained`).
            p.retained.pack(desc.size, until);
            p.keep.add(desc.size);
            p.unused_bytes += unused_bytes;
            p.unused_after += unused_bytes;
            if !used_here.is_empty() {
                w.keep.push(desc.clone());
            }
        } else if used_here.is_empty() {
            if let Some(c) = class.and_then(|c| cold_pack(desc.id, c, &info.info, now_ns, opts, "delete")) {
                let waits = c.action == "wait";
                p.cold.push(c);
                if waits {
                    p.keep.add(desc.size);
                    p.unused_bytes += unused_bytes;
                    p.unused_after += unused_bytes;
                    w.keep.push(desc.clone());
                    w.idle.insert(desc.id);
                    continue;
                }
            }
            p.unused_bytes += unused_bytes;
            p.delete.add(desc.size);
            w.delete.push(rec);
        } else if unused_bytes == 0 || used_here.len() == desc.blobs.len() {
            p.keep.add(desc.size);
            p.unused_bytes += unused_bytes;
            p.unused_after += unused_bytes;
            w.keep.push(desc.clone());
        } else {
            p.unused_bytes += unused_bytes;
            partial.push(Partial {
                desc,
                used: used_here,
                used_bytes,
                unused_bytes,
                archived: class.is_some_and(needs_retrieval),
            });
        }
    }
    if !missing_packs.is_empty() {
        return Err(PruneError::MissingPacks {
            count: missing_packs.len(),
            first: missing_packs.swap_remove(0),
        });
    }
    for (id, sp) in stored {
        if described.contains(id) || doomed.contains(id) {
            continue;
        }
        if is_young(&sp.info, opts, now_ns) {
            // Most likely a running backup's, whose index object is to come.
            p.young.add(sp.info.size);
        } else if let Some(until) = ret.pack_until(id, Some(&sp.info)) {
            p.retained.pack(sp.info.size, until);
        } else {
            p.unindexed.add(sp.info.size);
            w.delete.push(RecordedPack {
                id: *id,
                blob_type: sp.blob_type,
                size: sp.info.size,
            });
        }
    }
    rescue(&doomed_descs, stored, used, &mut p, &mut w);
    if let Some(k) = used.iter().next() {
        return Err(PruneError::MissingBlobs {
            count: used.len(),
            first: hex::encode(k),
        });
    }
    choose_repacks(partial, opts, now_ns, stored, &mut p, &mut w);
    p.cold.sort_by_key(|a| a.pack);
    w.delete.sort_by_key(|a| a.id);
    Ok((p, w))
}

/// Whether a pack was stored less than a grace period ago. Without
/// `--instant-delete`, such packs are not touched: a running backup's new
/// packs hold blobs no snapshot uses yet, and deleting or repacking them
/// would make that backup store everything again (B4). Storage that does not
/// date its objects (the in-memory backend) counts every pack as old.
fn is_young(info: &ObjectInfo, opts: &PruneOptions, now_ns: i64) -> bool {
    let grace = i64::try_from(opts.grace.as_nanos()).unwrap_or(i64::MAX);
    !opts.instant_delete && info.modified_ns.is_some_and(|t| now_ns.saturating_sub(t) < grace)
}

/// Copies used blobs out of packs already recorded for deletion, so the
/// earlier record can be carried out.
fn rescue(
    doomed: &[&IndexPack],
    stored: &HashMap<PackId, StoredPack>,
    used: &mut BlobSet,
    p: &mut PrunePlan,
    w: &mut Work,
) {
    if used.is_empty() {
        return;
    }
    for desc in doomed {
        let Some(info) = stored.get(&desc.id) else { continue };
        let blobs: Vec<IndexBlob> = desc
            .blobs
            .iter()
            .filter(|b| used.remove(&key_of(&b.id)))
            .copied()
            .collect();
        if blobs.is_empty() {
            continue;
        }
        p.rescued_blobs += blobs.len();
        p.used_bytes += blobs.iter().map(|b| u64::from(b.length)).sum::<u64>();
        w.rescue.push(CopyFrom {
            pack: RecordedPack {
                id: desc.id,
                blob_type: desc.blob_type,
                size: desc.size,
            },
            archived: info.info.storage_class.as_deref().is_some_and(needs_retrieval),
            blobs,
        });
    }
}

/// Picks partly used packs to repack: every tree pack (small, hot, read by
/// every listing), and data packs with the largest unused share first until
/// the unused bytes left are within `--max-unused` or `--max-repack` is
/// reached. Archived packs only with `--repack-cold`.
fn choose_repacks(
    mut partial: Vec<Partial>,
    opts: &PruneOptions,
    now_ns: i64,
    stored: &HashMap<PackId, StoredPack>,
    p: &mut PrunePlan,
    w: &mut Work,
) {
    let mut unused_left: u64 = p.unused_after + partial.iter().map(|x| x.unused_bytes).sum::<u64>();
    let allowed = match opts.max_unused {
        MaxUnused::Unlimited => u64::MAX,
        MaxUnused::Bytes(b) => b,
        // A share of the repository after the prune: unused / (used + unused) <= pct.
        MaxUnused::Percent(pct) if pct >= 100.0 => u64::MAX,
        MaxUnused::Percent(pct) => (p.used_bytes as f64 * pct / (100.0 - pct)) as u64,
    };
    partial.sort_by(|a, b| {
        let share = |x: &Partial| x.unused_bytes as f64 / x.desc.size.max(1) as f64;
        (b.desc.blob_type == BlobType::Tree)
            .cmp(&(a.desc.blob_type == BlobType::Tree))
            .then(share(b).total_cmp(&share(a)))
            .then(a.desc.id.cmp(&b.desc.id))
    });
    let mut repack_bytes = 0u64;
    for x in partial {
        let info = stored.get(&x.desc.id).map(|s| &s.info);
        let class = info.and_then(|i| i.storage_class.as_deref());
        let fits = opts.max_repack.is_none_or(|m| repack_bytes + x.desc.size <= m);
        let wanted = x.desc.blob_type == BlobType::Tree || unused_left > allowed;
        let allowed_cold = !x.archived || opts.repack_cold;
        if fits && wanted && allowed_cold {
            repack_bytes += x.desc.size;
            unused_left -= x.unused_bytes.min(unused_left);
            p.repack.add(x.desc.size);
            p.repack_used_bytes += x.used_bytes;
            if let Some(c) = class
                .zip(info)
                .and_then(|(c, i)| cold_pack(x.desc.id, c, i, now_ns, opts, "repack"))
            {
                p.cold.push(c);
            }
            w.repack.push(CopyFrom {
                pack: RecordedPack {
                    id: x.desc.id,
                    blob_type: x.desc.blob_type,
                    size: x.desc.size,
                },
                archived: x.archived,
                blobs: x.used,
            });
        } else {
            if let Some(c) = class
                .zip(info)
                .and_then(|(c, i)| cold_pack(x.desc.id, c, i, now_ns, opts, "keep"))
            {
                p.cold.push(c);
            }
            p.keep.add(x.desc.size);
            w.keep.push(x.desc.clone());
        }
    }
    p.unused_after = unused_left;
}

/// The report of a pack in `class`, if that class has a minimum storage
/// duration: its age, and the early-deletion charge of removing it now.
/// A wholly unused pack (`action` "delete") younger than `--cold-min-age`
/// waits instead.
fn cold_pack(
    pack: PackId,
    class: &str,
    info: &ObjectInfo,
    now_ns: i64,
    opts: &PruneOptions,
    action: &'static str,
) -> Option<ColdPack> {
    let (minimum_days, usd_gb_month) = minimum_storage(class)?;
    let age_days = age_days(now_ns, info.modified_ns);
    let early_deletion_usd = early_deletion_usd(info.size, minimum_days, usd_gb_month, age_days);
    let waits = action == "delete"
        && opts
            .cold_min_age
            .is_some_and(|min| age_days.is_none_or(|a| a * DAY_NS < min.as_nanos() as f64));
    Some(ColdPack {
        pack,
        class: class.to_string(),
        size: info.size,
        age_days,
        minimum_days,
        action: if waits { "wait" } else { action },
        early_deletion_usd: if action == "keep" { 0.0 } else { early_deletion_usd },
    })
}
