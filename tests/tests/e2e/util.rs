//! Shared machinery: finding (and building) the `cairn` binary, running it
//! with a clean environment and a time limit, test repositories, and sample
//! file trees. Manifests of trees (content hash + metadata) to compare them
//! by come from `cairn_test_support::tree`.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub use cairn_test_support::tree::{assert_same_tree, entry, hash_file, manifest, regular_files, under, Entry};

/// The password of every test repository (unless a test says otherwise).
pub const PASSWORD: &str = "correct horse battery staple";

/// No single cairn run in this suite should come near this.
const TIMEOUT: Duration = Duration::from_secs(90);

/// The `cairn` binary under test.
///
/// `CAIRN_BIN` names it explicitly (and nothing is built). Otherwise cargo
/// runs, once per test process, the build that `scripts/test-all.sh` runs
/// before the tests (`cargo build --workspace --all-targets`, in the profile
/// this test was built in) and says where it put `cairn`. Right after that
/// build it only checks that everything is fresh (a second or so), so the
/// tests wait for no compiling; when cli/ or engine/ changed since, it
/// rebuilds them, so the suite never tests a stale binary. A narrower build
/// (`-p cairn-cli`) would resolve dependency features differently from the
/// workspace build and compile the AWS and TLS stack a second time.
pub fn cairn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CAIRN_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "CAIRN_BIN={} is not a file", p.display());
            return p;
        }
        build_workspace()
    })
}

/// `cargo build --workspace --all-targets` in this test's profile; returns
/// the `cairn` executable cargo reports.
fn build_workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // What cargo set for this test (CARGO_PKG_NAME=cairn-tests, ...) must not
    // reach the build: build scripts such as ring's rerun when those change,
    // so the build would redo ring, rustls and all above them, and the next
    // build from a shell would redo them again.
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(set_by_cargo_for_this_test) {
            cmd.env_remove(&k);
        }
    }
    cmd.args([
        "build",
        "--workspace",
        "--all-targets",
        "--message-format=json-render-diagnostics",
    ]);
    cmd.args(profile_args());
    let what = format!("{cmd:?}");
    let out = cmd
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == "cairn"
                && m["target"]["kind"] == serde_json::json!(["bin"])
                && m["profile"]["test"] == false
        })
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("{what} reported no cairn executable"));
    assert!(bin.is_file(), "{what} reported {}, which does not exist", bin.display());
    bin
}

/// Whether cargo sets `name` for the crate it runs (here: this test), as
/// opposed to the user setting it for cargo (CARGO_TARGET_DIR, CARGO_HOME).
fn set_by_cargo_for_this_test(name: &str) -> bool {
    ["CARGO_PKG_", "CARGO_BIN_", "CARGO_CFG_", "CARGO_FEATURE_"]
        .iter()
        .any(|p| name.starts_with(p))
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&name)
}

/// The cargo flags for the profile this test binary was built in: it is
/// `<target>/<profile folder>/deps/e2e-HASH`, and the tests of the `dev`
/// and `test` profiles run binaries of `dev` (folder `debug`).
fn profile_args() -> Vec<String> {
    let exe = std::env::current_exe().expect("the test's own path");
    let folder = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|f| f.to_str());
    match folder {
        None | Some("debug") => vec![],
        Some("release") => vec!["--release".into()],
        Some(other) => vec!["--profile".into(), other.into()],
    }
}

/// One finished run of the binary.
pub struct Run {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clip = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            if s.chars().count() > 4000 {
                format!("{}... ({} bytes)", s.chars().take(4000).collect::<String>(), b.len())
            } else {
                s.into_owned()
            }
        };
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }
}

/// A `cairn` command line being built, ripgrep-style.
pub struct Cairn {
    cmd: Command,
    what: Vec<String>,
    stdin: Option<Vec<u8>>,
    stdout: Option<Stdio>,
}

impl Cairn {
    /// `cairn` in `cwd`, with no CAIRN_* variable from the parent and HOME and
    /// XDG_CONFIG_HOME pointed at `home`, so no user cairn.toml is read.
    pub fn new(cwd: &Path, home: &Path) -> Cairn {
        let mut cmd = Command::new(cairn_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CAIRN_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .current_dir(cwd);
        Cairn {
            cmd,
            what: vec!["cairn".into()],
            stdin: None,
            stdout: None,
        }
    }

    pub fn arg(&mut self, a: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.what.push(a.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    pub fn env(&mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    /// Bytes for standard input (otherwise it is /dev/null: never a terminal).
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Standard output goes here instead of being captured.
    pub fn stdout_to(&mut self, s: Stdio) -> &mut Self {
        self.stdout = Some(s);
        self
    }

    /// Runs it to the end (or kills it after TIMEOUT and panics).
    pub fn run(&mut self) -> Run {
        let what = self.what.join(" ");
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(self.stdout.take().unwrap_or_else(Stdio::piped))
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let feeder = self.stdin.take().map(|bytes| {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            std::thread::spawn(move || {
                // cairn may stop reading early (e.g. a failed command); that is not our error.
                let _ = pipe.write_all(&bytes);
            })
        });
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(mut r) = r {
                    r.read_to_end(&mut v).expect("reading the child's output");
                }
                v
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for cairn") {
                break s;
            }
            if start.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(f) = feeder {
            f.join().expect("stdin feeder");
        }
        Run {
            what,
            status,
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        }
    }

    /// Starts it with standard output and error piped, for a test that
    /// watches it run or stops it mid-way; the caller waits for or kills it.
    pub fn spawn(&mut self) -> std::process::Child {
        let what = self.what.join(" ");
        assert!(self.stdin.is_none(), "spawn() does not feed standard input");
        self.cmd
            .stdin(Stdio::null())
            .stdout(self.stdout.take().unwrap_or_else(Stdio::piped))
            .stderr(Stdio::piped());
        self.cmd.spawn().unwrap_or_else(|e| panic!("spawning {what}: {e}"))
    }

    /// Runs it and asserts exit code 0.
    pub fn ok(&mut self) -> Run {
        let r = self.run();
        assert_eq!(r.code(), Some(0), "expected success\n{r}");
        r
    }

    /// Runs it and asserts this exit code.
    pub fn code(&mut self, code: i32) -> Run {
        let r = self.run();
        assert_eq!(r.code(), Some(code), "expected exit code {code}\n{r}");
        r
    }

    /// Runs it and asserts a non-zero exit (and no crash).
    pub fn fails(&mut self) -> Run {
        let r = self.run();
        assert!(
            matches!(r.code(), Some(c) if c != 0),
            "expected a non-zero exit code\n{r}"
        );
        assert_no_panic(&r);
        r
    }

    /// Adds --json, asserts success and parses standard output.
    pub fn json(&mut self) -> Value {
        self.arg("--json");
        self.ok().json()
    }
}

pub fn assert_no_panic(r: &Run) {
    let e = r.stderr();
    assert!(!e.contains("panicked"), "cairn panicked\n{r}");
    assert_ne!(r.code(), Some(101), "cairn panicked (exit 101)\n{r}");
}

/// A temporary folder with a password file, and (after `init`) a repository
/// in `repo/`. Everything is removed when it drops.
pub struct Fixture {
    _dir: TempDir,
    /// The canonical path of the temporary folder.
    pub root: PathBuf,
    pub repo: PathBuf,
    pub password_file: PathBuf,
    pub home: PathBuf,
}

impl Fixture {
    /// A folder without a repository.
    pub fn empty() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("cairn-e2e-")
            .tempdir()
            .expect("creating a temporary folder");
        let root = dir.path().canonicalize().expect("canonical temp dir");
        let home = root.join("home");
        fs::create_dir_all(home.join(".config")).expect("creating home");
        let password_file = root.join("password");
        fs::write(&password_file, format!("{PASSWORD}\n")).expect("writing the password file");
        // Whatever the umask: cairn refuses a password file others may write.
        chmod(&password_file, 0o600);
        Fixture {
            _dir: dir,
            repo: root.join("repo"),
            root,
            password_file,
            home,
        }
    }

    /// A folder with an initialised repository (fast KDF settings).
    pub fn init() -> Fixture {
        let f = Fixture::empty();
        f.cairn()
            .args(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
            .ok();
        f
    }

    /// A folder whose user configuration file ([`Fixture::user_config`]) is
    /// `config` (written by `config`, which is given the fixture) and whose
    /// repository (CAIRN_REPOSITORY) is `repo`: a profile name in that file,
    /// or a location. Not initialised.
    pub fn with_config(repo: &str, config: impl FnOnce(&Fixture) -> String) -> Fixture {
        let mut f = Fixture::empty();
        let text = config(&f);
        write(&f.user_config(), text);
        f.repo = PathBuf::from(repo);
        f
    }

    /// The configuration file cairn reads when `--config` names none: the
    /// user's own, `$XDG_CONFIG_HOME/cairn/cairn.toml` (cairn never reads
    /// one from the current folder by itself).
    pub fn user_config(&self) -> PathBuf {
        self.home.join(".config").join("cairn").join("cairn.toml")
    }

    /// `init` of this fixture's repository, with fast KDF settings and any
    /// further `args` (e.g. `--pack-size`).
    pub fn init_repo(&self, args: &[&str]) -> Run {
        self.cairn()
            .args(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
            .args(args)
            .ok()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `cairn` for this repository: CAIRN_REPOSITORY and CAIRN_PASSWORD_FILE set.
    pub fn cairn(&self) -> Cairn {
        let mut c = self.bare();
        c.env("CAIRN_REPOSITORY", &self.repo)
            .env("CAIRN_PASSWORD_FILE", &self.password_file);
        c
    }

    /// `cairn` with neither repository nor password set.
    pub fn bare(&self) -> Cairn {
        Cairn::new(&self.root, &self.home)
    }

    /// `cairn` for this repository with another password (from a file).
    pub fn with_password(&self, password: &str) -> Cairn {
        let f = self.password_file_for(password);
        let mut c = self.bare();
        c.env("CAIRN_REPOSITORY", &self.repo).env("CAIRN_PASSWORD_FILE", f);
        c
    }

    /// Writes `password` to a fresh file and returns its path.
    pub fn password_file_for(&self, password: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.root.join(format!("pw-{n}"));
        fs::write(&p, format!("{password}\n")).expect("writing a password file");
        chmod(&p, 0o600);
        p
    }

    /// `snapshots --json`, as a list.
    pub fn snapshots(&self) -> Vec<Value> {
        match self.cairn().arg("snapshots").json() {
            Value::Array(v) => v,
            other => panic!("snapshots --json is not a list: {other}"),
        }
    }

    /// `backup --json ARGS...`, asserting exit code 0.
    pub fn backup(&self, args: &[&str]) -> Value {
        self.cairn().arg("backup").args(args).json()
    }

    /// `dump SNAPSHOT PATH` standard output, asserting success.
    pub fn dump(&self, snapshot: &str, path: &str) -> Vec<u8> {
        self.cairn().args(["dump", snapshot, path]).ok().stdout
    }
}

/// Small deterministic pseudo-random numbers (xorshift64*): test data that
/// does not compress and is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// A random-looking password of 32 letters and digits.
    pub fn password(&mut self) -> String {
        const A: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        (0..32)
            .map(|_| A[(self.next_u64() % A.len() as u64) as usize] as char)
            .collect()
    }
}

/// Seeds from the clock: for values that must differ between runs (passwords).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("creating parent folders");
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Size of the pseudo-random file in `sample_tree`.
pub const BIG_FILE_SIZE: usize = 3 * 1024 * 1024;

/// A small tree with nested folders, symlinks, an empty file and folder, a
/// FIFO (which a backup must record, not read), files and folders with
/// unusual modes (0600, 0755, sticky), and (if `big`) a 3 MiB pseudo-random
/// file at data/big.bin. No set-id bits: a restore drops them unless
/// `--preserve-special` (restore_special.rs); tests that need them set them.
pub fn sample_tree(root: &Path, big: bool) {
    write(&root.join("hello.txt"), "hello, cairn\n");
    write(&root.join("docs/readme.md"), "# Readme\n\nSome text.\n".repeat(20));
    write(&root.join("docs/nested/deep/notes.txt"), "deep notes\n");
    write(&root.join("docs/nested/deep/more.txt"), "more notes, a bit longer\n");
    write(&root.join("empty"), "");
    write(&root.join("bin/run.sh"), "#!/bin/sh\necho run\n");
    chmod(&root.join("bin/run.sh"), 0o755);
    write(&root.join("secret.key"), "private\n");
    chmod(&root.join("secret.key"), 0o600);
    fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    write(&root.join("shared/setgid-tool"), "#!/bin/sh\n");
    chmod(&root.join("shared/setgid-tool"), 0o755);
    fs::create_dir_all(root.join("shared/drop")).expect("mkdir");
    chmod(&root.join("shared/drop"), 0o1777);
    nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o640)).expect("mkfifo");
    symlink("docs/readme.md", root.join("link-to-readme")).expect("symlink");
    symlink("does/not/exist", root.join("dangling")).expect("symlink");
    if big {
        write(&root.join("data/big.bin"), Rng::new(42).bytes(BIG_FILE_SIZE));
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A JSON field as u64, with a clear message when it is missing.
pub fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {v:#}"))
}

pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {v:#}"))
}

pub fn strings_at(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{pointer} is not a list in {v:#}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

pub fn s(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
