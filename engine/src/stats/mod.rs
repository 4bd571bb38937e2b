//! Stats: what a repository holds, what each source's snapshots alone
//! hold (what forgetting them would free), and what storing it costs.
//!
//! The figures of one mode, restic's meanings: `restore-size`, what a
//! restore of the snapshots would write (each snapshot counted whole, a hard
//! link once per snapshot); `raw-data`, the distinct blobs they reference,
//! uncompressed; `files-by-contents`, their distinct file contents. Besides,
//! repository totals from the index and the storage listing and, for the
//! whole repository, a breakdown by source (host, paths, tags) and by tag.
//!
//! Memory: the index, plus per blob one `u32` (the last source that
//! reached it) and one bit (reached by more than one); with tags two more
//! `u32` (the intersection and the union of the tag sets that reached it).
//! Restore sizes are memoized per tree, so shared trees are summed once.
//! Nothing is written and no lock is taken: like `snapshots`, stats only
//! reads, and a figure is as of the listing it started from.

mod cost;
mod owners;
mod size;
#[cfg(test)]
mod tests;

use std::str::FromStr;

use serde::Serialize;

pub use cost::{ClassBytes, ClassCost, CostReport, Prices, SourceCost};

use crate::backend::ObjectKind;
use crate::id::SnapshotId;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;

/// Errors of stats.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Reading the index, the snapshots, a tree or the listing failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<crate::index::IndexError> for StatsError {
    fn from(e: crate::index::IndexError) -> Self {
        StatsError::Repository(e.into())
    }
}

impl From<crate::backend::BackendError> for StatsError {
    fn from(e: crate::backend::BackendError) -> Self {
        StatsError::Repository(e.into())
    }
}

/// What the mode figure counts (restic's `stats --mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatsMode {
    /// The bytes a restore would write.
    #[default]
    RestoreSize,
    /// The distinct blobs referenced, uncompressed.
    RawData,
    /// The distinct file contents.
    FilesByContents,
}

impl FromStr for StatsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "restore-size" => Ok(StatsMode::RestoreSize),
            "raw-data" => Ok(StatsMode::RawData),
            "files-by-contents" => Ok(StatsMode::FilesByContents),
            other => Err(format!(
                "unknown mode `{other}`: use restore-size, raw-data or files-by-contents"
            )),
        }
    }
}

/// What to compute.
#[derive(Debug, Clone, Default)]
pub struct StatsOptions {
    /// The mode figure.
    pub mode: StatsMode,
    /// The snapshots given are every snapshot of the repository: add the
    /// per-source and per-tag breakdown and the deduplication ratio.
    pub whole_repository: bool,
    /// Price the storage with this table (`--cost`).
    pub prices: Option<Prices>,
    /// The class of objects the listing gives none: `STANDARD` on S3,
    /// `local` for a folder.
    pub unclassed: String,
}

/// Repository totals, from the index and the storage listing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepositoryTotals {
    /// Data and tree packs listed.
    pub packs: u64,
    /// Distinct blobs in the index.
    pub blobs: u64,
    /// Bytes of the packs listed.
    pub stored_bytes: u64,
    /// Bytes of every object listed (packs, index, snapshots, keys, ...).
    pub repository_bytes: u64,
    /// Plaintext bytes of the indexed blobs (every stored copy).
    pub uncompressed_bytes: u64,
    /// Sealed bytes of the same blobs.
    pub sealed_bytes: u64,
    /// `uncompressed_bytes / sealed_bytes`: above 1 when compression paid.
    pub compression_ratio: f64,
    /// The restore size of every snapshot over `stored_bytes`; only for
    /// the whole repository.
    pub dedup_ratio: Option<f64>,
    /// Sealed bytes of the blobs some snapshot references (whole repository).
    pub referenced_bytes: Option<u64>,
    /// Sealed bytes of the indexed blobs no snapshot references: what a
    /// prune would remove (whole repository).
    pub unreferenced_bytes: Option<u64>,
}

/// One source: the snapshots sharing host, paths and tags.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStats {
    /// Host.
    pub host: String,
    /// Paths, sorted.
    pub paths: Vec<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Its snapshots.
    pub snapshots: usize,
    /// The newest one's time, RFC 3339.
    pub latest: String,
    /// What restoring each of its snapshots would write, summed.
    pub restore_size: u64,
    /// Sealed bytes of the blobs its snapshots reference.
    pub referenced_bytes: u64,
    /// Of those, the ones no other source references: what a forget of all
    /// its snapshots and a prune would free.
    pub unique_bytes: u64,
    /// Of those, the ones other sources reference too.
    pub shared_bytes: u64,
    /// With `--cost`: the same by storage class, priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<SourceCost>,
}

/// One tag: the snapshots carrying it, across sources.
#[derive(Debug, Clone, Serialize)]
pub struct TagStats {
    /// The tag.
    pub tag: String,
    /// Snapshots carrying it.
    pub snapshots: usize,
    /// Sealed bytes of the blobs those snapshots reference.
    pub referenced_bytes: u64,
    /// Of those, the ones only snapshots with this tag reference.
    pub unique_bytes: u64,
    /// Of those, the ones snapshots without it reference too.
    pub shared_bytes: u64,
    /// With `--cost`: the same by storage class, priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<SourceCost>,
}

/// The outcome of [`stats`].
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// The mode of `total_size` and `total_file_count`.
    pub mode: StatsMode,
    /// Snapshots counted.
    pub snapshots: usize,
    /// restore-size: bytes a restore writes; raw-data: plaintext bytes of
    /// the distinct blobs; files-by-contents: bytes of the distinct contents.
    pub total_size: u64,
    /// restore-size: files; files-by-contents: distinct contents;
    /// raw-data: absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_file_count: Option<u64>,
    /// raw-data: distinct blobs (data and tree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_blob_count: Option<u64>,
    /// The restore size of the snapshots counted, whatever the mode.
    pub restore_size: u64,
    /// Repository totals.
    pub repository: RepositoryTotals,
    /// Per source, largest unique bytes first (whole repository only).
    pub sources: Vec<SourceStats>,
    /// Per tag (whole repository only).
    pub tags: Vec<TagStats>,
    /// With `--cost`: bytes and monthly price per storage class, of the
    /// whole repository whatever the selection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostReport>,
    /// Distinct blobs the snapshots reference that the index does not know
    /// (a damaged repository: run `cairn check`); their bytes are in no
    /// figure.
    pub missing_blobs: u64,
    /// What the figures leave out, in words (e.g. the per-tag breakdown
    /// when there are more tags than it tracks).
    pub notes: Vec<String>,
}

/// Computes the stats of `snapshots` (oldest first, as selected) by
/// `opts`. `progress` is called with the number of snapshots walked so
/// far, for each of the walks (the mode figure, then the breakdown).
pub fn stats(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &StatsOptions,
    progress: &dyn Fn(usize),
) -> crate::error::Result<StatsReport> {
    Ok(run(repo, snapshots, opts, progress)?)
}

fn run(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &StatsOptions,
    progress: &dyn Fn(usize),
) -> Result<StatsReport, StatsError> {
    // The readers' index (R1): each blob at a copy outside packs recorded
    // for deletion or missing from storage, as restore would read it.
    let (index, files) = repo.load_index_with_files()?;
    let mut totals = RepositoryTotals::default();
    for b in files.iter().flat_map(|f| &f.packs).flat_map(|p| &p.blobs) {
        totals.uncompressed_bytes = totals.uncompressed_bytes.saturating_add(u64::from(b.raw_length));
        totals.sealed_bytes = totals.sealed_bytes.saturating_add(u64::from(b.length));
    }
    // Only raw-data needs the plaintext length of each blob; the other
    // modes free the decoded index objects before walking.
    let raw = match opts.mode {
        StatsMode::RawData => Some(size::raw_data(repo, &index, &files, snapshots)),
        _ => None,
    };
    drop(files);
    totals.blobs = index.len() as u64;
    totals.compression_ratio = ratio(totals.uncompressed_bytes, totals.sealed_bytes);
    let listing = cost::Listing::read(repo, &index, &opts.unclassed)?;
    totals.packs = listing.packs;
    totals.stored_bytes = listing.pack_bytes;
    totals.repository_bytes = listing.pack_bytes + other_objects_bytes(repo)?;

    let mut sizer = size::Sizer::default();
    let mut per_snapshot = Vec::with_capacity(snapshots.len());
    for (i, (_, s)) in snapshots.iter().enumerate() {
        progress(i);
        per_snapshot.push(sizer.snapshot(repo, &index, &s.tree)?);
    }
    progress(snapshots.len());
    let restore_size = per_snapshot.iter().fold(0u64, |a, s| a.saturating_add(s.bytes));
    let restore_files = per_snapshot.iter().fold(0u64, |a, s| a.saturating_add(s.files));

    let mut report = StatsReport {
        mode: opts.mode,
        snapshots: snapshots.len(),
        total_size: restore_size,
        total_file_count: Some(restore_files),
        total_blob_count: None,
        restore_size,
        repository: totals,
        sources: Vec::new(),
        tags: Vec::new(),
        cost: None,
        missing_blobs: 0,
        notes: Vec::new(),
    };
    match opts.mode {
        StatsMode::RestoreSize => {}
        StatsMode::RawData => {
            let raw = raw.unwrap_or_default();
            report.total_size = raw.bytes;
            report.total_file_count = None;
            report.total_blob_count = Some(raw.blobs);
            report.missing_blobs = raw.missing;
        }
        StatsMode::FilesByContents => {
            let c = size::contents(repo, &index, snapshots)?;
            report.total_size = c.bytes;
            report.total_file_count = Some(c.files);
        }
    }
    if opts.whole_repository {
        report.repository.dedup_ratio = Some(ratio(restore_size, report.repository.stored_bytes));
        let sizes: Vec<u64> = per_snapshot.iter().map(|s| s.bytes).collect();
        let b = owners::breakdown(
            repo,
            &index,
            &listing,
            snapshots,
            &sizes,
            opts.prices.as_ref(),
            progress,
        )?;
        report.repository.referenced_bytes = Some(b.referenced);
        report.repository.unreferenced_bytes = Some(b.unreferenced);
        report.missing_blobs = report.missing_blobs.max(b.missing);
        report.sources = b.sources;
        report.tags = b.tags;
        report.notes.extend(b.notes);
    }
    if let Some(prices) = &opts.prices {
        report.cost = Some(listing.cost(prices));
    }
    Ok(report)
}

/// `a / b`, 0 when `b` is 0.
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Bytes of every listed object that is not a pack.
fn other_objects_bytes(repo: &Repository) -> Result<u64, StatsError> {
    let mut n = 0;
    for kind in ObjectKind::ALL {
        if !matches!(kind, ObjectKind::DataPack | ObjectKind::TreePack) {
            n += repo.backend().list(kind)?.iter().map(|o| o.size).sum::<u64>();
        }
    }
    Ok(n)
}
