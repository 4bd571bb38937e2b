//! Which packs a check reads: all, a rotating share, a random share, or
//! about a given number of bytes; and only those a set of snapshots needs.
//!
//! A rotating share `N/M` is chosen by the pack id, so it is the same set
//! every time and the M shares together are every pack: a nightly
//! `--read-data-subset $(date +%d)/31` reads the whole repository in a
//! month. The random shares are new on every run.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use super::{CheckError, StoredPack};
use crate::id::{PackId, SnapshotId};
use crate::index::{Index, IndexPack};
use crate::prune::mark;
use crate::repository::Repository;

/// A share of the packs for `check --read-data-subset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataSubset {
    /// Share `n` (1-based) of `m`, by pack id: deterministic, and the `m`
    /// shares cover every pack exactly once.
    Part {
        /// Which share, 1..=m.
        n: u32,
        /// How many shares.
        m: u32,
    },
    /// A random `percent` of the packs (at least one when there are any).
    Percent(f64),
    /// Random packs until their sizes add up to at least this many bytes.
    Bytes(u64),
}

impl fmt::Display for DataSubset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSubset::Part { n, m } => write!(f, "{n}/{m}"),
            DataSubset::Percent(p) => write!(f, "{p}%"),
            DataSubset::Bytes(b) => write!(f, "{b} bytes"),
        }
    }
}

impl FromStr for DataSubset {
    type Err = CheckError;

    /// `N/M`, `P%` (0 < P ≤ 100, decimals allowed) or a size: a number with
    /// an optional unit K, M, G or T (powers of 1024, `B`/`iB` allowed).
    fn from_str(s: &str) -> Result<Self, CheckError> {
        let bad = |why: &str| CheckError::BadSubset(format!("{s:?}: {why}"));
        let s = s.trim();
        if let Some((n, m)) = s.split_once('/') {
            let (n, m) = match (n.trim().parse::<u32>(), m.trim().parse::<u32>()) {
                (Ok(n), Ok(m)) => (n, m),
                _ => return Err(bad("N/M takes two whole numbers")),
            };
            if m == 0 || n == 0 || n > m {
                return Err(bad("N/M needs 1 ≤ N ≤ M"));
            }
            return Ok(DataSubset::Part { n, m });
        }
        if let Some(p) = s.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(DataSubset::Percent(p)),
                _ => Err(bad("a percentage is a number above 0 and at most 100")),
            };
        }
        let digits = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
        let (num, unit) = s.split_at(digits);
        let unit = unit.trim().to_ascii_uppercase();
        let shift = match unit.trim_end_matches("IB").trim_end_matches('B') {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(bad("expected N/M, P% or a size such as 500M or 2G")),
        };
        match num.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(DataSubset::Bytes((v * (1u64 << shift) as f64) as u64)),
            _ => Err(bad("a size is a number above 0 with an optional unit K, M, G or T")),
        }
    }
}

/// Rotating share of a pack: its first four id bytes modulo `m` (ids are
/// keyed hashes, so the shares are even in count).
fn share_of(id: &PackId, m: u32) -> u32 {
    let b = id.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % m
}

/// The packs of `stored` to read for `subset`, in id order.
pub(super) fn select(
    stored: &HashMap<PackId, StoredPack>,
    subset: Option<DataSubset>,
) -> Result<HashSet<PackId>, CheckError> {
    let mut ids: Vec<PackId> = stored.keys().copied().collect();
    ids.sort();
    let Some(subset) = subset else {
        return Ok(ids.into_iter().collect());
    };
    if let DataSubset::Part { n, m } = subset {
        return Ok(ids.into_iter().filter(|id| share_of(id, m) == n - 1).collect());
    }
    // A uniform random order: each pack gets a random key from the OS and
    // they are sorted by it (no RNG crate needed for one shuffle).
    let mut keys = vec![0u8; ids.len() * 8];
    getrandom::getrandom(&mut keys).map_err(|e| CheckError::BadSubset(format!("no randomness: {e}")))?;
    let mut order: Vec<(u64, PackId)> = ids
        .iter()
        .zip(keys.chunks_exact(8))
        .map(|(id, k)| {
            (
                u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]),
                *id,
            )
        })
        .collect();
    order.sort();
    let take = match subset {
        DataSubset::Percent(p) => ((ids.len() as f64) * p / 100.0).ceil() as usize,
        DataSubset::Bytes(want) => {
            let mut total = 0u64;
            let mut n = 0;
            for (_, id) in &order {
                if total >= want {
                    break;
                }
                total += stored.get(id).map_or(0, |s| s.size);
                n += 1;
            }
            n
        }
        DataSubset::Part { .. } => ids.len(),
    };
    Ok(order.into_iter().take(take).map(|(_, id)| id).collect())
}

/// The packs holding a blob (data or tree) that `snapshots` reach. Trees
/// that cannot be read are passed over here: the tree phase names them.
pub(super) fn packs_of(
    repo: &Repository,
    index: &Index,
    in_index: &HashMap<PackId, IndexPack>,
    snapshots: &[SnapshotId],
) -> Result<HashSet<PackId>, CheckError> {
    let mut snaps = Vec::new();
    for id in snapshots {
        // An unreadable snapshot is reported by the tree phase.
        if let Ok(s) = repo.load_snapshot(id) {
            snaps.push((*id, s));
        }
    }
    let used = mark::reachable(repo, index, &snaps);
    Ok(in_index
        .values()
        .filter(|p| p.blobs.iter().any(|b| used.contains(&mark::key_of(&b.id))))
        .map(|p| p.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ObjectKind;

    fn stored(n: u8) -> HashMap<PackId, StoredPack> {
        (0..n)
            .map(|i| {
                let mut b = [0u8; 32];
                b[0] = i.wrapping_mul(37);
                b[1] = i;
                b[5] = 0xa5;
                (
                    PackId::from_bytes(b),
                    StoredPack {
                        kind: ObjectKind::DataPack,
                        size: 100,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn parses_every_form_and_rejects_nonsense() {
        assert_eq!(
            "3/31".parse::<DataSubset>().ok(),
            Some(DataSubset::Part { n: 3, m: 31 })
        );
        assert_eq!("12.5%".parse::<DataSubset>().ok(), Some(DataSubset::Percent(12.5)));
        assert_eq!("2G".parse::<DataSubset>().ok(), Some(DataSubset::Bytes(2 << 30)));
        assert_eq!("500MiB".parse::<DataSubset>().ok(), Some(DataSubset::Bytes(500 << 20)));
        assert_eq!("4096".parse::<DataSubset>().ok(), Some(DataSubset::Bytes(4096)));
        for bad in ["0/5", "6/5", "1/0", "x/2", "0%", "101%", "5Q", "", "-3M"] {
            assert!(bad.parse::<DataSubset>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rotating_shares_cover_every_pack_once_and_are_stable() {
        let s = stored(200);
        let mut seen = HashSet::new();
        for n in 1..=7 {
            let part = select(&s, Some(DataSubset::Part { n, m: 7 })).unwrap();
            assert_eq!(part, select(&s, Some(DataSubset::Part { n, m: 7 })).unwrap());
            assert!(!part.is_empty(), "share {n}/7 of 200 packs is empty");
            for id in part {
                assert!(seen.insert(id), "a pack is in two shares");
            }
        }
        assert_eq!(seen.len(), s.len());
    }

    #[test]
    fn random_shares_take_the_asked_amount() {
        let s = stored(40);
        assert_eq!(select(&s, Some(DataSubset::Percent(25.0))).unwrap().len(), 10);
        assert_eq!(select(&s, Some(DataSubset::Percent(0.1))).unwrap().len(), 1);
        // 100-byte packs: 250 bytes need three of them.
        assert_eq!(select(&s, Some(DataSubset::Bytes(250))).unwrap().len(), 3);
        assert_eq!(select(&s, Some(DataSubset::Bytes(1 << 40))).unwrap().len(), 40);
        assert_eq!(select(&s, None).unwrap().len(), 40);
    }
}
