//! Content-defined chunking with FastCDC (2020), seeded per repository.

use std::io::Read;

use fastcdc::v2020::{Normalization, StreamCDC};

use crate::repository::ChunkerParams;

/// Splits a stream into content-defined chunks. Memory: one buffer of
/// `max_size` bytes plus the chunk handed out.
pub struct Chunker<R: Read> {
    inner: StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `source` with the repository's parameters.
    pub fn new(source: R, p: &ChunkerParams) -> Self {
        Self {
            inner: StreamCDC::with_level_and_seed(
                source,
                p.min_size as usize,
                p.avg_size as usize,
                p.max_size as usize,
                Normalization::Level1,
                p.seed,
            ),
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .next()
            .map(|r| r.map(|c| c.data).map_err(std::io::Error::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let p = ChunkerParams {
            seed: 5,
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        };
        let mut data = vec![0u8; 1_000_000];
        let mut x: u64 = 1;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], &p).map(|c| c.unwrap()).collect();
        assert_eq!(chunks.concat(), data);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= 4096 && c.len() <= 65536);
        }
        let other = ChunkerParams { seed: 6, ..p };
        let chunks2: Vec<usize> = Chunker::new(&data[..], &other).map(|c| c.unwrap().len()).collect();
        assert_ne!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            chunks2,
            "seed must change boundaries"
        );
    }
}
