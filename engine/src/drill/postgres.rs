//! The SQL drill: a scratch PostgreSQL cluster (its own data folder, a
//! Unix socket in a private folder, no TCP) loads the restored dump, and
//! the rows of every table are counted against the dump's own `COPY` data.
//!
//! The counts come from the restored dump rather than from the backup,
//! because `restore --verify` has already proved the dump is the one that
//! was backed up; what this step adds is that PostgreSQL accepts it whole.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, DrillError, Verification};

const KIND: &str = "postgresql";

/// The folder with `initdb`, `pg_ctl`, `postgres`, `psql` and
/// `pg_restore`: `configured`, else the newest of Debian's
/// `/usr/lib/postgresql/N/bin`, else wherever `initdb` is on `PATH`.
pub fn find_postgres_bin(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(c) = configured {
        return Some(c.to_path_buf());
    }
    let debian = fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
        d.flatten()
            .filter_map(|e| {
                let v: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((v, bin))
            })
            .max()
            .map(|(_, b)| b)
    });
    debian.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    })
}

/// Loads the dump `dump` (plain SQL from `pg_dump`/`pg_dumpall`, or
/// `pg_dump -Fc`'s custom format) into a scratch cluster made under
/// `scratch` with the binaries in `bin`, and compares row counts.
pub fn verify_sql_dump(dump: &Path, bin: Option<&Path>, scratch: &Path) -> Verification {
    let Some(bin) = find_postgres_bin(bin) else {
        return Verification::fail(
            KIND,
            "the PostgreSQL server binaries (initdb, pg_ctl) were not found: install PostgreSQL or set \
             postgresql-bin in the source",
        );
    };
    let cluster = match Cluster::start(&bin, scratch) {
        Ok(c) => c,
        Err(e) => return Verification::fail(KIND, e.to_string()),
    };
    let result = cluster.load_and_count(dump);
    let stopped = cluster.stop();
    match (result, stopped) {
        (Ok(v), Ok(())) => v,
        (Ok(_), Err(e)) | (Err(e), _) => Verification::fail(KIND, e.to_string()),
    }
}

/// A running scratch cluster; [`Cluster::stop`] stops it and removes its
/// folder.
struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    /// Who runs the server: `initdb` and `postgres` refuse to run as root.
    run_as: Option<&'static str>,
}

impl Cluster {
    fn start(bin: &Path, scratch: &Path) -> Result<Cluster, DrillError> {
        let root = scratch.join(format!("cairn-drill-pg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("sock")).map_err(|e| DrillError::io(&root, e))?;
        let run_as = (nix::unistd::geteuid().is_root()).then_some("postgres");
        let c = Cluster {
            bin: bin.to_path_buf(),
            root,
            run_as,
        };
        if let Some(user) = run_as {
            // The server user must own its folders; root reaches them anyway.
            run(Command::new("chown").args(["-R", user]).arg(&c.root), "chown")?;
            for dir in [scratch, c.root.as_path()] {
                // The scratch folder may be private (0700): the server user
                // needs to pass through it, nothing more.
                let _ = Command::new("chmod").arg("o+x").arg(dir).status();
            }
        }
        let data = c.root.join("data");
        c.server(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C.UTF-8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        // No TCP at all: the socket in a folder only the server user (and
        // root) can enter is the only way in, so trust authentication
        // admits nobody else.
        let opts = format!(
            "-c listen_addresses='' -k {} -c fsync=off -c full_page_writes=off",
            c.root.join("sock").display()
        );
        let log = c.root.join("server.log");
        if let Err(e) = c.server(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-t".as_ref(),
                "300".as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        ) {
            let log = fs::read_to_string(&log).unwrap_or_default();
            let _ = fs::remove_dir_all(&c.root);
            return Err(DrillError::Failed {
                what: "starting the scratch PostgreSQL".into(),
                output: format!("{e}\n{}", super::tail(log.as_bytes())),
            });
        }
        Ok(c)
    }

    /// Runs a server program, as the server user when this is root.
    fn server(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<String, DrillError> {
        let path = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args).current_dir(&self.root);
        run(&mut cmd, tool)
    }

    /// `psql` on the socket as `postgres`, reading `file`; what it prints
    /// and the errors it reported.
    fn psql(&self, file: &Path, db: &str, extra: &[&str]) -> Result<(String, Vec<String>), DrillError> {
        let psql = self.tool("psql");
        let out = Command::new(&psql)
            .args(["-X", "-q", "-U", "postgres", "-d", db, "-h"])
            .arg(self.root.join("sock"))
            .args(extra)
            .arg("-f")
            .arg(file)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| DrillError::Spawn {
                program: psql.display().to_string(),
                source,
            })?;
        let errors = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("ERROR:") || l.contains("FATAL:"))
            .map(str::to_string)
            .collect();
        if !out.status.success() {
            return Err(DrillError::Failed {
                what: format!("psql -f {}", file.display()),
                output: super::tail(&out.stderr),
            });
        }
        Ok((String::from_utf8_lossy(&out.stdout).into_owned(), errors))
    }

    /// A client program: next to the server's, else on `PATH`.
    fn tool(&self, name: &str) -> PathBuf {
        let here = self.bin.join(name);
        if here.is_file() {
            here
        } else {
            PathBuf::from(name)
        }
    }

    fn load_and_count(&self, dump: &Path) -> Result<Verification, DrillError> {
        let plain = if is_custom_format(dump)? {
            let plain = self.root.join("dump.sql");
            run(
                Command::new(self.tool("pg_restore")).arg("-f").arg(&plain).arg(dump),
                "pg_restore -f (custom format to SQL)",
            )?;
            plain
        } else {
            dump.to_path_buf()
        };
        let scan = scan_dump(&plain)?;
        // Roles the dump gives objects to: a scratch cluster has only
        // `postgres`, and a missing owner would fail every ALTER ... OWNER.
        let roles = self.root.join("roles.sql");
        let create: String = scan
            .owners
            .iter()
            .filter(|r| *r != "postgres")
            .map(|r| format!("CREATE ROLE {r};\n"))
            .collect();
        fs::write(&roles, create).map_err(|e| DrillError::io(&roles, e))?;
        self.psql(&roles, "postgres", &[])?;
        let (_, errors) = self.psql(&plain, "postgres", &[])?;
        // A dump of a whole cluster creates `postgres` and the databases
        // the scratch cluster already has; nothing else may fail.
        let errors: Vec<String> = errors.into_iter().filter(|e| !e.contains("already exists")).collect();
        if !errors.is_empty() {
            return Ok(Verification::fail(
                KIND,
                format!(
                    "loading the dump reported {} error(s):\n{}",
                    errors.len(),
                    errors.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
                ),
            ));
        }
        let counted = self.count(&scan.tables)?;
        let mut wrong = Vec::new();
        let mut rows = 0u64;
        for ((db, table), want) in &scan.tables {
            let got = counted.get(&(db.clone(), table.clone())).copied();
            rows += want;
            if got != Some(*want) {
                wrong.push(format!(
                    "{db}: {table}: the dump holds {want} rows, PostgreSQL has {}",
                    got.map_or("none".into(), |g| g.to_string())
                ));
            }
        }
        Ok(if wrong.is_empty() {
            Verification {
                kind: KIND.into(),
                ok: true,
                output: format!(
                    "PostgreSQL loaded the dump: {} table(s), {rows} row(s), every count as in the dump",
                    scan.tables.len()
                ),
            }
        } else {
            Verification::fail(KIND, wrong.join("\n"))
        })
    }

    /// `count(*)` of each table, database by database, in one `psql`.
    fn count(&self, tables: &BTreeMap<(String, String), u64>) -> Result<BTreeMap<(String, String), u64>, DrillError> {
        if tables.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut sql = String::new();
        let mut db = String::new();
        for (d, t) in tables.keys() {
            if *d != db {
                sql.push_str(&format!("\\connect {}\n", quote_literal(d)));
                db = d.clone();
            }
            sql.push_str(&format!("SELECT count(*) FROM {t};\n"));
        }
        let file = self.root.join("count.sql");
        fs::write(&file, sql).map_err(|e| DrillError::io(&file, e))?;
        let (out, errors) = self.psql(&file, "postgres", &["-A", "-t", "-v", "ON_ERROR_STOP=1"])?;
        if let Some(e) = errors.first() {
            return Err(DrillError::Failed {
                what: "counting rows".into(),
                output: e.clone(),
            });
        }
        let counts: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if counts.len() != tables.len() {
            return Err(DrillError::Failed {
                what: "counting rows".into(),
                output: format!("{} counts for {} tables", counts.len(), tables.len()),
            });
        }
        Ok(tables.keys().cloned().zip(counts).collect())
    }

    fn stop(self) -> Result<(), DrillError> {
        let data = self.root.join("data");
        let stopped = self.server(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        fs::remove_dir_all(&self.root).map_err(|e| DrillError::io(&self.root, e))?;
        stopped.map(|_| ())
    }
}

/// `pg_dump -Fc` files begin with `PGDMP`.
fn is_custom_format(dump: &Path) -> Result<bool, DrillError> {
    let mut head = [0u8; 5];
    let mut f = fs::File::open(dump).map_err(|e| DrillError::io(dump, e))?;
    let n = f.read(&mut head).map_err(|e| DrillError::io(dump, e))?;
    Ok(n == 5 && &head == b"PGDMP")
}

/// What a plain SQL dump holds: rows per (database, table) in its `COPY`
/// blocks, and the roles it assigns objects to.
#[derive(Debug, Default, PartialEq)]
struct Scan {
    tables: BTreeMap<(String, String), u64>,
    owners: std::collections::BTreeSet<String>,
}

/// Reads a plain dump line by line (bytes: data need not be UTF-8); a
/// `\connect` (from `pg_dumpall` or `pg_dump -C`) switches the database the
/// following tables are in.
fn scan_dump(path: &Path) -> Result<Scan, DrillError> {
    let f = fs::File::open(path).map_err(|e| DrillError::io(path, e))?;
    scan(BufReader::with_capacity(1 << 20, f)).map_err(|e| DrillError::io(path, e))
}

fn scan(mut r: impl BufRead) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    let mut db = "postgres".to_string();
    let mut copying: Option<(String, String)> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let l = trim_eol(&line);
        if let Some(key) = &copying {
            if l == b"\\." {
                copying = None;
            } else {
                *out.tables.entry(key.clone()).or_default() += 1;
            }
            continue;
        }
        let Ok(text) = std::str::from_utf8(l) else { continue };
        if let Some(rest) = text.strip_prefix("COPY ") {
            if text.ends_with("FROM stdin;") {
                if let Some(table) = identifier_chain(rest) {
                    let key = (db.clone(), table);
                    out.tables.entry(key.clone()).or_default();
                    copying = Some(key);
                }
            }
        } else if let Some(rest) = text.strip_prefix("\\connect ") {
            if let Some(d) = connect_target(rest) {
                db = d;
            }
        } else if let Some(i) = text.find(" OWNER TO ") {
            let role = text[i + 10..].trim_end_matches(';').trim();
            if !role.is_empty() && !role.contains(' ') {
                out.owners.insert(role.to_string());
            }
        }
    }
    Ok(out)
}

fn trim_eol(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// `schema."Table"` at the start of `s`, as written (so it can be put back
/// into SQL unchanged): unquoted parts end at a space or `(`, quoted ones
/// at an unpaired `"`.
fn identifier_chain(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                out.push_str("\"\"");
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                out.push('"');
            }
            ' ' | '(' if !quoted => break,
            c => out.push(c),
        }
    }
    (!out.is_empty() && !quoted).then_some(out)
}

/// The database a `\connect` names: `-reuse-previous=on "dbname='x'"`
/// (what pg_dump writes since PostgreSQL 11) or a plain name.
fn connect_target(rest: &str) -> Option<String> {
    if let Some(i) = rest.find("dbname='") {
        let mut name = String::new();
        let mut chars = rest[i + 8..].chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    name.push('\'');
                    chars.next();
                }
                '\'' => return Some(name),
                c => name.push(c),
            }
        }
        return None;
    }
    let word = rest.split_whitespace().find(|w| !w.starts_with('-'))?;
    Some(word.trim_matches('"').to_string())
}

/// A psql variable-free literal for `\connect`: `"dbname='x'"` form, so
/// any name works.
fn quote_literal(db: &str) -> String {
    format!(
        "-reuse-previous=on \"dbname='{}'\"",
        db.replace('\'', "''").replace('"', "\"\"")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_copy_rows_per_database() {
        let dump = b"SET x = 1;\n\
            CREATE TABLE public.a (id int);\n\
            ALTER TABLE public.a OWNER TO app;\n\
            COPY public.a (id) FROM stdin;\n1\n2\n\\.\n\
            \\connect -reuse-previous=on \"dbname='shop''s'\"\n\
            COPY public.\"Odd (name)\" (id, \"x y\") FROM stdin;\n1\t\\N\n\\.\r\n\
            COPY public.empty (id) FROM stdin;\n\\.\n\
            \\connect other\n\
            COPY s.b (id) FROM stdin;\nCOPY not a statement\n\\.\n";
        let s = scan(&dump[..]).unwrap();
        let t = |d: &str, n: &str| (d.to_string(), n.to_string());
        assert_eq!(s.tables.get(&t("postgres", "public.a")), Some(&2));
        assert_eq!(s.tables.get(&t("shop's", "public.\"Odd (name)\"")), Some(&1));
        assert_eq!(s.tables.get(&t("shop's", "public.empty")), Some(&0));
        assert_eq!(s.tables.get(&t("other", "s.b")), Some(&1));
        assert_eq!(s.tables.len(), 4);
        assert!(s.owners.contains("app"));
    }

    #[test]
    fn quoted_identifiers_keep_their_quotes() {
        assert_eq!(
            identifier_chain("public.\"a\"\"b\" (x)").as_deref(),
            Some("public.\"a\"\"b\"")
        );
        assert_eq!(identifier_chain("\"unterminated"), None);
        assert_eq!(connect_target("mydb").as_deref(), Some("mydb"));
    }
}
