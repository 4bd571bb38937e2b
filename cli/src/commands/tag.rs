use anyhow::Result;
use cairn_engine::{filter_snapshots, find_snapshots, tag_snapshots, TagOptions, TagReport};

use super::{filter, Ctx};
use crate::args::TagArgs;
use crate::output;

/// Takes no lock, as rewrite and forget (format-spec F1, F2): it only adds
/// snapshot objects and then removes the ones they replace, which no running
/// backup, reader or prune can be harmed by.
pub fn run(ctx: &Ctx, a: TagArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let snapshots = if a.snapshots.is_empty() {
        filter_snapshots(&repo, &filter(&a.filter))?
    } else {
        find_snapshots(&repo, &a.snapshots, &filter(&a.filter))?
    };
    let opts = TagOptions {
        add: a.add,
        remove: a.remove,
        // clap gives an empty list when --set is absent; an empty tag is
        // refused, so "set to nothing" cannot be meant by it.
        set: (!a.set.is_empty()).then_some(a.set),
        dry_run: a.dry_run,
    };
    let report = tag_snapshots(&repo, &snapshots, &opts)?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print(ctx, &report);
    }
    Ok(0)
}

fn print(ctx: &Ctx, report: &TagReport) {
    for s in report.snapshots.iter().filter(|s| s.changed) {
        let tags = if s.tags_after.is_empty() {
            "(none)".to_string()
        } else {
            s.tags_after.join(",")
        };
        match s.tagged {
            Some(new) => ctx.say(format!("{} -> {}: tags {tags}", s.original.short(), new.short())),
            None => ctx.say(format!("{}: would get tags {tags}", s.original.short())),
        }
    }
    if report.dry_run {
        ctx.say(format!(
            "would change the tags of {} snapshot(s), {} unchanged (dry run: nothing was written or removed)",
            report.changed, report.unchanged
        ));
    } else {
        let ids = if report.changed > 0 {
            " (a changed snapshot has a new id)"
        } else {
            ""
        };
        ctx.say(format!(
            "changed the tags of {} snapshot(s), {} unchanged{ids}",
            report.changed, report.unchanged
        ));
    }
}
