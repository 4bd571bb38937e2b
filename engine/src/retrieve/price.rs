//! What a retrieval from archive storage costs and how long it takes.
//!
//! Prices and times are AWS S3's published us-east-1 list prices and
//! retrieval windows; other providers differ, so they are an estimate only.

use std::collections::HashMap;

use serde::Serialize;

use crate::backend::RetrievalTier;

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

/// Objects and bytes to retrieve per storage class.
pub(crate) type ByClass = HashMap<String, (usize, u64)>;

/// The estimate of every tier that can retrieve all of `by_class`.
pub(crate) fn estimates(by_class: &ByClass) -> Vec<TierEstimate> {
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

/// The minimum storage duration (days) of a storage class and its storage
/// price (US dollars per GB-month): deleting an object earlier is billed as
/// if it had stayed that long. AWS S3 us-east-1 list prices; `None` for
/// classes without a minimum (STANDARD, INTELLIGENT_TIERING's frequent tier).
pub(crate) fn minimum_storage(class: &str) -> Option<(u32, f64)> {
    match class {
        "GLACIER" => Some((90, 0.0036)),
        "DEEP_ARCHIVE" => Some((180, 0.00099)),
        "GLACIER_IR" => Some((90, 0.004)),
        "STANDARD_IA" => Some((30, 0.0125)),
        "ONEZONE_IA" => Some((30, 0.01)),
        _ => None,
    }
}

/// Whether objects of `class` must be retrieved before they can be read.
pub(crate) fn needs_retrieval(class: &str) -> bool {
    matches!(class, "GLACIER" | "DEEP_ARCHIVE")
}
