//! gen-repo: builds a large synthetic repository (data blobs, trees, nightly
//! snapshots) without reading any files, for measuring prune at scale.
//!
//! ```text
//! CAIRN_PASSWORD_FILE=pw gen-repo --repo DIR --blobs 1000000 --snapshots 1000
//! cairn -r DIR check        # the result is a valid repository
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_benches::genrepo::{self, Config};
use clap::Parser;

/// Generates a valid repository of `--blobs` small data blobs referenced by
/// `--snapshots` nightly snapshots whose contents slide over the blobs
/// (consecutive snapshots share most of them; the union is every blob).
/// The password comes from CAIRN_PASSWORD_FILE (or CAIRN_PASSWORD), as for
/// `cairn`.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Repository directory to create (must not hold a repository).
    #[arg(long)]
    repo: PathBuf,
    /// Data blobs in the repository (the union over all snapshots).
    #[arg(long, default_value_t = 1_000_000)]
    blobs: u64,
    /// Snapshots, one per night.
    #[arg(long, default_value_t = 1000)]
    snapshots: u64,
    /// Files in each snapshot (about).
    #[arg(long, default_value_t = 1000)]
    files_per_snapshot: u64,
    /// Plaintext bytes of each data blob.
    #[arg(long, default_value_t = 64)]
    blob_size: u32,
    /// Share of all blobs each snapshot references, in %. Forgetting the
    /// older half of the snapshots leaves about (100 - P) / 2 % unused.
    #[arg(long, default_value_t = 25)]
    window_percent: u64,
    /// Close data packs after N blobs instead of at the repository's pack
    /// size: with small blobs, to get the pack count of a real repository
    /// (e.g. 16 for 1 MiB chunks in 16 MiB packs).
    #[arg(long)]
    blobs_per_pack: Option<usize>,
    /// Seed of the blob contents.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Sealing threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as one JSON line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-repo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> genrepo::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global()?;
    }
    let cfg = Config {
        repo: args.repo,
        password: genrepo::password_from_env()?,
        blobs: args.blobs,
        snapshots: args.snapshots,
        files_per_snapshot: args.files_per_snapshot,
        blob_size: args.blob_size,
        window_percent: args.window_percent,
        blobs_per_pack: args.blobs_per_pack,
        seed: args.seed,
    };
    let report = genrepo::run(&cfg)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    Ok(())
}
