//! Arguments of the commands that remove or rewrite snapshots and data:
//! `forget`, `prune`, `rewrite`, `tag`.

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::{FilterArgs, LockArgs, RetrievalArgs};

/// A keep count: a number, or `unlimited` (-1).
fn keep_count(s: &str) -> Result<i32, String> {
    if s == "unlimited" {
        return Ok(-1);
    }
    s.parse::<u16>()
        .map(i32::from)
        .map_err(|_| format!("`{s}` is not a count: give a number or `unlimited`"))
}

#[derive(Debug, Args)]
#[command(
    after_help = "Rules keep a snapshot when any of them wants it, counted within each group \
(--group-by). Days, weeks (ISO), months and years are those of the local time zone; DURATION is \
like 1y6m, 90d, 36h, measured back from the newest snapshot. While a count is left, the oldest \
snapshot is kept too. Removing a snapshot removes only the snapshot: its data stays until a prune. \
On an S3 repository with `object-lock = { mode, days }` in its profile (days default to the longest \
max-age of [[retention]]), snapshots still under retention are kept and named with their date."
)]
pub struct ForgetArgs {
    /// Snapshots to remove (id prefixes). Without them, the keep rules decide.
    pub snapshots: Vec<String>,
    /// Keep the newest N snapshots.
    #[arg(short = 'l', long, value_name = "N", value_parser = keep_count, default_value = "0")]
    pub keep_last: i32,
    /// Keep the newest snapshot of each of the newest N hours that have one.
    #[arg(short = 'H', long, value_name = "N", value_parser = keep_count, default_value = "0")]
    pub keep_hourly: i32,
    /// ... of N days.
    #[arg(short = 'd', long, value_name = "N", value_parser = keep_count, default_value = "0")]
    pub keep_daily: i32,
    /// ... of N ISO weeks.
    #[arg(short = 'w', long, value_name = "N", value_parser = keep_count, default_value = "0")]
    pub keep_weekly: i32,
    /// ... of N months.
    #[arg(short = 'm', long, value_name = "N", value_parser = keep_count, default_value = "0")]
    pub keep_monthly: i32,
    /// ... of N years.
    #[arg(short = 'y', long, value_name = "N", value_parser = keep_count, default_value = "0")]
    pub keep_yearly: i32,
    /// Keep every snapshot newer than the newest minus DURATION.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest snapshot of each hour within DURATION of the newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// ... of each day.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// ... of each ISO week.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// ... of each month.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// ... of each year.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep every snapshot with all of these tags (`a,b`; repeat for either).
    #[arg(long, value_name = "TAGS")]
    pub keep_tag: Vec<String>,
    /// Count the rules within groups of these: host, paths, tags ("" for one group).
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Apply the retention table of cairn.toml ([[retention]]) instead of keep flags.
    #[arg(long)]
    pub policy: bool,
    /// Print what would be removed and why; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run a prune afterwards (with the prune settings below).
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_settings: PruneSettings,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Prune marks every blob the snapshots use, then deletes packs holding none and \
repacks partly used ones. It is safe while backups run: packs are not removed at once but recorded \
in a deletion record, and removed by a later prune once the grace period (default 24h) has passed \
and no snapshot written meanwhile needs them. Running prune every night therefore frees the space of \
the night before. --instant-delete removes at once, for a repository nothing else is writing to. \
Packs in archive storage classes are never repacked without --repack-cold; deleting them before \
their class's minimum storage duration is billed, which the report estimates (--cold-min-age waits). \
On an S3 repository with `object-lock` set, packs and index objects still under Object Lock \
retention (and the packs such an index describes) are neither deleted nor repacked: the report \
says how many and until when, and a prune after that date removes them as usual."
)]
pub struct PruneArgs {
    #[command(flatten)]
    pub settings: PruneSettings,
    /// Print the plan (packs and bytes to delete, repack, keep); change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Settings shared by `prune` and `forget --prune`.
#[derive(Debug, Args)]
pub struct PruneSettings {
    /// Unused space to tolerate in partly used packs: a share of the
    /// repository (`5%`), a size (`2G`) or `unlimited` (only delete wholly unused packs).
    #[arg(long, value_name = "LIMIT", default_value = "5%", value_parser = crate::units::max_unused)]
    pub max_unused: cairn_engine::MaxUnused,
    /// Repack at most this much (`10G`) per run.
    #[arg(long, value_name = "SIZE", value_parser = crate::units::size)]
    pub max_repack: Option<u64>,
    /// How long recorded packs wait before a later prune removes them; longer
    /// than any backup runs.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::units::duration)]
    pub grace_period: std::time::Duration,
    /// Remove unused packs now, without the grace period: only for a
    /// repository no backup is writing to.
    #[arg(long)]
    pub instant_delete: bool,
    /// Also repack partly used packs in archive classes (retrieving them first, priced as a restore).
    #[arg(long)]
    pub repack_cold: bool,
    /// Wholly unused packs in classes with a minimum storage duration are
    /// deleted only once this old (avoids early-deletion charges), e.g. `180d`.
    #[arg(long, value_name = "DURATION", value_parser = crate::units::duration)]
    pub cold_min_age: Option<std::time::Duration>,
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Each selected snapshot in which a pattern matches is copied without the \
matching entries (a matching folder goes with everything in it): same time, host, tags and paths, \
with `rewritten from` naming the original. Snapshots in which nothing matches are left alone. \
Only trees and snapshots are written: the removed files' data stays in the repository until \
`cairn prune` finds nothing referring to it, and without --forget the originals still refer to it. \
To erase a file from every backup: `cairn rewrite --exclude PATTERN --forget`, then `cairn prune`, \
then `cairn check --read-data` (see the README, \"Erasing a user's data\"). Takes no lock."
)]
pub struct RewriteArgs {
    /// Snapshots to rewrite (id prefixes or `latest`); default: every snapshot passing the filters.
    pub snapshots: Vec<String>,
    /// Remove entries matching this glob (repeatable): without `/` a name at
    /// any depth, with `/` the absolute path in the snapshot (`/home/alice/**`).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read exclude globs from a file, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Remove each original snapshot once its rewritten copy is saved.
    #[arg(long)]
    pub forget: bool,
    /// List what would be removed from each snapshot; write and remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "TAGS is one tag or a comma-separated list; each option is repeatable. --add appends \
the tags a snapshot lacks, --remove takes tags away (after adding, as restic does; a tag that is not \
there changes nothing), --set replaces all of a snapshot's tags. A snapshot object cannot be edited: \
each snapshot whose tags change is replaced by a new snapshot object with the same tree, time, host, \
paths and summary, `rewritten from` naming the old one, which is then removed, so the snapshot's id \
changes (the output gives the new ids). Snapshots that already have the tags asked for keep their \
ids. Without SNAPSHOTs or filters, every snapshot is selected. No data is written or removed; \
takes no lock.",
    group = ArgGroup::new("change").args(["add", "remove", "set"]).required(true).multiple(true)
)]
pub struct TagArgs {
    /// Snapshots to change (id prefixes or `latest`); default: every snapshot passing the filters.
    pub snapshots: Vec<String>,
    /// Add these tags (repeatable; `a,b` adds both).
    #[arg(long, value_name = "TAGS")]
    pub add: Vec<String>,
    /// Remove these tags (repeatable; `a,b` removes both).
    #[arg(long, value_name = "TAGS")]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable; `a,b` sets both).
    #[arg(long, value_name = "TAGS", conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
    /// Show which snapshots would change; write and remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}
