//! Arguments of `cairn import`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::FilterArgs;

/// What to import from.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import the snapshots of a restic repository (format 1 or 2), keeping
    /// their times, hosts, tags, paths and file metadata.
    Restic(ImportResticArgs),
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Each selected restic snapshot becomes a Cairn snapshot in the repository of -r, with the same time, \
host, user, tags, paths and file metadata (modes, owners, times, symlinks, hard links, special \
files, extended attributes). Files are chunked again with this repository's own chunker, so they \
deduplicate with everything already here. The restic repository is only read: nothing is written \
to it and no restic lock is taken, so restic can keep running beside the import.

Run it again at any time: snapshots imported before (each records the restic snapshot it came \
from, see `snapshots --json`: copied_from) are skipped, and only new restic snapshots are \
imported. A file unchanged since the previous imported snapshot of the same host and paths is not \
read again. Interrupted (Ctrl-C, killed), an import keeps the snapshots it finished; the next run \
continues with the rest and reuses the data already stored.

The restic password comes from --from-password-file, --from-password-command or \
CAIRN_FROM_PASSWORD_FILE (in that order), else a prompt; never from the Cairn repository's own \
sources. The location is a folder, local:PATH, s3:... or a profile name from cairn.toml (whose \
s3 table gives the endpoint and credentials).

Damage in the restic repository (a missing pack, a blob that fails authentication) costs only \
the files that need it: such a file is imported with the blobs that are intact and renamed \
NAME.damaged, a folder whose tree is lost becomes an empty NAME.damaged folder, each is named in \
the output (and in --json under problems), and the exit code is 3. A snapshot whose root tree \
cannot be read is not imported (exit code 1) and the others are.")]
pub struct ImportResticArgs {
    /// The restic repository: a folder, `local:PATH`, `s3:...`, or a profile name.
    #[arg(long, value_name = "LOCATION")]
    pub from: String,
    /// File whose first line is the restic repository's password (or set CAIRN_FROM_PASSWORD_FILE).
    #[arg(long, value_name = "FILE", conflicts_with = "from_password_command")]
    pub from_password_file: Option<PathBuf>,
    /// Command that prints the restic repository's password.
    #[arg(long, value_name = "COMMAND")]
    pub from_password_command: Option<String>,
    /// Read and re-chunk everything, but write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}
