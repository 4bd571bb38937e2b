//! The command line, as clap definitions. Completions and the man page are
//! generated from these same definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod copy;
mod import;
mod maintenance;
mod mount;
mod policy;
mod stats;

pub use copy::CopyArgs;
pub use import::{ImportCommand, ImportResticArgs};
pub use maintenance::{ForgetArgs, PruneArgs, PruneSettings, RewriteArgs, TagArgs};
pub use mount::MountArgs;
pub use policy::{ConfigCheckArgs, ConfigCommand, DrillArgs, RunArgs, StatusArgs};
pub use stats::StatsArgs;

pub const EXIT_CODES: &str = "\
EXIT CODES:
    0    success
    1    failure (the message says what failed and what to do)
    3    backup saved, but some files could not be read (they are listed)
    10   the repository does not exist
    11   the repository is locked by maintenance
    12   wrong password
    14   archive retrieval requested and pending: run the same command again later
    130  interrupted
    141  standard output was closed (e.g. by `| head`) before everything was written
    With --stdin-from-command, a failing command's own non-zero status is returned.";

pub const ENVIRONMENT: &str = "\
ENVIRONMENT:
    CAIRN_REPOSITORY          repository location or profile name (like -r)
    CAIRN_PASSWORD_FILE       file whose first line is the password
    CAIRN_PASSWORD_COMMAND    command that prints the password
    CAIRN_PASSWORD            the password itself (prefer the file or command)
    CAIRN_NEW_PASSWORD_FILE   new password for `key add`, `key passwd`, `key recover`
    CAIRN_FROM_PASSWORD_FILE  password of the other repository for `init --chunker-params-from`
                              and of the restic repository for `import restic`
    CAIRN_TO_PASSWORD_FILE    password of the destination of `copy` (and of a profile's copy-to)
    CAIRN_REDIS_PASSWORD_FILE file whose first line is the password of `backup --redis`
    CAIRN_S3_SOURCE_CREDENTIALS_FILE  credentials of the --s3-source / --to-s3 bucket
    CAIRN_LOG                 log filter, e.g. `debug` or `cairn_engine=trace`
Passwords are never taken from command-line arguments and never logged.
Commands cairn runs (--stdin-from-command, password and credentials commands)
get no CAIRN_* variable.";

/// Cairn: encrypted, deduplicating backups for files, database dumps and streams.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, long_about = None, after_long_help = format!("{EXIT_CODES}\n\n{ENVIRONMENT}"), after_help = "Exit codes and environment variables: see `cairn --help`.")]
pub struct Cli {
    /// Repository: a folder, `local:PATH`, or a profile name from cairn.toml.
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true)]
    pub repo: Option<String>,

    /// Configuration file (default: ~/.config/cairn/cairn.toml; one in the
    /// current folder is read only when named here). Refused if others may write it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print machine-readable JSON instead of tables (schema in the README).
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More detail (repeat for debug logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Do not use the local metadata cache (S3 repositories).
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Folder for the metadata cache (default: the user's cache folder, `cairn/`).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Limit uploads to this many KiB/s.
    #[arg(long, global = true, value_name = "KIB_S")]
    pub limit_upload: Option<u64>,

    /// Limit downloads to this many KiB/s.
    #[arg(long, global = true, value_name = "KIB_S")]
    pub limit_download: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up files and folders, standard input, or a command's output.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots(FilterArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Find which snapshots hold files matching a pattern.
    Find(FindArgs),
    /// Restore a snapshot, or one file or folder of it.
    ///
    /// Each file is written under a temporary name in its folder and moved to
    /// its real name once all its data is there. Damaged or missing data
    /// (a lost pack, a blob that fails authentication, a blob missing from
    /// the index) costs only the files that need it: everything else is
    /// restored, with its metadata, hard links and symlinks; every file that
    /// could not be restored is named with its reason (and listed in
    /// `--json` under summary.failed), nothing is left under its name, and
    /// the exit code is 1. Running the same command again retries them.
    ///
    /// Metadata never follows a symlink, and nothing outside the target is
    /// written. Set-uid/set-gid bits are dropped and device nodes left out
    /// unless --preserve-special.
    Restore(RestoreArgs),
    /// Write one file of a snapshot to standard output.
    ///
    /// If part of the file's data is damaged or missing, the output stops
    /// there, the message names the file and the blob or pack at fault, and
    /// the exit code is 1.
    Dump(DumpArgs),
    /// Remove snapshots, named or by keep rules (restic's meaning); their data goes in a later prune.
    Forget(ForgetArgs),
    /// Remove the data no snapshot uses (safe while backups run: see --help).
    Prune(PruneArgs),
    /// Write copies of snapshots without the files matching --exclude (erasure); the data goes in a later prune.
    Rewrite(RewriteArgs),
    /// Add, remove or set snapshots' tags; each changed snapshot is replaced, so its id changes.
    Tag(TagArgs),
    /// Copy snapshots into another repository (off-site, cold), with only the data it lacks.
    Copy(CopyArgs),
    /// Browse snapshots as a read-only file system (FUSE) until Ctrl-C.
    Mount(MountArgs),
    /// Bring snapshots over from another tool's repository (restic).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Verify the repository's structure, and with --read-data every byte.
    Check(CheckArgs),
    /// What the repository holds: restore size, deduplication, compression,
    /// what each source alone holds, and (--cost) what it costs per storage class.
    Stats(StatsArgs),
    /// Per configured source ([sources.NAME] in cairn.toml): the newest
    /// snapshot against its RPO, and the newest copy in each destination.
    Status(StatusArgs),
    /// Run configured sources' routine: pre-command, backup, copies,
    /// post-command, forget --policy (see --help).
    Run(RunArgs),
    /// Restore test: restore each source's newest snapshot into scratch,
    /// verify it, time it against the RTO, report pass or fail.
    Drill(DrillArgs),
    /// Validate cairn.toml: every problem with its line and key.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Heal a damaged repository: rebuild the index, or copy snapshots without lost data.
    Repair(RepairArgs),
    /// Remove stale maintenance locks (with --remove-all, every lock).
    Unlock(UnlockArgs),
    /// Print a decoded repository object (for debugging).
    Cat(CatArgs),
    /// Manage passwords (keys) and the recovery sheet.
    Key(KeyArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Copy the chunker seed and sizes and the blob-id key from another
    /// repository, so both cut and name content alike: `cairn copy` between
    /// them then moves blobs as they are instead of re-chunking files (its
    /// password comes from CAIRN_FROM_PASSWORD_FILE or a prompt).
    #[arg(long, value_name = "REPO")]
    pub chunker_params_from: Option<String>,
    /// zstd level for new data (0 = off). Default 1: see format-spec.
    #[arg(long, value_name = "LEVEL")]
    pub compression: Option<i32>,
    /// Target pack size in MiB (16 by default; 64–128 suit S3 and archive classes).
    #[arg(long, value_name = "MIB")]
    pub pack_size: Option<u32>,
    /// Argon2id memory in KiB for this password (default 65536). Lower only for tests.
    #[arg(long, hide = true)]
    pub kdf_memory_kib: Option<u32>,
    /// Argon2id passes (default 3). Lower only for tests.
    #[arg(long, hide = true)]
    pub kdf_iterations: Option<u32>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and folders to back up.
    #[arg(value_name = "PATH", conflicts_with_all = ["stdin", "stdin_from_command"])]
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one file.
    #[arg(long)]
    pub stdin: bool,
    /// File name for --stdin or --stdin-from-command.
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    pub stdin_filename: String,
    /// Run the command after `--` and back up its standard output; if it
    /// fails, no snapshot is saved and its status is returned.
    #[arg(long, requires = "command")]
    pub stdin_from_command: bool,
    /// The command for --stdin-from-command.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Host name to record (default: this machine's, or cairn.toml's).
    #[arg(long)]
    pub host: Option<String>,
    /// Snapshot time instead of now (RFC 3339, `YYYY-MM-DD HH:MM[:SS]` local, or `@UNIX`).
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Leave out paths matching this glob (repeatable; without `/` it matches names anywhere).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read exclude globs from a file, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Do not cross into other file systems.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Read and deduplicate, but write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Compare with this snapshot instead of the newest with the same host and paths.
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "force")]
    pub parent: Option<String>,
    /// Read every file again (no parent).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub redis: crate::source_redis::RedisArgs,
    #[command(flatten)]
    pub cassandra: crate::source_cassandra::CassandraBackupArgs,
    #[command(flatten)]
    pub hooks: crate::source_cassandra::HookArgs,
    /// Average chunk size for the contents this backup reads (a power of
    /// two from 4KiB to 2MiB; min = avg/4, max = avg*8), recorded in the
    /// snapshot and kept by the next backup of the same source; `repository`
    /// goes back to the repository's sizes. Default: the parent snapshot's,
    /// else the repository's (1MiB). Smaller chunks deduplicate more of a
    /// dump that changes a little everywhere and cost more index: see the
    /// README "SQL dumps".
    #[arg(long, value_name = "SIZE", value_parser = crate::units::chunk_size)]
    pub chunk_size: Option<cairn_engine::ChunkSizeChoice>,
    #[command(flatten)]
    pub s3: crate::source_s3::S3SourceArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags (`a,b` needs both; repeat for either).
    #[arg(long = "tag", value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    /// No filter given: every snapshot passes.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot: an id prefix or `latest`.
    pub snapshot: String,
    /// Folder or file in the snapshot (default: everything).
    pub path: Option<String>,
    /// Long format: mode, owner, size, time.
    #[arg(short, long)]
    pub long: bool,
    /// Only the entries directly in PATH.
    #[arg(long)]
    pub no_recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First snapshot.
    pub first: String,
    /// Second snapshot.
    pub second: String,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// Glob on names (`*.db`) or on whole paths when it contains `/`.
    pub pattern: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// `SNAPSHOT` or `SNAPSHOT:/path/in/snapshot` for one file or folder
    /// (SNAPSHOT is an id prefix or `latest`).
    #[arg(default_value = "latest")]
    pub snapshot: String,
    /// Folder to restore into (created if missing).
    #[arg(short, long, value_name = "DIR", required_unless_present = "to_s3")]
    pub target: Option<PathBuf>,
    /// Only paths matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out paths matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Point in time: the newest matching snapshot at or before TIME.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    /// Re-read everything written and compare it with the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Replace files that already exist in the target.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore set-uid and set-gid bits and create device nodes, as stored.
    /// Only root may use it (it is refused otherwise). Without it, set-id
    /// bits are dropped and each device node is left out with a warning.
    #[arg(long)]
    pub preserve_special: bool,
    /// Leave extended attributes out.
    #[arg(long)]
    pub no_xattrs: bool,
    #[command(flatten)]
    pub s3: crate::source_s3::S3RestoreArgs,
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub cassandra: crate::source_cassandra::CassandraRestoreArgs,
}

/// How packs in archive storage (GLACIER, DEEP_ARCHIVE) are retrieved by
/// `restore` and `check --read-data`.
#[derive(Debug, Args)]
pub struct RetrievalArgs {
    /// Retrieval tier for packs in archive storage.
    #[arg(long, value_enum, default_value = "standard")]
    pub tier: Tier,
    /// Days a retrieved copy stays readable.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    pub retrieve_days: u32,
    /// Wait for archive retrievals and go on as packs become readable
    /// (without it: request, then exit with code 14 "retrieval pending").
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Tier {
    Expedited,
    Standard,
    Bulk,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot: an id prefix or `latest`.
    pub snapshot: String,
    /// The file in the snapshot.
    pub path: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Snapshots to check (id prefixes or `latest`); with none and no
    /// filter, the whole repository. A scoped check reads only the trees and
    /// packs those snapshots need.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Read every pack and verify every blob (reads the whole repository
    /// from its storage, never from the local metadata cache; packs in
    /// archive storage are retrieved first, as by restore).
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify only a share of the packs (implies --read-data):
    /// `N/M` reads share N of M, chosen by pack id, so a nightly
    /// `--read-data-subset $(date +%-d)/31` reads everything in a month;
    /// `P%` reads a random P percent; a size such as `2G` reads random packs
    /// adding up to that much. Archived packs in the share are planned and
    /// retrieved first, and only they.
    #[arg(long, value_name = "N/M|P%|SIZE", value_parser = parse_subset)]
    pub read_data_subset: Option<cairn_engine::DataSubset>,
    /// Also check snapshots named by these filters (with no SNAPSHOT: all
    /// that pass them).
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Maintenance (prune) holds an exclusive lock in the repository's locks/ folder while \
it runs and refreshes it every 5 minutes; backups, restores and checks never take or wait for it. A lock \
is stale when it was not refreshed for 30 minutes, or when its process no longer runs on this host; \
maintenance removes stale locks by itself, and so does `cairn unlock`. A live lock is left alone unless \
--remove-all is given: use that only when you know its holder is gone (a crashed host), since a \
maintenance process whose lock is removed stops at its next step."
)]
pub struct UnlockArgs {
    /// Also remove live and unreadable locks, not only stale ones.
    #[arg(long)]
    pub remove_all: bool,
}

/// How a maintenance command (prune) waits for another's lock; flatten it
/// into the command's arguments.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// When another maintenance process holds the repository's lock, wait up
    /// to DURATION (`30s`, `5m`, `1h`, `1h30m`) for it to finish instead of
    /// failing at once (exit code 11).
    #[arg(long, value_name = "DURATION", value_parser = crate::units::duration, default_value = "0s")]
    pub retry_lock: Duration,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub what: RepairWhat,
}

#[derive(Debug, Subcommand)]
pub enum RepairWhat {
    /// Rebuild the index from the headers of every pack in storage.
    #[command(after_help = "Reads the header of every data and tree pack (two small reads each) \
and writes new index objects describing them; packs no index object names (left by an interrupted \
backup, or whose index object was lost or damaged) are found and indexed again. The new index objects \
are stored before the old ones are removed, so an interruption loses nothing; packs listed in a \
prune's deletion record are left to the index objects that record will remove. Takes the maintenance \
lock. Run it first when `cairn check` reports damaged or missing index objects, unindexed packs, or \
blobs in no index object.")]
    Index {
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Write copies of snapshots that reference only data the repository still has.
    #[command(after_help = "For each selected snapshot that references lost data (blobs in no \
index object, or in packs missing from storage), a copy is written: a file whose data is partly lost \
keeps what is left and is renamed NAME.damaged; a folder whose tree is lost becomes an empty folder \
NAME.damaged; with --drop-damaged both are left out instead. The copy carries the tag `repaired` and \
names its original (`rewritten from`). Undamaged snapshots are left alone; the originals are kept \
unless --forget. Nothing else is removed: `cairn check` passes for the copies, and `cairn prune` can \
then run. If the lost files still exist at their source, a new `cairn backup` stores them again: do \
that first. Run `cairn repair index` before this, so data whose index object alone was lost is found. \
Takes no lock.")]
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Debug, Args)]
pub struct RepairSnapshotsArgs {
    /// Snapshots to repair (id prefixes or `latest`); default: every snapshot passing the filters.
    pub snapshots: Vec<String>,
    /// Leave damaged files and folders out of the copies instead of keeping them renamed `NAME.damaged`.
    #[arg(long)]
    pub drop_damaged: bool,
    /// Remove each original snapshot once its repaired copy is saved.
    #[arg(long)]
    pub forget: bool,
    /// List what is damaged in each snapshot; write and remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CatKind {
    Config,
    Key,
    Snapshot,
    Index,
    Pack,
    Blob,
    Tree,
}

impl CatKind {
    /// The name as typed on the command line.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// What to print.
    pub kind: CatKind,
    /// Its id: a prefix in any case is enough for keys, snapshots (also `latest`), indexes and packs; blob and tree need the full id.
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// List the keys (passwords) that open the repository.
    List,
    /// Add a password (from CAIRN_NEW_PASSWORD_FILE or a prompt).
    Add,
    /// Remove a key by id prefix (not the last, not the one in use).
    Remove {
        /// Key id prefix.
        id: String,
    },
    /// Change the password in use (adds the new key, then removes the old).
    Passwd,
    /// Print the recovery sheet: the master key on paper, for the safe.
    ExportRecovery {
        /// Write it to this file (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Regain access from a recovery sheet (read from FILE or standard input)
    /// by adding a new password.
    Recover {
        /// The sheet as text.
        #[arg(long, value_name = "FILE")]
        sheet: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell.
    pub shell: clap_complete::Shell,
}

fn parse_subset(s: &str) -> Result<cairn_engine::DataSubset, String> {
    s.parse().map_err(|e: cairn_engine::CheckError| e.to_string())
}
