use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use cairn_engine::{check, CheckOptions};

use super::Ctx;
use crate::output::{self, bytes};
use crate::progress::Bar;

pub fn run(ctx: &Ctx, a: crate::args::CheckArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let read = Arc::new(AtomicU64::new(0));
    let total: u64 = if a.read_data {
        let idx = repo.load_index()?;
        idx.packs().iter().map(|p| p.size).sum()
    } else {
        0
    };
    let bar = (a.read_data && ctx.progress()).then(|| {
        let r = read.clone();
        Bar::bytes("check", move || (r.load(Ordering::Relaxed), total, String::new()))
    });
    let report = check(
        &repo,
        &CheckOptions {
            read_data: a.read_data,
            progress: Some(read),
            retrieval: Some(super::restore::retrieval_options(&a.retrieval)),
            on_retrieval: super::restore::retrieval_hook(ctx),
        },
    );
    drop(bar);
    let report = report?;
    if ctx.json {
        output::json(&serde_json::json!({"ok": report.ok(), "read_data": a.read_data, "report": report}))?;
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
            if a.read_data {
                format!(", read {}", bytes(report.bytes_read))
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
