//! Prints each stage's single-core speed on Data.db-like data and the
//! machine's 2-core limits for backup and restore.
//! Usage: limits [--mb N] [--level L] [--json]

use cairn_benches::nights::cassandra::sample_data_db;
use cairn_benches::stages::{limits, measure};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<i64>().ok())
    };
    let mb = arg("--mb").unwrap_or(64).max(8) as usize;
    let level = arg("--level").unwrap_or(1) as i32;
    let json = args.iter().any(|a| a == "--json");
    let data = sample_data_db(42, mb * 1_000_000);
    let speeds = measure(&data, level);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(2) as f64;
    let (backup, restore) = limits(&speeds, cores);
    if json {
        let stages: Vec<_> = speeds
            .iter()
            .map(|s| serde_json::json!({"stage": s.stage, "mb_s": s.mb_s}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"stages": stages, "cores": cores, "backup_limit_mb_s": backup, "restore_limit_mb_s": restore, "zstd_level": level, "sample_mb": mb})
        );
        return;
    }
    println!("single-core speed on {mb} MB of Data.db-like data (zstd level {level}):");
    for s in &speeds {
        println!("  {:<55} {:>8.0} MB/s", s.stage, s.mb_s);
    }
    println!("{cores}-core limit, backup of new data: {backup:.0} MB/s");
    println!("{cores}-core limit, restore:             {restore:.0} MB/s");
}
