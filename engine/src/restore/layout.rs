//! Restoring parts of a snapshot at other places in the target than their
//! own paths: a source's restore layout (Cassandra's `nodetool refresh` and
//! `sstableloader` folders) is a list of placements the one restore plan
//! follows, not a second restorer.

use std::path::PathBuf;

/// Where snapshot folders go in the target, in order.
#[derive(Debug, Clone, Default)]
pub struct RestoreLayout {
    /// The placements; a folder placed twice at the same destination is
    /// merged (files of the same name in both: the first is restored, the
    /// second named as not restored).
    pub places: Vec<Placement>,
    /// Only snapshot paths matching these globs (added to the options' own).
    pub include: Vec<String>,
    /// Leave out snapshot paths matching these globs (added to the options' own).
    pub exclude: Vec<String>,
}

/// One snapshot folder and where it lands.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The folder's absolute path in the snapshot.
    pub from: String,
    /// Its destination, relative to the target.
    pub to: PathBuf,
    /// Restore what it holds (true), or only create the folder itself with
    /// its metadata, as the parent of other placements (false).
    pub contents: bool,
}
