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

/// `cairn ... | head` closes the pipe early: output was lost, so the exit
/// code says so (141, as for a tool a closed pipe stopped), with one clear
/// line and no panic. A pipe whose reading end is already closed makes every
/// write fail with EPIPE, deterministically.
#[test]
fn a_closed_stdout_pipe_is_a_clear_non_zero_exit_not_a_crash() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, false);
    f.backup(&[&s(&src)]);
    let hello = format!("{}/hello.txt", s(&src));

    let cases: Vec<Vec<&str>> = vec![
        vec!["ls", "latest"],
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["dump", "latest", &hello],
        vec!["completions", "bash"],
        vec!["man"],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let r = f.cairn().args(&args).stdout_to(Stdio::from(writer)).run();
        if r.code() != Some(141)
            || r.stderr().contains("panicked")
            || !r.stderr().contains("standard output was closed")
        {
            failures.push(format!("cairn {}: {}\n{}", args.join(" "), r.status, r.stderr()));
        }
    }
    assert!(
        failures.is_empty(),
        "a closed pipe must end with 141 and say why:\n{}",
        failures.join("\n")
    );
}

/// Runs `cairn dump latest PATH` into `head -c 10`; returns cairn's run and
/// what head printed.
fn dump_into_head(f: &Fixture, path: &str) -> (Run, Vec<u8>) {
    let mut head = std::process::Command::new("head")
        .args(["-c", "10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting head");
    let pipe = head.stdin.take().expect("head's stdin");
    let r = f
        .cairn()
        .args(["dump", "latest", path])
        .stdout_to(Stdio::from(pipe))
        .run();
    let out = head.wait_with_output().expect("waiting for head");
    assert!(out.status.success(), "head failed: {}", out.status);
    (r, out.stdout)
}

/// `cairn dump | consumer` must not hide a truncated dump: a reader that
/// stops early makes the exit non-zero; one that got everything leaves it 0.
#[test]
fn a_dump_cut_short_by_its_reader_fails_and_a_whole_one_succeeds() {
    let f = Fixture::init();
    let src = f.path("src");
    let big = Rng::new(7).bytes(4 * 1024 * 1024);
    write(&src.join("big.bin"), &big);
    write(&src.join("ten.txt"), b"0123456789");
    f.backup(&[&s(&src)]);

    let (r, got) = dump_into_head(&f, &format!("{}/big.bin", s(&src)));
    assert_eq!(got, &big[..10]);
    assert_eq!(r.code(), Some(141), "a truncated dump must fail\n{r}");
    assert!(r.stderr().contains("standard output was closed"), "{r}");
    assert_no_panic(&r);

    // Everything was written before head (which stops after 10 bytes) closed the pipe.
    let (r, got) = dump_into_head(&f, &format!("{}/ten.txt", s(&src)));
    assert_eq!(got, b"0123456789");
    assert_eq!(r.code(), Some(0), "{r}");
    assert!(r.stderr().is_empty(), "{r}");
}
