//! `cairn stats`.

use clap::Args;

use super::FilterArgs;

#[derive(Debug, Args)]
#[command(after_help = "\
Modes (restic's meanings): restore-size, the bytes a restore of the snapshots would write (each \
snapshot whole, a hard-linked file once per snapshot); raw-data, the distinct blobs they reference, \
uncompressed; files-by-contents, their distinct file contents.

With no SNAPSHOT and no filter the whole repository is counted, and the output adds the \
deduplication ratio and, per source (snapshots sharing host, paths and tags) and per tag, the \
stored bytes only it references (what forgetting it and a prune would free) and the bytes it \
shares. --cost prices the stored bytes per storage class with AWS's us-east-1 list prices, or \
cairn.toml's [prices] table (CLASS = USD per GB-month), and adds each source's monthly cost and the \
early-deletion charge forgetting it now would incur.

Memory: the index plus about 5 bytes per blob (12 with tags). Nothing is written and no lock is \
taken.")]
pub struct StatsArgs {
    /// Snapshots to count (id prefixes or `latest`); with none, all that
    /// pass the filters.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// What to count: restore-size, raw-data or files-by-contents.
    #[arg(long, default_value = "restore-size", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<cairn_engine::StatsMode>()))]
    pub mode: cairn_engine::StatsMode,
    /// Add stored bytes and monthly price per storage class, per source and
    /// per tag, and the early-deletion charge of forgetting each source now.
    #[arg(long)]
    pub cost: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}
