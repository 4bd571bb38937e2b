//! `cairn drill`: the restore test as one command. Per configured source:
//! restore its newest snapshot into a scratch folder (re-reading every file
//! against the snapshot), run the source's verification, time the restore
//! against its RTO class, and report pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_engine::{Snapshot, SnapshotId, SourceDetails};
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

#[derive(Debug, Serialize)]
pub(super) struct Verification {
    /// `verify-command`, `redis-server`, `sstables`, or `restore --verify` alone.
    pub(super) kind: String,
    pub(super) ok: bool,
    pub(super) output: String,
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
    let repository = a
        .from
        .clone()
        .or_else(|| src.repository.clone())
        .or_else(|| ctx.repo.clone())
        .or_else(|| ctx.config.repository.clone())
        .unwrap_or_default();
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
    // Copies keep host, tags and paths, so the same match finds them.
    let newest = match super::status::list(ctx, &repository, a.from.is_some()) {
        Ok(l) => l.snapshots.into_iter().rev().find(|(_, s)| src.matches(s)),
        Err(e) => {
            d.reasons.push(format!("{e:#}"));
            return d;
        }
    };
    let Some((id, snap)) = newest else {
        d.reasons.push(format!("no snapshot of this source in {repository}"));
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
    if d.reasons.is_empty() {
        let v = verify(src, name, &dir, &id, &snap);
        if !v.ok {
            d.reasons
                .push(format!("the verification ({}) failed: {}", v.kind, v.output.trim()));
        }
        d.verification = Some(v);
    }
    if let Some(rto) = d.rto_seconds {
        if d.restore_seconds > rto as f64 {
            d.reasons.push(format!(
                "the restore took {:.0} s, over the {} s of RTO class {}",
                d.restore_seconds,
                rto,
                src.rto_class.as_deref().unwrap_or("")
            ));
        }
    }
    d.ok = d.reasons.is_empty();
    if a.keep {
        d.kept = Some(dir);
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        if dir.exists() {
            d.reasons
                .push(format!("could not remove the scratch folder {}: {e}", dir.display()));
            d.ok = false;
        }
    }
    d
}

/// The source's verification step on the restored data in `dir`.
fn verify(src: &SourceConfig, name: &str, dir: &Path, id: &SnapshotId, snap: &Snapshot) -> Verification {
    if let Some(cmd) = &src.verify_command {
        // Run where the source's (first) folder was restored, so the
        // command names files as they are named in the source.
        let home = src
            .paths
            .first()
            .map(|p| dir.join(p.trim_start_matches('/')))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| dir.to_path_buf());
        let out = Command::new("sh")
            .args(["-c", cmd])
            .current_dir(&home)
            .env("CAIRN_DRILL_PATH", &home)
            .env("CAIRN_DRILL_DIR", dir)
            .env("CAIRN_DRILL_SOURCE", name)
            .env("CAIRN_DRILL_SNAPSHOT", id.to_hex())
            .stdin(Stdio::null())
            .output();
        return match out {
            Ok(o) => Verification {
                kind: "verify-command".into(),
                ok: o.status.success(),
                output: tail(&[o.stdout, o.stderr].concat()),
            },
            Err(e) => Verification {
                kind: "verify-command".into(),
                ok: false,
                output: format!("cannot run sh: {e}"),
            },
        };
    }
    match &snap.details {
        SourceDetails::Redis(r) => redis(dir, &r.keyspace),
        SourceDetails::Cassandra(_) => super::drill_cassandra::verify(dir),
        _ => Verification {
            kind: "restore --verify".into(),
            ok: true,
            output: "every restored file was re-read and matches the snapshot".into(),
        },
    }
}

/// Starts `redis-server` on the restored dump (loopback, a free port, no
/// persistence) and compares its keys per database with those recorded at
/// backup time.
fn redis(dir: &Path, recorded: &[cairn_engine::RedisKeyspace]) -> Verification {
    let fail = |output: String| Verification {
        kind: "redis-server".into(),
        ok: false,
        output,
    };
    let Some(rdb) = find_rdb(dir) else {
        return fail("no .rdb file in the restored data".into());
    };
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => return fail(format!("no free port: {e}")),
    };
    let (Some(folder), Some(file)) = (rdb.parent(), rdb.file_name()) else {
        return fail(format!("{} has no folder", rdb.display()));
    };
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(folder)
        .arg("--dbfilename")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start redis-server (is it installed?): {e}")),
    };
    let got = cairn_engine::redis_loaded_keyspace("127.0.0.1", port, Duration::from_secs(120));
    let _ = child.kill();
    let _ = child.wait();
    let got = match got {
        Ok(k) => k,
        Err(e) => return fail(format!("redis-server did not load the dump: {e}")),
    };
    let show = |k: &[cairn_engine::RedisKeyspace]| {
        k.iter()
            .map(|x| format!("db{}={}", x.db, x.keys))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let same = recorded.is_empty()
        || recorded
            .iter()
            .map(|k| (k.db, k.keys))
            .eq(got.iter().map(|k| (k.db, k.keys)));
    Verification {
        kind: "redis-server".into(),
        ok: same,
        output: if recorded.is_empty() {
            format!("loaded: {} (no key counts were recorded at backup)", show(&got))
        } else if same {
            format!("loaded with the keys recorded at backup: {}", show(&got))
        } else {
            format!("keys differ: recorded {}, loaded {}", show(recorded), show(&got))
        },
    }
}

fn find_rdb(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rdb") {
                return Some(p);
            }
        }
    }
    None
}

/// The last 4 KiB of a command's output.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(4096);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
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
