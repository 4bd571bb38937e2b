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
//! (`scripts/test-all.sh` does this.) The servers' settings, the loud notice
//! when `CAIRN_SKIP_S3=1` skips these tests, fresh key prefixes and moto's
//! (global) restore progression come from `cairn_test_support::s3`, as for
//! engine/tests/s3_backend.rs. This module holds what only these tests need:
//! cairn.toml profiles, the fault proxy, and looking at moto's objects.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cairn_test_support::s3::{http, unique, Server, MOTO_AUTH};
use serde_json::Value;

use crate::util::*;

mod copy;
mod damage;
mod faults;
mod import;
mod moto;
mod mount;
mod object_lock;
mod seaweedfs;
mod source;
mod stats;

/// Size of the pseudo-random file in `s3_tree`.
const BIG: usize = 5 * 1000 * 1000;

/// The file an unfinished restore leaves in its target so that running it
/// again resumes (cairn_engine::restore::IN_PROGRESS_MARKER).
const IN_PROGRESS_MARKER: &str = ".cairn-restore-in-progress";

/// A profile in cairn.toml: name, endpoint (the server's, or a proxy's in
/// front of it), and further lines for its s3 table.
struct ProfileSpec<'a> {
    name: &'a str,
    endpoint: &'a str,
    extra: &'a str,
}

fn profile<'a>(name: &'a str, endpoint: &'a str, extra: &'a str) -> ProfileSpec<'a> {
    ProfileSpec { name, endpoint, extra }
}

/// A fixture whose user cairn.toml has these profiles, all for the same fresh
/// prefix on `server`'s bucket, with the server's credentials in a file; the
/// first profile is the fixture's repository (not initialised). Returns it
/// and the prefix.
fn s3_fixture(server: &Server, test: &str, profiles: &[ProfileSpec<'_>]) -> (Fixture, String) {
    let prefix = unique(&format!("e2e-{test}"));
    let f = Fixture::with_config(profiles[0].name, |f| {
        let creds = f.root.join("s3.cred");
        server.write_credentials(&creds);
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

/// One profile, "offsite", straight to `server` (not initialised).
fn offsite_fixture(server: &Server, test: &str) -> (Fixture, String) {
    s3_fixture(server, test, &[profile("offsite", &server.endpoint, "")])
}

/// One profile, "archive", whose data packs go to GLACIER on moto; the
/// repository is initialised.
fn archive_fixture(moto: &Server, test: &str) -> (Fixture, String) {
    let (f, prefix) = s3_fixture(
        moto,
        test,
        &[profile("archive", &moto.endpoint, "storage-class = \"GLACIER\"")],
    );
    f.init_repo(&[]);
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

/// Asserts that a command stopped with 14 ("retrieval pending") and did
/// not take archived data for damage; returns the run.
fn assert_pending(r: &Run) -> &Run {
    assert_eq!(
        r.code(),
        Some(14),
        "expected 14 (retrieval pending), not a failure\n{r}"
    );
    assert_no_damage_reported(r);
    r
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
// Looking at moto's objects the way a lifecycle rule would change them
// (plain HTTP: moto accepts any signature).

/// Text between `<tag>` and `</tag>` in each `<Contents>` block.
fn xml_field(block: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = block.find(&open)? + open.len();
    let end = block[start..].find(&format!("</{tag}>"))? + start;
    Some(block[start..end].to_string())
}

/// Every object under `prefix` on moto: key → storage class.
fn moto_objects(m: &Server, prefix: &str) -> BTreeMap<String, String> {
    moto_listing(m, prefix)
        .into_iter()
        .map(|(k, (class, _))| (k, class))
        .collect()
}

/// Every object under `prefix` on moto: key → (storage class, size).
fn moto_listing(m: &Server, prefix: &str) -> BTreeMap<String, (String, u64)> {
    let a = http(
        &m.endpoint,
        "GET",
        &format!("/{}?list-type=2&prefix={prefix}", m.bucket),
        &[("Authorization", MOTO_AUTH)],
        b"",
    );
    let body = String::from_utf8_lossy(&a.body).into_owned();
    assert_eq!(a.status, 200, "listing {prefix} on moto: {body}");
    assert!(
        body.contains("<IsTruncated>false</IsTruncated>"),
        "more than one page of objects under {prefix}"
    );
    body.split("<Contents>")
        .skip(1)
        .map(|b| {
            let class = xml_field(b, "StorageClass").unwrap_or_else(|| "STANDARD".into());
            let size = xml_field(b, "Size").and_then(|s| s.parse().ok()).expect("a size");
            (xml_field(b, "Key").expect("a key"), (class, size))
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
    let a = http(
        &m.endpoint,
        "HEAD",
        &format!("/{}/{key}", m.bucket),
        &[("Authorization", MOTO_AUTH)],
        b"",
    );
    assert_eq!(a.status, 200, "HEAD {key}: {}", a.head);
    (a.header("x-amz-storage-class"), a.header("x-amz-restore"))
}

/// Moves an object to GLACIER as a lifecycle rule would: a copy onto itself
/// with the new storage class.
fn moto_move_to_glacier(m: &Server, key: &str) {
    let source = format!("/{}/{key}", m.bucket);
    let a = http(
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
        a.status,
        200,
        "moving {key} to GLACIER: {}\n{}",
        a.head,
        String::from_utf8_lossy(&a.body)
    );
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
        let a = http(&self.endpoint, "GET", "/__fault-proxy/stats", &[], b"");
        assert_eq!(a.status, 200, "{}", a.head);
        serde_json::from_slice(&a.body).expect("stats are JSON")
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
