//! `cairn import restic`: snapshots of a restic repository brought over.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_engine::{import_restic, ErrorKind, ImportOptions, ImportProgress, ImportReport};

use super::{filter, Ctx};
use crate::args::{ImportCommand, ImportResticArgs};
use crate::output::{self, bytes};
use crate::password;
use crate::progress::Bar;

pub fn run(ctx: &Ctx, cmd: ImportCommand) -> Result<u8> {
    match cmd {
        ImportCommand::Restic(a) => restic(ctx, a),
    }
}

fn restic(ctx: &Ctx, a: ImportResticArgs) -> Result<u8> {
    // Ctrl-C stops between files: finished snapshots stay, what was stored
    // since is indexed and reused by the next import.
    let cancel = crate::signals::install()?;
    let started = std::time::Instant::now();
    let dst = ctx.open()?;
    let from = ctx.config.target(Some(&a.from))?;
    let mut o = from.backend_options()?;
    o.limit_download_kib = ctx.limit_download;
    // Cairn's metadata cache checks objects by Cairn's naming; restic's
    // objects are named otherwise, so they are read without it.
    o.cache = None;
    let src = cairn_engine::open_location_with(&from.location, &o)
        .with_context(|| format!("opening the restic repository {}", from.location))?;
    let pw = password::restic(
        a.from_password_file.as_deref(),
        a.from_password_command.as_deref(),
        &from.location,
    )?;
    let progress = Arc::new(ImportProgress::default());
    let opts = ImportOptions {
        filter: filter(&a.filter),
        dry_run: a.dry_run,
        sealers: 0,
        cancel: Some(cancel.clone()),
        progress: Some(progress.clone()),
    };
    let bar = ctx.progress().then(|| {
        let p = progress.clone();
        Bar::bytes("import", move || {
            (
                p.bytes_done.load(Ordering::Relaxed),
                p.bytes_total.load(Ordering::Relaxed),
                format!(
                    "{}/{} snapshots",
                    p.snapshots_done.load(Ordering::Relaxed),
                    p.snapshots_total.load(Ordering::Relaxed)
                ),
            )
        })
    });
    let r = import_restic(&dst, src, &pw, &opts);
    drop(bar);
    let r = match r {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::Interrupted => {
            eprintln!("error: {e}");
            return Ok(crate::signals::exit_code());
        }
        Err(e) => return Err(e).with_context(|| format!("importing from the restic repository {}", from.location)),
    };
    if ctx.json {
        let mut v = serde_json::to_value(&r)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("location".into(), from.location.clone().into());
            m.insert("seconds".into(), started.elapsed().as_secs_f64().into());
        }
        output::json(&v)?;
    } else {
        say(ctx, &from.location, &r, started);
    }
    Ok(if !r.failed.is_empty() {
        crate::EXIT_FAILURE
    } else if r.problems > 0 {
        crate::EXIT_PARTIAL
    } else {
        0
    })
}

fn say(ctx: &Ctx, location: &str, r: &ImportReport, started: std::time::Instant) {
    let verb = if r.dry_run { "would import" } else { "imported" };
    ctx.say(format!(
        "{verb} {} snapshot(s) from the restic repository {location} ({}, format {}); {} imported before",
        r.imported.len(),
        &r.restic_repository[..8.min(r.restic_repository.len())],
        r.restic_version,
        r.skipped.len()
    ));
    for s in &r.imported {
        let id = s.id.map(|i| i.short()).unwrap_or_else(|| "-".into());
        let tags = if s.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", s.tags.join(","))
        };
        ctx.say(format!(
            "  restic {} -> {id}  {}  {}  {}{tags}  {} file(s), {} ({} read)",
            &s.restic_id[..8.min(s.restic_id.len())],
            cairn_engine::format_ns(s.time_ns),
            s.host,
            s.paths.join(" "),
            s.files,
            bytes(s.bytes),
            s.files_read
        ));
        for p in &s.problems {
            eprintln!("  {}: {}", p.path.display(), p.error);
        }
    }
    for f in &r.failed {
        eprintln!("  NOT imported: restic snapshot {}: {}", f.restic_id, f.error);
    }
    ctx.say(format!(
        "{} file(s), {}; read {} from restic, added {} to the repository in {:.2} s",
        r.files,
        bytes(r.bytes),
        bytes(r.bytes_read),
        bytes(r.bytes_added),
        started.elapsed().as_secs_f64()
    ));
    if r.problems > 0 {
        eprintln!(
            "{} entr(ies) were damaged in the restic repository: imported as NAME.damaged with what is intact, or left out (listed above)",
            r.problems
        );
    }
    if r.dry_run {
        ctx.say("dry run: nothing was written");
    }
}
