//! Git repositories through `git bundle create - --all` and
//! `--stdin-from-command`, restored with `git clone` from the dumped bundle.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// `git` with a fixed identity and dates and no user or system config.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Cairn Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Cairn Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
        .output()
        .unwrap_or_else(|e| panic!("running git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git_available() -> bool {
    let ok = Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "git is required in CI");
        eprintln!("SKIPPED: git bundle test: `git` is not on PATH (Debian package git)");
    }
    ok
}

/// Every branch and tag with the object it points at.
fn refs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = git(
        dir,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

#[test]
fn git_bundle_backup_clones_back_with_every_branch() {
    if !git_available() {
        return;
    }
    let f = Fixture::init();
    let src = f.root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    for i in 0..4 {
        write(
            &src.join(format!("file{i}.txt")),
            format!("commit {i}\n").repeat(200 + i),
        );
        write(
            &src.join("bin.dat"),
            cairn_test_support::pseudo_random(50_000, i as u64),
        );
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", &format!("main commit {i}")]);
    }
    git(&src, &["tag", "-a", "v1.0", "-m", "release 1.0"]);
    git(&src, &["checkout", "-q", "-b", "feature/login", "HEAD~2"]);
    write(&src.join("login.rs"), "fn login() {}\n");
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "login"]);
    git(&src, &["checkout", "-q", "-b", "hotfix", "main"]);
    write(&src.join("fix.txt"), "fixed\n");
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "hotfix"]);
    git(&src, &["checkout", "-q", "main"]);
    let want = refs(&src);
    assert_eq!(want.len(), 4, "three branches and a tag: {want:?}");

    let out = f
        .cairn()
        .args([
            "backup",
            "--json",
            "--stdin-from-command",
            "--stdin-filename",
            "repo.bundle",
            "--",
        ])
        .args(["git", "-C"])
        .arg(&src)
        .args(["bundle", "create", "-", "--all"])
        .ok()
        .json();
    assert_eq!(out["details"]["Command"]["exit_code"], 0, "{out:#}");

    let bundle = f.root.join("restored.bundle");
    std::fs::write(&bundle, f.dump("latest", "/repo.bundle")).unwrap();
    let clone = f.root.join("clone");
    git(
        &f.root,
        &[
            "clone",
            "-q",
            "--mirror",
            bundle.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(refs(&clone), want, "every branch and tag points at the same commit");
    // A working clone checks out the same tree as the source's main.
    let work = f.root.join("work");
    git(
        &f.root,
        &[
            "clone",
            "-q",
            "-b",
            "main",
            bundle.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git(&work, &["rev-parse", "HEAD^{tree}"]),
        git(&src, &["rev-parse", "main^{tree}"])
    );
}
