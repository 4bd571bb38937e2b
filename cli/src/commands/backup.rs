use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use cairn_engine::{
    backup, find_snapshot, BackupOptions, BackupOutcome, BackupProgress, BackupSource, ParentChoice, SnapshotFilter,
    SourceDetails, SourceKind, Stream,
};

use super::{read_exclude_files, Ctx};
use crate::args::BackupArgs;
use crate::output::{self, bytes};
use crate::progress::Bar;
use crate::EXIT_PARTIAL;

pub fn run(ctx: &Ctx, a: BackupArgs) -> Result<u8> {
    // From here on SIGINT/SIGTERM stop the backup cleanly (exit 130/143),
    // and the post-command still runs.
    let cancel = crate::signals::install()?;
    crate::source_cassandra::with_hooks(&a.hooks, || run_backup(ctx, &a, cancel))
}

fn run_backup(ctx: &Ctx, a: &BackupArgs, cancel: Arc<std::sync::atomic::AtomicBool>) -> Result<u8> {
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
        chunk_sizes: a.chunk_size.unwrap_or_default(),
        ..Default::default()
    };
    opts.parent = if a.force {
        ParentChoice::None
    } else if let Some(p) = &a.parent {
        ParentChoice::Id(find_snapshot(&repo, p, &SnapshotFilter::default())?.0)
    } else {
        ParentChoice::Auto
    };
    let source = if let Some(r) = crate::source_redis::source(&a.redis, &ctx.config.redis)? {
        BackupSource::Redis(r)
    } else if let Some(location) = &a.s3.s3_source {
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
    } else if let Some(c) = crate::source_cassandra::source(&a.cassandra) {
        BackupSource::Cassandra(c)
    } else {
        if a.paths.is_empty() {
            anyhow::bail!(
                "nothing to back up: give paths, --stdin, --stdin-from-command -- COMMAND, --redis, --cassandra or --s3-source"
            );
        }
        BackupSource::Paths(a.paths.clone())
    };
    let progress = Arc::new(BackupProgress::default());
    opts.progress = Some(progress.clone());
    opts.cancel = Some(cancel.clone());
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
    let code = if out.skipped.is_empty() { 0 } else { EXIT_PARTIAL };
    // The profile's copy-to: the saved snapshot goes to each listed
    // repository now. A failed copy never undoes the backup; it is reported
    // and makes the exit code non-zero.
    let Some(id) = out
        .id
        .filter(|_| !ctx.target().map(|t| t.copy_to.is_empty()).unwrap_or(true))
    else {
        report(ctx, &out, None)?;
        return Ok(code);
    };
    if !ctx.json {
        report(ctx, &out, None)?;
    }
    let (copies, copy_code) = super::copy::after_backup(ctx, &repo, id, &out.snapshot, &cancel);
    if ctx.json {
        report(ctx, &out, Some(copies))?;
    } else if copy_code != 0 {
        eprintln!(
            "snapshot {} is saved in the source; the copies above that failed can be run again with `cairn copy {}`",
            id.short(),
            id.short()
        );
    }
    Ok(if copy_code != 0 { copy_code } else { code })
}

/// The deduplication figures of the content read, for `--json`.
fn dedup_json(out: &BackupOutcome) -> serde_json::Value {
    let d = &out.dedup;
    serde_json::json!({
        "bytes": d.bytes, "bytes_known": d.bytes_known, "bytes_repeated": d.bytes_repeated,
        "bytes_new": d.bytes_new,
        // Rounded to 0.01 so scripts need no float formatting.
        "percent": (d.percent() * 100.0).round() / 100.0,
        "percent_known": (d.percent_known() * 100.0).round() / 100.0,
    })
}

/// Prints the backup's summary; `copies` are the copy-to results for `--json`.
fn report(ctx: &Ctx, out: &BackupOutcome, copies: Option<Vec<serde_json::Value>>) -> Result<()> {
    let s = &out.snapshot.summary;
    if ctx.json {
        let mut v = serde_json::json!({
            "snapshot_id": out.id.map(|i| i.to_hex()),
            "dry_run": out.id.is_none(),
            "parent": out.snapshot.parent.map(|i| i.to_hex()),
            "time": output::rfc3339(out.snapshot.time_ns),
            "host": out.snapshot.host,
            "paths": out.snapshot.paths,
            "tags": out.snapshot.tags,
            "summary": s,
            "details": out.snapshot.details,
            "cassandra": crate::source_cassandra::report_json(&out.snapshot),
            "dedup": dedup_json(out),
            "chunk_sizes": out.snapshot.chunk_sizes,
            "retries": ctx.retries(),
            "skipped": out.skipped.iter().map(|k| serde_json::json!({"path": k.path.to_string_lossy(), "error": k.error})).collect::<Vec<_>>(),
        });
        if let (Some(c), serde_json::Value::Object(m)) = (copies, &mut v) {
            m.insert("copies".into(), serde_json::Value::Array(c));
        }
        return output::json(&v);
    }
    for k in &out.skipped {
        eprintln!("warning: skipped {}: {}", k.path.display(), k.error);
    }
    if let SourceDetails::Redis(d) = &out.snapshot.details {
        for line in crate::source_redis::report_lines(d) {
            ctx.say(line);
        }
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
    crate::source_cassandra::report_text(ctx, &out.snapshot);
    ctx.say(format!(
        "Added to the repository: {} ({} before compression and encryption), {} data blobs, {} tree blobs",
        bytes(s.bytes_added_stored),
        bytes(s.bytes_added_raw),
        s.data_blobs_added,
        s.tree_blobs_added
    ));
    let d = &out.dedup;
    if d.bytes > 0 {
        ctx.say(format!(
            "Deduplicated: {:.1} % of {} read ({} already in the repository, {} repeated within this backup), {} new",
            d.percent(),
            bytes(d.bytes),
            bytes(d.bytes_known),
            bytes(d.bytes_repeated),
            bytes(d.bytes_new)
        ));
    }
    if let Some(c) = out.snapshot.chunk_sizes {
        ctx.say(format!(
            "Chunk sizes: {} average ({} to {})",
            bytes(u64::from(c.avg_size)),
            bytes(u64::from(c.min_size)),
            bytes(u64::from(c.max_size))
        ));
    }
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
