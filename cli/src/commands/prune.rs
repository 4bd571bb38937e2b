use anyhow::Result;
use cairn_engine::{prune, PackCount, PruneOptions, PruneReport};

use super::Ctx;
use crate::args::{PruneArgs, PruneSettings};
use crate::output::{self, bytes, local_time};

/// The engine's options from the shared flags.
pub fn options(ctx: &Ctx, s: &PruneSettings, dry_run: bool) -> PruneOptions {
    PruneOptions {
        max_unused: s.max_unused,
        max_repack: s.max_repack,
        grace: s.grace_period,
        instant_delete: s.instant_delete,
        dry_run,
        repack_cold: s.repack_cold,
        cold_min_age: s.cold_min_age,
        retrieval: super::restore::retrieval_options(&s.retrieval),
        on_retrieval: super::restore::retrieval_hook(ctx),
        lock: s.lock.options(),
        ..PruneOptions::default()
    }
}

pub fn run(ctx: &Ctx, a: PruneArgs) -> Result<u8> {
    let repo = ctx.open()?;
    prune_and_report(ctx, &repo, &options(ctx, &a.settings, a.dry_run), None)
}

/// Runs a prune and prints its report; the exit code. `forget` is the JSON
/// of a `forget --prune` that ran first: both go into one document.
pub fn prune_and_report(
    ctx: &Ctx,
    repo: &cairn_engine::Repository,
    opts: &PruneOptions,
    forget: Option<serde_json::Value>,
) -> Result<u8> {
    let r = prune(repo, opts)?;
    if ctx.json {
        match forget {
            Some(f) => output::json(&serde_json::json!({"forget": f, "prune": r}))?,
            None => output::json(&r)?,
        }
    } else {
        print(ctx, &r)?;
    }
    Ok(if r.repack_pending > 0 {
        crate::EXIT_RETRIEVAL_PENDING
    } else {
        0
    })
}

/// A table cell: aligned count and size.
fn packs(c: &PackCount) -> String {
    format!("{:>6} pack(s) {:>10}", c.packs, bytes(c.bytes))
}

/// The same in a sentence.
fn packs_inline(c: &PackCount) -> String {
    format!("{} pack(s) ({})", c.packs, bytes(c.bytes))
}

fn print(ctx: &Ctx, r: &PruneReport) -> Result<()> {
    let p = &r.plan;
    let would = if r.dry_run { "would be " } else { "" };
    ctx.say(format!(
        "{} snapshot(s), {} tree(s), {} blob(s) in use ({})",
        p.snapshots,
        p.trees,
        p.used_blobs,
        bytes(p.used_bytes)
    ));
    let d = &r.due;
    if d.records_due > 0 || d.records_finished > 0 {
        ctx.say(format!(
            "earlier prunes: {} deletion record(s) due: {} {}removed, {} pack(s) kept back (snapshots written since use them); {} finished record(s) {}removed",
            d.records_due,
            packs_inline(&d.removed),
            would,
            d.kept_back,
            d.records_finished,
            would
        ));
    }
    if d.records_waiting > 0 {
        ctx.say(format!(
            "earlier prunes: {} record(s) wait for their grace period ({}), the first until {}",
            d.records_waiting,
            packs_inline(&d.waiting),
            d.next_due_ns.map(local_time).unwrap_or_default()
        ));
    }
    ctx.say(format!("keep      {}", packs(&p.keep)));
    ctx.say(format!("delete    {}   no snapshot uses them", packs(&p.delete)));
    ctx.say(format!(
        "repack    {}   copying {} in use",
        packs(&p.repack),
        bytes(p.repack_used_bytes)
    ));
    ctx.say(format!(
        "unindexed {}   left by interrupted backups",
        packs(&p.unindexed)
    ));
    if !p.retained.is_empty() {
        ctx.say(format!(
            "retained  {}   under Object Lock retention until {} at the latest (and {} index object(s)): the storage \
             refuses to delete them before then, so they are kept{}; a prune after that date removes what no snapshot uses",
            packs(&p.retained.packs),
            p.retained.until.as_deref().unwrap_or("?"),
            p.retained.index_objects,
            if p.retained.packs.packs > 0 { ", neither deleted nor repacked" } else { "" },
        ));
    }
    if p.rescued_blobs > 0 {
        ctx.say(format!(
            "{} blob(s) in packs recorded earlier are in use again and {}copied out",
            p.rescued_blobs, would
        ));
    }
    let total = p.used_bytes + p.unused_after;
    ctx.say(format!(
        "unused: {} now, {} after ({:.1}% of {})",
        bytes(p.unused_bytes),
        bytes(p.unused_after),
        if total == 0 {
            0.0
        } else {
            p.unused_after as f64 * 100.0 / total as f64
        },
        bytes(total)
    ));
    if !p.cold.is_empty() && !ctx.quiet && !ctx.json {
        ctx.say("packs in storage classes with a minimum storage duration:");
        let rows: Vec<Vec<String>> = p
            .cold
            .iter()
            .map(|c| {
                vec![
                    c.pack.short(),
                    c.class.clone(),
                    bytes(c.size),
                    c.age_days.map_or("?".into(), |a| format!("{a:.0}d")),
                    format!("{}d", c.minimum_days),
                    c.action.to_string(),
                    match c.action {
                        "wait" => format!("${:.4} avoided", c.early_deletion_usd),
                        "keep" => "-".into(),
                        _ => format!("${:.4}", c.early_deletion_usd),
                    },
                ]
            })
            .collect();
        output::table(
            &["Pack", "Class", "Size", "Age", "Minimum", "Action", "Early deletion"],
            &rows,
        )?;
    }
    if r.repack_pending > 0 {
        ctx.say(format!(
            "{} archived pack(s) to repack wait for their retrieval: they are kept for now; run the same prune again once it is done",
            r.repack_pending
        ));
    }
    let x = &p.retention_extended;
    if x.objects > 0 {
        ctx.say(format!(
            "{} Object Lock retention of {} object(s) still in use to {} ({} pack(s), {} index object(s), {} snapshot(s), {} key(s) and config)",
            if r.dry_run { "would extend" } else { "extended" },
            x.objects,
            x.until.as_deref().unwrap_or("?"),
            x.packs,
            x.index_objects,
            x.snapshots,
            x.other,
        ));
    }
    if r.dry_run {
        ctx.say("dry run: nothing was changed");
    } else if let Some(rec) = &r.record {
        ctx.say(format!(
            "recorded {} for deletion (record {}): a prune after the grace period removes them",
            packs_inline(&r.recorded),
            &rec[..rec.len().min(8)]
        ));
    } else if r.removed.packs > 0 {
        ctx.say(format!("removed {}", packs_inline(&r.removed)));
    } else {
        ctx.say("nothing to remove");
    }
    Ok(())
}
