use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use cairn_engine::{filter_snapshots, find_snapshots, SourceCost, StatsMode, StatsOptions, StatsReport};

use super::{filter, Ctx};
use crate::args::StatsArgs;
use crate::output::{self, bytes};
use crate::progress::Bar;

pub fn run(ctx: &Ctx, a: StatsArgs) -> Result<u8> {
    let prices = if a.cost { Some(ctx.config.prices()?) } else { None };
    let target = ctx.target()?;
    let repo = ctx.open()?;
    let f = &a.filter;
    let whole = a.snapshots.is_empty() && f.is_empty();
    let snapshots = if a.snapshots.is_empty() {
        filter_snapshots(&repo, &filter(f))?
    } else {
        find_snapshots(&repo, &a.snapshots, &filter(f))?
    };
    if snapshots.is_empty() && !whole {
        bail!("no snapshot passes the filters: nothing to count");
    }
    let opts = StatsOptions {
        mode: a.mode,
        whole_repository: whole,
        prices,
        unclassed: if target.location.starts_with("s3:") {
            "STANDARD"
        } else {
            "local"
        }
        .to_string(),
    };
    let done = Arc::new(AtomicU64::new(0));
    let total = snapshots.len() as u64;
    let bar = ctx.progress().then(|| {
        let d = done.clone();
        Bar::count("stats", move || {
            (d.load(Ordering::Relaxed), total, "snapshots".to_string())
        })
    });
    let report = cairn_engine::stats(&repo, &snapshots, &opts, &|n| done.store(n as u64, Ordering::Relaxed));
    drop(bar);
    let report = report?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print(ctx, &report)?;
    }
    Ok(0)
}

fn usd(v: f64) -> String {
    format!("${v:.2}")
}

fn print(ctx: &Ctx, r: &StatsReport) -> Result<()> {
    if ctx.quiet {
        return Ok(());
    }
    let t = &r.repository;
    let what = match r.mode {
        StatsMode::RestoreSize => "restore-size (what a restore writes)",
        StatsMode::RawData => "raw-data (distinct blobs, uncompressed)",
        StatsMode::FilesByContents => "files-by-contents (distinct file contents)",
    };
    let scope = if t.dedup_ratio.is_some() {
        " (the whole repository)"
    } else {
        ""
    };
    ctx.say(format!("snapshots:            {}{scope}", r.snapshots));
    let count = match (r.total_file_count, r.total_blob_count) {
        (Some(f), _) => format!(" in {f} file(s)"),
        (None, Some(b)) => format!(" in {b} blob(s)"),
        _ => String::new(),
    };
    ctx.say(format!("mode:                 {what}"));
    ctx.say(format!("total size:           {}{count}", bytes(r.total_size)));
    if r.mode != StatsMode::RestoreSize {
        ctx.say(format!("restore size:         {}", bytes(r.restore_size)));
    }
    ctx.say(format!("packs:                {} holding {} blob(s)", t.packs, t.blobs));
    ctx.say(format!(
        "stored:               {} in packs, {} with index and metadata",
        bytes(t.stored_bytes),
        bytes(t.repository_bytes)
    ));
    ctx.say(format!(
        "uncompressed:         {} (compression ratio {:.2}x)",
        bytes(t.uncompressed_bytes),
        t.compression_ratio
    ));
    if let Some(d) = t.dedup_ratio {
        ctx.say(format!(
            "deduplication ratio:  {d:.2}x (restore size of every snapshot / stored)"
        ));
    }
    if let (Some(used), Some(unused)) = (t.referenced_bytes, t.unreferenced_bytes) {
        ctx.say(format!(
            "referenced:           {}; unreferenced {} (a prune removes it)",
            bytes(used),
            bytes(unused)
        ));
    }
    for n in &r.notes {
        ctx.say(format!("note: {n}"));
    }
    if r.missing_blobs > 0 {
        ctx.say(format!(
            "warning: {} blob reference(s) are not in the index and count nowhere: run `cairn check`",
            r.missing_blobs
        ));
    }
    let priced = r.cost.is_some();
    let cost_cells = |c: &Option<SourceCost>| match c {
        Some(c) => vec![usd(c.monthly_usd), usd(c.early_deletion_usd)],
        None => Vec::new(),
    };
    let mut header = vec!["HOST", "PATHS", "TAGS", "SNAPSHOTS", "RESTORE SIZE", "UNIQUE", "SHARED"];
    if priced {
        header.extend(["UNIQUE $/MONTH", "EARLY DELETION $"]);
    }
    if !r.sources.is_empty() {
        ctx.say("\nper source (UNIQUE: what forgetting all its snapshots and a prune would free):");
        let rows: Vec<Vec<String>> = r
            .sources
            .iter()
            .map(|s| {
                let mut row = vec![
                    s.host.clone(),
                    s.paths.join(","),
                    s.tags.join(","),
                    s.snapshots.to_string(),
                    bytes(s.restore_size),
                    bytes(s.unique_bytes),
                    bytes(s.shared_bytes),
                ];
                row.extend(cost_cells(&s.cost));
                row
            })
            .collect();
        output::table(&header, &rows)?;
    }
    if !r.tags.is_empty() {
        ctx.say("\nper tag:");
        let mut header = vec!["TAG", "SNAPSHOTS", "UNIQUE", "SHARED"];
        if priced {
            header.extend(["UNIQUE $/MONTH", "EARLY DELETION $"]);
        }
        let rows: Vec<Vec<String>> = r
            .tags
            .iter()
            .map(|t| {
                let mut row = vec![
                    t.tag.clone(),
                    t.snapshots.to_string(),
                    bytes(t.unique_bytes),
                    bytes(t.shared_bytes),
                ];
                row.extend(cost_cells(&t.cost));
                row
            })
            .collect();
        output::table(&header, &rows)?;
    }
    if let Some(c) = &r.cost {
        let whole = if t.dedup_ratio.is_some() {
            ""
        } else {
            "the whole repository, "
        };
        ctx.say(format!("\nstorage cost ({whole}{}):", c.prices));
        let rows: Vec<Vec<String>> = c
            .classes
            .iter()
            .map(|k| {
                vec![
                    k.class.clone(),
                    k.objects.to_string(),
                    bytes(k.bytes),
                    k.usd_per_gb_month.map(|p| format!("{p}")).unwrap_or_else(|| "?".into()),
                    k.monthly_usd.map(usd).unwrap_or_else(|| "?".into()),
                    k.minimum_days.map(|d| format!("{d} days")).unwrap_or_default(),
                ]
            })
            .collect();
        output::table(
            &["CLASS", "PACKS", "BYTES", "USD/GB-MONTH", "MONTHLY", "MINIMUM"],
            &rows,
        )?;
        ctx.say(format!("total: {} a month", usd(c.monthly_usd)));
        if !c.unpriced.is_empty() {
            ctx.say(format!(
                "no price for {}: add it to cairn.toml's [prices] (CLASS = USD per GB-month)",
                c.unpriced.join(", ")
            ));
        }
    }
    Ok(())
}
