//! Storage classes and what they cost: bytes per class from the storage
//! listing, a monthly price per class from a table (AWS's list prices
//! unless cairn.toml says otherwise), and the early-deletion charge of
//! removing data before its class's minimum storage duration.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::StatsError;
use crate::backend::ObjectKind;
use crate::id::PackId;
use crate::index::Index;
use crate::repository::Repository;
use crate::retrieve::{age_days, early_deletion_usd, minimum_days, DEFAULT_PRICES_DATE, DEFAULT_STORAGE_PRICES};

/// Storage prices, US dollars per GB-month (GB = 2^30 bytes, as AWS bills).
#[derive(Debug, Clone)]
pub struct Prices {
    usd_per_gb_month: BTreeMap<String, f64>,
    /// Classes whose price came from the user rather than the defaults.
    overridden: Vec<String>,
}

impl Default for Prices {
    /// AWS S3's us-east-1 list prices (see [`DEFAULT_STORAGE_PRICES`]).
    fn default() -> Self {
        Prices {
            usd_per_gb_month: DEFAULT_STORAGE_PRICES
                .iter()
                .map(|(c, p)| (c.to_string(), *p))
                .collect(),
            overridden: Vec::new(),
        }
    }
}

impl Prices {
    /// Sets the price of `class` (a new class, or replacing a default).
    pub fn set(&mut self, class: &str, usd_per_gb_month: f64) {
        self.usd_per_gb_month.insert(class.to_string(), usd_per_gb_month);
        self.overridden.push(class.to_string());
    }

    /// The price of `class`, if the table has one.
    pub fn price(&self, class: &str) -> Option<f64> {
        self.usd_per_gb_month.get(class).copied()
    }

    fn source(&self) -> String {
        let defaults = format!("AWS S3 us-east-1 list prices ({DEFAULT_PRICES_DATE})");
        if self.overridden.is_empty() {
            defaults
        } else {
            format!(
                "{defaults}, with cairn.toml [prices] for {}",
                self.overridden.join(", ")
            )
        }
    }
}

/// One storage class of the repository's packs.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCost {
    /// Class name as the storage lists it (`local` for a folder).
    pub class: String,
    /// Packs in it.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Its price, when the table has one.
    pub usd_per_gb_month: Option<f64>,
    /// What its bytes cost a month.
    pub monthly_usd: Option<f64>,
    /// Its minimum storage duration, when it has one.
    pub minimum_days: Option<u32>,
}

/// Bytes and monthly price per storage class.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    /// Always `USD`.
    pub currency: &'static str,
    /// Where the prices come from.
    pub prices: String,
    /// Each class the listing shows, largest first.
    pub classes: Vec<ClassCost>,
    /// The sum over the priced classes.
    pub monthly_usd: f64,
    /// Classes the table has no price for (not in `monthly_usd`).
    pub unpriced: Vec<String>,
}

/// A source's (or tag's) bytes in one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassBytes {
    /// The class.
    pub class: String,
    /// Bytes only this source references.
    pub unique_bytes: u64,
    /// Bytes it shares with others.
    pub shared_bytes: u64,
}

/// What a source (or tag) costs.
#[derive(Debug, Clone, Serialize)]
pub struct SourceCost {
    /// Its bytes per class.
    pub by_class: Vec<ClassBytes>,
    /// The monthly price of its unique bytes: what forgetting it saves.
    pub monthly_usd: f64,
    /// The monthly price of the bytes it shares with others.
    pub shared_monthly_usd: f64,
    /// The early-deletion charge that forgetting it now (and pruning)
    /// would incur: its unique bytes in classes with a minimum storage
    /// duration, for the days their packs have not yet stayed.
    pub early_deletion_usd: f64,
}

/// The packs as the storage lists them, and their classes.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Packs listed.
    pub packs: u64,
    /// Their bytes.
    pub pack_bytes: u64,
    classes: Vec<String>,
    /// Objects and bytes per class number.
    per_class: Vec<(u64, u64)>,
    /// Per pack of the index (by position): its class number and its age
    /// in days where the listing says.
    of_pack: Vec<(usize, Option<f64>)>,
}

impl Listing {
    /// Lists the data and tree packs; those the listing gives no class are
    /// in `unclassed`.
    pub(super) fn read(repo: &Repository, index: &Index, unclassed: &str) -> Result<Self, StatsError> {
        let now = crate::time::now_ns();
        let mut l = Listing::default();
        let mut by_id: HashMap<PackId, (usize, Option<f64>)> = HashMap::new();
        for kind in [ObjectKind::DataPack, ObjectKind::TreePack] {
            for o in repo.backend().list(kind)? {
                let class = o.storage_class.as_deref().unwrap_or(unclassed);
                let c = l.class_number(class);
                l.packs += 1;
                l.pack_bytes += o.size;
                l.per_class[c].0 += 1;
                l.per_class[c].1 += o.size;
                if let Ok(id) = PackId::from_hex(&o.name) {
                    by_id.insert(id, (c, age_days(now, o.modified_ns)));
                }
            }
        }
        let fallback = l.class_number(unclassed);
        l.of_pack = index
            .packs()
            .iter()
            .map(|p| by_id.get(&p.id).copied().unwrap_or((fallback, None)))
            .collect();
        Ok(l)
    }

    fn class_number(&mut self, class: &str) -> usize {
        if let Some(i) = self.classes.iter().position(|c| c == class) {
            return i;
        }
        self.classes.push(class.to_string());
        self.per_class.push((0, 0));
        self.classes.len() - 1
    }

    /// Number of classes (for per-class arrays).
    pub(super) fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// The class number of the pack at `pack` (its index position).
    pub(super) fn class_of(&self, pack: usize) -> usize {
        self.of_pack.get(pack).map(|p| p.0).unwrap_or(0)
    }

    /// The early-deletion charge of removing `bytes` of the pack at `pack`
    /// now; 0 for classes without a minimum or without a price.
    pub(super) fn early_deletion(&self, prices: &Prices, pack: usize, bytes: u64) -> f64 {
        let Some(&(c, age)) = self.of_pack.get(pack) else {
            return 0.0;
        };
        let class = &self.classes[c];
        match (minimum_days(class), prices.price(class)) {
            (Some(days), Some(price)) => early_deletion_usd(bytes, days, price, age),
            _ => 0.0,
        }
    }

    /// The cost of everything listed.
    pub(super) fn cost(&self, prices: &Prices) -> CostReport {
        let mut classes: Vec<ClassCost> = self
            .classes
            .iter()
            .zip(&self.per_class)
            .filter(|(_, (n, _))| *n > 0)
            .map(|(class, &(objects, bytes))| {
                let price = prices.price(class);
                ClassCost {
                    class: class.clone(),
                    objects,
                    bytes,
                    usd_per_gb_month: price,
                    monthly_usd: price.map(|p| monthly(bytes, p)),
                    minimum_days: minimum_days(class),
                }
            })
            .collect();
        classes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.class.cmp(&b.class)));
        CostReport {
            currency: "USD",
            prices: prices.source(),
            monthly_usd: classes.iter().filter_map(|c| c.monthly_usd).sum(),
            unpriced: classes
                .iter()
                .filter(|c| c.usd_per_gb_month.is_none())
                .map(|c| c.class.clone())
                .collect(),
            classes,
        }
    }

    /// A source's cost from its unique and referenced bytes per class.
    pub(super) fn source_cost(&self, prices: &Prices, unique: &[u64], referenced: &[u64], early: f64) -> SourceCost {
        let mut out = SourceCost {
            by_class: Vec::new(),
            monthly_usd: 0.0,
            shared_monthly_usd: 0.0,
            early_deletion_usd: early,
        };
        for (c, class) in self.classes.iter().enumerate() {
            let u = unique.get(c).copied().unwrap_or(0);
            let shared = referenced.get(c).copied().unwrap_or(0).saturating_sub(u);
            if u == 0 && shared == 0 {
                continue;
            }
            if let Some(p) = prices.price(class) {
                out.monthly_usd += monthly(u, p);
                out.shared_monthly_usd += monthly(shared, p);
            }
            out.by_class.push(ClassBytes {
                class: class.clone(),
                unique_bytes: u,
                shared_bytes: shared,
            });
        }
        out
    }
}

/// What `bytes` cost a month at `usd_per_gb_month`.
fn monthly(bytes: u64, usd_per_gb_month: f64) -> f64 {
    bytes as f64 / crate::retrieve::BILLED_GB * usd_per_gb_month
}
