//! `cat config`, `completions`, `man`, and output into a closed pipe.

use std::process::Stdio;

use crate::util::*;

#[test]
fn cat_config_prints_the_chunker_sizes() {
    let f = Fixture::empty();
    let init = f
        .cairn()
        .args(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
        .json();
    let cfg = f.cairn().args(["cat", "config"]).ok().json();
    let (min, avg, max) = (
        u64_at(&cfg, "/chunker/min_size"),
        u64_at(&cfg, "/chunker/avg_size"),
        u64_at(&cfg, "/chunker/max_size"),
    );
    assert!(0 < min && min <= avg && avg <= max, "{cfg:#}");
    assert_eq!(min, u64_at(&init, "/chunker/min_size"));
    assert_eq!(avg, u64_at(&init, "/chunker/avg_size"));
    assert_eq!(max, u64_at(&init, "/chunker/max_size"));
    assert_eq!(
        cfg["compression_level"], init["compression_level"],
        "config and init agree: {cfg:#} {init:#}"
    );
}

#[test]
fn completions_and_man_page() {
    let f = Fixture::empty();
    let bash = f.bare().args(["completions", "bash"]).ok().stdout();
    assert!(bash.contains("cairn"), "{bash}");
    assert!(
        bash.contains("backup") && bash.contains("restore"),
        "subcommands are completed"
    );
    let zsh = f.bare().args(["completions", "zsh"]).ok().stdout();
    assert!(zsh.contains("cairn"));

    let man = f.bare().arg("man").ok().stdout();
    assert!(
        man.lines().any(|l| l.starts_with(".TH")),
        "roff with a .TH header:\n{man}"
    );
    assert!(man.contains("backup"));
}

/// `cairn ... | head` closes the pipe early; main.rs says that is not a
/// failure. A pipe whose reading end is already closed makes every write fail
/// with EPIPE, deterministically.
#[test]
fn a_closed_stdout_pipe_is_not_a_crash() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    f.backup(&[&s(&src)]);

    let cases: Vec<Vec<&str>> = vec![
        vec!["ls", "latest"],
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["completions", "bash"],
        vec!["man"],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let r = f.cairn().args(&args).stdout_to(Stdio::from(writer)).run();
        if r.code() != Some(0) || r.stderr().contains("panicked") {
            failures.push(format!("cairn {}: {}\n{}", args.join(" "), r.status, r.stderr()));
        }
    }
    assert!(
        failures.is_empty(),
        "a closed pipe must end quietly with 0:\n{}",
        failures.join("\n")
    );
}
