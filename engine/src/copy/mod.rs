//! Copy: snapshots from one repository into another (`cairn copy`).
#[allow(dead_code)] // until copy calls it (the copy helper's mod.rs replaces this file)
pub(crate) mod rechunk;
#[cfg(test)]
mod rechunk_tests;
