//! Per-source chunk sizes and the deduplication figures of a backup.
//!
//! A backup cuts what it reads with the repository's chunker seed and
//! either the repository's sizes or its own (recorded in the snapshot's
//! `chunk_sizes`); benches/RESULTS.md "Stream chunk sizes" has the
//! measurement behind the choice.

use std::sync::atomic::Ordering;

use super::saver::SaverStats;
use crate::chunker::ChunkerParams;
use crate::snapshot::ChunkSizes;

/// Which chunk sizes a backup cuts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChunkSizeChoice {
    /// The parent snapshot's when it recorded sizes, otherwise the
    /// repository's.
    #[default]
    Parent,
    /// The repository's (its config), whatever the parent used.
    Repository,
    /// These (see [`ChunkSizes::for_average`]).
    Sizes(ChunkSizes),
}

/// Resolves `choice` against the repository's parameters and the parent
/// snapshot's recorded sizes: the parameters to cut with and what the
/// snapshot records (`None` when they are the repository's).
pub(crate) fn resolve(
    choice: ChunkSizeChoice,
    repo: &ChunkerParams,
    parent: Option<ChunkSizes>,
) -> (ChunkerParams, Option<ChunkSizes>) {
    let sizes = match choice {
        ChunkSizeChoice::Repository => None,
        ChunkSizeChoice::Sizes(s) => Some(s),
        ChunkSizeChoice::Parent => parent,
    };
    let params = repo.for_sizes(sizes.as_ref());
    // Asking for the repository's own sizes is the repository's choice.
    let recorded = sizes.filter(|s| *s != repo.sizes());
    (params, recorded)
}

/// How much of the content a backup read was stored already: the share of
/// a night's dump that deduplicated against earlier snapshots. Counted per
/// data blob where the saver decides whether to store it, so trees and
/// files not read (unchanged since the parent) are not in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DedupStats {
    /// Bytes of content read (before compression).
    pub bytes: u64,
    /// Of those, bytes already in the repository when the backup started.
    pub bytes_known: u64,
    /// Of those, bytes repeating content read earlier in this backup.
    pub bytes_repeated: u64,
    /// Of those, bytes new to the repository (stored by this backup,
    /// before compression).
    pub bytes_new: u64,
}

impl DedupStats {
    pub(crate) fn from_saver(s: &SaverStats) -> Self {
        let known = s.data_bytes_known.load(Ordering::Relaxed);
        let repeated = s.data_bytes_repeated.load(Ordering::Relaxed);
        let new = s.data_bytes_new.load(Ordering::Relaxed);
        Self {
            bytes: known + repeated + new,
            bytes_known: known,
            bytes_repeated: repeated,
            bytes_new: new,
        }
    }

    /// Share of the content read that was not stored anew (already in the
    /// repository or repeated within the backup), in percent; 0 when
    /// nothing was read.
    pub fn percent(&self) -> f64 {
        if self.bytes == 0 {
            0.0
        } else {
            (self.bytes_known + self.bytes_repeated) as f64 * 100.0 / self.bytes as f64
        }
    }

    /// Share of the content read that the repository held before this
    /// backup, in percent: what deduplicated against earlier snapshots.
    pub fn percent_known(&self) -> f64 {
        if self.bytes == 0 {
            0.0
        } else {
            self.bytes_known as f64 * 100.0 / self.bytes as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(avg: u32) -> ChunkSizes {
        ChunkSizes::for_average(u64::from(avg)).unwrap()
    }

    #[test]
    fn for_average_derives_and_refuses() {
        let s = sizes(64 * 1024);
        assert_eq!((s.min_size, s.avg_size, s.max_size), (16 * 1024, 64 * 1024, 512 * 1024));
        for bad in [0, 1000, 2048, 3 * 1024 * 1024, 4 * 1024 * 1024, 48 * 1024] {
            assert!(ChunkSizes::for_average(bad).is_err(), "{bad}");
        }
        assert!(ChunkSizes::for_average(2 * 1024 * 1024).is_ok());
        assert!(ChunkSizes::for_average(4 * 1024).is_ok());
    }

    #[test]
    fn resolve_follows_choice_then_parent() {
        let repo = ChunkerParams::with_seed(9);
        // No parent, no choice: the repository's, recorded as None.
        assert_eq!(resolve(ChunkSizeChoice::Parent, &repo, None), (repo, None));
        // The parent's sizes are kept, with the repository's seed.
        let parent = Some(sizes(16 * 1024));
        let (p, rec) = resolve(ChunkSizeChoice::Parent, &repo, parent);
        assert_eq!((p.seed, p.avg_size, rec), (9, 16 * 1024, Some(sizes(16 * 1024))));
        // An explicit size wins over the parent's; the repository's own
        // sizes are recorded as None.
        let (p, rec) = resolve(ChunkSizeChoice::Sizes(sizes(64 * 1024)), &repo, parent);
        assert_eq!((p.avg_size, rec), (64 * 1024, Some(sizes(64 * 1024))));
        assert_eq!(resolve(ChunkSizeChoice::Repository, &repo, parent), (repo, None));
        assert_eq!(resolve(ChunkSizeChoice::Sizes(repo.sizes()), &repo, None), (repo, None));
    }

    #[test]
    fn dedup_shares() {
        let d = DedupStats {
            bytes: 200,
            bytes_known: 100,
            bytes_repeated: 50,
            bytes_new: 50,
        };
        assert_eq!((d.percent(), d.percent_known()), (75.0, 50.0));
        assert_eq!(DedupStats::default().percent(), 0.0);
    }
}
