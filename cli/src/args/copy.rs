//! Arguments of `cairn copy`.

use std::path::PathBuf;

use clap::Args;

use super::{FilterArgs, RetrievalArgs};

#[derive(Debug, Args)]
#[command(after_long_help = "\
The source is the repository of -r (or CAIRN_REPOSITORY, or cairn.toml's default). Each \
destination is a profile name from cairn.toml or a location, as for `init --chunker-params-from`; \
without --to, the `copy-to` list of the source's profile is used. The two repositories keep their \
own passwords and master keys: the destination's password comes from --to-password-file, \
--to-password-command, CAIRN_TO_PASSWORD_FILE, or the destination profile's password-file / \
password-command (in that order), never from the source's sources. S3 settings and credentials \
come from each profile's own s3 table.

Snapshots already in the destination (copied from the same snapshot of this same repository \
before) are skipped, so a nightly copy reads and writes only what is new. A copied snapshot \
records where it came from (`snapshots --json`: copied_from).

Two paths, and the summary says which one was taken:
  fast      the destination was made with `cairn init --chunker-params-from SOURCE`, so both \
repositories chunk alike and name blobs alike: blobs are re-encrypted and re-packed, never \
re-chunked.
  rechunk   otherwise: every file is chunked again with the destination's parameters, so the \
destination deduplicates on its own.
For a nightly off-site or cold copy, create the destination with \
`cairn -r offsite init --chunker-params-from primary` and the copies take the fast path.

Interrupted (Ctrl-C, killed, network lost) and run again, a copy resumes: packs already stored \
in the destination are kept and not copied again, and a snapshot is written to the destination \
only after everything it references is stored there. Packs of the source in an archive storage \
class (GLACIER, DEEP_ARCHIVE) are retrieved as by `cairn restore`: only those needed, each \
requested once, with --wait or exit code 14. A destination with `storage-class` set gets its data \
packs in that class.")]
pub struct CopyArgs {
    /// Snapshots to copy (id prefixes or `latest`); default: every snapshot
    /// passing the filters.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// The repository to copy into: a profile name from cairn.toml or a
    /// location (repeatable). Default: the `copy-to` list of the source's profile.
    #[arg(long = "to", value_name = "REPO")]
    pub to: Vec<String>,
    /// File whose first line is the destination's password (or set CAIRN_TO_PASSWORD_FILE).
    #[arg(long, value_name = "FILE", conflicts_with = "to_password_command")]
    pub to_password_file: Option<PathBuf>,
    /// Command that prints the destination's password.
    #[arg(long, value_name = "COMMAND")]
    pub to_password_command: Option<String>,
    /// Say what would be copied; write nothing and request no retrieval.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
}
