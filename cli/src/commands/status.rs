//! `cairn status`: per configured source, the newest snapshot against the
//! source's recovery point objective, and how far each copy of it lags.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use cairn_engine::{filter_snapshots, Report, ReportKind, Repository, Snapshot, SnapshotFilter, SnapshotId};
use serde::Serialize;

use super::Ctx;
use crate::output::{self, bytes};
use crate::password;
use crate::policy::SourceConfig;

/// What `status` found for one source.
#[derive(Debug, Serialize)]
struct SourceStatus {
    source: String,
    kind: String,
    repository: String,
    /// `ok`, `breach` (newest snapshot older than the RPO, or none), or
    /// `unknown` (no RPO set, or the repository could not be read).
    state: &'static str,
    rpo_seconds: Option<u64>,
    rto_class: Option<String>,
    rto_seconds: Option<u64>,
    snapshots: usize,
    newest: Option<Newest>,
    copies: Vec<CopyStatus>,
    /// The newest `cairn run` of the source (from its repository).
    last_run: Option<LastReport>,
    /// The newest `cairn drill` of the source, from its repository or any
    /// of its copies.
    last_drill: Option<LastReport>,
    error: Option<String>,
}

/// A stored run or drill report, as status shows it.
#[derive(Debug, Serialize)]
struct LastReport {
    ok: bool,
    /// The repository the report is in (a drill's: the one restored from).
    repository: String,
    host: String,
    time: String,
    time_unix: f64,
    age_seconds: u64,
    snapshot: Option<SnapshotId>,
    /// How long it took (a drill: the restore).
    seconds: f64,
    /// The time allowed (a drill's RTO).
    limit_seconds: Option<u64>,
    /// The first step that failed, and why.
    failed_step: Option<String>,
    reason: Option<String>,
}

impl LastReport {
    fn of(r: &Report, repository: &str, now: i64) -> Self {
        let failed = r.failed_step();
        LastReport {
            ok: r.ok,
            repository: repository.to_string(),
            host: r.host.clone(),
            time: output::rfc3339(r.started_ns),
            time_unix: r.started_ns as f64 / 1e9,
            age_seconds: age(now, r.started_ns),
            snapshot: r.snapshot,
            seconds: r.duration_ns as f64 / 1e9,
            limit_seconds: r.limit_ns.map(|n| n / 1_000_000_000),
            failed_step: failed.map(|f| f.name.clone()),
            reason: failed.map(|f| f.detail.clone()),
        }
    }
}

#[derive(Debug, Serialize)]
struct Newest {
    id: SnapshotId,
    time: String,
    time_unix: f64,
    age_seconds: u64,
    /// What a restore of it writes.
    size_bytes: u64,
    /// What its backup added to the repository (stored).
    added_bytes: u64,
    duration_seconds: f64,
    /// Files its backup could not read.
    errors: u64,
}

/// The newest of a source's snapshots found in a copy destination.
#[derive(Debug, Serialize)]
struct CopyStatus {
    repository: String,
    /// The original (source repository) snapshot id of the newest copy.
    snapshot: Option<SnapshotId>,
    time: Option<String>,
    time_unix: Option<f64>,
    age_seconds: Option<u64>,
    /// Snapshots of the source not (yet) in this destination.
    missing: usize,
    error: Option<String>,
}

pub fn run(ctx: &Ctx, a: crate::args::StatusArgs) -> Result<u8> {
    let sources = &ctx.config.sources;
    if sources.is_empty() {
        anyhow::bail!("cairn.toml has no [sources.NAME] table: status reports on the configured sources");
    }
    for name in &a.sources {
        if !sources.contains_key(name) {
            anyhow::bail!(
                "no source {name:?} in cairn.toml (configured: {})",
                sources.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let now = cairn_engine::now_ns();
    let mut cache: BTreeMap<String, Result<Listed, String>> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, src) in sources {
        if !a.sources.is_empty() && !a.sources.contains(name) {
            continue;
        }
        out.push(status_of(ctx, name, src, now, &mut cache));
    }
    // A source without an RPO has nothing to breach: shown, not failed.
    let ok = out.iter().all(|s| s.state != "breach" && s.error.is_none());
    if let Some(file) = &a.prometheus {
        write_atomically(file, &prometheus(&out))?;
    }
    if ctx.json {
        output::json(&serde_json::json!({"ok": ok, "sources": out}))?;
    } else {
        print(ctx, &out)?;
    }
    Ok(if ok { 0 } else { crate::EXIT_FAILURE })
}

/// A repository's snapshots and newest reports, listed once however many
/// sources use it.
struct Listed {
    id_hex: String,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    reports: BTreeMap<(String, ReportKind), Report>,
}

/// Opens a repository by profile name or location; `destination`: it is a
/// copy destination, whose password comes from its own settings.
pub(super) fn open(ctx: &Ctx, name: &str, destination: bool) -> Result<Repository> {
    let t = ctx.config.target(Some(name))?;
    let backend = ctx.backend(&t)?;
    let pw = if destination {
        password::destination(
            None,
            None,
            t.password_file.as_deref(),
            t.password_command.as_deref(),
            &t.location,
        )?
    } else {
        password::repository(t.password_file.as_deref(), t.password_command.as_deref())?
    };
    Repository::open(backend, &pw).with_context(|| format!("opening {}", t.location))
}

fn list(ctx: &Ctx, name: &str, destination: bool) -> Result<Listed> {
    let repo = open(ctx, name, destination)?;
    Ok(Listed {
        id_hex: repo.config().id_hex(),
        snapshots: filter_snapshots(&repo, &SnapshotFilter::default())?,
        // Reports only explain: a repository whose reports cannot be
        // listed still has its snapshots reported.
        reports: repo.latest_reports().unwrap_or_default(),
    })
}

/// Stores a run's or drill's report in `repo`; a failure is a warning,
/// since the work it describes is done either way.
pub(super) fn record(repo: &Repository, report: &Report) {
    if let Err(e) = repo.save_report(report) {
        eprintln!(
            "warning: the {} report of source {} could not be stored: {e}",
            report.kind.as_str(),
            report.source
        );
    }
}

fn listed<'a>(
    ctx: &Ctx,
    cache: &'a mut BTreeMap<String, Result<Listed, String>>,
    name: &str,
    destination: bool,
) -> &'a Result<Listed, String> {
    cache
        .entry(name.to_string())
        .or_insert_with(|| list(ctx, name, destination).map_err(|e| format!("{e:#}")))
}

fn status_of(
    ctx: &Ctx,
    name: &str,
    src: &SourceConfig,
    now: i64,
    cache: &mut BTreeMap<String, Result<Listed, String>>,
) -> SourceStatus {
    let repository = ctx.source_repository(src);
    let mut st = SourceStatus {
        source: name.to_string(),
        kind: src.kind.clone(),
        repository: repository.clone(),
        state: "unknown",
        rpo_seconds: None,
        rto_class: src.rto_class.clone(),
        rto_seconds: None,
        snapshots: 0,
        newest: None,
        copies: Vec::new(),
        last_run: None,
        last_drill: None,
        error: None,
    };
    if let Err(e) = src.validate(name) {
        st.error = Some(format!("{e:#}"));
        return st;
    }
    st.rpo_seconds = src.rpo_seconds().ok().flatten();
    st.rto_seconds = src
        .rto_class
        .as_deref()
        .and_then(|c| crate::policy::rto_seconds(c).ok());
    let mut drills: Vec<(&Report, String)> = Vec::new();
    let (repo_id, mine): (String, Vec<(SnapshotId, Snapshot)>) = match listed(ctx, cache, &repository, false) {
        Ok(l) => {
            st.last_run = l
                .reports
                .get(&(name.to_string(), ReportKind::Run))
                .map(|r| LastReport::of(r, &repository, now));
            (
                l.id_hex.clone(),
                l.snapshots.iter().filter(|(_, s)| src.matches(s)).cloned().collect(),
            )
        }
        Err(e) => {
            st.error = Some(e.clone());
            return st;
        }
    };
    st.snapshots = mine.len();
    // Listed oldest first.
    st.newest = mine.last().map(|(id, s)| Newest {
        id: *id,
        time: output::rfc3339(s.time_ns),
        time_unix: s.time_ns as f64 / 1e9,
        age_seconds: age(now, s.time_ns),
        size_bytes: s.summary.bytes_new + s.summary.bytes_changed + s.summary.bytes_unchanged,
        added_bytes: s.summary.bytes_added_stored,
        duration_seconds: s.summary.duration_ns as f64 / 1e9,
        errors: s.summary.errors,
    });
    st.state = match (st.rpo_seconds, &st.newest) {
        (None, _) => "unknown",
        (Some(_), None) => "breach",
        (Some(rpo), Some(n)) if n.age_seconds > rpo => "breach",
        (Some(_), Some(_)) => "ok",
    };
    let destinations = match &src.copy_to {
        Some(d) => d.clone(),
        None => ctx
            .config
            .target(Some(&repository))
            .map(|t| t.copy_to)
            .unwrap_or_default(),
    };
    for to in &destinations {
        st.copies.push(copy_status(ctx, to, &repo_id, &mine, now, cache));
    }
    // A drill may have restored from the source's repository or, to prove
    // the disaster path, from one of its copies: the newest counts.
    let key = (name.to_string(), ReportKind::Drill);
    for r in std::iter::once(&repository).chain(destinations.iter()) {
        if let Some(Ok(l)) = cache.get(r) {
            if let Some(d) = l.reports.get(&key) {
                drills.push((d, r.clone()));
            }
        }
    }
    st.last_drill = drills
        .into_iter()
        .max_by_key(|(d, _)| d.started_ns)
        .map(|(d, r)| LastReport::of(d, &r, now));
    st
}

fn copy_status(
    ctx: &Ctx,
    to: &str,
    repo_id: &str,
    mine: &[(SnapshotId, Snapshot)],
    now: i64,
    cache: &mut BTreeMap<String, Result<Listed, String>>,
) -> CopyStatus {
    let mut c = CopyStatus {
        repository: to.to_string(),
        snapshot: None,
        time: None,
        time_unix: None,
        age_seconds: None,
        missing: mine.len(),
        error: None,
    };
    let dst = match listed(ctx, cache, to, true) {
        Ok(l) => l,
        Err(e) => {
            c.error = Some(e.clone());
            return c;
        }
    };
    let copied: std::collections::HashSet<SnapshotId> = dst
        .snapshots
        .iter()
        .filter_map(|(_, s)| s.copied_from.as_ref())
        .filter(|o| o.repository.to_hex() == repo_id)
        .map(|o| o.snapshot)
        .collect();
    c.missing = mine.iter().filter(|(id, _)| !copied.contains(id)).count();
    if let Some((id, s)) = mine.iter().rev().find(|(id, _)| copied.contains(id)) {
        c.snapshot = Some(*id);
        c.time = Some(output::rfc3339(s.time_ns));
        c.time_unix = Some(s.time_ns as f64 / 1e9);
        c.age_seconds = Some(age(now, s.time_ns));
    }
    c
}

fn age(now: i64, then: i64) -> u64 {
    u64::try_from(now.saturating_sub(then) / 1_000_000_000).unwrap_or(0)
}

fn print(ctx: &Ctx, out: &[SourceStatus]) -> Result<()> {
    let dur = |s: u64| match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|s| {
            vec![
                s.source.clone(),
                s.kind.clone(),
                s.newest.as_ref().map_or("none".into(), |n| n.id.short()),
                s.newest.as_ref().map_or("-".into(), |n| n.time.clone()),
                s.newest.as_ref().map_or("-".into(), |n| dur(n.age_seconds)),
                s.newest.as_ref().map_or("-".into(), |n| bytes(n.size_bytes)),
                s.rpo_seconds.map_or("-".into(), dur),
                match (s.state, &s.error) {
                    (_, Some(_)) => "ERROR".into(),
                    ("breach", _) => "BREACH".into(),
                    (x, _) => x.to_ascii_uppercase(),
                },
            ]
        })
        .collect();
    output::table(
        &["source", "kind", "newest", "time", "age", "size", "rpo", "state"],
        &rows,
    )?;
    for s in out {
        if let Some(e) = &s.error {
            eprintln!("error: source {}: {e}", s.source);
        }
        if s.state == "breach" {
            let why = match &s.newest {
                None => "it has no snapshot".to_string(),
                Some(n) => format!("its newest snapshot is {} old", dur(n.age_seconds)),
            };
            eprintln!(
                "BREACH: source {}: {why}, over its RPO of {}",
                s.source,
                s.rpo_seconds.map_or("-".into(), dur)
            );
        }
        for c in &s.copies {
            match (&c.error, &c.snapshot) {
                (Some(e), _) => eprintln!("error: source {} copy to {}: {e}", s.source, c.repository),
                (None, None) => ctx.say(format!("  {} → {}: no snapshot copied yet", s.source, c.repository)),
                (None, Some(id)) => ctx.say(format!(
                    "  {} → {}: newest copy {} ({} old), {} not copied yet",
                    s.source,
                    c.repository,
                    id.short(),
                    dur(c.age_seconds.unwrap_or(0)),
                    c.missing
                )),
            }
        }
        let report = |what: &str, r: &LastReport| {
            let how = match (&r.failed_step, &r.reason) {
                _ if r.ok => "passed".to_string(),
                (Some(step), Some(why)) => format!("FAILED at {step}: {}", why.lines().last().unwrap_or("")),
                _ => "FAILED".to_string(),
            };
            let limit = r.limit_seconds.map_or(String::new(), |l| format!(" of {}", dur(l)));
            format!(
                "  {} last {what}: {how} on {} ({} ago, {:.1}s{limit}, in {})",
                s.source,
                r.time,
                dur(r.age_seconds),
                r.seconds,
                r.repository
            )
        };
        match &s.last_run {
            Some(r) => ctx.say(report("run", r)),
            None => ctx.say(format!("  {} last run: never (cairn run)", s.source)),
        }
        match &s.last_drill {
            Some(r) if !r.ok => eprintln!("{}", report("drill", r)),
            Some(r) => ctx.say(report("drill", r)),
            None => ctx.say(format!("  {} last drill: never (cairn drill)", s.source)),
        }
    }
    Ok(())
}

/// A metric family: name, help text, and (labels, value) samples.
type Family = (&'static str, &'static str, Vec<(String, f64)>);

/// The node-exporter textfile format: `# HELP`/`# TYPE` once per metric
/// family, then one sample per source (or per source and destination).
fn prometheus(out: &[SourceStatus]) -> String {
    let mut families: Vec<Family> = vec![
        (
            "cairn_last_snapshot_timestamp_seconds",
            "Time of the newest snapshot of the source.",
            vec![],
        ),
        (
            "cairn_last_snapshot_age_seconds",
            "Age of the newest snapshot when status ran.",
            vec![],
        ),
        (
            "cairn_last_snapshot_size_bytes",
            "Bytes a restore of the newest snapshot writes.",
            vec![],
        ),
        (
            "cairn_last_snapshot_added_bytes",
            "Bytes the newest snapshot's backup added to the repository.",
            vec![],
        ),
        (
            "cairn_last_snapshot_duration_seconds",
            "How long the newest snapshot's backup took.",
            vec![],
        ),
        (
            "cairn_last_snapshot_success",
            "1 if the newest snapshot's backup read every file, else 0.",
            vec![],
        ),
        ("cairn_snapshots", "Snapshots of the source in the repository.", vec![]),
        ("cairn_rpo_seconds", "The source's recovery point objective.", vec![]),
        (
            "cairn_rpo_breach",
            "1 if the newest snapshot is older than the RPO (or missing), else 0.",
            vec![],
        ),
        (
            "cairn_last_copy_timestamp_seconds",
            "Time of the newest snapshot of the source copied to the destination.",
            vec![],
        ),
        (
            "cairn_copy_missing_snapshots",
            "Snapshots of the source not yet copied to the destination.",
            vec![],
        ),
        (
            "cairn_last_run_timestamp_seconds",
            "Start of the newest cairn run of the source.",
            vec![],
        ),
        (
            "cairn_last_run_success",
            "1 if the newest cairn run of the source passed, else 0.",
            vec![],
        ),
        (
            "cairn_last_drill_timestamp_seconds",
            "Start of the newest restore drill of the source.",
            vec![],
        ),
        (
            "cairn_last_drill_success",
            "1 if the newest restore drill of the source passed, else 0.",
            vec![],
        ),
        (
            "cairn_last_drill_restore_seconds",
            "How long the newest drill's restore took.",
            vec![],
        ),
        (
            "cairn_rto_seconds",
            "The recovery time the source's RTO class allows.",
            vec![],
        ),
    ];
    for s in out {
        let labels = format!("source=\"{}\",repository=\"{}\"", esc(&s.source), esc(&s.repository));
        let mut put = |i: usize, v: f64| families[i].2.push((labels.clone(), v));
        if let Some(n) = &s.newest {
            put(0, n.time_unix);
            put(1, n.age_seconds as f64);
            put(2, n.size_bytes as f64);
            put(3, n.added_bytes as f64);
            put(4, n.duration_seconds);
            put(5, if n.errors == 0 { 1.0 } else { 0.0 });
        }
        if s.error.is_none() {
            put(6, s.snapshots as f64);
        }
        if let Some(r) = s.rpo_seconds {
            put(7, r as f64);
            put(8, if s.state == "breach" { 1.0 } else { 0.0 });
        }
        for c in &s.copies {
            let l = format!("{labels},destination=\"{}\"", esc(&c.repository));
            if let Some(t) = c.time_unix {
                families[9].2.push((l.clone(), t));
            }
            if c.error.is_none() {
                families[10].2.push((l, c.missing as f64));
            }
        }
        let mut put = |i: usize, v: f64| families[i].2.push((labels.clone(), v));
        if let Some(r) = &s.last_run {
            put(11, r.time_unix);
            put(12, if r.ok { 1.0 } else { 0.0 });
        }
        if let Some(rto) = s.rto_seconds {
            put(16, rto as f64);
        }
        if let Some(d) = &s.last_drill {
            // The drill's own repository: it may be a copy destination.
            let l = format!("source=\"{}\",repository=\"{}\"", esc(&s.source), esc(&d.repository));
            families[13].2.push((l.clone(), d.time_unix));
            families[14].2.push((l.clone(), if d.ok { 1.0 } else { 0.0 }));
            families[15].2.push((l, d.seconds));
        }
    }
    let mut text = String::new();
    for (name, help, samples) in families {
        if samples.is_empty() {
            continue;
        }
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in samples {
            text.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    }
    text
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes `text` next to `file` and renames it into place, so the node
/// exporter never reads half a file.
fn write_atomically(file: &Path, text: &str) -> Result<()> {
    let name = file.file_name().context("--prometheus needs a file name")?;
    let tmp = file.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))
}
