use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use cairn_engine::{
    filter_snapshots, find_snapshots, repair_index, repair_snapshots, IndexRepairReport, RepairAction,
    RepairIndexOptions, RepairProgress, RepairSnapshotsOptions, SnapshotsRepairReport,
};

use super::{filter, Ctx};
use crate::args::{RepairArgs, RepairSnapshotsArgs, RepairWhat};
use crate::output;

pub fn run(ctx: &Ctx, a: RepairArgs) -> Result<u8> {
    match a.what {
        RepairWhat::Index { lock } => index(ctx, lock.options()),
        RepairWhat::Snapshots(s) => snapshots(ctx, s),
    }
}

fn index(ctx: &Ctx, lock: cairn_engine::LockOptions) -> Result<u8> {
    let repo = ctx.open()?;
    let progress = Arc::new(RepairProgress::default());
    // Progress goes to standard error, one line every few seconds, so it
    // shows in logs too and never mixes with --json on standard output.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = (!ctx.quiet).then(|| {
        let (p, stop) = (progress.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut waited = 0u32;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                waited += 1;
                if waited.is_multiple_of(30) {
                    eprintln!(
                        "repair index: read {}/{} pack headers",
                        p.packs_done.load(Ordering::Relaxed),
                        p.packs_total.load(Ordering::Relaxed)
                    );
                }
            }
        })
    });
    let r = repair_index(
        &repo,
        &RepairIndexOptions {
            lock,
            progress: Some(progress.clone()),
        },
    );
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    let r = r?;
    if ctx.json {
        output::json(&r)?;
    } else {
        print_index(ctx, &r);
    }
    Ok(0)
}

fn print_index(ctx: &Ctx, r: &IndexRepairReport) {
    for p in &r.packs_missing {
        eprintln!("warning: pack {p} is named by the old index but missing from storage; its blobs are lost");
    }
    for d in &r.packs_damaged {
        eprintln!(
            "warning: {} pack {}: {}{}",
            d.blob_type,
            d.pack,
            d.error,
            if d.kept_from_old_index {
                " (indexed as the old index described it)"
            } else {
                " (not indexed)"
            }
        );
    }
    for p in &r.packs_archived_unindexed {
        eprintln!("warning: pack {p} is in archive storage and not described by any old index object: retrieve it, then run `cairn repair index` again");
    }
    for i in &r.index_objects_damaged {
        eprintln!("note: damaged index object {i} replaced");
    }
    ctx.say(format!(
        "indexed {} pack(s) with {} blob(s) ({} found that no index object named); wrote {} index object(s), removed {} old one(s){}",
        r.packs_indexed,
        r.blobs_indexed,
        r.packs_found,
        r.index_objects_written.len(),
        r.index_objects_removed,
        if r.index_objects_kept > 0 {
            format!(" ({} kept for a pending prune)", r.index_objects_kept)
        } else {
            String::new()
        }
    ));
    if !r.packs_missing.is_empty() || !r.packs_damaged.is_empty() {
        ctx.say("run `cairn check` to see which snapshots and files need the lost data");
    }
}

fn snapshots(ctx: &Ctx, a: RepairSnapshotsArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let list = if a.snapshots.is_empty() {
        filter_snapshots(&repo, &filter(&a.filter))?
    } else {
        find_snapshots(&repo, &a.snapshots, &filter(&a.filter))?
    };
    let opts = RepairSnapshotsOptions {
        drop_damaged: a.drop_damaged,
        forget: a.forget,
        dry_run: a.dry_run,
    };
    let r = repair_snapshots(&repo, &list, &opts)?;
    if ctx.json {
        output::json(&r)?;
    } else {
        print_snapshots(ctx, &r);
    }
    Ok(0)
}

fn print_snapshots(ctx: &Ctx, r: &SnapshotsRepairReport) {
    let mut repaired = 0;
    for s in &r.snapshots {
        if let Some(why) = &s.root_lost {
            eprintln!(
                "warning: snapshot {}: {why}; nothing of it can be read, no copy written (forget it)",
                s.original.short()
            );
            continue;
        }
        if s.damaged.is_empty() {
            ctx.say(format!("{}: no lost data", s.original.short()));
            continue;
        }
        repaired += 1;
        let head = match s.repaired {
            Some(new) => format!(
                "{} -> {}{}:",
                s.original.short(),
                new.short(),
                if s.forgotten { " (original forgotten)" } else { "" }
            ),
            None => format!("{} (dry run):", s.original.short()),
        };
        ctx.say(head);
        for d in &s.damaged {
            let what = match (d.action, &d.new_path) {
                (RepairAction::Dropped, _) => "dropped".to_string(),
                (RepairAction::Marked, Some(p)) => format!("kept as {p}"),
                (RepairAction::Marked, None) => "marked damaged".to_string(),
            };
            ctx.say(format!("  {} {}: {}; {what}", d.kind, d.path, d.problem));
        }
    }
    if r.dry_run {
        ctx.say(format!(
            "would repair {repaired} snapshot(s) (dry run: nothing was written or removed)"
        ));
    } else {
        ctx.say(format!("repaired {repaired} snapshot(s)"));
    }
}
