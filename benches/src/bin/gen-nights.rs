//! gen-nights: deterministic generator of the "nights" benchmark data set.
//!
//! ```text
//! gen-nights --out DIR --night 2 --size-mb 1000 --seed 42   # DIR/src becomes night 2
//! gen-nights --out DIR --nights 3 --size-mb 100             # DIR/night-1 .. DIR/night-3
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_benches::nights::{self, Config};
use clap::Parser;

/// Generates the nightly benchmark data set (Cassandra snapshots, a Redis
/// dump, a PostgreSQL dump), deterministically for a given seed.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Output directory (holds the live SSTables, staged dumps and night folders).
    #[arg(long)]
    out: PathBuf,
    /// Bring DIR/src to this night in place (same path every night). Without
    /// it, every night 1..=--nights is written to DIR/night-<n>.
    #[arg(long)]
    night: Option<u32>,
    /// Number of nights to prepare.
    #[arg(long, default_value_t = 3)]
    nights: u32,
    /// Nominal size of one night in MB (10^6 bytes).
    #[arg(long, default_value_t = 1000)]
    size_mb: u64,
    /// Seed of the data set (same seed and size: same data).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Generator threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Leave out the Redis dump (no redis-server needed).
    #[arg(long)]
    no_redis: bool,
    /// Leave out the PostgreSQL dump (no PostgreSQL needed).
    #[arg(long)]
    no_postgres: bool,
    /// Print one JSON summary line per night on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = Config {
        out: args.out,
        seed: args.seed,
        size_mb: args.size_mb,
        nights: args.nights,
        night: args.night,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        redis: !args.no_redis,
        postgres: !args.no_postgres,
    };
    match nights::run(&cfg) {
        Ok(summaries) => {
            if args.json {
                for s in &summaries {
                    println!("{}", s.to_json());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-nights: error: {e}");
            ExitCode::FAILURE
        }
    }
}
