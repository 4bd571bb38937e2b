//! Benchmarks for Cairn: the side-by-side comparison data generator lives in
//! [`nights`] (driven by the `gen-nights` binary and `benches/compare.sh`).

pub mod nights;
pub mod stages;
