use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Result};
use cairn_engine::{
    find_snapshot, restore, Error, RestoreError, RestoreOptions, RestoreProgress, RestoreSummary, RetrievalHook,
    RetrievalOptions, RetrievalReport, RetrievalTier, SnapshotId,
};

use super::{filter, Ctx};
use crate::args::{DumpArgs, RestoreArgs};
use crate::output::{self, bytes};
use crate::progress::Bar;

pub fn run(ctx: &Ctx, a: RestoreArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let (spec, sub) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s.to_string(), Some(p.to_string())),
        None => (a.snapshot.clone(), None),
    };
    let mut f = filter(&a.filter);
    if let Some(t) = &a.as_of {
        if spec != "latest" {
            bail!("--as-of picks the snapshot itself; give `latest` (or nothing) instead of `{spec}`");
        }
        f.as_of_ns = Some(output::parse_time(t)?);
    }
    let (id, snap) = find_snapshot(&repo, &spec, &f)?;
    if let Some(location) = &a.s3.to_s3 {
        return crate::source_s3::restore(ctx, &repo, &id, &snap, sub, location);
    }
    let Some(target) = a.target.clone() else {
        bail!("give --target DIR (or --to-s3 LOCATION)");
    };
    let progress = Arc::new(RestoreProgress::default());
    let opts = RestoreOptions {
        subpath: sub,
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        overwrite: a.overwrite,
        verify: a.verify,
        preserve_special: a.preserve_special,
        no_xattrs: a.no_xattrs,
        threads: 0,
        progress: Some(progress.clone()),
        // Free where the storage has no archive classes (the default answer
        // needs no request); one HEAD per needed pack on S3.
        check_archive_first: true,
        retrieval: retrieval_options(&a.retrieval),
        on_retrieval: retrieval_hook(ctx),
        layout: None,
    };
    let opts = crate::source_cassandra::apply_layout(&a.cassandra, &snap, opts)?;
    let bar = ctx.progress().then(|| {
        let p = progress.clone();
        Bar::bytes("restore", move || {
            (
                p.bytes_done.load(Ordering::Relaxed),
                p.bytes_total.load(Ordering::Relaxed),
                format!(
                    "{}/{} files",
                    p.files_done.load(Ordering::Relaxed),
                    p.files_total.load(Ordering::Relaxed)
                ),
            )
        })
    });
    let started = std::time::Instant::now();
    let r = restore(&repo, &snap, &target, &opts);
    drop(bar);
    let s = match r {
        Err(Error::Restore(RestoreError::Incomplete { summary, .. })) => {
            // Everything restorable was restored: say what was, name what
            // was not, then fail with the damage's exit code.
            report(ctx, &a, &id, &summary, started)?;
            let (n, first) = summary
                .failed
                .first()
                .map(|f| (summary.failed.len(), format!("{}: {}", f.path, f.reason)))
                .unwrap_or_default();
            let damaged = summary.failed.iter().any(|f| f.damaged);
            return Err(Error::Restore(RestoreError::Incomplete {
                count: n,
                first,
                damaged,
                summary,
            })
            .into());
        }
        Err(Error::Restore(RestoreError::RetrievalPending {
            objects,
            bytes: b,
            typical,
            report,
        })) => {
            if ctx.json {
                output::json(
                    &serde_json::json!({"snapshot": id.to_hex(), "target": target, "retrieval_pending": true, "objects": objects, "bytes": b, "report": report}),
                )?;
            } else {
                eprintln!(
                    "{objects} pack(s) ({}) are being retrieved from archive storage (typically {typical}).\nRun the same command again later, or add --wait; it resumes where it stopped and requests nothing twice.",
                    bytes(b)
                );
            }
            return Ok(crate::EXIT_RETRIEVAL_PENDING);
        }
        other => other?,
    };
    report(ctx, &a, &id, &s, started)?;
    crate::source_cassandra::after_restore(ctx, &a.cassandra, &target);
    Ok(0)
}

/// Most failures listed one by one in text output (`--json` lists all).
const FAILURES_SHOWN: usize = 50;

/// Prints warnings, what could not be restored, and the summary.
fn report(ctx: &Ctx, a: &RestoreArgs, id: &SnapshotId, s: &RestoreSummary, started: std::time::Instant) -> Result<()> {
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    if !ctx.json {
        for f in s.failed.iter().take(FAILURES_SHOWN) {
            eprintln!("not restored: {}: {}", f.path, f.reason);
        }
        if s.failed.len() > FAILURES_SHOWN {
            eprintln!(
                "... and {} more not restored (--json lists them all)",
                s.failed.len() - FAILURES_SHOWN
            );
        }
    }
    if ctx.json {
        output::json(
            &serde_json::json!({"snapshot": id.to_hex(), "target": a.target, "summary": s, "retries": ctx.retries(), "seconds": started.elapsed().as_secs_f64()}),
        )?;
    } else {
        ctx.say(format!(
            "restored snapshot {} to {}: {} files, {} folders, {} other, {} ({} written, {} already correct) in {:.2} s",
            id.short(),
            a.target.as_deref().unwrap_or(std::path::Path::new("")).display(),
            s.files,
            s.dirs,
            s.others,
            bytes(s.bytes),
            bytes(s.bytes_written),
            bytes(s.bytes_unchanged),
            started.elapsed().as_secs_f64()
        ));
        if !s.failed.is_empty() {
            ctx.say(format!(
                "{} item(s) could not be restored (listed above); everything else was",
                s.failed.len()
            ));
        } else if a.verify {
            ctx.say(format!("verified {} files: all match the snapshot", s.files_verified));
        }
    }
    Ok(())
}

pub fn dump(ctx: &Ctx, a: DumpArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let (_, snap) = find_snapshot(&repo, &a.snapshot, &filter(&a.filter))?;
    let index = repo.load_index()?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, crate::output::Stdout);
    cairn_engine::dump(&repo, &index, &snap, &a.path, &mut out)?;
    out.flush()?;
    Ok(0)
}

/// The engine's retrieval options from `--tier`, `--retrieve-days`, `--wait`.
pub fn retrieval_options(a: &crate::args::RetrievalArgs) -> RetrievalOptions {
    RetrievalOptions {
        tier: match a.tier {
            crate::args::Tier::Expedited => RetrievalTier::Expedited,
            crate::args::Tier::Standard => RetrievalTier::Standard,
            crate::args::Tier::Bulk => RetrievalTier::Bulk,
        },
        days: a.retrieve_days,
        wait: a.wait,
        ..Default::default()
    }
}

/// Prints retrieval estimates and progress, unless -q or --json.
pub fn retrieval_hook(ctx: &Ctx) -> Option<Arc<RetrievalHook>> {
    if ctx.quiet || ctx.json {
        None
    } else {
        Some(Arc::new(RetrievalHook(Box::new(print_retrieval))))
    }
}

fn print_retrieval(r: &RetrievalReport) {
    if r.ready == 0 {
        eprintln!(
            "{} of {} pack(s) needed are in archive storage ({}; {}): {} retrieval(s) requested now, {} already in progress",
            r.archived,
            r.packs_needed,
            bytes(r.archived_bytes),
            r.classes.join(", "),
            r.requested_now,
            r.already_in_progress
        );
        for e in &r.estimates {
            eprintln!("  {:<9} about ${:.2}, {}", e.tier, e.usd, e.typical_time);
        }
    } else {
        eprintln!(
            "{} of {} archived pack(s) readable and restored so far",
            r.ready, r.archived
        );
    }
}
