//! Deletion records: the first phase of prune's two-phase delete
//! (format-spec "Many writers, locks and deletion", M2–M4), and what every
//! other command reads from them (B3–B5, R1–R2).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, ObjectKind};
use crate::blob::BlobType;
use crate::id::{ObjectId, PackId, SnapshotId};
use crate::index::Index;
use crate::repository::{RepoFile, Repository, RepositoryError};

/// Version byte of an encoded deletion record.
pub const DELETION_VERSION: u8 = 1;
/// Object kind bound into a deletion record's authenticated data.
pub const DELETION_KIND: &str = "deletion";

/// One pack a deletion record lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct RecordedPack {
    /// The pack.
    pub id: PackId,
    /// What it holds (decides its folder).
    pub blob_type: BlobType,
    /// Its stored size, for reports.
    pub size: u64,
}

/// The body of a deletion record: what a prune decided to remove, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct DeletionRecord {
    /// When the prune wrote it (Unix ns).
    pub created_ns: i64,
    /// The grace period it was written with (ns): nothing it lists is removed
    /// before `created_ns + grace_ns`.
    pub grace_ns: i64,
    /// The host the prune ran on (for messages).
    pub host: String,
    /// Every snapshot that existed when the prune decided. A snapshot not in
    /// this list is "newer" (M3), whatever its `time_ns` says.
    pub snapshots: Vec<SnapshotId>,
    /// Packs to remove.
    pub packs: Vec<RecordedPack>,
    /// Index objects to remove (superseded by the prune's new ones).
    pub indexes: Vec<ObjectId>,
    /// `None` while the record waits for its grace period. `Some(t)` once a
    /// prune decided at `t` what actually goes (the lists are then exactly
    /// what is being or has been removed); the record stays one more grace
    /// period so running backups see it (M4).
    pub executed_ns: Option<i64>,
}

impl RepoFile for DeletionRecord {
    const KIND: ObjectKind = ObjectKind::Deletion;
    const AAD: &'static str = DELETION_KIND;
    const VERSION: u8 = DELETION_VERSION;
    // Lists of snapshots, packs and index objects: as generous as before
    // per-type limits (format-spec "Decoder bounds").
    const LIMIT: crate::encoding::Limit = crate::encoding::Limit::Mib256;
}

impl DeletionRecord {
    /// The moment after which a prune may act on it: the end of its grace
    /// period, counted from its writing or, once executed, from then.
    pub fn due_ns(&self) -> i64 {
        self.executed_ns
            .unwrap_or(self.created_ns)
            .saturating_add(self.grace_ns)
    }
}

/// The deletion records of a repository, as read at one moment.
#[derive(Debug, Default, Clone)]
pub struct Deletions {
    /// Readable records by object name.
    pub records: Vec<(String, DeletionRecord)>,
    /// Records that could not be read (named, with why).
    pub damaged: Vec<String>,
}

impl Deletions {
    /// Every pack any record lists: those readers keep as a last resort and
    /// backups do not deduplicate against (B3, R1).
    pub fn doomed_packs(&self) -> HashSet<PackId> {
        self.records
            .iter()
            .flat_map(|(_, r)| r.packs.iter().map(|p| p.id))
            .collect()
    }

    /// The names of the records.
    pub fn names(&self) -> HashSet<String> {
        self.records.iter().map(|(n, _)| n.clone()).collect()
    }
}

impl Repository {
    /// Every deletion record. A damaged record is named in
    /// [`Deletions::damaged`] and otherwise ignored: it cannot say what it
    /// lists, and one bad object must not stop every backup.
    pub fn load_deletions(&self) -> Result<Deletions, RepositoryError> {
        let mut out = Deletions::default();
        for o in self.backend().list(ObjectKind::Deletion)? {
            match self.load_file::<DeletionRecord>(&o.name) {
                Ok(r) => out.records.push((o.name, r)),
                // Removed by a prune between the listing and the read.
                Err(RepositoryError::Backend(BackendError::NotFound { .. })) => {}
                Err(e @ RepositoryError::Corrupt { .. }) => {
                    tracing::warn!("ignoring {e}; run `cairn check`");
                    out.damaged.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The index for reading (restore, ls, check): every blob, at a copy
    /// outside packs recorded for deletion (R1) and outside packs missing
    /// from storage when there is one.
    pub fn load_index(&self) -> Result<Index, RepositoryError> {
        let doomed = self.load_deletions()?.doomed_packs();
        self.load_index_for_readers(&doomed)
    }

    /// [`Repository::load_index`] and the index objects it was built from
    /// (stats reads their plaintext lengths, which the index does not keep).
    pub(crate) fn load_index_with_files(&self) -> Result<(Index, Vec<crate::index::IndexFile>), RepositoryError> {
        let doomed = self.load_deletions()?.doomed_packs();
        let files = self.readable_index_files()?;
        let index = self.readers_index_from(&files, &doomed)?;
        Ok((index, files))
    }

    /// The index a backup deduplicates against, and the deletion records it
    /// was built from: blobs whose only copies are in recorded packs are
    /// left out, so the backup stores them again (B3); so are blobs whose
    /// every copy is in a pack the storage no longer has.
    pub(crate) fn load_index_for_backup(&self) -> Result<(Index, Deletions), RepositoryError> {
        let deletions = self.load_deletions()?;
        let index = self.load_index_of_present_packs(&deletions.doomed_packs())?;
        Ok((index, deletions))
    }
}
