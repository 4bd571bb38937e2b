//! Content-defined chunking with FastCDC (2020, normalization level 1),
//! seeded per repository.
//!
//! The cut points come from the `fastcdc` crate's `cut_gear`, exactly as its
//! `StreamCDC` finds them, so boundaries are the same. The streaming around
//! it is ours because `StreamCDC` allocates and zeroes a `max_size` buffer
//! per stream and moves the whole remaining buffer after every chunk: for a
//! folder of many files that was most of a backup's memory traffic (profiled:
//! memset + memmove above the chunking itself). Here one buffer of several
//! `max_size` is reused across files and compacted only when it runs low.

use std::borrow::Cow;
use std::io::{ErrorKind, Read};

use fastcdc::v2020::{cut_gear, get_gear_with_seed, select_masks, Normalization};

use serde::{Deserialize, Serialize};

use crate::snapshot::ChunkSizes;

/// FastCDC parameters. The seed is secret (the config is encrypted) so chunk
/// boundaries do not leak file contents through chunk sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ChunkerParams {
    /// Seed of the gear table.
    pub seed: u64,
    /// Smallest chunk (except a file's last).
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

impl ChunkerParams {
    /// Defaults: 512 KiB / 1 MiB / 4 MiB; see format-spec "Chunking" for why.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }

    /// The parameters a snapshot's file contents were cut with: the
    /// repository's seed with the snapshot's sizes, or the repository's
    /// sizes when the snapshot recorded none. Two snapshots' contents chunk
    /// alike (what `copy` needs to know before it can reuse blobs) exactly
    /// when these are equal: seed and all three sizes.
    pub fn for_sizes(&self, sizes: Option<&ChunkSizes>) -> Self {
        match sizes {
            Some(s) => Self {
                seed: self.seed,
                min_size: s.min_size,
                avg_size: s.avg_size,
                max_size: s.max_size,
            },
            None => *self,
        }
    }

    /// The sizes of these parameters, for a snapshot's `chunk_sizes`.
    pub fn sizes(&self) -> ChunkSizes {
        ChunkSizes {
            min_size: self.min_size,
            avg_size: self.avg_size,
            max_size: self.max_size,
        }
    }

    /// Whether fastcdc accepts these sizes.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes {min}/{avg}/{max} are outside what FastCDC supports"
            ))
        }
    }
}

impl ChunkSizes {
    /// Smallest average a backup may ask for: below it the index costs
    /// more than deduplication saves (benches/RESULTS.md "Stream chunk
    /// sizes": ~90 bytes of pack header and index per blob on disk and ~35
    /// in memory, so 4 KiB chunks already cost ~2 % of the data in index).
    pub const MIN_AVERAGE: u32 = 4 * 1024;
    /// Largest average: `max = 8 × avg` must stay within FastCDC's 16 MiB.
    pub const MAX_AVERAGE: u32 = 2 * 1024 * 1024;

    /// The bounds for an average chunk size: min = avg/4, max = avg×8
    /// (FastCDC's normalisation keeps most chunks near the average; a
    /// small minimum lets the cut points find their way back soon after
    /// an edit, which is what streams changed a little everywhere need).
    /// The average must be a power of two (FastCDC's masks are) between
    /// [`Self::MIN_AVERAGE`] and [`Self::MAX_AVERAGE`].
    pub fn for_average(avg: u64) -> Result<Self, String> {
        if avg < u64::from(Self::MIN_AVERAGE) || avg > u64::from(Self::MAX_AVERAGE) || !avg.is_power_of_two() {
            return Err(format!(
                "average chunk size {avg} bytes: give a power of two from 4KiB to 2MiB (like 16KiB, 64KiB, 1MiB)"
            ));
        }
        // In range, so it fits.
        let avg = avg as u32;
        let sizes = Self {
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg * 8,
        };
        ChunkerParams::with_seed(0).for_sizes(Some(&sizes)).validate()?;
        Ok(sizes)
    }
}

/// Reusable chunking state: gear tables and the read buffer.
pub struct ChunkBuffer {
    params: ChunkerParams,
    masks: (u64, u64),
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
    buf: Vec<u8>,
}

impl ChunkBuffer {
    /// State for `params`; the buffer holds two maximum-size chunks, so at
    /// most one is moved per refill (a bigger buffer moves less but costs
    /// memory per reader thread).
    pub fn new(params: &ChunkerParams) -> Self {
        let (gear, gear_ls) = get_gear_with_seed(params.seed);
        Self {
            params: *params,
            masks: select_masks(params.avg_size as usize, Normalization::Level1),
            gear,
            gear_ls,
            buf: Vec::new(),
        }
    }

    /// Chunks `source`, reusing this state's buffer.
    pub fn chunks<R: Read>(&mut self, source: R) -> Chunker<'_, R> {
        // The buffer starts small and grows (to two `max_size`) only when a
        // file needs it: a folder of small files never makes it large, and
        // each reader thread used to hold 8 MiB for them (a tenth of a
        // 100,000-file backup's peak memory).
        let first = FIRST_BUFFER.min(2 * self.params.max_size as usize);
        if self.buf.len() < first {
            self.buf.resize(first, 0);
        }
        Chunker {
            state: self,
            source,
            start: 0,
            end: 0,
            eof: false,
        }
    }
}

/// The buffer a chunker starts with; see [`ChunkBuffer::chunks`].
const FIRST_BUFFER: usize = 256 * 1024;

/// Iterator over the chunks of one stream. Memory: the shared buffer plus
/// the chunk handed out.
pub struct Chunker<'a, R: Read> {
    state: &'a mut ChunkBuffer,
    source: R,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Chunker<'_, R> {
    fn fill(&mut self) -> std::io::Result<()> {
        let max = self.state.params.max_size as usize;
        if self.eof || self.end - self.start >= max {
            return Ok(());
        }
        if self.start > 0 {
            self.state.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            while self.end < self.state.buf.len() {
                match self.source.read(&mut self.state.buf[self.end..]) {
                    Ok(0) => {
                        self.eof = true;
                        return Ok(());
                    }
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // Full, and still short of what a cut needs to look at.
            let cap = 2 * max;
            if self.end >= max || self.state.buf.len() >= cap {
                return Ok(());
            }
            // Straight to two `max_size` once a file needs `max_size`, so
            // large files compact the buffer at most every `max_size`.
            let doubled = 2 * self.state.buf.len();
            let grown = if doubled >= max { cap } else { doubled };
            self.state.buf.resize(grown, 0);
        }
    }
}

impl<R: Read> Iterator for Chunker<'_, R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        if self.start == self.end {
            return None;
        }
        let s = &*self.state;
        let p = &s.params;
        let (mask_s, mask_l) = s.masks;
        let (_, len) = cut_gear(
            &s.buf[self.start..self.end],
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &s.gear,
            &s.gear_ls,
        );
        let chunk = s.buf[self.start..self.start + len].to_vec();
        self.start += len;
        Some(Ok(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::StreamCDC;

    fn data(n: usize) -> Vec<u8> {
        crate::testing::noise(n, 1)
    }

    /// Reads in odd-sized pieces, to exercise refills at every offset.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    const SMALL: ChunkerParams = ChunkerParams {
        seed: 5,
        min_size: 4096,
        avg_size: 16384,
        max_size: 65536,
    };

    #[test]
    fn same_cut_points_as_streamcdc_and_reassembles() {
        let p = SMALL;
        let d = data(3_000_000);
        let want: Vec<usize> = StreamCDC::with_level_and_seed(&d[..], 4096, 16384, 65536, Normalization::Level1, 5)
            .map(|c| c.unwrap().length)
            .collect();
        let mut state = ChunkBuffer::new(&p);
        for piece in [1usize, 999, 65536, 1 << 20] {
            let chunks: Vec<Vec<u8>> = state.chunks(Trickle(&d, piece)).map(|c| c.unwrap()).collect();
            assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), want, "piece {piece}");
            assert_eq!(chunks.concat(), d);
        }
        // The buffer is reused across streams: a short stream after a long one.
        let short: Vec<Vec<u8>> = state.chunks(&d[..100]).map(|c| c.unwrap()).collect();
        assert_eq!(short, vec![d[..100].to_vec()]);
        assert_eq!(state.chunks(&[][..]).count(), 0);
    }

    /// With a `max_size` far above the first buffer, the buffer grows as a
    /// stream needs it and cuts stay StreamCDC's; small streams leave it
    /// small.
    #[test]
    fn buffer_grows_only_as_streams_need_and_cuts_do_not_change() {
        let p = ChunkerParams {
            seed: 9,
            min_size: 64 * 1024,
            avg_size: 256 * 1024,
            max_size: 1024 * 1024,
        };
        let mut state = ChunkBuffer::new(&p);
        let small = data(10_000);
        assert_eq!(state.chunks(&small[..]).map(|c| c.unwrap()).collect::<Vec<_>>(), vec![small]);
        assert_eq!(state.buf.len(), FIRST_BUFFER, "a small stream leaves the buffer small");
        let mid = data(400_000);
        let want = |d: &[u8]| -> Vec<usize> {
            StreamCDC::with_level_and_seed(d, 64 * 1024, 256 * 1024, 1024 * 1024, Normalization::Level1, 9)
                .map(|c| c.unwrap().length)
                .collect()
        };
        let got: Vec<usize> = state.chunks(&mid[..]).map(|c| c.unwrap().len()).collect();
        assert_eq!(got, want(&mid));
        assert!(state.buf.len() < 2 * 1024 * 1024, "a stream below half of max_size stops short of the cap");
        let big = data(9_000_000);
        for piece in [777usize, 300_000, 1 << 20] {
            let chunks: Vec<Vec<u8>> = ChunkBuffer::new(&p)
                .chunks(Trickle(&big, piece))
                .map(|c| c.unwrap())
                .collect();
            assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), want(&big), "piece {piece}");
            assert_eq!(chunks.concat(), big);
        }
        assert_eq!(state.chunks(&big[..]).map(|c| c.unwrap().len()).collect::<Vec<_>>(), want(&big));
        assert_eq!(state.buf.len(), 2 * 1024 * 1024, "a large stream grows it to two max_size");
    }

    #[test]
    fn seed_changes_boundaries() {
        let p = SMALL;
        let d = data(1_000_000);
        let a: Vec<usize> = ChunkBuffer::new(&p).chunks(&d[..]).map(|c| c.unwrap().len()).collect();
        let b: Vec<usize> = ChunkBuffer::new(&ChunkerParams { seed: 6, ..p })
            .chunks(&d[..])
            .map(|c| c.unwrap().len())
            .collect();
        assert_ne!(a, b);
    }
}
