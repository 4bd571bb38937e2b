//! Throwaway `redis-server`s for the Redis source tests: each on 127.0.0.1
//! and a free port, in a folder of the test's, killed when dropped.
//!
//! Without `redis-server` on PATH (the Debian package `redis-server`, which
//! `scripts/platform-tools.sh` installs) [`RedisServer::start`] panics when
//! `CI=true`, and otherwise prints a loud `SKIPPED` line and returns `None`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data folder (`--dir`).
    pub dir: PathBuf,
    password: Option<String>,
}

/// Whether the server binaries are here; if not, fails under CI and says
/// so loudly otherwise.
fn available(test: &str) -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("redis-cli")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        let msg =
            "redis-server/redis-cli not found: install the Debian package redis-server (scripts/platform-tools.sh does)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {msg}");
        }
        eprintln!("\n*** SKIPPED: {test}: {msg} ***\n");
    }
    ok
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

impl RedisServer {
    /// Starts a server in `dir` (created) with `extra` options (e.g.
    /// `["--requirepass", "pw"]`, `["--appendonly", "yes"]`); an
    /// RDB already in `dir` named `dump.rdb` is loaded. Waits until it
    /// answers PING (it answers LOADING while it loads a dump).
    pub fn start(test: &str, dir: &Path, extra: &[&str]) -> Option<RedisServer> {
        if !available(test) {
            return None;
        }
        std::fs::create_dir_all(dir).expect("creating the redis folder");
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| p.to_string());
        let mut last = String::new();
        // A port found free may be taken before the server binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .args([
                    "--dbfilename",
                    "dump.rdb",
                    "--save",
                    "",
                    "--enable-debug-command",
                    "local",
                ])
                .arg("--logfile")
                .arg(dir.join(format!("redis-{port}.log")));
            if !extra.contains(&"--appendonly") {
                cmd.args(["--appendonly", "no"]);
            }
            cmd.args(extra).stdin(Stdio::null()).stdout(Stdio::null());
            let child = cmd.spawn().expect("starting redis-server");
            let mut server = RedisServer {
                child,
                port,
                dir: dir.to_path_buf(),
                password: password.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                last = server.try_cli(&["PING"]).unwrap_or_default();
                if last == "PONG" {
                    return Some(server);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let log = std::fs::read_to_string(dir.join(format!("redis-{port}.log"))).unwrap_or_default();
            last = format!("{last}\n{log}");
        }
        panic!("redis-server in {} did not come up: {last}", dir.display());
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn redis_cli(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        // The password through the environment, not the command line.
        if let Some(p) = &self.password {
            c.env("REDISCLI_AUTH", p);
        }
        c
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = self.redis_cli().args(args).stdin(Stdio::null()).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// One command's output (redis-cli's text), asserting redis-cli ran.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self
            .redis_cli()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !text.starts_with("ERR") && !text.starts_with("NOAUTH"),
            "redis-cli {args:?}: {text}"
        );
        text
    }

    /// Feeds RESP commands through `redis-cli --pipe`, asserting no errors.
    pub fn pipe(&self, resp: &[u8]) {
        let mut child = self
            .redis_cli()
            .arg("--pipe")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running redis-cli --pipe");
        let mut stdin = child.stdin.take().expect("a stdin pipe");
        let data = resp.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().expect("waiting for redis-cli --pipe");
        feeder.join().expect("feeder").expect("feeding redis-cli --pipe");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("errors: 0,"),
            "redis-cli --pipe: {text}"
        );
    }

    /// `DEBUG DIGEST`: a hash of the whole data set.
    pub fn digest(&self) -> String {
        let d = self.cli(&["DEBUG", "DIGEST"]);
        assert_eq!(d.len(), 40, "DEBUG DIGEST: {d}");
        d
    }

    /// `INFO keyspace` as (db, keys, expires), by database.
    pub fn keyspace(&self) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        for line in self.cli(&["INFO", "keyspace"]).lines() {
            let Some((db, rest)) = line.trim().split_once(':') else {
                continue;
            };
            let Some(db) = db.strip_prefix("db").and_then(|d| d.parse().ok()) else {
                continue;
            };
            let field = |name: &str| {
                rest.split(',')
                    .find_map(|f| f.strip_prefix(&format!("{name}=")))
                    .and_then(|n| n.parse().ok())
                    .expect("a keyspace field")
            };
            out.push((db, field("keys"), field("expires")));
        }
        out.sort();
        out
    }

    /// A field of `INFO` (e.g. `redis_version`).
    pub fn info_field(&self, name: &str) -> String {
        self.cli(&["INFO"])
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")).map(str::to_string))
            .unwrap_or_else(|| panic!("INFO has no {name}"))
    }

    /// `SHUTDOWN` (saving what its settings say) and waits for the exit.
    pub fn shutdown(mut self) {
        let _ = self.try_cli(&["SHUTDOWN"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not stop on SHUTDOWN");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command as RESP (what `redis-cli --pipe` reads).
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
