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

/// Bytes in the gigabyte storage is billed by: AWS bills storage in binary
/// gigabytes (2^30 bytes).
pub(crate) const BILLED_GB: f64 = (1u64 << 30) as f64;

/// Storage prices in US dollars per GB-month, by class: AWS S3's public list
/// prices in us-east-1 (first 50 TB tier). `stats --cost` starts from
/// them (cairn.toml's `[prices]` overrides them there); prune's
/// early-deletion estimate uses them as they are. Taken from
/// aws.amazon.com/s3/pricing; the date is in
/// [`DEFAULT_PRICES_DATE`]. `local` is a folder repository: no storage fee.
pub const DEFAULT_STORAGE_PRICES: [(&str, f64); 7] = [
    ("STANDARD", 0.023),
    ("STANDARD_IA", 0.0125),
    ("ONEZONE_IA", 0.01),
    ("GLACIER_IR", 0.004),
    ("GLACIER", 0.0036),
    ("DEEP_ARCHIVE", 0.00099),
    ("local", 0.0),
];

/// When [`DEFAULT_STORAGE_PRICES`] were taken from AWS's page (this build
/// cannot check them: prices change, so cairn.toml can override them).
pub const DEFAULT_PRICES_DATE: &str = "2025";

/// The default price of `class` (USD per GB-month), if it is a known class.
pub(crate) fn default_price(class: &str) -> Option<f64> {
    DEFAULT_STORAGE_PRICES
        .iter()
        .find(|(c, _)| *c == class)
        .map(|(_, p)| *p)
}

/// The minimum storage duration (days) of a storage class: deleting an
/// object earlier is billed as if it had stayed that long. `None` for
/// classes without one (STANDARD, INTELLIGENT_TIERING's frequent tier).
pub(crate) fn minimum_days(class: &str) -> Option<u32> {
    match class {
        "GLACIER" | "GLACIER_IR" => Some(90),
        "DEEP_ARCHIVE" => Some(180),
        "STANDARD_IA" | "ONEZONE_IA" => Some(30),
        _ => None,
    }
}

/// The minimum storage duration (days) of a storage class and its default
/// storage price (US dollars per GB-month); `None` for classes without a
/// minimum.
pub(crate) fn minimum_storage(class: &str) -> Option<(u32, f64)> {
    Some((minimum_days(class)?, default_price(class)?))
}

/// Nanoseconds in a day.
pub(crate) const DAY_NS: f64 = 86_400e9;

/// How many days ago (as of `now_ns`) an object listed as stored at
/// `modified_ns` was stored; `None` where the storage does not say.
pub(crate) fn age_days(now_ns: i64, modified_ns: Option<i64>) -> Option<f64> {
    modified_ns.map(|t| now_ns.saturating_sub(t) as f64 / DAY_NS)
}

/// The early-deletion charge of removing `bytes` stored in a class with a
/// minimum of `minimum_days` days at `usd_gb_month`, `age_days` after they
/// were stored: the storage fee of the days still missing. An unknown age
/// is billed as if the object were new, the worst case.
pub(crate) fn early_deletion_usd(bytes: u64, minimum_days: u32, usd_gb_month: f64, age_days: Option<f64>) -> f64 {
    // A negative age (a clock behind the storage's) counts as new.
    let age = age_days.unwrap_or(0.0).max(0.0);
    let remaining = (f64::from(minimum_days) - age).max(0.0);
    bytes as f64 / BILLED_GB * usd_gb_month * remaining / 30.0
}

/// Whether objects of `class` must be retrieved before they can be read.
pub(crate) fn needs_retrieval(class: &str) -> bool {
    matches!(class, "GLACIER" | "DEEP_ARCHIVE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_deletion_bills_the_missing_days_of_binary_gigabytes() {
        let gib = 1u64 << 30;
        // 3 GiB in DEEP_ARCHIVE, 60 of 180 days stayed: 120 days of 0.00099.
        let charge = early_deletion_usd(3 * gib, 180, 0.00099, Some(60.0));
        assert!((charge - 3.0 * 0.00099 * 4.0).abs() < 1e-12, "{charge}");
        // Unknown age: the worst case, all 180 days.
        assert!((early_deletion_usd(gib, 180, 0.00099, None) - 0.00099 * 6.0).abs() < 1e-12);
        // Past the minimum (or a clock that says the future): nothing, never negative.
        assert_eq!(early_deletion_usd(gib, 90, 0.0036, Some(200.0)), 0.0);
        assert!(early_deletion_usd(gib, 90, 0.0036, Some(-5.0)) <= 0.0036 * 3.0 + 1e-12);
        assert_eq!(minimum_storage("DEEP_ARCHIVE"), Some((180, 0.00099)));
        assert_eq!(minimum_storage("STANDARD"), None);
    }
}
