//! The shape of a generated repository: which data blobs each snapshot
//! references, grouped into which files and folders. Pure arithmetic, no
//! I/O, so the model can be tested on its own.
//!
//! Data blobs are numbered `0..blobs`. Snapshot `i` (one per night) covers a
//! sliding *window* `[start(i), end(i))` of `window` blobs; the windows of
//! the first and last snapshot touch blob 0 and the last blob, so the union
//! over all snapshots is exactly `0..blobs`. Each night the window moves by
//! `(blobs - window) / (snapshots - 1)` blobs: a slice of old data expires,
//! as much new data arrives.
//!
//! Blobs are cut into *files* of `file_blobs` consecutive blobs each, like
//! immutable SSTables or parquet files: file `k` holds blobs
//! `[k * file_blobs, (k + 1) * file_blobs)`. Snapshot `i` holds every file
//! that overlaps its window; the newest one is still growing (its content is
//! cut at `end(i)`), the oldest one is kept whole until all of it has left
//! the window. Files are grouped `FILES_PER_PART` at a time into partition
//! folders, and partitions are dealt round-robin into `TABLES` table folders
//! under the root: `/table-N/part-NNNNNNNN/file-NNNNNNNN.db`. A partition
//! that no longer changes keeps the same tree blob from night to night, as a
//! real backup's unchanged folders do, so trees stay a small part of the
//! repository.

/// Table folders under the root ("a few sub-folders").
pub const TABLES: u64 = 4;
/// Files per partition folder.
pub const FILES_PER_PART: u64 = 16;

/// The sliding-window model for one set of parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Data blobs in the repository (the union over all snapshots).
    pub blobs: u64,
    /// Snapshots, one per night.
    pub snapshots: u64,
    /// Blobs each snapshot's window covers.
    pub window: u64,
    /// Blobs per file (the last file of the repository may be shorter).
    pub file_blobs: u64,
}

impl Shape {
    /// The shape for `blobs` data blobs, `snapshots` nights, windows of
    /// `window_percent` % of the blobs and about `files_per_snapshot` files
    /// in each snapshot.
    pub fn new(blobs: u64, snapshots: u64, window_percent: u64, files_per_snapshot: u64) -> Result<Self, String> {
        if blobs == 0 || snapshots == 0 || files_per_snapshot == 0 {
            return Err("--blobs, --snapshots and --files-per-snapshot must be at least 1".into());
        }
        if !(1..=100).contains(&window_percent) {
            return Err(format!("--window-percent {window_percent} must be 1 to 100"));
        }
        // One snapshot has nothing to slide over: it holds every blob.
        let window = if snapshots == 1 {
            blobs
        } else {
            (blobs * window_percent / 100).max(1)
        };
        let file_blobs = window.div_ceil(files_per_snapshot).max(1);
        Ok(Self {
            blobs,
            snapshots,
            window,
            file_blobs,
        })
    }

    /// First blob of snapshot `i`'s window.
    pub fn start(&self, i: u64) -> u64 {
        if self.snapshots == 1 {
            return 0;
        }
        // u128: blobs * snapshots can pass u64 for absurd arguments.
        (u128::from(i) * u128::from(self.blobs - self.window) / u128::from(self.snapshots - 1)) as u64
    }

    /// One past the last blob of snapshot `i`'s window.
    pub fn end(&self, i: u64) -> u64 {
        self.start(i) + self.window
    }

    /// Number of files in the repository.
    pub fn files(&self) -> u64 {
        self.blobs.div_ceil(self.file_blobs)
    }

    /// The blobs of file `k` once complete.
    pub fn file_range(&self, k: u64) -> (u64, u64) {
        let a = k * self.file_blobs;
        (a, (a + self.file_blobs).min(self.blobs))
    }

    /// The files snapshot `i` holds: `[first, last)`.
    pub fn files_of(&self, i: u64) -> (u64, u64) {
        (self.start(i) / self.file_blobs, self.end(i).div_ceil(self.file_blobs))
    }

    /// The blobs of file `k` as snapshot `i` sees it: cut at the window's
    /// end while the file is still growing.
    pub fn file_content(&self, k: u64, i: u64) -> (u64, u64) {
        let (a, b) = self.file_range(k);
        (a, b.min(self.end(i)))
    }

    /// The first night whose window reaches blob position `pos` (exclusive
    /// end), i.e. the night a file ending at `pos` became complete.
    pub fn night_reaching(&self, pos: u64) -> u64 {
        // end(i) grows with i; the smallest i with end(i) >= pos.
        let (mut lo, mut hi) = (0, self.snapshots - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.end(mid) >= pos {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// The night file `k` was last written as snapshot `i` sees it: the
    /// night it became complete, or `i` itself while it still grows.
    pub fn file_night(&self, k: u64, i: u64) -> u64 {
        self.night_reaching(self.file_range(k).1).min(i)
    }

    /// Blobs referenced only by snapshots older than `keep_from`: what
    /// forgetting snapshots `0..keep_from` leaves unused.
    pub fn blobs_only_before(&self, keep_from: u64) -> u64 {
        if keep_from == 0 {
            return 0;
        }
        if keep_from >= self.snapshots {
            return self.blobs;
        }
        self.files_of(keep_from).0 * self.file_blobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_is_every_blob_and_neighbours_share_most() {
        let s = Shape::new(20_000, 50, 25, 100).unwrap();
        let mut seen = vec![false; 20_000];
        for i in 0..50 {
            let (f0, f1) = s.files_of(i);
            for k in f0..f1 {
                let (a, b) = s.file_content(k, i);
                for j in a..b {
                    seen[j as usize] = true;
                }
            }
        }
        assert!(seen.iter().all(|&x| x));
        assert_eq!(s.start(0), 0);
        assert_eq!(s.end(49), 20_000);
        // The window moves by ~300 blobs a night out of 5000.
        assert!(s.start(1) - s.start(0) < s.window / 10);
    }

    #[test]
    fn forgetting_the_older_half_frees_a_real_fraction() {
        let s = Shape::new(1_000_000, 1000, 25, 1000).unwrap();
        let freed = s.blobs_only_before(500);
        assert!(freed > 300_000 && freed < 400_000, "{freed}");
    }

    #[test]
    fn a_file_is_complete_from_the_night_its_end_is_reached() {
        let s = Shape::new(10_000, 20, 50, 10).unwrap();
        let k = s.files_of(10).1 - 1;
        let done = s.night_reaching(s.file_range(k).1);
        assert!(s.end(done) >= s.file_range(k).1);
        assert!(done == 0 || s.end(done - 1) < s.file_range(k).1);
        assert_eq!(s.file_night(k, done + 3), done);
    }

    #[test]
    fn one_snapshot_holds_everything() {
        let s = Shape::new(1000, 1, 25, 7).unwrap();
        assert_eq!((s.start(0), s.end(0)), (0, 1000));
        assert_eq!(s.night_reaching(1000), 0);
    }
}
