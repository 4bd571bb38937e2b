//! `cairn copy`, and the copies a profile's `copy-to` runs after each backup.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_engine::{
    copy, filter_snapshots, find_snapshots, CopyOptions, CopyPath, CopyProgress, CopyReport, ErrorKind, Repository,
    RetrievalHook, RetrievalOptions, Snapshot, SnapshotId,
};
use serde_json::Value;

use super::{filter, Ctx};
use crate::args::CopyArgs;
use crate::output::{self, bytes};
use crate::password;
use crate::progress::Bar;

/// Where the destination's password comes from besides its profile.
#[derive(Default)]
struct PasswordFlags {
    file: Option<std::path::PathBuf>,
    command: Option<String>,
}

pub fn run(ctx: &Ctx, a: CopyArgs) -> Result<u8> {
    // Ctrl-C stops the copy cleanly: what is stored is indexed and kept for
    // the next run, and no snapshot is written for an unfinished copy.
    let cancel = crate::signals::install()?;
    let src_target = ctx.target()?;
    let destinations = if a.to.is_empty() {
        src_target.copy_to.clone()
    } else {
        a.to.clone()
    };
    if destinations.is_empty() {
        anyhow::bail!(
            "no destination: give --to REPO (a profile name from cairn.toml or a location), or set \
             copy-to = [\"...\"] in the source's profile"
        );
    }
    let src = ctx.open()?;
    let f = filter(&a.filter);
    let selected = if a.snapshots.is_empty() {
        filter_snapshots(&src, &f)?
    } else {
        find_snapshots(&src, &a.snapshots, &f)?
    };
    let flags = PasswordFlags {
        file: a.to_password_file.clone(),
        command: a.to_password_command.clone(),
    };
    let retrieval = crate::commands::restore::retrieval_options(&a.retrieval);
    let mut results = Vec::new();
    let mut code = 0u8;
    for to in &destinations {
        let (value, c) = copy_to(ctx, &src, to, &selected, &flags, a.dry_run, &retrieval, &cancel);
        results.push(value);
        code = worst(code, c);
        if cancel.load(Ordering::Relaxed) {
            break;
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({
            "source": src_target.location,
            "selected": selected.len(),
            "copies": results,
            "retries": ctx.retries(),
        }))?;
    }
    if cancel.load(Ordering::Relaxed) && code != 0 {
        return Ok(crate::signals::exit_code());
    }
    Ok(code)
}

/// Copies the snapshot a backup just saved to each repository of its
/// profile's `copy-to`. A failed copy is reported and makes the exit code
/// non-zero; the backup itself stays. Returns each copy's JSON and the
/// exit code the copies call for (0 when all succeeded).
pub fn after_backup(
    ctx: &Ctx,
    src: &Repository,
    id: SnapshotId,
    snapshot: &Snapshot,
    cancel: &Arc<AtomicBool>,
) -> (Vec<Value>, u8) {
    let destinations = match ctx.target() {
        Ok(t) => t.copy_to,
        Err(_) => Vec::new(),
    };
    let selected = vec![(id, snapshot.clone())];
    let mut results = Vec::new();
    let mut code = 0u8;
    for to in &destinations {
        let (value, c) = copy_to(
            ctx,
            src,
            to,
            &selected,
            &PasswordFlags::default(),
            false,
            &RetrievalOptions::default(),
            cancel,
        );
        results.push(value);
        code = worst(code, c);
        if cancel.load(Ordering::Relaxed) {
            break;
        }
    }
    (results, code)
}

/// The exit code to keep of two: a failure beats a pending retrieval.
fn worst(a: u8, b: u8) -> u8 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (crate::EXIT_RETRIEVAL_PENDING, x) | (x, crate::EXIT_RETRIEVAL_PENDING) => x,
        (x, _) => x,
    }
}

/// One destination: opens it, copies, reports. Never fails as a whole: a
/// failure is printed (and put in the JSON) and turned into an exit code,
/// so the next destination is still tried.
#[allow(clippy::too_many_arguments)]
fn copy_to(
    ctx: &Ctx,
    src: &Repository,
    to: &str,
    selected: &[(SnapshotId, Snapshot)],
    flags: &PasswordFlags,
    dry_run: bool,
    retrieval: &RetrievalOptions,
    cancel: &Arc<AtomicBool>,
) -> (Value, u8) {
    let started = std::time::Instant::now();
    // `--json` reports the source's retries as `retries`: the destination's
    // are counted apart and the source's options put back afterwards.
    let source_options = ctx.backend_options.borrow().clone();
    let mut location = to.to_string();
    let result = (|| -> Result<CopyReport> {
        let t = ctx.config.target(Some(to))?;
        location = t.location.clone();
        let backend = ctx.backend(&t)?;
        let pw = password::destination(
            flags.file.as_deref(),
            flags.command.as_deref(),
            t.password_file.as_deref(),
            t.password_command.as_deref(),
            &t.location,
        )?;
        let dst = Repository::open(backend, &pw).with_context(|| format!("opening the destination {}", t.location))?;
        if dst.config().id_hex() == src.config().id_hex() {
            anyhow::bail!("the destination {} is the source repository itself", t.location);
        }
        run_copy(ctx, src, &dst, selected, dry_run, retrieval, cancel)
    })();
    let retries = ctx.retries();
    *ctx.backend_options.borrow_mut() = source_options;
    match result {
        Ok(r) => {
            let pending = r.pending_packs > 0;
            let damaged = r.damage_error();
            say_report(ctx, to, &location, &r, started);
            if let Some(e) = &damaged {
                // Like restore: everything intact was copied, what was not is
                // named above, and the exit code is the damage's.
                eprintln!("error: copy to {to}: {e}");
            }
            let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("destination".into(), Value::String(to.to_string()));
                m.insert("location".into(), Value::String(location.clone()));
                m.insert("ok".into(), Value::Bool(!pending && damaged.is_none()));
                m.insert("retrieval_pending".into(), Value::Bool(pending));
                m.insert("retries".into(), serde_json::json!(retries));
                m.insert("seconds".into(), serde_json::json!(started.elapsed().as_secs_f64()));
            }
            let code = if damaged.is_some() {
                crate::EXIT_FAILURE
            } else if pending {
                crate::EXIT_RETRIEVAL_PENDING
            } else {
                0
            };
            (v, code)
        }
        Err(e) => {
            let kind = e.chain().find_map(ErrorKind::of);
            let code = match kind {
                Some(ErrorKind::RetrievalPending) => crate::EXIT_RETRIEVAL_PENDING,
                Some(ErrorKind::WrongPassword) => crate::EXIT_WRONG_PASSWORD,
                Some(ErrorKind::NotARepository) => crate::EXIT_NO_REPOSITORY,
                Some(ErrorKind::Interrupted) => crate::signals::exit_code(),
                _ => crate::EXIT_FAILURE,
            };
            let mut text = format!("{e}");
            for cause in e.chain().skip(1) {
                text.push_str(&format!(": {cause}"));
            }
            if !ctx.json || code != crate::EXIT_RETRIEVAL_PENDING {
                eprintln!("error: copy to {to} failed: {text}");
                if code == crate::EXIT_RETRIEVAL_PENDING {
                    eprintln!(
                        "Run the same command again later, or add --wait; it resumes where it stopped and requests nothing twice."
                    );
                }
            }
            let v = serde_json::json!({
                "destination": to,
                "location": location,
                "ok": false,
                "retrieval_pending": code == crate::EXIT_RETRIEVAL_PENDING,
                "error": text,
            });
            (v, code)
        }
    }
}

/// The engine call, with the progress bar and the retrieval messages.
#[allow(clippy::too_many_arguments)]
fn run_copy(
    ctx: &Ctx,
    src: &Repository,
    dst: &Repository,
    selected: &[(SnapshotId, Snapshot)],
    dry_run: bool,
    retrieval: &RetrievalOptions,
    cancel: &Arc<AtomicBool>,
) -> Result<CopyReport> {
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let progress: Arc<dyn Fn(&CopyProgress) + Send + Sync> = Arc::new(move |p: &CopyProgress| {
        c.snapshots_done.store(p.snapshots_done, Ordering::Relaxed);
        c.snapshots_total.store(p.snapshots_total, Ordering::Relaxed);
        c.bytes_done.store(p.bytes_done, Ordering::Relaxed);
        c.bytes_total.store(p.bytes_total, Ordering::Relaxed);
    });
    let hook = crate::commands::restore::retrieval_hook(ctx).map(|h| RetrievalHook(Box::new(move |r| (h.0)(r))));
    let opts = CopyOptions {
        dry_run,
        retrieval: *retrieval,
        retrieval_hook: hook,
        progress: Some(progress),
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let bar = ctx.progress().then(|| {
        let c = counters.clone();
        Bar::bytes("copy", move || {
            (
                c.bytes_done.load(Ordering::Relaxed),
                c.bytes_total.load(Ordering::Relaxed),
                format!(
                    "{}/{} snapshots",
                    c.snapshots_done.load(Ordering::Relaxed),
                    c.snapshots_total.load(Ordering::Relaxed)
                ),
            )
        })
    });
    let r = copy(src, dst, selected, &opts);
    drop(bar);
    Ok(r?)
}

#[derive(Default)]
struct Counters {
    snapshots_done: AtomicUsize,
    snapshots_total: AtomicUsize,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
}

/// What the path means, in the words the summary uses.
fn path_words(p: &CopyPath) -> &'static str {
    match p {
        CopyPath::Fast => "fast: blobs re-encrypted and re-packed, not re-chunked",
        CopyPath::Rechunk => "re-chunked for the destination (its chunker parameters differ from the source's)",
    }
}

/// The human summary of one destination.
fn say_report(ctx: &Ctx, to: &str, location: &str, r: &CopyReport, started: std::time::Instant) {
    let name = if to == location {
        to.to_string()
    } else {
        format!("{to} ({location})")
    };
    let verb = if r.dry_run { "would copy" } else { "copied" };
    ctx.say(format!(
        "{verb} {} snapshot(s) to {name}, {} already there ({})",
        r.copied.len(),
        r.skipped,
        path_words(&r.path)
    ));
    for c in &r.copied {
        if r.dry_run {
            ctx.say(format!("  snapshot {}", c.source.short()));
        } else {
            ctx.say(format!("  snapshot {} -> {}", c.source.short(), c.destination.short()));
        }
    }
    for f in &r.failed {
        eprintln!(
            "  snapshot {} NOT copied: the source's data is missing or damaged: {}",
            f.source.short(),
            f.reason
        );
    }
    ctx.say(format!(
        "read {} blob(s), {} from {} pack(s); wrote {} blob(s), {} in {:.2} s",
        r.blobs_read,
        bytes(r.bytes_read),
        r.packs_read,
        r.blobs_written,
        bytes(r.bytes_written),
        started.elapsed().as_secs_f64()
    ));
    if r.pending_packs > 0 {
        eprintln!(
            "{} pack(s) ({}) of the source are being retrieved from archive storage; {} snapshot(s) need them and \
             were not copied yet.\nRun the same command again later, or add --wait; it resumes where it stopped \
             and requests nothing twice.",
            r.pending_packs,
            bytes(r.pending_bytes),
            r.waiting
        );
    }
    if r.dry_run {
        ctx.say("dry run: nothing was written");
    }
}
