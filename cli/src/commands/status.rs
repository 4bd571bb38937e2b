//! `cairn status`: per configured source, the newest snapshot against the
//! source's recovery point objective, and how far each copy of it lags.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use cairn_engine::{filter_snapshots, Repository, Snapshot, SnapshotFilter, SnapshotId};
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
    snapshots: usize,
    newest: Option<Newest>,
    copies: Vec<CopyStatus>,
    error: Option<String>,
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
    let ok = out.iter().all(|s| s.state == "ok" && s.error.is_none());
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

/// A repository's snapshots, listed once however many sources use it.
pub(super) struct Listed {
    pub(super) id_hex: String,
    pub(super) snapshots: Vec<(SnapshotId, Snapshot)>,
}

pub(super) fn list(ctx: &Ctx, name: &str, destination: bool) -> Result<Listed> {
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
    let repo = Repository::open(backend, &pw).with_context(|| format!("opening {}", t.location))?;
    Ok(Listed {
        id_hex: repo.config().id_hex(),
        snapshots: filter_snapshots(&repo, &SnapshotFilter::default())?,
    })
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
    let repository = src
        .repository
        .clone()
        .or_else(|| ctx.repo.clone())
        .or_else(|| ctx.config.repository.clone())
        .unwrap_or_default();
    let mut st = SourceStatus {
        source: name.to_string(),
        kind: src.kind.clone(),
        repository: repository.clone(),
        state: "unknown",
        rpo_seconds: None,
        rto_class: src.rto_class.clone(),
        snapshots: 0,
        newest: None,
        copies: Vec::new(),
        error: None,
    };
    if let Err(e) = src.validate(name) {
        st.error = Some(format!("{e:#}"));
        return st;
    }
    st.rpo_seconds = src.rpo_seconds().ok().flatten();
    let (repo_id, mine): (String, Vec<(SnapshotId, Snapshot)>) = match listed(ctx, cache, &repository, false) {
        Ok(l) => (
            l.id_hex.clone(),
            l.snapshots.iter().filter(|(_, s)| src.matches(s)).cloned().collect(),
        ),
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
    for to in destinations {
        st.copies.push(copy_status(ctx, &to, &repo_id, &mine, now, cache));
    }
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
