use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use cairn_engine::{check, filter_snapshots, find_snapshots, CheckOptions};

use super::{filter, Ctx};
use crate::output::{self, bytes};
use crate::progress::Bar;

pub fn run(ctx: &Ctx, a: crate::args::CheckArgs) -> Result<u8> {
    let read_data = a.read_data || a.read_data_subset.is_some();
    let repo = if read_data { ctx.open_uncached()? } else { ctx.open()? };
    let scoped = !a.snapshots.is_empty() || !a.filter.is_empty();
    let snapshots = if !scoped {
        None
    } else if a.snapshots.is_empty() {
        Some(filter_snapshots(&repo, &filter(&a.filter))?)
    } else {
        Some(find_snapshots(&repo, &a.snapshots, &filter(&a.filter))?)
    };
    if snapshots.as_ref().is_some_and(|s| s.is_empty()) {
        anyhow::bail!("no snapshot passes the filters: nothing to check");
    }
    let read = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let bar = (read_data && ctx.progress()).then(|| {
        let (r, t) = (read.clone(), total.clone());
        Bar::bytes("check", move || {
            (r.load(Ordering::Relaxed), t.load(Ordering::Relaxed), String::new())
        })
    });
    let report = check(
        &repo,
        &CheckOptions {
            read_data,
            progress: Some(read),
            progress_total: Some(total),
            retrieval: Some(super::restore::retrieval_options(&a.retrieval)),
            on_retrieval: super::restore::retrieval_hook(ctx),
            subset: a.read_data_subset,
            snapshots: snapshots.map(|s| s.into_iter().map(|(id, _)| id).collect()),
        },
    );
    drop(bar);
    let report = report?;
    if ctx.json {
        output::json(&serde_json::json!({"ok": report.ok(), "read_data": read_data, "report": report}))?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        // Each damaged object with every snapshot and file that needs it.
        let mut with_deps = std::collections::HashMap::new();
        for p in &report.problems {
            with_deps.insert(format!("{}: {}", p.object, p.problem), &p.dependents);
        }
        for e in &report.errors {
            eprintln!("error: {e}");
            match with_deps.get(e) {
                Some(deps) if !deps.is_empty() => {
                    eprintln!("  needed by {} file(s) or folder(s):", deps.len());
                    for d in deps.iter() {
                        eprintln!("    snapshot {} {}", d.snapshot.short(), d.path);
                    }
                }
                _ => {}
            }
        }
        for a in &report.advice {
            eprintln!("advice: {a}");
        }
        ctx.say(format!(
            "checked {} snapshots, {} trees, {} packs, {} blobs{}",
            report.snapshots,
            report.trees,
            report.packs,
            report.blobs,
            if read_data {
                format!(
                    ", read {} in {} pack(s){}",
                    bytes(report.bytes_read),
                    report.packs_read,
                    report
                        .subset
                        .as_ref()
                        .map(|s| format!(" (subset {s} of {})", report.packs))
                        .unwrap_or_default()
                )
            } else {
                String::new()
            }
        ));
        if report.ok() {
            ctx.say("no errors found");
        } else {
            eprintln!("{} error(s) found: the repository is damaged", report.errors.len());
        }
    }
    Ok(if !report.ok() {
        crate::EXIT_FAILURE
    } else if report.archived_unread > 0 && report.retrieval.is_some() {
        crate::EXIT_RETRIEVAL_PENDING
    } else {
        0
    })
}
