//! Restores from archive storage classes: find which needed packs are
//! archived, request their retrieval once, and report what it costs.
//!
//! Prices and times are AWS S3's published us-east-1 list prices and
//! retrieval windows; other providers differ, so they are an estimate only.

use std::collections::HashMap;
use std::time::Duration;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{ArchiveState, BackendError, ObjectKind, RetrievalTier};
use crate::id::PackId;
use crate::repository::Repository;

/// How to retrieve archived packs.
#[derive(Debug, Clone, Copy)]
pub struct RetrievalOptions {
    /// Speed and price tier.
    pub tier: RetrievalTier,
    /// Days the retrieved copy stays readable.
    pub days: u32,
    /// Wait for retrievals and restore as packs become readable; without it
    /// the restore requests them and stops with `RetrievalPending`.
    pub wait: bool,
    /// First polling interval; doubles up to `poll_max`.
    pub poll_initial: Duration,
    /// Longest polling interval.
    pub poll_max: Duration,
}

impl Default for RetrievalOptions {
    fn default() -> Self {
        Self {
            tier: RetrievalTier::Standard,
            days: 7,
            wait: false,
            poll_initial: Duration::from_secs(30),
            poll_max: Duration::from_secs(15 * 60),
        }
    }
}

/// Cost and time of one tier, for the estimate.
#[derive(Debug, Clone, Serialize)]
pub struct TierEstimate {
    /// Tier name.
    pub tier: &'static str,
    /// Estimated fee in US dollars.
    pub usd: f64,
    /// Typical time until readable.
    pub typical_time: &'static str,
}

/// What a restore needs from archive storage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrievalReport {
    /// Packs the restore reads.
    pub packs_needed: usize,
    /// Of those, archived (requested or not).
    pub archived: usize,
    /// Bytes of the archived packs.
    pub archived_bytes: u64,
    /// Retrievals requested by this run.
    pub requested_now: usize,
    /// Retrievals that were already in progress (from an earlier run).
    pub already_in_progress: usize,
    /// Archived packs already readable again.
    pub ready: usize,
    /// Storage classes seen.
    pub classes: Vec<String>,
    /// Cost and time per tier.
    pub estimates: Vec<TierEstimate>,
}

/// Per-GB fee, per-1000-request fee, typical time — by class and tier.
fn price(class: &str, tier: RetrievalTier) -> Option<(f64, f64, &'static str)> {
    let deep = class == "DEEP_ARCHIVE";
    match (deep, tier) {
        (false, RetrievalTier::Expedited) => Some((0.03, 10.0, "1-5 minutes")),
        (false, RetrievalTier::Standard) => Some((0.01, 0.05, "3-5 hours")),
        (false, RetrievalTier::Bulk) => Some((0.0, 0.025, "5-12 hours")),
        (true, RetrievalTier::Expedited) => None,
        (true, RetrievalTier::Standard) => Some((0.02, 0.10, "within 12 hours")),
        (true, RetrievalTier::Bulk) => Some((0.0025, 0.025, "within 48 hours")),
    }
}

/// Tier name as S3 spells it.
pub fn tier_name(t: RetrievalTier) -> &'static str {
    match t {
        RetrievalTier::Expedited => "Expedited",
        RetrievalTier::Standard => "Standard",
        RetrievalTier::Bulk => "Bulk",
    }
}

fn estimates(by_class: &HashMap<String, (usize, u64)>) -> Vec<TierEstimate> {
    let mut out = Vec::new();
    for tier in [RetrievalTier::Expedited, RetrievalTier::Standard, RetrievalTier::Bulk] {
        let mut usd = 0.0;
        let mut time = "";
        let mut possible = true;
        for (class, (n, bytes)) in by_class {
            match price(class, tier) {
                Some((gb, req, t)) => {
                    usd += gb * (*bytes as f64 / 1e9) + req * (*n as f64 / 1000.0);
                    // The slowest class decides.
                    if time.is_empty() || class == "DEEP_ARCHIVE" {
                        time = t;
                    }
                }
                None => possible = false,
            }
        }
        if possible && !by_class.is_empty() {
            out.push(TierEstimate {
                tier: tier_name(tier),
                usd,
                typical_time: time,
            });
        }
    }
    out
}

/// The archive state of every pack in `packs` (name, size), asked in parallel.
pub(crate) fn states(repo: &Repository, packs: &[(PackId, u64)]) -> Result<Vec<ArchiveState>, BackendError> {
    packs
        .par_iter()
        .map(|(id, _)| repo.backend().archive_state(ObjectKind::DataPack, &id.to_hex()))
        .collect()
}

/// Splits `items` by their archive states (same order): (readable now, not yet).
pub(crate) fn split_readable<T: Copy>(items: &[T], states: Vec<ArchiveState>) -> (Vec<T>, Vec<T>) {
    let mut ready = Vec::new();
    let mut waiting = Vec::new();
    for (item, state) in items.iter().zip(states) {
        if state == ArchiveState::Readable {
            ready.push(*item);
        } else {
            waiting.push(*item);
        }
    }
    (ready, waiting)
}

/// Requests retrieval of every archived pack not already being retrieved;
/// returns the report. Asking twice is avoided by looking first.
pub(crate) fn request(
    repo: &Repository,
    packs: &[(PackId, u64)],
    st: &[ArchiveState],
    opts: &RetrievalOptions,
) -> Result<RetrievalReport, BackendError> {
    let mut r = RetrievalReport {
        packs_needed: packs.len(),
        ..Default::default()
    };
    let mut by_class: HashMap<String, (usize, u64)> = HashMap::new();
    let mut to_request = Vec::new();
    for ((id, size), s) in packs.iter().zip(st) {
        match s {
            ArchiveState::Readable => {}
            ArchiveState::Archived { class } => {
                to_request.push(*id);
                let e = by_class.entry(class.clone()).or_default();
                e.0 += 1;
                e.1 += size;
                r.archived += 1;
                r.archived_bytes += size;
            }
            ArchiveState::Retrieving { class } => {
                r.already_in_progress += 1;
                let e = by_class.entry(class.clone()).or_default();
                e.0 += 1;
                e.1 += size;
                r.archived += 1;
                r.archived_bytes += size;
            }
        }
    }
    let mut classes: Vec<String> = by_class.keys().cloned().collect();
    classes.sort();
    r.classes = classes;
    r.estimates = estimates(&by_class);
    to_request
        .par_iter()
        .map(|id| {
            repo.backend()
                .request_retrieval(ObjectKind::DataPack, &id.to_hex(), opts.tier, opts.days)
        })
        .collect::<Result<Vec<()>, BackendError>>()?;
    r.requested_now = to_request.len();
    Ok(r)
}
