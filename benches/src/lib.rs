//! Benchmarks for Cairn: the side-by-side comparison data generator lives in
//! [`nights`] (driven by the `gen-nights` binary and `benches/compare.sh`);
//! [`genrepo`] builds large synthetic repositories for prune at scale
//! (the `gen-repo` binary and `benches/prune-scale.sh`).

pub mod genrepo;
pub mod nights;
pub mod stages;
