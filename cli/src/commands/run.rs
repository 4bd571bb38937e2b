//! `cairn run`: one configured source's routine (pre-command, backup,
//! copies, post-command, forget --policy) as one command for cron or a
//! Kubernetes CronJob.
//!
//! Each step runs as a `cairn` child process with `--json`: the same code
//! and checks as when typed by hand, its report captured whole, and one
//! source's failure cannot take the others down. Secrets reach the
//! children as they reached this process (files named in cairn.toml, the
//! environment), never on a command line.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use cairn_engine::{Report, ReportKind, ReportStep, Repository, SnapshotId};

use super::Ctx;
use crate::output;
use crate::policy::SourceConfig;

/// One step of one source.
#[derive(Debug, Serialize)]
struct Step {
    step: String,
    ok: bool,
    exit_code: Option<i32>,
    /// The step's own `--json` report (or its output, when not JSON).
    result: Value,
}

#[derive(Debug, Serialize)]
struct SourceRun {
    source: String,
    repository: String,
    ok: bool,
    /// The steps that failed, in order.
    failed: Vec<String>,
    steps: Vec<Step>,
}

pub fn run(ctx: &Ctx, config_path: Option<&Path>, a: crate::args::RunArgs) -> Result<u8> {
    let sources = &ctx.config.sources;
    let names: Vec<String> = if a.all {
        sources.keys().cloned().collect()
    } else {
        a.sources.clone()
    };
    if names.is_empty() {
        anyhow::bail!("name the sources to run, or give --all (sources are [sources.NAME] in cairn.toml)");
    }
    for n in &names {
        if !sources.contains_key(n) {
            anyhow::bail!(
                "no source {n:?} in cairn.toml (configured: {})",
                sources.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let exe = std::env::current_exe().context("finding the cairn executable to run the steps")?;
    let mut runs = Vec::new();
    // Opened once per repository, for the reports: each open derives the key.
    let mut opened: BTreeMap<String, Result<Repository, String>> = BTreeMap::new();
    for name in &names {
        let src = &sources[name];
        let began = Report::begin(ReportKind::Run, name);
        let clock = std::time::Instant::now();
        let r = run_source(ctx, &exe, config_path, name, src);
        let repo = opened
            .entry(r.repository.clone())
            .or_insert_with(|| super::status::open(ctx, &r.repository, false).map_err(|e| format!("{e:#}")));
        save_report(repo, began, clock.elapsed(), &r);
        for f in &r.failed {
            eprintln!("run: source {name}: step {f} failed");
        }
        if !ctx.json {
            let steps: Vec<String> = r
                .steps
                .iter()
                .map(|s| format!("{} {}", s.step, if s.ok { "ok" } else { "FAILED" }))
                .collect();
            ctx.say(format!("{name}: {}", steps.join(", ")));
        }
        runs.push(r);
    }
    let ok = runs.iter().all(|r| r.ok);
    if ctx.json {
        output::json(&serde_json::json!({"ok": ok, "sources": runs}))?;
    }
    Ok(if ok { 0 } else { crate::EXIT_FAILURE })
}

fn run_source(ctx: &Ctx, exe: &Path, config_path: Option<&Path>, name: &str, src: &SourceConfig) -> SourceRun {
    let repository = ctx.source_repository(src);
    let mut r = SourceRun {
        source: name.to_string(),
        repository: repository.clone(),
        ok: true,
        failed: Vec::new(),
        steps: Vec::new(),
    };
    let push = |r: &mut SourceRun, s: Step| {
        if !s.ok {
            r.ok = false;
            r.failed.push(s.step.clone());
        }
        r.steps.push(s);
    };
    if let Err(e) = src.validate(name) {
        push(&mut r, failed_to_start("config", format!("{e:#}")));
        return r;
    }
    let cairn = |args: &[String]| {
        let mut c = Command::new(exe);
        if let Some(p) = config_path {
            c.arg("--config").arg(p);
        }
        c.args(["--json", "-r", &repository]).args(args);
        c
    };
    if let Some(pre) = &src.pre_command {
        let s = shell("pre-command", pre);
        let ok = s.ok;
        push(&mut r, s);
        if !ok {
            return r;
        }
    }
    let backup = step("backup", cairn(&backup_args(name, src)));
    // 3: saved, but some files could not be read: a failure to report,
    // though the snapshot (and so its copies) exists.
    let saved = backup.ok || backup.exit_code == Some(3);
    let snapshot = backup.result["snapshot_id"].as_str().map(str::to_string);
    let profile_copies = backup.result["copies"].as_array().cloned().unwrap_or_default();
    push(&mut r, backup);
    if let (true, Some(id)) = (saved, snapshot) {
        match &src.copy_to {
            Some(list) => {
                for to in list {
                    let args = ["copy".to_string(), "--to".into(), to.clone(), id.clone()];
                    push(&mut r, step(&format!("copy to {to}"), cairn(&args)));
                }
            }
            // The backup already copied to its profile's copy-to.
            None => {
                for c in profile_copies {
                    let to = c["destination"].as_str().unwrap_or("?").to_string();
                    push(
                        &mut r,
                        Step {
                            step: format!("copy to {to}"),
                            ok: c["ok"] == Value::Bool(true),
                            exit_code: None,
                            result: c,
                        },
                    );
                }
            }
        }
    }
    if let Some(post) = &src.post_command {
        push(&mut r, shell("post-command", post));
    }
    if saved && src.forget.unwrap_or(!ctx.config.retention.is_empty()) {
        let mut args = vec!["forget".to_string(), "--policy".into()];
        args.extend(filter_args(src));
        push(&mut r, step("forget", cairn(&args)));
    }
    r
}

/// Records the run in the source's repository, so `status` (and its
/// metrics) show the last run from any host. A run whose repository cannot
/// be opened has already failed and said why; the report is then skipped.
fn save_report(repo: &Result<Repository, String>, mut report: Report, took: std::time::Duration, r: &SourceRun) {
    report.duration_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    for s in &r.steps {
        let detail = match (s.ok, &s.result) {
            (true, _) => String::new(),
            (false, Value::String(text)) => text.clone(),
            (false, v) => v.to_string(),
        };
        let detail = match s.exit_code {
            Some(code) if !s.ok => format!("exit code {code}: {detail}"),
            _ => detail,
        };
        report.push(ReportStep::new(&s.step, s.ok, detail));
        if s.step == "backup" {
            report.snapshot = s.result["snapshot_id"]
                .as_str()
                .and_then(|h| SnapshotId::from_hex(h).ok());
            report.bytes = s.result["summary"]["bytes_read"].as_u64().unwrap_or(0);
        }
    }
    match repo {
        Ok(repo) => super::status::record(repo, &report),
        Err(e) => eprintln!("warning: the run report of source {} was not stored: {e}", r.source),
    }
}

/// `backup` arguments for the source's kind.
fn backup_args(name: &str, src: &SourceConfig) -> Vec<String> {
    let mut a = vec!["backup".to_string()];
    for t in &src.tags {
        a.extend(["--tag".into(), t.clone()]);
    }
    if let Some(h) = &src.host {
        a.extend(["--host".into(), h.clone()]);
    }
    let url = src.url.clone().unwrap_or_default();
    match src.kind.as_str() {
        "redis" => a.extend(["--redis".into(), url]),
        "s3" => a.extend(["--s3-source".into(), url]),
        "cassandra" => {
            for p in &src.paths {
                a.extend(["--cassandra".into(), p.clone()]);
            }
            a.extend(["--snapshot-tag".into(), src.snapshot_tag.clone().unwrap_or_default()]);
        }
        "command" => {
            let file = src.filename.clone().unwrap_or_else(|| format!("{name}.out"));
            a.extend([
                "--stdin-from-command".into(),
                "--stdin-filename".into(),
                file,
                "--".into(),
            ]);
            a.extend(src.command.clone().unwrap_or_default());
        }
        // Not after `--`: that starts --stdin-from-command's command line.
        // A relative path that looks like an option is made explicit.
        _ => a.extend(src.paths.iter().map(|p| match p.starts_with('-') {
            true => format!("./{p}"),
            false => p.clone(),
        })),
    }
    a
}

/// Filters that select the source's snapshots for `forget --policy`.
fn filter_args(src: &SourceConfig) -> Vec<String> {
    let mut a = Vec::new();
    if !src.tags.is_empty() {
        a.extend(["--tag".into(), src.tags.join(",")]);
    }
    if let Some(h) = &src.host {
        a.extend(["--host".into(), h.clone()]);
    }
    if src.kind == "files" {
        for p in &src.paths {
            a.extend(["--path".into(), p.clone()]);
        }
    }
    a
}

/// Runs a `cairn` step; its standard error goes straight to ours.
fn step(name: &str, mut c: Command) -> Step {
    match c.stdin(Stdio::null()).stderr(Stdio::inherit()).output() {
        Ok(out) => Step {
            step: name.to_string(),
            ok: out.status.success(),
            exit_code: out.status.code(),
            result: serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stdout).into_owned())),
        },
        Err(e) => failed_to_start(name, format!("cannot run: {e}")),
    }
}

/// A pre- or post-command through `sh -c`; its output goes to ours.
fn shell(name: &str, cmd: &str) -> Step {
    // Its output goes to our standard error: standard output carries the
    // JSON report.
    let to_stderr = std::io::stderr().as_fd().try_clone_to_owned().map(Stdio::from);
    let mut c = Command::new("sh");
    c.args(["-c", cmd]).stdin(Stdio::null());
    if let Ok(e) = to_stderr {
        c.stdout(e);
    }
    match c.status() {
        Ok(st) => Step {
            step: name.to_string(),
            ok: st.success(),
            exit_code: st.code(),
            result: Value::String(cmd.to_string()),
        },
        Err(e) => failed_to_start(name, format!("cannot run sh: {e}")),
    }
}

fn failed_to_start(name: &str, why: String) -> Step {
    Step {
        step: name.to_string(),
        ok: false,
        exit_code: None,
        result: Value::String(why),
    }
}
