//! A restore of 100,000 small files under the usual default limit of 1,024
//! open files (`ulimit -n 1024`): restore holds a bounded number of files
//! open, so it succeeds, exactly.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Folders × files per folder.
const DIRS: usize = 100;
const PER_DIR: usize = 1_000;

/// `cairn ARGS` for `f`'s repository with the open-files limit set to
/// `nofile` (by the shell, as a user's login would), given `limit` to
/// finish; returns the exit code and standard output and error.
fn cairn_limited(f: &Fixture, nofile: u32, args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let out_path = f.path("limited.out");
    let err_path = f.path("limited.err");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(cairn_bin())
        .args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CAIRN_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", &f.home)
        .env("XDG_CONFIG_HOME", f.home.join(".config"))
        .env("CAIRN_REPOSITORY", &f.repo)
        .env("CAIRN_PASSWORD_FILE", &f.password_file)
        .current_dir(&f.root)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("spawning sh");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cairn {} did not finish within {limit:?}; stderr:\n{}",
                args.join(" "),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        fs::read_to_string(&out_path).unwrap(),
        fs::read_to_string(&err_path).unwrap(),
    )
}

fn make_tree(src: &Path) {
    for d in 0..DIRS {
        let dir = src.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..PER_DIR {
            fs::write(dir.join(format!("f{i:04}.txt")), format!("file {i} of folder {d}\n")).unwrap();
        }
    }
}

#[test]
fn restore_of_100000_files_under_ulimit_1024_is_exact() {
    let f = Fixture::init();
    // The limit really applies to what the shell runs.
    let probe = Command::new("sh")
        .args(["-c", "ulimit -n 1024 && ulimit -n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "1024", "{probe:?}");

    let src = f.path("src");
    let t = Instant::now();
    make_tree(&src);
    let expected = manifest(&src);
    let files = expected.values().filter(|e| matches!(e, Entry::File { .. })).count();
    assert_eq!(files, DIRS * PER_DIR);
    eprintln!("made {} files in {:.1} s", DIRS * PER_DIR, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let (code, out, err) = cairn_limited(&f, 20_000, &["backup", &s(&src)], Duration::from_secs(400));
    assert_eq!(code, Some(0), "backup failed\n{out}\n{err}");
    eprintln!("backup of {} files: {:.1} s", DIRS * PER_DIR, t.elapsed().as_secs_f64());

    let target = f.path("restored");
    let t = Instant::now();
    let (code, out, err) = cairn_limited(
        &f,
        1024,
        &["restore", "latest", "--json", "--target", &s(&target)],
        Duration::from_secs(400),
    );
    let took = t.elapsed();
    assert_eq!(
        code,
        Some(0),
        "restore under ulimit -n 1024 failed\n{out}\n{}",
        err.chars().take(4000).collect::<String>()
    );
    eprintln!(
        "restore of {} files under ulimit -n 1024: {:.1} s",
        DIRS * PER_DIR,
        took.as_secs_f64()
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(u64_at(&json, "/summary/files"), (DIRS * PER_DIR) as u64, "{json:#}");
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
}
