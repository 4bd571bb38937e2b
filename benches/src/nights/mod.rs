//! The "nights" data set: what a nightly backup of a small production
//! estate sees, materialised one night at a time at a fixed path.
//!
//! A night's folder (`<out>/src` in `--night N` mode) holds
//!
//! * `node1/`, `node2/`: Cassandra data directories with only that night's
//!   snapshot tag, `node<k>/data/<ks>/<table>-<uuid>/snapshots/nightly-YYYY-MM-DD/`,
//!   whose SSTable components are hard links into `<out>/live/...` (see
//!   [`cassandra`]),
//! * `redis/dump.rdb` from a real redis-server (see [`redis`]),
//! * `sql/crdb.sql`, a plain `pg_dump` of a real PostgreSQL database (see
//!   [`postgres`]).
//!
//! Everything except the Redis/PostgreSQL file framing (timestamps, the key
//! order inside the RDB) is a pure function of the seed and the size.

pub mod cassandra;
pub mod postgres;
pub mod redis;
pub mod rng;
pub mod text;
pub mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use util::{copy_atomic, create_dir_all, remove_dir_all_if_exists, write_atomic, Context};
pub use util::{Error, Result};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    /// Output directory (state, stage and the night folders live here).
    pub out: PathBuf,
    pub seed: u64,
    /// Nominal bytes of one night, in MB (10^6).
    pub size_mb: u64,
    /// Nights to prepare (Redis/PostgreSQL dumps are made for all at once).
    pub nights: u32,
    /// `Some(n)`: bring `<out>/src` to night n in place. `None`: write every
    /// night 1..=nights as its own folder `<out>/night-<n>`.
    pub night: Option<u32>,
    pub threads: usize,
    pub redis: bool,
    pub postgres: bool,
}

/// How a night's bytes split between the three sources.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub cassandra: u64,
    pub redis: u64,
    pub postgres: u64,
}

impl Budget {
    /// ~13 % Redis (130 MB of 1 GB), ~7.5 % PostgreSQL (75 MB), the rest
    /// Cassandra.
    pub fn for_size(size_mb: u64) -> Budget {
        let total = size_mb.saturating_mul(1_000_000);
        let redis = total / 100 * 13;
        let postgres = total / 1000 * 75;
        Budget {
            cassandra: total - redis - postgres,
            redis,
            postgres,
        }
    }
}

/// What one materialised night contains.
#[derive(Debug, Default)]
pub struct NightSummary {
    pub night: u32,
    pub root: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub largest_data_db: Option<(PathBuf, u64)>,
    pub cassandra: cassandra::CassStats,
}

impl NightSummary {
    /// One-line JSON for scripts.
    pub fn to_json(&self) -> String {
        let (largest, largest_bytes) = match &self.largest_data_db {
            Some((p, n)) => (p.display().to_string(), *n),
            None => (String::new(), 0),
        };
        serde_json::json!({
            "night": self.night,
            "root": self.root.display().to_string(),
            "files": self.files,
            "bytes": self.bytes,
            "largest_data_db": largest,
            "largest_data_db_bytes": largest_bytes,
            "sstables": self.cassandra.sstables,
            "sstables_new": self.cassandra.created,
            "flushes": self.cassandra.flushed,
            "compactions": self.cassandra.compactions,
            "generated_bytes": self.cassandra.generated_bytes,
        })
        .to_string()
    }
}

const PARAMS_FILE: &str = "gen-nights.json";
/// Bump whenever the generated content changes, so that output directories
/// made by an older generator (reused between harness runs) are refused
/// rather than mixed with new files.
const FORMAT: u64 = 1;

/// Refuses to mix data sets: an output directory belongs to one (seed, size).
fn check_params(cfg: &Config) -> Result<()> {
    let path = cfg.out.join(PARAMS_FILE);
    let want = serde_json::json!({ "format": FORMAT, "seed": cfg.seed, "size_mb": cfg.size_mb });
    match fs::read(&path) {
        Ok(bytes) => {
            let have: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
            if have != want {
                return Err(Error::msg(format!(
                    "{} was generated with {have}, not {want}: use another --out or delete it",
                    cfg.out.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_atomic(&path, want.to_string().as_bytes()),
        Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
    }
}

/// Runs `prepare` unless the stage already holds at least `nights` nights.
fn staged(stage: &Path, name: &str, nights: u32, prepare: impl FnOnce() -> Result<()>) -> Result<()> {
    let ready = stage.join(name).join("READY");
    let have = fs::read_to_string(&ready)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if have >= nights {
        return Ok(());
    }
    remove_dir_all_if_exists(&stage.join(name))?;
    prepare()?;
    write_atomic(&ready, nights.to_string().as_bytes())
}

/// Generates what `cfg` asks for; returns one summary per materialised night.
pub fn run(cfg: &Config) -> Result<Vec<NightSummary>> {
    if cfg.nights == 0 || cfg.night == Some(0) {
        return Err(Error::msg("nights are numbered from 1"));
    }
    if cfg.size_mb == 0 {
        return Err(Error::msg("--size-mb must be at least 1"));
    }
    create_dir_all(&cfg.out)?;
    check_params(cfg)?;
    let budget = Budget::for_size(cfg.size_mb);
    let stage = cfg.out.join("stage");
    let need = cfg.night.unwrap_or(cfg.nights).max(cfg.nights);
    if cfg.redis {
        staged(&stage, "redis", need, || {
            redis::prepare(&stage, cfg.seed, budget.redis, need)
        })?;
    }
    if cfg.postgres {
        staged(&stage, "sql", need, || {
            postgres::prepare(&stage, cfg.seed, budget.postgres, need)
        })?;
    }
    let mut out = Vec::new();
    match cfg.night {
        Some(n) => out.push(materialise(cfg, &budget, n, &cfg.out.join("src"))?),
        None => {
            for n in 1..=cfg.nights {
                let root = cfg.out.join(format!("night-{n}"));
                remove_dir_all_if_exists(&root)?;
                out.push(materialise(cfg, &budget, n, &root)?);
            }
        }
    }
    Ok(out)
}

fn materialise(cfg: &Config, budget: &Budget, night: u32, root: &Path) -> Result<NightSummary> {
    let started = Instant::now();
    create_dir_all(root)?;
    let cassandra = cassandra::materialise(&cfg.out, root, cfg.seed, budget.cassandra, night, cfg.threads)?;
    let stage = cfg.out.join("stage");
    for (enabled, from, dir, name) in [
        (
            cfg.redis,
            stage.join("redis").join(format!("night-{night}.rdb")),
            "redis",
            "dump.rdb",
        ),
        (
            cfg.postgres,
            stage.join("sql").join(format!("night-{night}.sql")),
            "sql",
            "crdb.sql",
        ),
    ] {
        let dir = root.join(dir);
        if enabled {
            create_dir_all(&dir)?;
            copy_atomic(&from, &dir.join(name))?;
        } else {
            remove_dir_all_if_exists(&dir)?;
        }
    }
    let mut summary = NightSummary {
        night,
        root: root.to_path_buf(),
        cassandra,
        ..NightSummary::default()
    };
    walk(root, &mut summary)?;
    eprintln!(
        "gen-nights: night {night} at {}: {} files, {:.1} MB ({} SSTables, {} new, {} flushes, {} compactions; {:.1} MB of SSTables generated) in {:.1}s",
        root.display(),
        summary.files,
        summary.bytes as f64 / 1e6,
        summary.cassandra.sstables,
        summary.cassandra.created,
        summary.cassandra.flushed,
        summary.cassandra.compactions,
        summary.cassandra.generated_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

fn walk(dir: &Path, s: &mut NightSummary) -> Result<()> {
    for entry in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let path = entry.path();
        if ft.is_dir() {
            walk(&path, s)?;
        } else if ft.is_file() {
            let len = entry.metadata()?.len();
            s.files += 1;
            s.bytes += len;
            let is_data = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("-Data.db"));
            if is_data && s.largest_data_db.as_ref().is_none_or(|(_, l)| len > *l) {
                s.largest_data_db = Some((path, len));
            }
        }
    }
    Ok(())
}
