//! A throwaway PostgreSQL 15 server for tests: `initdb` in a temporary
//! folder, started on 127.0.0.1 and a free port, stopped (and killed if it
//! will not stop) when the handle drops.
//!
//! `initdb` and `postgres` refuse to run as root, so when the tests run as
//! root the server runs as the `postgres` user (`runuser`), with its data
//! and socket folders owned by it.

use crate::redis::free_port;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// Where Debian's `postgresql-15` puts the server binaries.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The superuser's password (password authentication is on, so clients
/// need it: through a `.pgpass` file, never the command line).
pub const PASSWORD: &str = "pg-test-secret-7f3a";

/// A running server.
pub struct Postgres {
    dir: TempDir,
    /// The data folder.
    pub data: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// A `.pgpass` file for the superuser `postgres` (mode 0600), for
    /// clients' `PGPASSFILE`.
    pub pgpass: PathBuf,
    run_as: Option<&'static str>,
}

/// Why no server could be started: the binaries are missing.
#[derive(Debug)]
pub struct Missing(pub String);

fn is_root() -> bool {
    // `id -u` rather than a libc call: this crate has no libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// `initdb` + start. `Err(Missing)` when the binaries are not installed
    /// (the caller decides between failing in CI and a loud skip); any
    /// other failure panics with the server's log.
    pub fn start() -> Result<Postgres, Missing> {
        let initdb = Path::new(BIN_DIR).join("initdb");
        for tool in [initdb.as_path(), Path::new(BIN_DIR).join("pg_ctl").as_path()] {
            if !tool.is_file() {
                return Err(Missing(format!(
                    "{} not found (install the Debian package postgresql-15; scripts/platform-tools.sh does)",
                    tool.display()
                )));
            }
        }
        for client in ["psql", "pg_dump"] {
            if Command::new(client).arg("--version").output().is_err() {
                return Err(Missing(format!(
                    "`{client}` is not on PATH (Debian package postgresql-client)"
                )));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("cairn-pg-")
            .tempdir()
            .expect("creating a temporary folder");
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let sock = root.join("sock");
        fs::create_dir_all(&sock).expect("socket folder");
        let pwfile = root.join("pw");
        fs::write(&pwfile, format!("{PASSWORD}\n")).expect("password file");
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            let st = Command::new("chown")
                .args(["-R", user])
                .arg(&root)
                .status()
                .expect("running chown");
            assert!(st.success(), "chown -R {user} {}", root.display());
        }
        // The temporary folder is 0700; the server user must reach it.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        let port = free_port();
        let pg = Postgres {
            dir,
            data: data.clone(),
            port,
            pgpass: root.join("client.pgpass"),
            run_as,
        };
        pg.server_cmd(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=scram-sha-256".as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C.UTF-8".as_ref(),
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            sock.display()
        );
        let log = root.join("server.log");
        pg.server_cmd(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        );
        // Written by this process (the client side), readable only by it.
        fs::write(&pg.pgpass, format!("127.0.0.1:{port}:*:postgres:{PASSWORD}\n")).expect("writing .pgpass");
        fs::set_permissions(&pg.pgpass, fs::Permissions::from_mode(0o600)).expect("chmod .pgpass");
        Ok(pg)
    }

    /// Runs a server binary (as the server user when root); panics with
    /// its output and the server log when it fails.
    fn server_cmd(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Output {
        let path = Path::new(BIN_DIR).join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}\n{}\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
        out
    }

    /// The connection options every client needs (`-h -p -U`); the
    /// password comes from [`Postgres::pgpass`] through `PGPASSFILE`.
    pub fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// A client command (`psql`, `pg_dump`, `createdb`) with the
    /// connection options and `PGPASSFILE` set.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args(self.conn_args())
            .env("PGPASSFILE", &self.pgpass)
            .env_remove("PGPASSWORD");
        c
    }

    /// Runs `sql` in `db` with `psql` (stop on the first error) and returns
    /// its unaligned, tuples-only output; panics when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-d", db, "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql -c {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates database `db`.
    pub fn create_db(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let ctl = Path::new(BIN_DIR).join("pg_ctl");
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&ctl);
                c
            }
            None => Command::new(&ctl),
        };
        let stopped = cmd
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            // The postmaster's pid is the first line of postmaster.pid.
            if let Some(pid) = fs::read_to_string(self.data.join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().map(str::to_string))
            {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        }
    }
}
