//! `cairn drill`: the restore test as one command. Per configured source:
//! restore its newest snapshot into a scratch folder (re-reading every file
//! against the snapshot), run the source's verification, time the restore
//! against its RTO class, and report pass or fail.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_engine::{Report, ReportKind, ReportStep, Snapshot, SnapshotFilter, SnapshotId, SourceDetails, Verification};
use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use crate::output;
use crate::policy::{rto_seconds, SourceConfig};

#[derive(Debug, Serialize)]
struct Drill {
    source: String,
    repository: String,
    ok: bool,
    snapshot: Option<SnapshotId>,
    /// Bytes the restore wrote (the snapshot's files).
    bytes: u64,
    restore_seconds: f64,
    rto_class: Option<String>,
    rto_seconds: Option<u64>,
    verification: Option<Verification>,
    /// Why it failed, one line each.
    reasons: Vec<String>,
    /// Where the restored data is, with --keep.
    kept: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, config_path: Option<&Path>, a: crate::args::DrillArgs) -> Result<u8> {
    let sources = &ctx.config.sources;
    let names: Vec<String> = if a.sources.is_empty() {
        sources.keys().cloned().collect()
    } else {
        a.sources.clone()
    };
    if names.is_empty() {
        anyhow::bail!("cairn.toml has no [sources.NAME] table: a drill restores each configured source");
    }
    for n in &names {
        if !sources.contains_key(n) {
            anyhow::bail!("no source {n:?} in cairn.toml");
        }
    }
    let exe = std::env::current_exe().context("finding the cairn executable")?;
    let scratch = a.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let mut drills = Vec::new();
    for name in &names {
        let d = drill(ctx, &exe, config_path, &a, &scratch, name, &sources[name]);
        for r in &d.reasons {
            eprintln!("drill: source {name}: {r}");
        }
        ctx.say(format!(
            "{name}: {} (snapshot {}, {}, restored in {:.1} s{})",
            if d.ok { "PASS" } else { "FAIL" },
            d.snapshot.map_or("none".into(), |s| s.short()),
            output::bytes(d.bytes),
            d.restore_seconds,
            d.rto_seconds.map(|r| format!(" of {r} s allowed")).unwrap_or_default()
        ));
        drills.push(d);
    }
    let ok = drills.iter().all(|d| d.ok);
    let report = serde_json::json!({"ok": ok, "sources": drills});
    if ctx.json {
        output::json(&report)?;
    }
    let mut code = if ok { 0 } else { crate::EXIT_FAILURE };
    if let Some(cmd) = &a.notify_command {
        if let Err(e) = notify(cmd, &report) {
            eprintln!("drill: the notify command failed: {e:#}");
            code = crate::EXIT_FAILURE;
        }
    }
    Ok(code)
}

fn drill(
    ctx: &Ctx,
    exe: &Path,
    config_path: Option<&Path>,
    a: &crate::args::DrillArgs,
    scratch: &Path,
    name: &str,
    src: &SourceConfig,
) -> Drill {
    let repository = a.from.clone().unwrap_or_else(|| ctx.source_repository(src));
    let mut d = Drill {
        source: name.to_string(),
        repository: repository.clone(),
        ok: false,
        snapshot: None,
        bytes: 0,
        restore_seconds: 0.0,
        rto_class: src.rto_class.clone(),
        rto_seconds: src.rto_class.as_deref().and_then(|c| rto_seconds(c).ok()),
        verification: None,
        reasons: Vec::new(),
        kept: None,
    };
    if let Err(e) = src.validate(name) {
        d.reasons.push(format!("{e:#}"));
        return d;
    }
    // Only the snapshots: the stored reports are status's business.
    let listed = super::status::open(ctx, &repository, a.from.is_some())
        .and_then(|repo| Ok((cairn_engine::filter_snapshots(&repo, &SnapshotFilter::default())?, repo)));
    let (snapshots, repo) = match listed {
        Ok(l) => l,
        Err(e) => {
            d.reasons.push(format!("{e:#}"));
            return d;
        }
    };
    let mut report = Report::begin(ReportKind::Drill, name);
    report.limit_ns = d.rto_seconds.map(|s| s.saturating_mul(1_000_000_000));
    // Copies keep host, tags and paths, so the same match finds them.
    let newest = snapshots.into_iter().rev().find(|(_, s)| src.matches(s));
    let Some((id, snap)) = newest else {
        d.reasons.push(format!("no snapshot of this source in {repository}"));
        report.push(ReportStep::new("find the newest snapshot", false, &d.reasons[0]));
        super::status::record(&repo, &report);
        return d;
    };
    d.snapshot = Some(id);
    let dir = scratch.join(format!("cairn-drill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let mut c = Command::new(exe);
    if let Some(p) = config_path {
        c.arg("--config").arg(p);
    }
    c.args([
        "--json",
        "-r",
        &repository,
        "restore",
        &id.to_hex(),
        "--verify",
        "--target",
    ])
    .arg(&dir)
    .stdin(Stdio::null());
    if a.from.is_some() {
        // The drill's repository is a copy destination: its password comes
        // from CAIRN_TO_PASSWORD_FILE or its profile, not from the
        // primary's variables.
        for v in ["CAIRN_PASSWORD_FILE", "CAIRN_PASSWORD_COMMAND", "CAIRN_PASSWORD"] {
            c.env_remove(v);
        }
        if let Some(f) = std::env::var_os("CAIRN_TO_PASSWORD_FILE") {
            c.env("CAIRN_PASSWORD_FILE", f);
        }
    }
    let out = c.output();
    d.restore_seconds = started.elapsed().as_secs_f64();
    match out {
        Ok(out) => {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            d.bytes = report["summary"]["bytes"].as_u64().unwrap_or(0);
            if !out.status.success() {
                d.reasons.push(format!(
                    "the restore failed (exit {}): {}",
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Err(e) => d.reasons.push(format!("cannot run the restore: {e}")),
    }
    report.snapshot = Some(id);
    report.bytes = d.bytes;
    report.duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    report.push(ReportStep::new(
        "restore --verify",
        d.reasons.is_empty(),
        d.reasons.join("\n"),
    ));
    if d.reasons.is_empty() {
        let v = verify(src, name, &dir, scratch, &id, &snap);
        if !v.ok {
            d.reasons
                .push(format!("the verification ({}) failed: {}", v.kind, v.output.trim()));
        }
        report.push(ReportStep::new(v.kind.clone(), v.ok, v.output.clone()));
        d.verification = Some(v);
    }
    if let Some(rto) = d.rto_seconds {
        let within = d.restore_seconds <= rto as f64;
        let says = format!(
            "the restore took {:.1} s of the {} s of RTO class {}",
            d.restore_seconds,
            rto,
            src.rto_class.as_deref().unwrap_or("")
        );
        if !within {
            d.reasons.push(says.clone());
        }
        report.push(ReportStep::new("rto", within, says));
    }
    d.ok = d.reasons.is_empty();
    if a.keep {
        d.kept = Some(dir);
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        if dir.exists() {
            let why = format!("could not remove the scratch folder {}: {e}", dir.display());
            report.push(ReportStep::new("clean up", false, &why));
            d.reasons.push(why);
            d.ok = false;
        }
    }
    super::status::record(&repo, &report);
    d
}

/// The source's verification step on the restored data in `dir`.
fn verify(
    src: &SourceConfig,
    name: &str,
    dir: &Path,
    scratch: &Path,
    id: &SnapshotId,
    snap: &Snapshot,
) -> Verification {
    if let Some(cmd) = &src.verify_command {
        // Run where the source's (first) folder was restored, so the
        // command names files as they are named in the source.
        let home = src
            .paths
            .first()
            .map(|p| dir.join(p.trim_start_matches('/')))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| dir.to_path_buf());
        let hex = id.to_hex();
        let env: [(&str, &OsStr); 4] = [
            ("CAIRN_DRILL_PATH", home.as_os_str()),
            ("CAIRN_DRILL_DIR", dir.as_os_str()),
            ("CAIRN_DRILL_SOURCE", OsStr::new(name)),
            ("CAIRN_DRILL_SNAPSHOT", OsStr::new(&hex)),
        ];
        return cairn_engine::verify_command(cmd, &home, &env);
    }
    let builtin = src.verify.as_deref().unwrap_or(match &snap.details {
        SourceDetails::Redis(_) => "redis",
        SourceDetails::Cassandra(_) => "cassandra",
        _ => "none",
    });
    match builtin {
        "redis" => {
            let recorded = match &snap.details {
                SourceDetails::Redis(r) => r.keyspace.as_slice(),
                _ => &[],
            };
            cairn_engine::verify_redis(dir, recorded, Duration::from_secs(120))
        }
        "cassandra" => cairn_engine::verify_cassandra(dir),
        "postgresql" => {
            let file = src.filename.clone().unwrap_or_else(|| format!("{name}.out"));
            let wanted = (src.kind == "command").then_some(file.as_str());
            match cairn_engine::find_restored_file(dir, wanted) {
                Some(dump) => {
                    cairn_engine::verify_sql_dump(&dump, src.postgresql_bin.as_deref().map(Path::new), scratch)
                }
                None => Verification {
                    kind: "postgresql".into(),
                    ok: false,
                    output: match wanted {
                        Some(f) => format!("no file {f} in the restored data"),
                        None => "verify = \"postgresql\" needs the snapshot to hold one file (the dump)".into(),
                    },
                },
            }
        }
        _ => Verification {
            kind: "restore --verify".into(),
            ok: true,
            output: "every restored file was re-read and matches the snapshot".into(),
        },
    }
}

/// Hands the JSON report to `cmd` (through `sh -c`) on its standard input.
fn notify(cmd: &str, report: &Value) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .spawn()
        .context("starting sh")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(serde_json::to_string_pretty(report)?.as_bytes())?;
    }
    let st = child.wait()?;
    anyhow::ensure!(st.success(), "{cmd:?} exited with {st}");
    Ok(())
}
