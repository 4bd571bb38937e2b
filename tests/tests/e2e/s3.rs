//! S3 repositories end to end, through the `cairn` binary and cairn.toml
//! profiles (`[repositories.NAME]` + `[repositories.NAME.s3]`): SeaweedFS (the
//! main server: signatures, conditional writes), moto (archive storage
//! classes as AWS keeps them: GET of a GLACIER object is refused until it is
//! restored), and a fault-injecting proxy (`tests/src/bin/fault-proxy.rs`)
//! between cairn and SeaweedFS.
//!
//! Start the servers first:
//!
//! ```sh
//! scripts/s3-servers.sh start && set -a && . target/s3-servers.env && set +a
//! cargo test -p cairn-tests --test e2e s3
//! scripts/s3-servers.sh stop
//! ```
//!
//! (`scripts/test-all.sh` does this.) Without the servers' settings every
//! test here fails, saying so; `CAIRN_SKIP_S3=1` skips them, loudly. Each
//! test uses a fresh key prefix, so tests and runs share the buckets without
//! meeting. moto's restore progression is global, so the moto tests run one
//! at a time.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// Size of the pseudo-random file in `s3_tree`.
const BIG: usize = 5 * 1000 * 1000;

/// The file an unfinished restore leaves in its target so that running it
/// again resumes (cairn_engine::restore::IN_PROGRESS_MARKER).
const IN_PROGRESS_MARKER: &str = ".cairn-restore-in-progress";

// ---------------------------------------------------------------------------
// The servers, from the environment that `scripts/s3-servers.sh` writes (the
// same convention as engine/tests/s3_backend.rs).

/// One server's settings.
struct Server {
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the S3 tests need their servers. Run `scripts/s3-servers.sh start`, then \
             `set -a; . target/s3-servers.env; set +a` before `cargo test` (scripts/test-all.sh does both), or set \
             CAIRN_SKIP_S3=1 to skip these tests"
        )
    })
}

fn skipped() -> bool {
    static NOTICE: std::sync::Once = std::sync::Once::new();
    if std::env::var("CAIRN_SKIP_S3").is_ok_and(|v| v == "1") {
        // Straight to the process's standard error: the test harness
        // captures eprintln! of passing tests, and this must be seen.
        NOTICE.call_once(|| {
            let _ = std::io::stderr().write_all(
                b"\n**********************************************************************\n\
                  SKIPPED: S3 tests need a server (CAIRN_SKIP_S3=1); nothing was tested\n\
                  **********************************************************************\n",
            );
        });
        return true;
    }
    false
}

/// SeaweedFS, or `None` when the S3 tests are skipped.
fn seaweed() -> Option<Server> {
    if skipped() {
        return None;
    }
    Some(Server {
        endpoint: env("CAIRN_TEST_S3_ENDPOINT"),
        bucket: env("CAIRN_TEST_S3_BUCKET"),
        key: env("CAIRN_TEST_S3_KEY"),
        secret: env("CAIRN_TEST_S3_SECRET"),
    })
}

/// moto (accepts any credentials), or `None` when the S3 tests are skipped.
fn moto() -> Option<Server> {
    if skipped() {
        return None;
    }
    Some(Server {
        endpoint: env("CAIRN_TEST_MOTO_ENDPOINT"),
        bucket: std::env::var("CAIRN_TEST_MOTO_BUCKET").unwrap_or_else(|_| env("CAIRN_TEST_S3_BUCKET")),
        key: "test".into(),
        secret: "test".into(),
    })
}

/// The moto tests change moto's global restore progression: one at a time.
fn moto_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh key prefix per test and run.
fn unique(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut r = Rng::new(clock_seed() ^ (u64::from(std::process::id()) << 32) ^ n);
    format!("tests/e2e-{test}-{:012x}", r.next_u64() >> 16)
}

/// A profile in cairn.toml: name, endpoint (the server's, or a proxy's in
/// front of it), and further lines for its s3 table.
struct ProfileSpec<'a> {
    name: &'a str,
    endpoint: &'a str,
    extra: &'a str,
}

/// A fixture whose ./cairn.toml has these profiles, all for the same fresh
/// prefix on `server`'s bucket, with the server's credentials in a file; the
/// first profile is the fixture's repository. Returns it and the prefix.
fn s3_fixture(server: &Server, test: &str, profiles: &[ProfileSpec<'_>]) -> (Fixture, String) {
    let prefix = unique(test);
    let f = Fixture::with_config(profiles[0].name, |f| {
        let creds = f.root.join("s3.cred");
        write(
            &creds,
            format!(
                "aws_access_key_id={}\naws_secret_access_key={}\n",
                server.key, server.secret
            ),
        );
        chmod(&creds, 0o600);
        let mut toml = String::new();
        for p in profiles {
            toml.push_str(&format!(
                "[repositories.{name}]\nlocation = \"s3:{endpoint}/{bucket}/{prefix}\"\npassword-file = \"{pw}\"\n\n\
                 [repositories.{name}.s3]\nregion = \"us-east-1\"\ncredentials-file = \"{creds}\"\n{extra}\n\n",
                name = p.name,
                endpoint = p.endpoint.trim_end_matches('/'),
                bucket = server.bucket,
                pw = s(&f.password_file),
                creds = s(&creds),
                extra = p.extra,
            ));
        }
        toml
    });
    (f, prefix)
}

/// The sample tree (nested folders, symlinks, a FIFO, odd modes) and a 5 MB
/// pseudo-random file at data/random.bin.
fn s3_tree(root: &Path) {
    sample_tree(root, false);
    write(&root.join("data/random.bin"), Rng::new(5).bytes(BIG));
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Asserts that a failed or pending command never took archived data for
/// damaged data.
fn assert_no_damage_reported(r: &Run) {
    let text = format!("{}\n{}", r.stdout(), r.stderr()).to_lowercase();
    for word in [
        "corrupt",
        "damaged",
        "integrity",
        "checksum mismatch",
        "authentication failed",
    ] {
        assert!(!text.contains(word), "archived data was reported as {word:?}\n{r}");
    }
    assert_no_panic(r);
}

// ---------------------------------------------------------------------------
// Plain HTTP, for moto's test API and for looking at objects the way a
// lifecycle rule would change them (moto accepts any signature).

/// A signature-shaped header for moto (it checks none, but routes requests
/// without one differently).
const MOTO_AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// One HTTP/1.1 request on its own connection; returns (status, head, body).
fn http(endpoint: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut c = TcpStream::connect(host).unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer: {}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, answer[split + 4..].to_vec())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Text between `<tag>` and `</tag>` in each `<Contents>` block.
fn xml_field(block: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = block.find(&open)? + open.len();
    let end = block[start..].find(&format!("</{tag}>"))? + start;
    Some(block[start..end].to_string())
}

/// Every object under `prefix` on moto: key → storage class.
fn moto_objects(m: &Server, prefix: &str) -> BTreeMap<String, String> {
    let (status, _, body) = http(
        &m.endpoint,
        "GET",
        &format!("/{}?list-type=2&prefix={prefix}", m.bucket),
        &[("Authorization", MOTO_AUTH)],
        b"",
    );
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "listing {prefix} on moto: {body}");
    assert!(
        body.contains("<IsTruncated>false</IsTruncated>"),
        "more than one page of objects under {prefix}"
    );
    body.split("<Contents>")
        .skip(1)
        .map(|b| {
            (
                xml_field(b, "Key").expect("a key"),
                xml_field(b, "StorageClass").unwrap_or_else(|| "STANDARD".into()),
            )
        })
        .collect()
}

/// The data packs of the repository at `prefix`: key → storage class.
fn moto_data_packs(m: &Server, prefix: &str) -> BTreeMap<String, String> {
    moto_objects(m, &format!("{prefix}/data/"))
}

/// HEAD of one object: its storage class and `x-amz-restore`.
///
/// On moto, looking at an object whose retrieval is under a manual
/// progression advances that retrieval: only use this when none is.
fn moto_head(m: &Server, key: &str) -> (Option<String>, Option<String>) {
    let (status, head, _) = http(
        &m.endpoint,
        "HEAD",
        &format!("/{}/{key}", m.bucket),
        &[("Authorization", MOTO_AUTH)],
        b"",
    );
    assert_eq!(status, 200, "HEAD {key}: {head}");
    (header(&head, "x-amz-storage-class"), header(&head, "x-amz-restore"))
}

/// Moves an object to GLACIER as a lifecycle rule would: a copy onto itself
/// with the new storage class.
fn moto_move_to_glacier(m: &Server, key: &str) {
    let source = format!("/{}/{key}", m.bucket);
    let (status, head, body) = http(
        &m.endpoint,
        "PUT",
        &source,
        &[
            ("Authorization", MOTO_AUTH),
            ("x-amz-copy-source", &source),
            ("x-amz-storage-class", "GLACIER"),
        ],
        b"",
    );
    assert_eq!(
        status,
        200,
        "moving {key} to GLACIER: {head}\n{}",
        String::from_utf8_lossy(&body)
    );
}

/// Sets how moto advances restores (its state-manager API).
fn moto_restore_progression(m: &Server, transition: &str) {
    let body = format!(r#"{{"model_name":"s3::keyrestore","transition":{transition}}}"#);
    let (status, head, _) = http(
        &m.endpoint,
        "POST",
        "/moto-api/state-manager/set-transition",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert!(
        (200..300).contains(&status),
        "setting moto's restore progression: {head}"
    );
}

/// Puts moto back to finishing restores at once, even when a test fails.
struct ImmediateRestoresAgain<'a>(&'a Server);

impl Drop for ImmediateRestoresAgain<'_> {
    fn drop(&mut self) {
        let body = r#"{"model_name":"s3::keyrestore","transition":{"progression":"immediate"}}"#;
        let _ = std::panic::catch_unwind(|| {
            http(
                &self.0.endpoint,
                "POST",
                "/moto-api/state-manager/set-transition",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
        });
    }
}

/// Asserts that every data pack under `prefix` is still GLACIER and that no
/// retrieval was ever requested for it.
fn assert_nothing_retrieved(m: &Server, prefix: &str) {
    let packs = moto_data_packs(m, prefix);
    assert!(!packs.is_empty(), "no data packs under {prefix}");
    for key in packs.keys() {
        let (class, restore) = moto_head(m, key);
        assert_eq!(class.as_deref(), Some("GLACIER"), "{key}");
        assert_eq!(restore, None, "a retrieval of {key} was requested");
    }
}

// ---------------------------------------------------------------------------
// The fault-injecting proxy.

/// A running `fault-proxy` (killed when dropped; it also exits by itself
/// when this process goes, as its standard input closes).
struct Proxy {
    child: Child,
    endpoint: String,
}

impl Proxy {
    /// Starts it in front of `upstream` (`http://HOST:PORT`) with `args`;
    /// its messages go to `log`.
    fn start(upstream: &str, args: &[&str], log: &Path) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fault-proxy"))
            .arg("--upstream")
            .arg(upstream.trim_start_matches("http://").trim_end_matches('/'))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(fs::File::create(log).expect("creating the proxy's log")))
            .spawn()
            .expect("starting fault-proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reading fault-proxy's address");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("fault-proxy said {line:?}"))
            .to_string();
        Proxy {
            child,
            endpoint: format!("http://{addr}"),
        }
    }

    /// Its counters: requests, faults, by_fault, hidden_archive.
    fn stats(&self) -> Value {
        let (status, head, body) = http(&self.endpoint, "GET", "/__fault-proxy/stats", &[], b"");
        assert_eq!(status, 200, "{head}");
        serde_json::from_slice(&body).expect("stats are JSON")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a child's standard error line by line on a thread.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// SeaweedFS.

#[test]
fn s3_seaweedfs_two_backups_restore_point_restore_check_and_snapshots() {
    let Some(sw) = seaweed() else { return };
    let (f, _) = s3_fixture(
        &sw,
        "roundtrip",
        &[ProfileSpec {
            name: "offsite",
            endpoint: &sw.endpoint,
            extra: "",
        }],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    let expected = manifest(&src);
    let files = regular_files(&src);
    let total: u64 = files.values().sum();

    let t = Instant::now();
    let first = f.backup(&[&s(&src)]);
    let s3_backup = t.elapsed();
    assert_eq!(u64_at(&first, "/summary/files_new"), files.len() as u64, "{first:#}");
    assert_eq!(u64_at(&first, "/summary/bytes_read"), total, "{first:#}");
    assert_eq!(u64_at(&first, "/summary/errors"), 0, "{first:#}");
    assert_eq!(
        u64_at(&first, "/retries"),
        0,
        "no retries expected on loopback: {first:#}"
    );

    // The second backup finds every file unchanged and reads none.
    let second = f.backup(&[&s(&src)]);
    assert_eq!(str_at(&second, "/parent"), str_at(&first, "/snapshot_id"), "{second:#}");
    assert_eq!(
        u64_at(&second, "/summary/files_unchanged"),
        files.len() as u64,
        "{second:#}"
    );
    for field in ["files_new", "files_changed", "bytes_read", "data_blobs_added"] {
        assert_eq!(u64_at(&second, &format!("/summary/{field}")), 0, "{field}: {second:#}");
    }

    // Full restore, bit-identical (content, modes, times, links, the FIFO).
    let target = f.path("restored");
    let t = Instant::now();
    let out = f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    let s3_restore = t.elapsed();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert_eq!(u64_at(&out, "/summary/files"), files.len() as u64, "{out:#}");
    assert_eq!(u64_at(&out, "/summary/bytes"), total, "{out:#}");
    assert!(!target.join(IN_PROGRESS_MARKER).exists());

    // Point restore of the big file alone, by the first snapshot's id.
    let big = src.join("data/random.bin");
    let point = f.path("point");
    let first_id = str_at(&first, "/snapshot_id");
    f.cairn()
        .args([
            "restore",
            &format!("{}:{}", &first_id[..8], s(&big)),
            "--target",
            &s(&point),
        ])
        .json();
    let got: Vec<PathBuf> = manifest(&point)
        .into_keys()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    assert_eq!(got, vec![PathBuf::from("random.bin")], "only the one file");
    assert_eq!(entry(&point.join("random.bin")), entry(&big));

    // Every byte of every pack reads back and verifies.
    let check = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    assert_eq!(check["read_data"], Value::Bool(true), "{check:#}");
    assert_eq!(
        check.pointer("/report/errors"),
        Some(&Value::Array(vec![])),
        "{check:#}"
    );
    assert!(u64_at(&check, "/report/bytes_read") >= BIG as u64, "{check:#}");
    assert_eq!(u64_at(&check, "/report/snapshots"), 2, "{check:#}");

    // snapshots --json: both, the second with the first as parent.
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    let ids: Vec<&str> = snaps.iter().map(|v| str_at(v, "/id")).collect();
    assert!(ids.contains(&first_id), "{snaps:#?}");
    assert!(ids.contains(&str_at(&second, "/snapshot_id")), "{snaps:#?}");
    for v in &snaps {
        assert_eq!(strings_at(v, "/paths"), vec![s(&src)], "{v:#}");
        assert_eq!(str_at(v, "/source"), "files", "{v:#}");
    }
    let newer = snaps
        .iter()
        .find(|v| str_at(v, "/id") == str_at(&second, "/snapshot_id"))
        .unwrap();
    assert_eq!(str_at(newer, "/parent"), first_id, "{newer:#}");

    // The same data to a local-folder repository, for comparison.
    let local = Fixture::init();
    let t = Instant::now();
    local.backup(&[&s(&src)]);
    let local_backup = t.elapsed();
    let ltarget = local.path("restored");
    let t = Instant::now();
    local
        .cairn()
        .args(["restore", "latest", "--target", &s(&ltarget)])
        .json();
    let local_restore = t.elapsed();
    assert_same_tree(&expected, &manifest(&under(&ltarget, &src)));
    eprintln!(
        "{:.1} MB, whole commands (process start and repository open included): SeaweedFS backup {:.2} s \
         ({:.0} MB/s), restore {:.2} s ({:.0} MB/s); local folder backup {:.2} s ({:.0} MB/s), restore {:.2} s \
         ({:.0} MB/s)",
        total as f64 / 1e6,
        s3_backup.as_secs_f64(),
        mb_s(total, s3_backup),
        s3_restore.as_secs_f64(),
        mb_s(total, s3_restore),
        local_backup.as_secs_f64(),
        mb_s(total, local_backup),
        local_restore.as_secs_f64(),
        mb_s(total, local_restore),
    );
}

#[test]
fn s3_restore_killed_mid_way_and_run_again_is_bit_identical() {
    let Some(sw) = seaweed() else { return };
    let (f, _) = s3_fixture(
        &sw,
        "killed",
        &[ProfileSpec {
            name: "offsite",
            endpoint: &sw.endpoint,
            extra: "",
        }],
    );
    // Small packs, many files: the restore has many steps to be cut between.
    f.init_repo(&["--pack-size", "1"]);
    let src = f.path("src");
    sample_tree(&src, false);
    let mut rng = Rng::new(77);
    for i in 0..24 {
        write(&src.join(format!("many/file-{i:02}.bin")), rng.bytes(500_000));
    }
    let expected = manifest(&src);
    f.backup(&[&s(&src)]);

    // At 2 MiB/s the 12 MB take about six seconds; stop it after two, once
    // it has begun writing files.
    let target = f.path("restored");
    let mut child = f
        .cairn()
        .args(["--limit-download", "2048", "restore", "latest", "--target", &s(&target)])
        .spawn();
    let started = Instant::now();
    let many = under(&target, &src).join("many");
    while started.elapsed() < Duration::from_secs(2) || !many.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the restore wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the restore finished before it could be stopped mid-way"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ne!(
        manifest(&under(&target, &src)),
        expected,
        "the killed restore was already complete"
    );
    assert!(
        target.join(IN_PROGRESS_MARKER).exists(),
        "a killed restore leaves its marker, so the next run resumes"
    );

    // The same command again (no --overwrite needed) finishes the job.
    let out = f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(!target.join(IN_PROGRESS_MARKER).exists(), "{out:#}");
}

#[test]
fn s3_faults_backup_and_restore_through_a_failing_proxy_retry_and_stay_bit_identical() {
    let Some(sw) = seaweed() else { return };
    let root = tempfile::tempdir().unwrap();
    // 30% of requests fail (503 SlowDown, 500, dropped before or after the
    // server acted, answers cut off) or are slowed; at most 40 faults per
    // run, 2 for the same request and 3 for one object (a multipart upload
    // is retried whole), so the client's 8 attempts always suffice.
    let faults = [
        "--rate",
        "0.3",
        "--max-faults",
        "40",
        "--max-per-request",
        "2",
        "--max-per-object",
        "3",
        "--max-delay-ms",
        "300",
        "--verbose",
    ];
    let backup_log = root.path().join("backup-proxy.log");
    let restore_log = root.path().join("restore-proxy.log");
    let log = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let backup_proxy = Proxy::start(&sw.endpoint, &[&["--seed", "3"][..], &faults[..]].concat(), &backup_log);
    let restore_proxy = Proxy::start(
        &sw.endpoint,
        &[&["--seed", "4"][..], &faults[..]].concat(),
        &restore_log,
    );
    // Multipart from 5 MiB on, so part uploads and their completion meet
    // faults too.
    let multipart = "multipart-threshold-mib = 5\npart-size-mib = 5\nconnections = 4";
    let (f, _) = s3_fixture(
        &sw,
        "faults",
        &[
            ProfileSpec {
                name: "direct",
                endpoint: &sw.endpoint,
                extra: "",
            },
            ProfileSpec {
                name: "flaky-backup",
                endpoint: &backup_proxy.endpoint,
                extra: multipart,
            },
            ProfileSpec {
                name: "flaky-restore",
                endpoint: &restore_proxy.endpoint,
                extra: multipart,
            },
        ],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    write(&src.join("data/multipart.bin"), Rng::new(9).bytes(9_000_000));
    let expected = manifest(&src);
    let started = Instant::now();

    let r = f
        .cairn()
        .args(["-r", "flaky-backup", "--json", "backup", &s(&src)])
        .run();
    assert_eq!(
        r.code(),
        Some(0),
        "backup through the proxy failed\n{r}\n{}",
        log(&backup_log)
    );
    let out = r.json();
    let stats = backup_proxy.stats();
    eprintln!("backup through the proxy: {stats}, retries {}", out["retries"]);
    assert!(u64_at(&stats, "/faults") > 0, "{stats}");
    assert!(
        u64_at(&out, "/retries") > 0,
        "the faults caused no retries: {out:#}\n{stats}\n{}",
        log(&backup_log)
    );
    assert_eq!(u64_at(&out, "/summary/errors"), 0, "{out:#}");

    // What the faulty backup stored is whole (read directly).
    let check = f.cairn().args(["-r", "direct", "check", "--read-data"]).json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");

    let target = f.path("restored");
    let r = f
        .cairn()
        .args([
            "-r",
            "flaky-restore",
            "--json",
            "restore",
            "latest",
            "--verify",
            "--target",
        ])
        .arg(&target)
        .run();
    assert_eq!(
        r.code(),
        Some(0),
        "restore through the proxy failed\n{r}\n{}",
        log(&restore_log)
    );
    let out = r.json();
    let stats = restore_proxy.stats();
    eprintln!("restore through the proxy: {stats}, retries {}", out["retries"]);
    assert!(u64_at(&stats, "/faults") > 0, "{stats}");
    assert!(
        u64_at(&out, "/retries") > 0,
        "the faults caused no retries: {out:#}\n{stats}\n{}",
        log(&restore_log)
    );
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded faults took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// moto: archive storage classes.

#[test]
fn s3_moto_glacier_packs_browse_without_retrieval_and_restore_once_retrieved() {
    let Some(m) = moto() else { return };
    let _one_at_a_time = moto_lock();
    let _immediate = ImmediateRestoresAgain(&m);
    moto_restore_progression(&m, r#"{"progression":"immediate"}"#);
    let (f, prefix) = s3_fixture(
        &m,
        "glacier",
        &[ProfileSpec {
            name: "archive",
            endpoint: &m.endpoint,
            extra: "storage-class = \"GLACIER\"",
        }],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    let first = f.backup(&[&s(&src)]);

    // Data packs went to GLACIER, everything else stayed STANDARD.
    let objects = moto_objects(&m, &format!("{prefix}/"));
    let data_prefix = format!("{prefix}/data/");
    assert!(objects.keys().any(|k| k.starts_with(&data_prefix)), "{objects:#?}");
    for (key, class) in &objects {
        let want = if key.starts_with(&data_prefix) {
            "GLACIER"
        } else {
            "STANDARD"
        };
        assert_eq!(class, want, "{key}");
    }

    // Browsing, a second backup and check need no file data.
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    let ls = f.cairn().args(["ls", "latest"]).json();
    let paths: Vec<String> = ls["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| str_at(e, "/path").to_string())
        .collect();
    assert!(paths.contains(&s(&src.join("data/random.bin"))), "{paths:?}");
    let found = f.cairn().args(["find", "*.bin"]).json();
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(1),
        "one file matches, in one snapshot: {found:#}"
    );
    assert_eq!(str_at(&found, "/0/path"), s(&src.join("data/random.bin")));

    write(&src.join("hello.txt"), "hello again, cairn\n");
    write(&src.join("data/added.bin"), Rng::new(6).bytes(300_000));
    let second = f.backup(&[&s(&src)]);
    assert_eq!(u64_at(&second, "/summary/files_changed"), 1, "{second:#}");
    assert_eq!(u64_at(&second, "/summary/files_new"), 1, "{second:#}");
    let diff = f
        .cairn()
        .args(["diff", str_at(&first, "/snapshot_id"), str_at(&second, "/snapshot_id")])
        .json();
    let changes: Vec<(String, String)> = diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["dir"] != Value::Bool(true))
        .map(|c| (str_at(c, "/change").to_string(), str_at(c, "/path").to_string()))
        .collect();
    assert!(
        changes.contains(&("modified".into(), s(&src.join("hello.txt")))),
        "{diff:#}"
    );
    assert!(
        changes.contains(&("added".into(), s(&src.join("data/added.bin")))),
        "{diff:#}"
    );
    let check = f.cairn().arg("check").json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    assert_nothing_retrieved(&m, &prefix);
    let packs = moto_data_packs(&m, &prefix).len() as u64;
    let expected = manifest(&src);

    // Retrievals that take a few looks to finish.
    moto_restore_progression(&m, r#"{"progression":"manual","times":3}"#);
    let target = f.path("restored");
    let restore = |json: bool| {
        let mut c = f.cairn();
        c.args(["restore", "latest", "--target", &s(&target)]);
        if json {
            c.arg("--json");
        }
        c.run()
    };

    // First run: requests every pack, says how many and how big, exits 14.
    let r = restore(true);
    assert_eq!(r.code(), Some(14), "expected 14 (retrieval pending)\n{r}");
    assert_no_damage_reported(&r);
    let j = r.json();
    assert_eq!(j["retrieval_pending"], Value::Bool(true), "{j:#}");
    assert_eq!(u64_at(&j, "/objects"), packs, "{j:#}");
    assert!(u64_at(&j, "/bytes") >= BIG as u64, "{j:#}");
    assert_eq!(u64_at(&j, "/report/packs_needed"), packs, "{j:#}");
    assert_eq!(u64_at(&j, "/report/archived"), packs, "{j:#}");
    assert_eq!(u64_at(&j, "/report/requested_now"), packs, "{j:#}");
    assert_eq!(u64_at(&j, "/report/already_in_progress"), 0, "{j:#}");
    assert_eq!(strings_at(&j, "/report/classes"), vec!["GLACIER".to_string()], "{j:#}");
    assert!(
        !j["report"]["estimates"].as_array().expect("estimates").is_empty(),
        "{j:#}"
    );

    // Second run, for people: asks for nothing again and says so.
    let r = restore(false);
    assert_eq!(r.code(), Some(14), "expected 14 (retrieval pending)\n{r}");
    assert_no_damage_reported(&r);
    let e = r.stderr();
    assert!(
        e.contains(&format!("0 retrieval(s) requested now, {packs} already in progress")),
        "{r}"
    );
    assert!(
        e.contains(&format!("{packs} pack(s)")) && e.contains("retrieved from archive storage"),
        "{r}"
    );

    // Further runs request nothing either, until moto has finished.
    let mut runs = 2;
    let out = loop {
        let r = restore(true);
        runs += 1;
        assert_no_damage_reported(&r);
        match r.code() {
            Some(0) => break r.json(),
            Some(14) => {
                let j = r.json();
                assert_eq!(u64_at(&j, "/report/requested_now"), 0, "asked twice: {j:#}");
                assert!(u64_at(&j, "/report/already_in_progress") > 0, "{j:#}");
            }
            _ => panic!("expected 0 or 14\n{r}"),
        }
        assert!(runs < 10, "the retrievals never finished");
    };
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(u64_at(&out, "/summary/packs_read") > 0, "{out:#}");
    assert!(!target.join(IN_PROGRESS_MARKER).exists());
    for key in moto_data_packs(&m, &prefix).keys() {
        let (_, restore) = moto_head(&m, key);
        assert!(
            restore.is_some_and(|r| r.contains("ongoing-request=\"false\"")),
            "{key}"
        );
    }
}

#[test]
fn s3_moto_restore_wait_and_a_restore_killed_while_pending_then_run_again() {
    let Some(m) = moto() else { return };
    let _one_at_a_time = moto_lock();
    let _immediate = ImmediateRestoresAgain(&m);
    moto_restore_progression(&m, r#"{"progression":"immediate"}"#);
    let (f, prefix) = s3_fixture(
        &m,
        "wait",
        &[ProfileSpec {
            name: "archive",
            endpoint: &m.endpoint,
            extra: "storage-class = \"GLACIER\"",
        }],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    f.backup(&[&s(&src)]);
    assert_nothing_retrieved(&m, &prefix);

    // --wait requests, polls and restores, in one run (the first poll comes
    // after 30 s).
    let target = f.path("waited");
    let t = Instant::now();
    let out = f
        .cairn()
        .args(["restore", "latest", "--wait", "--target", &s(&target)])
        .json();
    eprintln!(
        "restore --wait from GLACIER on moto took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_same_tree(&manifest(&src), &manifest(&under(&target, &src)));
    assert!(u64_at(&out, "/summary/packs_read") > 0, "{out:#}");

    // New data in new, archived packs.
    write(&src.join("data/second.bin"), Rng::new(8).bytes(3_000_000));
    f.backup(&[&s(&src)]);
    let expected = manifest(&src);

    // A restore --wait stopped (SIGKILL) once it has requested the
    // retrievals and printed the estimate.
    let target = f.path("killed");
    let mut child = f
        .cairn()
        .args(["restore", "latest", "--wait", "--target", &s(&target)])
        .spawn();
    let lines = stderr_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("requested now")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("restore --wait printed no retrieval estimate: {seen:#?}");
            }
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("1 of") && l.contains("1 retrieval(s) requested now")),
        "only the new pack is archived: {seen:#?}"
    );
    assert!(child.try_wait().unwrap().is_none(), "it should be waiting");
    child.kill().unwrap();
    child.wait().unwrap();

    // Run again (without --wait): moto finished the retrieval meanwhile.
    let out = f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
    assert!(!target.join(IN_PROGRESS_MARKER).exists(), "{out:#}");
}

#[test]
fn s3_moto_packs_moved_to_glacier_after_the_backup_become_a_retrieval_not_damage() {
    let Some(m) = moto() else { return };
    let _one_at_a_time = moto_lock();
    let _immediate = ImmediateRestoresAgain(&m);
    moto_restore_progression(&m, r#"{"progression":"immediate"}"#);
    let root = tempfile::tempdir().unwrap();
    // In front of moto, hiding the archive class from the first look at each
    // object: the restore plans the pack as readable and meets
    // InvalidObjectState on the read, as when a lifecycle rule moves packs
    // between the plan and the read.
    let proxy = Proxy::start(
        &m.endpoint,
        &["--faults", "none", "--hide-archive-once"],
        &root.path().join("proxy.log"),
    );
    let (f, prefix) = s3_fixture(
        &m,
        "lifecycle",
        &[
            ProfileSpec {
                name: "standard",
                endpoint: &m.endpoint,
                extra: "",
            },
            ProfileSpec {
                name: "late-look",
                endpoint: &proxy.endpoint,
                extra: "",
            },
        ],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    s3_tree(&src);
    f.backup(&[&s(&src)]);
    let packs = moto_data_packs(&m, &prefix);
    assert!(packs.values().all(|c| c == "STANDARD"), "{packs:#?}");

    // The lifecycle rule: every data pack to GLACIER.
    for key in packs.keys() {
        moto_move_to_glacier(&m, key);
    }
    assert!(
        moto_data_packs(&m, &prefix).values().all(|c| c == "GLACIER"),
        "the packs did not move"
    );
    let check = f.cairn().arg("check").json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    assert_nothing_retrieved(&m, &prefix);

    // Found archived while reading: retrieval requested, exit 14.
    let target = f.path("restored");
    let r = f
        .cairn()
        .args([
            "-r",
            "late-look",
            "restore",
            "latest",
            "--json",
            "--target",
            &s(&target),
        ])
        .run();
    assert_eq!(
        r.code(),
        Some(14),
        "expected 14 (retrieval pending), not a failure\n{r}"
    );
    assert_no_damage_reported(&r);
    let j = r.json();
    let n = packs.len() as u64;
    assert_eq!(u64_at(&j, "/objects"), n, "{j:#}");
    assert_eq!(u64_at(&j, "/report/requested_now"), n, "{j:#}");
    let stats = proxy.stats();
    assert_eq!(
        u64_at(&stats, "/hidden_archive"),
        n,
        "every pack was first seen as readable: {stats}"
    );

    // moto finished at once: the same command completes the restore.
    let out = f
        .cairn()
        .args(["-r", "late-look", "restore", "latest", "--target", &s(&target)])
        .json();
    assert_same_tree(&manifest(&src), &manifest(&under(&target, &src)));
    assert!(u64_at(&out, "/summary/packs_read") >= n, "{out:#}");

    // Moved before the restore looks (the plan sees the class up front):
    // only the newly moved pack is requested.
    write(&src.join("data/later.bin"), Rng::new(10).bytes(2_000_000));
    f.backup(&[&s(&src)]);
    let expected = manifest(&src);
    let fresh: Vec<String> = moto_data_packs(&m, &prefix)
        .into_iter()
        .filter(|(_, c)| c == "STANDARD")
        .map(|(k, _)| k)
        .collect();
    assert!(!fresh.is_empty());
    for key in &fresh {
        moto_move_to_glacier(&m, key);
    }
    let target = f.path("restored-again");
    let r = f
        .cairn()
        .args(["restore", "latest", "--json", "--target", &s(&target)])
        .run();
    assert_eq!(
        r.code(),
        Some(14),
        "expected 14 (retrieval pending), not a failure\n{r}"
    );
    assert_no_damage_reported(&r);
    let j = r.json();
    assert_eq!(u64_at(&j, "/report/requested_now"), fresh.len() as u64, "{j:#}");
    assert_eq!(u64_at(&j, "/objects"), fresh.len() as u64, "{j:#}");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
}

#[test]
fn s3_faults_a_lost_answer_to_a_multipart_completion_is_retried_into_the_stored_object() {
    let Some(sw) = seaweed() else { return };
    let root = tempfile::tempdir().unwrap();
    // Every POST (start and completion of multipart uploads) has its answer
    // lost after the server acted: twice for the start, then once for the
    // completion (3 per object), so the third attempt completes the upload
    // but never hears so, and the fourth finds the object already there.
    let log_file = root.path().join("proxy.log");
    let proxy = Proxy::start(
        &sw.endpoint,
        &[
            "--rate",
            "1",
            "--only",
            "POST ",
            "--faults",
            "drop-after",
            "--max-per-request",
            "2",
            "--max-per-object",
            "3",
            "--verbose",
        ],
        &log_file,
    );
    let (f, _) = s3_fixture(
        &sw,
        "lost-completion",
        &[
            ProfileSpec {
                name: "direct",
                endpoint: &sw.endpoint,
                extra: "",
            },
            ProfileSpec {
                name: "flaky",
                endpoint: &proxy.endpoint,
                extra: "multipart-threshold-mib = 5\npart-size-mib = 5",
            },
        ],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    write(&src.join("one.bin"), Rng::new(12).bytes(11_000_000));
    let expected = manifest(&src);

    let r = f.cairn().args(["-r", "flaky", "--json", "backup"]).arg(&src).run();
    let log = fs::read_to_string(&log_file).unwrap_or_default();
    assert_eq!(r.code(), Some(0), "backup failed\n{r}\n{log}");
    let out = r.json();
    let stats = proxy.stats();
    assert!(log.contains("?uploadId="), "no completion was cut off: {stats}\n{log}");
    assert!(u64_at(&out, "/retries") >= 3, "{out:#}\n{log}");

    // Stored once, whole, and restorable.
    let check = f.cairn().args(["-r", "direct", "check", "--read-data"]).json();
    assert_eq!(check["ok"], Value::Bool(true), "{check:#}");
    let target = f.path("restored");
    f.cairn()
        .args(["-r", "direct", "restore", "latest", "--target", &s(&target)])
        .json();
    assert_same_tree(&expected, &manifest(&under(&target, &src)));
}

#[test]
fn s3_moto_check_read_data_of_archived_packs_does_not_call_the_repository_damaged() {
    let Some(m) = moto() else { return };
    let _one_at_a_time = moto_lock();
    let _immediate = ImmediateRestoresAgain(&m);
    moto_restore_progression(&m, r#"{"progression":"immediate"}"#);
    let (f, prefix) = s3_fixture(
        &m,
        "check-archived",
        &[ProfileSpec {
            name: "archive",
            endpoint: &m.endpoint,
            extra: "storage-class = \"GLACIER\"",
        }],
    );
    f.init_repo(&[]);
    let src = f.path("src");
    sample_tree(&src, false);
    write(&src.join("data/some.bin"), Rng::new(13).bytes(500_000));
    f.backup(&[&s(&src)]);

    // Archived packs cannot be read without a retrieval: check --read-data
    // must request it (as restore does), say so, exit 14 ("retrieval
    // pending"), and never call the repository damaged.
    let r = f.cairn().args(["check", "--read-data"]).run();
    assert_no_panic(&r);
    let text = format!("{}\n{}", r.stdout(), r.stderr());
    assert_eq!(
        r.code(),
        Some(14),
        "check --read-data on archived packs should stop with 14\n{r}"
    );
    assert!(
        text.contains("archive storage"),
        "check --read-data does not say the packs are in archive storage\n{r}"
    );
    assert!(
        !text.to_lowercase().contains("damaged"),
        "check --read-data calls packs in archive storage damage\n{r}"
    );
    // moto finishes retrievals at once here: the same check now reads and
    // verifies every pack.
    let r = f.cairn().args(["check", "--read-data"]).run();
    assert_no_panic(&r);
    assert_eq!(r.code(), Some(0), "check --read-data after the retrieval\n{r}");
    let _ = &prefix;
}
