use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use cairn_engine::{
    backup, find_snapshot, BackupOptions, BackupOutcome, BackupProgress, BackupSource, ParentChoice, SnapshotFilter,
    SourceKind, Stream,
};

use super::{read_exclude_files, Ctx};
use crate::args::BackupArgs;
use crate::output::{self, bytes};
use crate::progress::Bar;
use crate::EXIT_PARTIAL;

pub fn run(ctx: &Ctx, a: BackupArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let d = &ctx.config.backup;
    let mut opts = BackupOptions {
        host: a.host.clone().or_else(|| d.host.clone()),
        tags: if a.tag.is_empty() {
            d.tags.clone()
        } else {
            a.tag.clone()
        },
        time_ns: a.time.as_deref().map(output::parse_time).transpose()?,
        excludes: d
            .exclude
            .iter()
            .cloned()
            .chain(a.exclude.iter().cloned())
            .chain(read_exclude_files(&a.exclude_file)?)
            .collect(),
        one_file_system: a.one_file_system || d.one_file_system,
        dry_run: a.dry_run,
        ..Default::default()
    };
    opts.parent = if a.force {
        ParentChoice::None
    } else if let Some(p) = &a.parent {
        ParentChoice::Id(find_snapshot(&repo, p, &SnapshotFilter::default())?.0)
    } else {
        ParentChoice::Auto
    };
    let source = if let Some(location) = &a.s3.s3_source {
        BackupSource::S3(crate::source_s3::open(ctx, location, a.s3.versions)?)
    } else if a.stdin_from_command {
        let stream = Stream::from_command(&a.command)?;
        BackupSource::Stream {
            stream,
            filename: a.stdin_filename.clone(),
            kind: SourceKind::Command {
                argv: a.command.clone(),
                filename: a.stdin_filename.clone(),
            },
        }
    } else if a.stdin {
        BackupSource::Stream {
            stream: Stream::from_reader(Box::new(std::io::stdin())),
            filename: a.stdin_filename.clone(),
            kind: SourceKind::Stdin {
                filename: a.stdin_filename.clone(),
            },
        }
    } else {
        if a.paths.is_empty() {
            anyhow::bail!("nothing to back up: give paths, --stdin, or --stdin-from-command -- COMMAND");
        }
        BackupSource::Paths(a.paths.clone())
    };
    let progress = Arc::new(BackupProgress::default());
    opts.progress = Some(progress.clone());
    // From here on SIGINT/SIGTERM stop the backup cleanly (exit 130/143).
    opts.cancel = Some(crate::signals::install()?);
    let bar = ctx.progress().then(|| {
        let p = progress.clone();
        Bar::bytes("backup", move || {
            let total = p.bytes_total.load(Ordering::Relaxed);
            let done = p.bytes_done.load(Ordering::Relaxed);
            let walking = if p.walk_finished.load(Ordering::Relaxed) {
                ""
            } else {
                " (still scanning)"
            };
            (
                done,
                total.max(done),
                format!(
                    "{}/{} files{walking}",
                    p.files_done.load(Ordering::Relaxed),
                    p.files_total.load(Ordering::Relaxed)
                ),
            )
        })
    });
    let out = backup(&repo, source, &opts);
    drop(bar);
    let out = out?;
    report(ctx, &out)?;
    Ok(if out.skipped.is_empty() { 0 } else { EXIT_PARTIAL })
}

fn report(ctx: &Ctx, out: &BackupOutcome) -> Result<()> {
    let s = &out.snapshot.summary;
    if ctx.json {
        return output::json(&serde_json::json!({
            "snapshot_id": out.id.map(|i| i.to_hex()),
            "dry_run": out.id.is_none(),
            "parent": out.snapshot.parent.map(|i| i.to_hex()),
            "time": output::rfc3339(out.snapshot.time_ns),
            "host": out.snapshot.host,
            "paths": out.snapshot.paths,
            "tags": out.snapshot.tags,
            "summary": s,
            "retries": ctx.retries(),
            "skipped": out.skipped.iter().map(|k| serde_json::json!({"path": k.path.to_string_lossy(), "error": k.error})).collect::<Vec<_>>(),
        }));
    }
    for k in &out.skipped {
        eprintln!("warning: skipped {}: {}", k.path.display(), k.error);
    }
    if let Some(p) = out.snapshot.parent {
        ctx.say(format!("parent snapshot {}", p.short()));
    }
    ctx.say(format!(
        "Files:  {} new, {} changed, {} unchanged",
        s.files_new, s.files_changed, s.files_unchanged
    ));
    ctx.say(format!("Dirs:   {}", s.dirs));
    ctx.say(format!(
        "Read {} of {} (unchanged files are not read)",
        bytes(s.bytes_read),
        bytes(s.bytes_new + s.bytes_changed + s.bytes_unchanged)
    ));
    ctx.say(format!(
        "Added to the repository: {} ({} before compression and encryption), {} data blobs, {} tree blobs",
        bytes(s.bytes_added_stored),
        bytes(s.bytes_added_raw),
        s.data_blobs_added,
        s.tree_blobs_added
    ));
    let secs = s.duration_ns as f64 / 1e9;
    ctx.say(format!("Took {secs:.2} s"));
    match out.id {
        Some(id) => ctx.say(format!("snapshot {} saved", id.short())),
        None => ctx.say("dry run: nothing was written"),
    }
    if !out.skipped.is_empty() {
        eprintln!(
            "{} entries could not be read and are missing from the snapshot (exit code 3)",
            out.skipped.len()
        );
    }
    Ok(())
}
