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

UNIQUE is what forgetting a source frees once a prune repacks or deletes every pack it leaves \
unused (prune --max-unused 0%; the default 5% leaves some partly used packs, and archived packs \
that are partly used stay until --repack-cold or until their other blobs go too); the \
early-deletion charge is estimated for those bytes alone.

Memory: the index, plus per blob 4 bytes and a bit (16 more when snapshots have tags; at most 64 \
tags are broken down), plus a total per tree; raw-data adds prune's used-blob set, \
files-by-contents 16 bytes per distinct content. Each tree is read once for the restore size and \
once per source reaching it. Nothing is written and no lock is taken.")]
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
