//! Arguments of the policy commands: status, run, config check.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
#[command(
    after_help = "A source's snapshots are those of its kind carrying its host (when set), all its tags and \
all its paths, so a plain `cairn backup` of the same paths with the same tags counts. A source is in BREACH when \
its newest snapshot is older than its `rpo` or it has none; the exit code is then 1, as it is when a \
repository cannot be read. Copies are looked up in the source's `copy-to` destinations (else its \
repository profile's), whose passwords come from CAIRN_TO_PASSWORD_FILE or their profiles."
)]
pub struct StatusArgs {
    /// Sources to report on (default: all in cairn.toml).
    #[arg(value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Also write the figures as Prometheus node-exporter textfile metrics
    /// to FILE (written beside it and renamed into place).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "For each source ([sources.NAME] in cairn.toml), in order: its pre-command (if it fails, \
nothing else runs), the backup its kind calls for, the copies (its copy-to, else its repository profile's), \
its post-command (whatever the backup's outcome), and forget --policy on its snapshots when there is a \
retention table (forget = false turns that off; prune runs on its own schedule). Each step runs as a \
cairn child process with --json; --json prints every step's report. The exit code is 1 when any step of \
any source failed, each named on standard error; with --all, a failing source does not stop the others."
)]
pub struct RunArgs {
    /// Sources to run.
    #[arg(value_name = "SOURCE", required_unless_present = "all")]
    pub sources: Vec<String>,
    /// Every configured source.
    #[arg(long, conflicts_with = "sources")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file (--config, else the user's own): syntax,
    /// unknown keys, source kinds and durations, RTO classes, retention
    /// rules, S3 settings, and that every repository a source or copy-to
    /// names is defined. With --online, also open every repository.
    Check(ConfigCheckArgs),
}

#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// Also open every repository profile (password and storage reachable).
    #[arg(long)]
    pub online: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Per source: the newest of its snapshots is restored with --verify (every file re-read and \
compared with the snapshot) into a scratch folder, the source's verification runs (verify-command if set; \
for a Redis dump, redis-server is started on it on a free loopback port and its keys per database are \
compared with those recorded at backup), and the restore time is compared with the source's RTO class. \
The scratch folder is removed unless --keep. The exit code is 1 when any source fails."
)]
pub struct DrillArgs {
    /// Sources to drill (default: every configured source).
    #[arg(value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Restore from this repository (profile or location) instead of the
    /// source's own: the off-site copy, to prove the disaster path. Its
    /// password comes from CAIRN_TO_PASSWORD_FILE or its profile.
    #[arg(long, value_name = "REPO")]
    pub from: Option<String>,
    /// Folder the scratch restores go in (default: the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<std::path::PathBuf>,
    /// Keep the restored data (its folder is in the report).
    #[arg(long)]
    pub keep: bool,
    /// Hand the JSON report to this command (through `sh -c`) on its
    /// standard input, e.g. a chat or mail script.
    #[arg(long, value_name = "CMD")]
    pub notify_command: Option<String>,
}
