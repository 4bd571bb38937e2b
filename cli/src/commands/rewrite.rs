use anyhow::{bail, Result};
use cairn_engine::{filter_snapshots, find_snapshots, rewrite_snapshots, RewriteOptions, RewriteReport};

use super::{filter, read_exclude_files, Ctx};
use crate::args::RewriteArgs;
use crate::output::{self, bytes};

pub fn run(ctx: &Ctx, a: RewriteArgs) -> Result<u8> {
    let excludes: Vec<String> = a
        .exclude
        .iter()
        .cloned()
        .chain(read_exclude_files(&a.exclude_file)?)
        .collect();
    if excludes.is_empty() {
        bail!("nothing to remove: give --exclude GLOB or --exclude-file FILE");
    }
    let repo = ctx.open()?;
    let snapshots = if a.snapshots.is_empty() {
        filter_snapshots(&repo, &filter(&a.filter))?
    } else {
        find_snapshots(&repo, &a.snapshots, &filter(&a.filter))?
    };
    let opts = RewriteOptions {
        excludes,
        forget: a.forget,
        dry_run: a.dry_run,
    };
    let report = rewrite_snapshots(&repo, &snapshots, &opts)?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print(ctx, &report, a.forget);
    }
    Ok(0)
}

fn print(ctx: &Ctx, report: &RewriteReport, forget: bool) {
    for s in &report.snapshots {
        let removed = format!(
            "{} path(s), {} file(s), {}",
            s.removed.len(),
            s.files_removed,
            bytes(s.bytes_removed)
        );
        match (s.changed(), s.rewritten) {
            (false, _) => ctx.say(format!("{}: unchanged", s.original.short())),
            (true, None) => {
                ctx.say(format!("{}: would remove {removed}:", s.original.short()));
                for p in &s.removed {
                    ctx.say(format!(
                        "  {} ({}, {} file(s), {})",
                        p.path,
                        p.kind,
                        p.files,
                        bytes(p.bytes)
                    ));
                }
            }
            (true, Some(new)) => ctx.say(format!(
                "{} -> {}: removed {removed}{}",
                s.original.short(),
                new.short(),
                if s.forgotten { "; original forgotten" } else { "" }
            )),
        }
    }
    let changed = report.snapshots.iter().filter(|s| s.changed()).count();
    let unchanged = report.snapshots.len() - changed;
    if report.dry_run {
        ctx.say(format!(
            "would rewrite {changed} snapshot(s), {unchanged} unchanged (dry run: nothing was written or removed)"
        ));
        return;
    }
    ctx.say(format!("rewrote {changed} snapshot(s), {unchanged} unchanged"));
    if changed > 0 {
        ctx.say(if forget {
            "the removed files' data stays in the repository until `cairn prune` removes it"
        } else {
            "the originals still hold the removed files: forget them (or rerun with --forget), then `cairn prune`"
        });
    }
}
