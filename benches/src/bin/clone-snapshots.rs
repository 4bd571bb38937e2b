//! clone-snapshots: adds copies of a repository's newest snapshot of one
//! host, each an hour older than the one before, so that a repository made
//! by real backups reaches issue 14's 10,000 snapshots without 10,000
//! backups. `restic_scale.py --clone-snapshots` does the same to restic's
//! repository, so both tools are timed on the same shape.
//!
//! ```text
//! CAIRN_PASSWORD_FILE=pw clone-snapshots --repo DIR --host scale-small --count 9900
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cairn_benches::genrepo;
use cairn_engine::{LocalBackend, Repository};
use clap::Parser;

/// Copies of the newest snapshot of `--host`, older than it, so it stays
/// the newest (and the parent of the next backup). The password comes from
/// CAIRN_PASSWORD_FILE (or CAIRN_PASSWORD).
#[derive(Parser)]
struct Args {
    /// The local-folder repository.
    #[arg(long)]
    repo: PathBuf,
    /// Whose newest snapshot is copied.
    #[arg(long)]
    host: String,
    /// How many copies to add.
    #[arg(long)]
    count: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clone-snapshots: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> genrepo::Result<()> {
    const HOUR_NS: i64 = 3_600_000_000_000;
    let password = genrepo::password_from_env()?;
    let repo = Repository::open(Arc::new(LocalBackend::new(&args.repo)), &password)?;
    let (_, newest) = repo
        .list_snapshots()?
        .into_iter()
        .filter(|(_, s)| s.host == args.host)
        .max_by_key(|(_, s)| s.time_ns)
        .ok_or_else(|| format!("no snapshot of host {}", args.host))?;
    for i in 1..=args.count {
        let mut copy = newest.clone();
        copy.time_ns -= i64::try_from(i)? * HOUR_NS;
        repo.save_snapshot(&copy)?;
    }
    Ok(())
}
