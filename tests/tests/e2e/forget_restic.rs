//! `forget` keeps exactly what restic's `forget` keeps: the same snapshot
//! times, the same rules, both tools run on them, the kept sets compared.
//! restic comes from `CAIRN_RESTIC` (scripts/test-all.sh fetches 0.19 with
//! benches/fetch-restic.sh); `CAIRN_SKIP_RESTIC=1` skips, saying so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

pub(crate) fn restic() -> Option<PathBuf> {
    if std::env::var("CAIRN_SKIP_RESTIC").is_ok_and(|v| v == "1") {
        let _ = std::io::stderr()
            .write_all(b"\nSKIPPED: a comparison with restic (CAIRN_SKIP_RESTIC=1); nothing was tested\n");
        return None;
    }
    let p = std::env::var_os("CAIRN_RESTIC")
        .map(PathBuf::from)
        .expect("CAIRN_RESTIC names a restic binary (scripts/test-all.sh fetches one); CAIRN_SKIP_RESTIC=1 skips");
    assert!(p.is_file(), "CAIRN_RESTIC={} is not a file", p.display());
    Some(p)
}

pub(crate) fn run_restic(bin: &Path, repo: &Path, pw: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    run_restic_with(bin, repo.as_os_str(), pw, args, stdin, &[])
}

/// [`run_restic`] for any repository location (`s3:...`), with `env` added.
pub(crate) fn run_restic_with(
    bin: &Path,
    repo: &std::ffi::OsStr,
    pw: &Path,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Vec<u8> {
    let mut child = Command::new(bin)
        .args(["--no-cache", "-q", "-r"])
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .args(args)
        .env("TZ", "UTC")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running restic");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Snapshot times over two years: nightly runs with gaps, two on some
/// days, equal times, year ends (ISO week 53), month ends and a leap day.
fn times() -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    let mut rng = Rng::new(7);
    let mut day = "2023-06-01".parse::<jiff::civil::Date>().unwrap();
    while day < "2025-03-01".parse::<jiff::civil::Date>().unwrap() {
        let step = 1 + (rng.next_u64() % 15) as i64;
        day = day.checked_add(jiff::Span::new().days(step)).unwrap();
        let hour = rng.next_u64() % 24;
        t.push(format!("{day}T{hour:02}:{:02}:00Z", rng.next_u64() % 60));
        if rng.next_u64().is_multiple_of(4) {
            t.push(format!("{day}T23:59:00Z"));
        }
    }
    for fixed in [
        "2024-02-29T12:00:00Z",
        "2024-02-29T12:00:00Z",
        "2020-12-31T10:00:00Z",
        "2021-01-03T10:00:00Z",
    ] {
        t.push(fixed.into());
    }
    t
}

fn kept_times(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["keep"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            // restic writes its times with nanoseconds and the zone; both
            // tools' times here are whole seconds in UTC.
            let t = s["time"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
            t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn forget_keeps_the_same_snapshots_as_restic() {
    let Some(bin) = restic() else { return };
    let f = Fixture::init();
    let rrepo = f.path("restic-repo");
    run_restic(&bin, &rrepo, &f.password_file, &["init"], b"");
    let times = times();
    for t in &times {
        let local = t.trim_end_matches('Z').replace('T', " ");
        run_restic(
            &bin,
            &rrepo,
            &f.password_file,
            &[
                "backup",
                "--stdin",
                "--stdin-filename",
                "x",
                "--host",
                "h",
                "--time",
                &local,
            ],
            t.as_bytes(),
        );
        f.cairn()
            .args(["backup", "--stdin", "--stdin-filename", "x", "--host", "h", "--time", t])
            .stdin(t.clone())
            .ok();
    }
    let policies: [&[&str]; 6] = [
        &[
            "--keep-daily",
            "7",
            "--keep-weekly",
            "5",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "3",
        ],
        &["--keep-last", "3", "--keep-hourly", "30"],
        &["--keep-daily", "500"],
        &[
            "--keep-within",
            "2m",
            "--keep-within-weekly",
            "6m",
            "--keep-within-monthly",
            "1y2m",
        ],
        &["--keep-monthly", "unlimited", "--keep-weekly", "10"],
        &["--keep-within-daily", "45d", "--keep-yearly", "2", "--keep-last", "1"],
    ];
    for p in policies {
        let mut args = vec!["forget", "--dry-run", "--json"];
        args.extend_from_slice(p);
        let theirs: Value = serde_json::from_slice(&run_restic(&bin, &rrepo, &f.password_file, &args, b"")).unwrap();
        let ours = f.cairn().env("TZ", "UTC").args(["forget", "--dry-run"]).args(p).json();
        let want = kept_times(&theirs);
        assert!(
            !want.is_empty() && want.len() < times.len(),
            "{p:?}: restic kept {}",
            want.len()
        );
        assert_eq!(kept_times(&ours), want, "{p:?}");
    }
}
