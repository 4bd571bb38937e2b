//! Sealed, content-named metadata objects (snapshots, index objects) and
//! the config: one [`RepoFile`] description per stored type, so the object
//! kind, the authenticated-data label and the version byte always agree.

use std::collections::HashSet;

use rayon::prelude::*;

use super::{config, read_content_named, Config, Repository, RepositoryError, CONFIG_KIND};
use crate::backend::{BackendError, ObjectInfo, ObjectKind};
use crate::blob::{self, Aad, BlobError};
use crate::encoding::{self, EncodingError, Limit};
use crate::id::{self, ObjectId, PackId, SnapshotId};
use crate::index::{Avoid, Index, IndexBuilder, IndexFile, INDEX_KIND, INDEX_VERSION};
use crate::snapshot::{Snapshot, SNAPSHOT_KIND, SNAPSHOT_VERSION};

/// Index objects read at once while an index is built: enough to keep
/// every core (and, on S3, several requests) busy, few enough that their
/// decoded form stays small next to the index.
const INDEX_READ_BATCH: usize = 64;

/// A type stored as a sealed object: where it lives, the label bound into
/// its authenticated data, and its version byte (format-spec "Objects").
pub trait RepoFile: bincode::Encode + bincode::Decode<()> {
    /// The folder it is stored in.
    const KIND: ObjectKind;
    /// The label bound into the authenticated data.
    const AAD: &'static str;
    /// The version byte written before the encoded value.
    const VERSION: u8;
    /// The most bytes its decoder may claim (format-spec "Decoder bounds").
    const LIMIT: Limit;

    /// Decodes a plaintext payload (version byte + bincode). The default
    /// reads versions 1 to [`RepoFile::VERSION`] with the current layout; a
    /// type whose older versions have another layout overrides it.
    fn decode(plain: &[u8]) -> Result<Self, EncodingError> {
        Ok(encoding::decode(Self::AAD, Self::VERSION, Self::LIMIT, plain)?.1)
    }
}

impl RepoFile for Snapshot {
    const KIND: ObjectKind = ObjectKind::Snapshot;
    const AAD: &'static str = SNAPSHOT_KIND;
    const VERSION: u8 = SNAPSHOT_VERSION;
    const LIMIT: Limit = crate::snapshot::SNAPSHOT_LIMIT;

    /// Secrets in a command's argv are masked on reading too, so snapshots
    /// written before masking existed never show them.
    fn decode(plain: &[u8]) -> Result<Self, EncodingError> {
        crate::snapshot::decode(plain).map(Snapshot::secrets_masked)
    }
}

impl RepoFile for IndexFile {
    const KIND: ObjectKind = ObjectKind::Index;
    const AAD: &'static str = INDEX_KIND;
    const VERSION: u8 = INDEX_VERSION;
    const LIMIT: Limit = crate::index::INDEX_LIMIT;
}

impl RepoFile for Config {
    const KIND: ObjectKind = ObjectKind::Config;
    const AAD: &'static str = CONFIG_KIND;
    const VERSION: u8 = config::CONFIG_VERSION;
    const LIMIT: Limit = config::CONFIG_LIMIT;

    fn decode(plain: &[u8]) -> Result<Self, EncodingError> {
        config::decode(plain)
    }
}

/// One index object by name: decoded, or why it could not be.
#[derive(Debug)]
pub struct IndexObject {
    /// Its name.
    pub name: String,
    /// Its content, or the damage found.
    pub file: Result<IndexFile, RepositoryError>,
}

/// Readable snapshots (oldest first) and the errors of damaged ones.
#[derive(Debug, Default)]
pub struct SnapshotList {
    /// Snapshots that could be read, oldest first.
    pub snapshots: Vec<(SnapshotId, Snapshot)>,
    /// What is wrong with the others.
    pub damaged: Vec<RepositoryError>,
}

impl Repository {
    /// Seals a value: version byte + bincode, compressed, encrypted.
    pub(crate) fn seal_file<T: RepoFile>(&self, value: &T) -> Result<Vec<u8>, RepositoryError> {
        let plain = encoding::encode(T::AAD, T::VERSION, value)?;
        blob::seal(&self.keys, Aad::Object(T::AAD), &plain, self.compression()).map_err(|e| match e {
            BlobError::Crypto(c) => RepositoryError::Crypto(c),
            other => RepositoryError::InvalidOption(other.to_string()),
        })
    }

    /// Reads, verifies and decodes a content-named object.
    pub(crate) fn load_file<T: RepoFile>(&self, name: &str) -> Result<T, RepositoryError> {
        let bytes = read_content_named(self.backend.as_ref(), T::KIND, name)?;
        let corrupt = |detail: String| RepositoryError::corrupt(T::KIND, name, detail);
        let plain = blob::open(&self.keys, Aad::Object(T::AAD), &bytes).map_err(|e| corrupt(e.to_string()))?;
        <T as RepoFile>::decode(&plain).map_err(|e| corrupt(e.to_string()))
    }

    /// Seals and stores a value under its content hash; returns the name
    /// and the stored size.
    pub(crate) fn save_file<T: RepoFile>(&self, value: &T) -> Result<(ObjectId, u64), RepositoryError> {
        let sealed = self.seal_file(value)?;
        let id = ObjectId::of_bytes(&sealed);
        match self.backend.write(T::KIND, &id.to_hex(), &sealed) {
            // Same name means same bytes: already durably stored.
            Ok(()) | Err(BackendError::AlreadyExists { .. }) => Ok((id, sealed.len() as u64)),
            Err(e) => Err(e.into()),
        }
    }

    /// The full name of the one object of `kind` whose name starts with
    /// `prefix` (case-insensitive).
    pub fn find_object(&self, kind: ObjectKind, prefix: &str) -> Result<String, RepositoryError> {
        let names = self.backend.list(kind)?.into_iter().map(|o| o.name);
        Ok(id::find_by_prefix(
            names,
            |n| n.to_ascii_lowercase(),
            prefix,
            &kind.to_string(),
        )?)
    }

    /// Stores a snapshot. Callers must have stored everything it references.
    /// Secrets in a command's argv are masked first (README "Secrets").
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId, RepositoryError> {
        let (id, _) = self.save_file(&snap.clone().secrets_masked())?;
        Ok(SnapshotId::from(id))
    }

    /// Removes one snapshot object (what it alone referenced stays until a
    /// prune). Removing one that is already gone succeeds.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<(), RepositoryError> {
        match self.backend.remove(ObjectKind::Snapshot, &id.to_hex()) {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Loads one snapshot.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot, RepositoryError> {
        self.load_file(&id.to_hex())
    }

    /// Every readable snapshot, oldest first, and the errors of those that
    /// are not: one damaged snapshot must not stop new backups.
    pub fn list_snapshots_lenient(&self) -> Result<SnapshotList, RepositoryError> {
        let names = self.backend.list(ObjectKind::Snapshot)?;
        self.load_listed_snapshots(&names)
    }

    /// [`list_snapshots_lenient`](Self::list_snapshots_lenient) of a
    /// snapshot listing the caller has taken already.
    pub(crate) fn load_listed_snapshots(&self, names: &[ObjectInfo]) -> Result<SnapshotList, RepositoryError> {
        let results: Vec<Result<(SnapshotId, Snapshot), RepositoryError>> = names
            .par_iter()
            .map(|o| {
                let id = SnapshotId::from_hex(&o.name).map_err(|e| RepositoryError::Corrupt {
                    kind: ObjectKind::Snapshot,
                    name: o.name.clone(),
                    detail: e.to_string(),
                })?;
                Ok((id, self.load_snapshot(&id)?))
            })
            .collect();
        let mut list = SnapshotList::default();
        for r in results {
            match r {
                Ok(v) => list.snapshots.push(v),
                Err(e @ RepositoryError::Corrupt { .. }) => list.damaged.push(e),
                // Forgotten between the listing and the read.
                Err(RepositoryError::Backend(BackendError::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        list.snapshots
            .sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok(list)
    }

    /// Every snapshot, oldest first; fails on the first damaged one.
    pub fn list_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>, RepositoryError> {
        let mut list = self.list_snapshots_lenient()?;
        match list.damaged.pop() {
            // Commands that list snapshots for the user must not hide damage.
            Some(e) => Err(e),
            None => Ok(list.snapshots),
        }
    }

    /// Every index object by name, read in parallel, each decoded or with
    /// its own error (so one damaged object can be skipped or named).
    pub fn load_index_files(&self) -> Result<Vec<IndexObject>, RepositoryError> {
        let names = self.backend.list(ObjectKind::Index)?;
        Ok(names
            .par_iter()
            .map(|o| IndexObject {
                name: o.name.clone(),
                file: self.load_file(&o.name),
            })
            .collect())
    }

    /// One index object.
    pub fn load_index_object(&self, name: &str) -> Result<IndexFile, RepositoryError> {
        self.load_file(name)
    }

    /// Stores an index object.
    pub fn save_index(&self, file: &IndexFile) -> Result<(ObjectId, u64), RepositoryError> {
        self.save_file(file)
    }

    /// Reads every index object (in parallel) and builds the in-memory
    /// index, avoiding the packs in `avoid` as [`Index::from_files_avoiding`]
    /// says.
    ///
    /// A damaged index object is skipped with a warning: its blobs then count
    /// as unknown, so a backup stores them again and a restore that needs
    /// them fails naming the blob; `check` reports the object itself.
    pub(crate) fn load_index_avoiding(&self, avoid: &HashSet<PackId>, how: Avoid) -> Result<Index, RepositoryError> {
        Ok(self.index_builder()?.build(avoid, how))
    }

    /// The index readers use: for each blob a copy outside the packs in
    /// `avoid` (recorded for deletion, R1) and outside packs missing from
    /// storage, wherever there is one. The packs are listed only when some
    /// blob has more than one copy: otherwise there is nothing to choose.
    pub(crate) fn load_index_for_readers(&self, avoid: &HashSet<PackId>) -> Result<Index, RepositoryError> {
        let builder = self.index_builder()?;
        let copies = builder.copies();
        let index = builder.build(avoid, Avoid::PreferOthers);
        match self.missing_packs_among_copies(&index, copies, avoid)? {
            // Rare (a blob stored twice, and a pack lost): the objects are
            // read again rather than every copy being kept for this case.
            Some(more) => Ok(self.index_builder()?.build(&more, Avoid::PreferOthers)),
            None => Ok(index),
        }
    }

    /// [`Repository::load_index_for_readers`] from index objects already
    /// read (for a caller that needs their per-blob detail as well).
    pub(crate) fn readers_index_from(
        &self,
        files: &[IndexFile],
        avoid: &HashSet<PackId>,
    ) -> Result<Index, RepositoryError> {
        let index = Index::from_files_avoiding(files, avoid, Avoid::PreferOthers)?;
        let copies: usize = files.iter().flat_map(|f| &f.packs).map(|p| p.blobs.len()).sum();
        match self.missing_packs_among_copies(&index, copies, avoid)? {
            Some(more) => Ok(Index::from_files_avoiding(files, &more, Avoid::PreferOthers)?),
            None => Ok(index),
        }
    }

    /// When some blob has more than one copy (`copies` is more than the
    /// index holds) and a pack the index names is missing from storage:
    /// `avoid` with those packs added, to build the index again.
    fn missing_packs_among_copies(
        &self,
        index: &Index,
        copies: usize,
        avoid: &HashSet<PackId>,
    ) -> Result<Option<HashSet<PackId>>, RepositoryError> {
        if copies == index.len() {
            return Ok(None);
        }
        let present = self.list_pack_ids()?;
        let mut more = avoid.clone();
        let before = more.len();
        more.extend(index.packs().iter().map(|p| p.id).filter(|id| !present.contains(id)));
        Ok((more.len() > before).then_some(more))
    }

    /// The index a writer deduplicates against: blobs whose every copy is in
    /// a pack of `avoid` (recorded for deletion, B3) or in a pack the storage
    /// does not list (lost) are left out, so they are stored again from the
    /// source instead of being referenced while missing.
    ///
    /// The packs are listed after the index objects are read: a pack an
    /// index object names was stored before that object, so only a lost
    /// pack (or one a prune recorded) is absent from the listing.
    pub(crate) fn load_index_of_present_packs(&self, avoid: &HashSet<PackId>) -> Result<Index, RepositoryError> {
        let builder = self.index_builder()?;
        let present = self.list_pack_ids()?;
        let mut avoid = avoid.clone();
        let mut lost = 0usize;
        for p in builder.packs() {
            if !present.contains(&p.id) && avoid.insert(p.id) {
                lost += 1;
            }
        }
        if lost > 0 {
            tracing::warn!(
                "{lost} pack(s) the index names are missing from storage; their blobs are stored again where the source still has them (run `cairn check`)"
            );
        }
        Ok(builder.build(&avoid, Avoid::Exclude))
    }

    /// The names of every data and tree pack the storage lists.
    pub(crate) fn list_pack_ids(&self) -> Result<HashSet<PackId>, RepositoryError> {
        let mut present = HashSet::new();
        for kind in [ObjectKind::DataPack, ObjectKind::TreePack] {
            for o in self.backend.list(kind)? {
                if let Ok(id) = PackId::from_hex(&o.name) {
                    present.insert(id);
                }
            }
        }
        Ok(present)
    }

    /// Every index object that can be read, damaged ones skipped with a
    /// warning.
    pub(crate) fn readable_index_files(&self) -> Result<Vec<IndexFile>, RepositoryError> {
        let mut files = Vec::new();
        self.each_readable_index_file(|f| {
            files.push(f);
            Ok(())
        })?;
        Ok(files)
    }

    /// Every readable index object added to an [`IndexBuilder`] as soon as
    /// it is decoded, so the decoded objects are never all in memory at once.
    fn index_builder(&self) -> Result<IndexBuilder, RepositoryError> {
        let mut b = IndexBuilder::default();
        self.each_readable_index_file(|f| Ok(b.add_file(&f)?))?;
        Ok(b)
    }

    /// Reads the index objects a few at a time in parallel and hands each
    /// readable one to `f` in listing order (so pack numbers, and which of a
    /// blob's copies wins, do not depend on thread timing); damaged ones are
    /// skipped with a warning.
    fn each_readable_index_file(
        &self,
        mut f: impl FnMut(IndexFile) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        self.each_index_file(|read| match read {
            Ok(file) => f(file),
            Err(e @ RepositoryError::Corrupt { .. }) => {
                tracing::warn!("ignoring {e}; run `cairn check`");
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    /// Reads the index objects [`INDEX_READ_BATCH`] at a time in parallel
    /// and hands each, decoded or with why it could not be read, to `f` in
    /// listing order (`check` names every unreadable one and goes on).
    pub(crate) fn each_index_file(
        &self,
        mut f: impl FnMut(Result<IndexFile, RepositoryError>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        let names = self.backend.list(ObjectKind::Index)?;
        for batch in names.chunks(INDEX_READ_BATCH) {
            let read: Vec<_> = batch.par_iter().map(|o| self.load_file::<IndexFile>(&o.name)).collect();
            for r in read {
                match r {
                    // Superseded and removed by a prune between the listing and
                    // the read: its replacement was stored before it went.
                    Err(RepositoryError::Backend(BackendError::NotFound { .. })) => {}
                    other => f(other)?,
                }
            }
        }
        Ok(())
    }
}
