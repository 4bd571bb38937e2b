//! `backup --cassandra`, `restore --cassandra-layout`, and the
//! `--pre-command`/`--post-command` hooks of every backup: arguments and
//! glue only; the logic is the engine's (`sources::cassandra`,
//! `sources::hooks`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use cairn_engine::{
    cassandra_layout, CassandraLayout, CassandraRestore, CassandraSource, ErrorKind, HookResult, Hooks, RestoreOptions,
    Snapshot, SourceDetails,
};

use crate::commands::Ctx;
use crate::output::bytes;

/// `cairn backup --cassandra DATA_DIR --snapshot-tag TAG ...`
#[derive(Debug, Args, Default)]
pub struct CassandraBackupArgs {
    /// Back up the Cassandra snapshot folders
    /// (`<keyspace>/<table>-<id>/snapshots/<TAG>/`, made by `nodetool
    /// snapshot -t TAG`) found under this data folder; repeat for every
    /// data folder of the node. Needs --snapshot-tag. The snapshot records
    /// the data folders as its paths, so the next night's backup of the
    /// same node finds it as its parent and reads only new SSTables.
    #[arg(long = "cassandra", value_name = "DATA_DIR", requires = "snapshot_tag",
          conflicts_with_all = ["paths", "stdin", "stdin_from_command"])]
    pub cassandra: Vec<PathBuf>,
    /// The Cassandra snapshot tag to back up (`nodetool snapshot -t TAG`).
    #[arg(long, value_name = "TAG", requires = "cassandra")]
    pub snapshot_tag: Option<String>,
    /// Only this keyspace (repeatable).
    #[arg(long = "keyspace", value_name = "KEYSPACE", requires = "cassandra")]
    pub keyspaces: Vec<String>,
    /// Only this table: `TABLE` or `KEYSPACE.TABLE` (repeatable).
    #[arg(long = "table", value_name = "TABLE", requires = "cassandra")]
    pub tables: Vec<String>,
    /// Include the `system*` keyspaces (left out by default: a node
    /// rebuilds them, and they do not belong on another node).
    #[arg(long, requires = "cassandra")]
    pub include_system: bool,
}

/// `--pre-command` / `--post-command` of `cairn backup`.
#[derive(Debug, Args, Default)]
pub struct HookArgs {
    /// Run this (through `sh -c`, without CAIRN_* variables) before the
    /// backup, e.g. `nodetool snapshot -t TAG`; if it fails, nothing is
    /// backed up, no snapshot is saved and the command fails.
    #[arg(long, value_name = "CMD")]
    pub pre_command: Option<String>,
    /// Run this after the backup whatever happened (success, failure,
    /// interruption, failed pre-command), e.g. `nodetool clearsnapshot -t
    /// TAG`; CAIRN_BACKUP_RESULT tells it how the backup ended. Its failure
    /// is reported and makes the exit code non-zero; a saved snapshot stays.
    #[arg(long, value_name = "CMD")]
    pub post_command: Option<String>,
}

/// `cairn restore --cassandra-layout ...`
#[derive(Debug, Args, Default)]
pub struct CassandraRestoreArgs {
    /// Restore a Cassandra snapshot laid out for `nodetool refresh`/`import`
    /// (`DIR/<keyspace>/<table>-<id>/`) or for `sstableloader`
    /// (`DIR/<keyspace>/<table>/`), without the `snapshots/<TAG>/` level.
    /// With `SNAPSHOT:PATH`, PATH is a table's snapshot folder, a folder
    /// above them, or a file in one (an SSTable component restores all
    /// components of that SSTable).
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub cassandra_layout: Option<LayoutArg>,
    /// With --cassandra-layout: only this keyspace (repeatable).
    #[arg(long = "keyspace", value_name = "KEYSPACE", requires = "cassandra_layout")]
    pub keyspaces: Vec<String>,
    /// With --cassandra-layout: only this table, `TABLE` or `KEYSPACE.TABLE` (repeatable).
    #[arg(long = "table", value_name = "TABLE", requires = "cassandra_layout")]
    pub tables: Vec<String>,
}

/// The restore layouts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    /// `DIR/<keyspace>/<table>-<id>/` for `nodetool refresh` / `nodetool import`.
    Refresh,
    /// `DIR/<keyspace>/<table>/` for `sstableloader`.
    Sstableloader,
}

/// The engine's source, when `--cassandra` was given.
pub fn source(a: &CassandraBackupArgs) -> Option<CassandraSource> {
    (!a.cassandra.is_empty()).then(|| CassandraSource {
        data_dirs: a.cassandra.clone(),
        tag: a.snapshot_tag.clone().unwrap_or_default(),
        keyspaces: a.keyspaces.clone(),
        tables: a.tables.clone(),
        include_system: a.include_system,
    })
}

/// Runs `work` (the whole backup) between the hooks: a failed pre-command
/// is the command's error; a failed post-command is reported and turns a
/// successful exit code into 1.
pub fn with_hooks(a: &HookArgs, work: impl FnOnce() -> Result<u8>) -> Result<u8> {
    let hooks = Hooks {
        pre: a.pre_command.clone(),
        post: a.post_command.clone(),
    };
    let out = hooks.run(work, |r| match r {
        Ok(_) => HookResult::Success,
        Err(e) if e.chain().find_map(ErrorKind::of) == Some(ErrorKind::Interrupted) => HookResult::Interrupted,
        Err(_) => HookResult::Failure,
    });
    if let Some(e) = &out.post_error {
        eprintln!("error: {e}");
    }
    if let Some(e) = out.pre_error {
        return Err(e.into());
    }
    match out.work {
        Some(Ok(code)) if out.post_error.is_some() => Ok(code.max(crate::EXIT_FAILURE)),
        Some(r) => r,
        None => Ok(crate::EXIT_FAILURE),
    }
}

/// The Cassandra part of a backup's report: `null` in JSON for other kinds.
pub fn report_json(s: &Snapshot) -> serde_json::Value {
    let SourceDetails::Cassandra(d) = &s.details else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "tag": d.tag,
        "data_dirs": d.data_dirs,
        "tables": d.tables.len(),
        // Hard-linked SSTables found in the parent snapshot: not read.
        "unchanged_files_not_read": s.summary.files_unchanged,
        "unchanged_bytes_not_read": s.summary.bytes_unchanged,
        "files_read": s.summary.files_new + s.summary.files_changed,
        "bytes_read": s.summary.bytes_read,
    })
}

/// The Cassandra lines of a backup's text report.
pub fn report_text(ctx: &Ctx, s: &Snapshot) {
    let SourceDetails::Cassandra(d) = &s.details else {
        return;
    };
    let files: u64 = d.tables.iter().map(|t| t.files).sum();
    ctx.say(format!(
        "Cassandra snapshot `{}`: {} tables, {} files under {}",
        d.tag,
        d.tables.len(),
        files,
        d.data_dirs.join(", ")
    ));
    ctx.say(format!(
        "SSTables unchanged since the parent (hard links of stored files), not read: {} files, {}",
        s.summary.files_unchanged,
        bytes(s.summary.bytes_unchanged)
    ));
}

/// Turns `--cassandra-layout` into the restore's layout; `subpath` (from
/// `SNAPSHOT:PATH`) then selects within it.
pub fn apply_layout(a: &CassandraRestoreArgs, snap: &Snapshot, mut opts: RestoreOptions) -> Result<RestoreOptions> {
    let Some(layout) = a.cassandra_layout else {
        return Ok(opts);
    };
    let req = CassandraRestore {
        layout: match layout {
            LayoutArg::Refresh => CassandraLayout::Refresh,
            LayoutArg::Sstableloader => CassandraLayout::Sstableloader,
        },
        keyspaces: a.keyspaces.clone(),
        tables: a.tables.clone(),
        path: opts.subpath.take(),
    };
    opts.layout = Some(cassandra_layout(snap, &req)?);
    Ok(opts)
}

/// What to run after a layout restore.
pub fn after_restore(ctx: &Ctx, a: &CassandraRestoreArgs, target: &std::path::Path) {
    match a.cassandra_layout {
        Some(LayoutArg::Refresh) => ctx.say(format!(
            "next: copy {}/<keyspace>/<table>-<id>/* into the node's table folders and run `nodetool refresh <keyspace> <table>`, or `nodetool import <keyspace> <table> {}/<keyspace>/<table>-<id>`",
            target.display(),
            target.display()
        )),
        Some(LayoutArg::Sstableloader) => ctx.say(format!(
            "next: `sstableloader -d HOST {}/<keyspace>/<table>` for each table",
            target.display()
        )),
        None => {}
    }
}
