//! Redis as a backup source: a consistent RDB from a live server over the
//! replication protocol (as `redis-cli --rdb` takes it), a dump file, or a
//! data folder (the RDB and `appendonlydir/`). The RDB is checked while it
//! is read (`rdb`), so a truncated or corrupt dump fails the backup before
//! its snapshot is saved.
//!
//! Where it lands in a snapshot: a live server's dump is the file
//! `/redis/HOST:PORT/dump.rdb` (so two servers backed up from one machine
//! are two groups for parents and retention); a dump file and a data folder
//! keep their absolute paths, as files do.

mod drill;
mod rdb;
mod resp;
mod tls;

pub(crate) use drill::loaded_keyspace;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::snapshot::{RedisDetails, RedisKeyspace};
use crate::sources::{SourceError, Stream};

use rdb::{FactsCell, Validator};
use resp::{Conn, Reply};

/// Errors of the Redis source.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The server URL does not parse.
    #[error("bad Redis URL `{url}`: {detail}")]
    Url {
        /// The URL (without any password).
        url: String,
        /// Why.
        detail: String,
    },
    /// The URL holds a password.
    #[error("the Redis URL holds a password; passwords are never taken from the command line (it shows in the process list and shell history): put it in a file named by CAIRN_REDIS_PASSWORD_FILE, or set password-file or password-command in cairn.toml's [redis] table")]
    PasswordInUrl,
    /// TLS (`rediss://`) could not be set up or failed.
    #[error("TLS to Redis: {detail}")]
    Tls {
        /// Why.
        detail: String,
    },
    /// No connection.
    #[error("cannot connect to Redis at {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The server refused a command.
    #[error("the Redis server refused {what}: {message}")]
    Server {
        /// The command.
        what: String,
        /// Its error reply.
        message: String,
    },
    /// The password (or user) was not accepted.
    #[error("the Redis server did not accept the password: {message}")]
    Auth {
        /// The server's reply (it never contains the password).
        message: String,
    },
    /// The server wants a password and none was given.
    #[error("the Redis server requires a password: set CAIRN_REDIS_PASSWORD_FILE, or password-file or password-command in cairn.toml's [redis] table")]
    NoAuth,
    /// A reply of an unexpected kind.
    #[error("unexpected reply to {what} from the Redis server: {reply}")]
    Protocol {
        /// The command.
        what: String,
        /// The reply, shortened.
        reply: String,
    },
    /// The dump is not a whole, valid RDB.
    #[error("{what}: {detail}; no snapshot was saved")]
    Rdb {
        /// The dump.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A data folder is not what was expected.
    #[error("{0}")]
    DataDir(String),
}

/// How a live server sent its dump (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// `$<len>`: the server wrote the RDB to disk first.
    Sized,
    /// `$EOF:<mark>`: a diskless dump (`repl-diskless-sync yes`).
    EofMarked,
}

/// A parsed `redis://[user@]host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    /// `rediss://`.
    tls: bool,
    user: Option<String>,
    host: String,
    port: u16,
    db: Option<u32>,
}

impl RedisUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, RedisError> {
        let bad = |detail: &str| RedisError::Url {
            url: url.to_string(),
            detail: detail.to_string(),
        };
        let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(bad("it must start with redis:// (or rediss:// for TLS)")),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                if userinfo.contains(':') {
                    return Err(RedisError::PasswordInUrl);
                }
                (Some(userinfo.to_string()).filter(|u| !u.is_empty()), hp)
            }
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("the port is not a number from 1 to 65535"))?,
            None => 6379,
        };
        if port == 0 {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
        let db = match path.filter(|p| !p.is_empty()) {
            Some(p) => Some(
                p.parse()
                    .map_err(|_| bad("the part after the port must be a database number"))?,
            ),
            None => None,
        };
        Ok(Self {
            tls,
            user,
            host: host.to_string(),
            port,
            db,
        })
    }

    /// `host:port` (IPv6 in brackets).
    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL as recorded: never a password.
    fn origin(&self) -> String {
        let user = self.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let db = self.db.map(|d| format!("/{d}")).unwrap_or_default();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{user}{}{db}", self.host_port())
    }
}

/// A file's identity: Redis replaces its RDB by renaming a new file over
/// it, never rewriting it in place, so an unchanged identity means
/// unchanged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn identity(path: &Path) -> std::io::Result<FileIdentity> {
    let m = std::fs::metadata(path)?;
    Ok(FileIdentity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

enum Input {
    /// The RDB as a checked stream (live server or dump file).
    Stream { stream: Stream, facts: FactsCell },
    /// Files of a data folder, the RDB among them already checked.
    Files { rdb: PathBuf, before: FileIdentity },
}

/// A Redis dump to back up: made by [`RedisSource::live`],
/// [`RedisSource::rdb_file`] or [`RedisSource::data_dir`], and given to
/// [`crate::backup`] as [`crate::BackupSource::Redis`].
pub struct RedisSource {
    input: Option<Input>,
    paths: Vec<PathBuf>,
    details: RedisDetails,
    payload: Option<PayloadKind>,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("paths", &self.paths)
            .field("details", &self.details)
            .finish_non_exhaustive()
    }
}

fn expect_ok(conn: &mut Conn, args: &[&[u8]], what: &str) -> Result<Reply, RedisError> {
    match conn.command(args)? {
        Reply::Error(message) if message.starts_with("NOAUTH") => Err(RedisError::NoAuth),
        Reply::Error(message) => Err(RedisError::Server {
            what: what.to_string(),
            message,
        }),
        r => Ok(r),
    }
}

/// `redis_version`, `role` and the keyspace lines of `INFO`.
pub(crate) fn parse_info(text: &str) -> (String, String, Vec<RedisKeyspace>) {
    let (mut version, mut role, mut keyspace) = (String::new(), String::new(), Vec::new());
    for line in text.lines() {
        let Some((key, value)) = line.trim_end().split_once(':') else {
            continue;
        };
        match key {
            "redis_version" => version = value.to_string(),
            "role" => role = value.to_string(),
            _ => {
                let Some(db) = key.strip_prefix("db").and_then(|d| d.parse().ok()) else {
                    continue;
                };
                let mut ks = RedisKeyspace {
                    db,
                    ..Default::default()
                };
                for field in value.split(',') {
                    match field.split_once('=') {
                        Some(("keys", n)) => ks.keys = n.parse().unwrap_or(0),
                        Some(("expires", n)) => ks.expires = n.parse().unwrap_or(0),
                        _ => {}
                    }
                }
                keyspace.push(ks);
            }
        }
    }
    keyspace.sort_by_key(|k| k.db);
    (version, role, keyspace)
}

impl RedisSource {
    /// Connects to the server at `url` (`redis://[user@]host[:port][/db]`,
    /// or `rediss://` for TLS, checked against the system's roots and the
    /// PEM certificates of `ca_file`; a dump holds every database, the
    /// number is only recorded), logs in
    /// with `password` if given, reads `INFO`, and asks for the dump as a
    /// replica would (`REPLCONF capa eof`, `REPLCONF rdb-only 1`, `SYNC`).
    /// The dump is then read by the backup, straight into the chunker.
    pub fn live(url: &str, password: Option<&[u8]>, ca_file: Option<&Path>) -> Result<Self, RedisError> {
        let url = RedisUrl::parse(url)?;
        let origin = url.origin();
        let tls = match (url.tls, ca_file) {
            (true, ca) => Some(tls::client_config(ca)?),
            (false, Some(_)) => {
                return Err(RedisError::Tls {
                    detail: "a CA file was given for a redis:// URL; use rediss:// for TLS".into(),
                })
            }
            (false, None) => None,
        };
        let mut conn = Conn::connect(&url.host, url.port, tls)?;
        if let Some(pw) = password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = &url.user {
                args.push(u.as_bytes());
            }
            args.push(pw);
            match conn.command(&args)? {
                Reply::Simple(_) => {}
                Reply::Error(message) => return Err(RedisError::Auth { message }),
                other => {
                    return Err(RedisError::Protocol {
                        what: "AUTH".into(),
                        reply: format!("{other:?}"),
                    })
                }
            }
        } else if url.user.is_some() {
            return Err(RedisError::NoAuth);
        }
        let info = match expect_ok(&mut conn, &[b"INFO"], "INFO")? {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            other => {
                return Err(RedisError::Protocol {
                    what: "INFO".into(),
                    reply: format!("{other:?}"),
                })
            }
        };
        let (server_version, role, keyspace) = parse_info(&info);
        expect_ok(&mut conn, &[b"REPLCONF", b"capa", b"eof"], "REPLCONF capa eof")?;
        // Servers before 7.0 do not know rdb-only: they then also send the
        // replication stream after the dump, which the payload reader
        // leaves unread.
        if let Err(e) = expect_ok(&mut conn, &[b"REPLCONF", b"rdb-only", b"1"], "REPLCONF rdb-only") {
            tracing::debug!("{origin}: {e} (an older server; going on without it)");
        }
        conn.send(&[b"SYNC"])?;
        let (form, keepalives) = conn.sync_preamble()?;
        let kind = match form {
            resp::PayloadForm::Sized(_) => PayloadKind::Sized,
            resp::PayloadForm::EofMarked(_) => PayloadKind::EofMarked,
        };
        tracing::info!("{origin}: the server sends its RDB as {form} (after {keepalives} keep-alive newline(s))");
        let path = PathBuf::from(format!("/redis/{}/dump.rdb", url.host_port()));
        let facts = FactsCell::default();
        let reader = Validator::new(conn.into_payload(form), format!("the RDB from {origin}"), facts.clone());
        Ok(Self {
            input: Some(Input::Stream {
                stream: Stream::from_reader(Box::new(reader)),
                facts,
            }),
            paths: vec![path],
            details: RedisDetails {
                origin,
                server_version,
                role,
                keyspace,
                ..Default::default()
            },
            payload: Some(kind),
        })
    }

    /// A dump file, checked as it is read into the backup (one read).
    pub fn rdb_file(path: &Path) -> Result<Self, RedisError> {
        let abs = absolute(path)?;
        let file = File::open(&abs).map_err(|source| RedisError::Io {
            what: format!("opening {}", abs.display()),
            source,
        })?;
        let facts = FactsCell::default();
        let reader = Validator::new(file, abs.display().to_string(), facts.clone());
        Ok(Self {
            input: Some(Input::Stream {
                stream: Stream::from_reader(Box::new(reader)),
                facts,
            }),
            details: RedisDetails {
                origin: abs.display().to_string(),
                ..Default::default()
            },
            paths: vec![abs],
            payload: None,
        })
    }

    /// A data folder: its RDB (`dbfilename`, `dump.rdb` by default) is
    /// checked now, then it and `appendonlydir/` (when present, with its
    /// manifest) are backed up as files. Should a save replace the RDB
    /// before the backup has read it, the backup fails rather than store
    /// an unchecked dump.
    pub fn data_dir(dir: &Path, dbfilename: &str) -> Result<Self, RedisError> {
        let dir = absolute(dir)?;
        if dbfilename.is_empty() || dbfilename.contains('/') {
            return Err(RedisError::DataDir(format!(
                "`{dbfilename}` is not a file name (Redis's dbfilename is a name inside the data folder)"
            )));
        }
        let rdb = dir.join(dbfilename);
        let io_err = |what: String| move |source| RedisError::Io { what, source };
        let before = identity(&rdb).map_err(io_err(format!(
            "{} (the data folder's RDB; name another with --redis-dbfilename)",
            rdb.display()
        )))?;
        let file = File::open(&rdb).map_err(io_err(format!("opening {}", rdb.display())))?;
        let facts = rdb::validate_all(file, &rdb.display().to_string())?;
        let mut paths = vec![rdb.clone()];
        let aof_dir = dir.join("appendonlydir");
        let aof = aof_dir.is_dir();
        if aof {
            let has_manifest = std::fs::read_dir(&aof_dir)
                .map_err(io_err(format!("reading {}", aof_dir.display())))?
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".manifest"));
            if !has_manifest {
                return Err(RedisError::DataDir(format!(
                    "{} has no manifest (*.manifest): not a Redis 7 append-only folder, or a broken one",
                    aof_dir.display()
                )));
            }
            paths.push(aof_dir);
        }
        Ok(Self {
            input: Some(Input::Files { rdb, before }),
            paths,
            details: RedisDetails {
                origin: dir.display().to_string(),
                rdb_version: facts.version,
                rdb_size: facts.size,
                rdb_crc64: facts.crc64,
                aof,
                ..Default::default()
            },
            payload: None,
        })
    }

    /// How a live server sent its dump (`None` for files).
    pub fn payload_kind(&self) -> Option<PayloadKind> {
        self.payload
    }

    /// What the snapshot's `paths` are.
    pub(crate) fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The checked stream to store as the snapshot's one file, if this is
    /// not a data folder.
    pub(crate) fn take_stream(&mut self) -> Option<Stream> {
        match self.input.take() {
            Some(Input::Stream { stream, facts }) => {
                self.input = Some(Input::Stream {
                    stream: Stream::from_reader(Box::new(std::io::empty())),
                    facts,
                });
                Some(stream)
            }
            other => {
                self.input = other;
                None
            }
        }
    }

    /// After the data was stored, before the snapshot is saved: the facts
    /// of the checked RDB, or why the snapshot must not be saved.
    pub(crate) fn finish(self) -> Result<RedisDetails, SourceError> {
        let mut d = self.details;
        let what = d.origin.clone();
        let fail = |detail: String| SourceError::Read {
            what: what.clone(),
            source: std::io::Error::other(RedisError::Rdb {
                what: what.clone(),
                detail,
            }),
        };
        match self.input {
            Some(Input::Stream { facts, .. }) => {
                let f = facts.lock().ok().and_then(|c| *c);
                let f = f.ok_or_else(|| fail("the dump was not read to its end".into()))?;
                d.rdb_version = f.version;
                d.rdb_size = f.size;
                d.rdb_crc64 = f.crc64;
            }
            Some(Input::Files { rdb, before }) => {
                if identity(&rdb).ok() != Some(before) {
                    return Err(fail(format!(
                        "{} was replaced while it was backed up (a save ran meanwhile): run the backup again",
                        rdb.display()
                    )));
                }
            }
            None => return Err(fail("the source was not read".into())),
        }
        Ok(d)
    }
}

/// `path` made absolute, with `.` and `..` resolved by name (as the walk
/// does for files), so the snapshot's paths read cleanly.
fn absolute(path: &Path) -> Result<PathBuf, RedisError> {
    let abs = std::path::absolute(path).map_err(|source| RedisError::Io {
        what: format!("resolving {}", path.display()),
        source,
    })?;
    let mut clean = PathBuf::from("/");
    for c in abs.components() {
        match c {
            std::path::Component::Normal(n) => clean.push(n),
            std::path::Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    Ok(clean)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RedisUrl::parse("redis://backup@db1.example:6380/2").unwrap();
        assert_eq!(u.user.as_deref(), Some("backup"));
        assert_eq!((u.host.as_str(), u.port, u.db), ("db1.example", 6380, Some(2)));
        assert_eq!(u.origin(), "redis://backup@db1.example:6380/2");
        let u = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!((u.port, u.origin()), (6379, "redis://localhost:6379".to_string()));
        let u = RedisUrl::parse("redis://[::1]:7000").unwrap();
        assert_eq!((u.host.as_str(), u.host_port()), ("::1", "[::1]:7000".to_string()));
        assert!(matches!(
            RedisUrl::parse("redis://u:secret@h:1"),
            Err(RedisError::PasswordInUrl)
        ));
        assert!(matches!(
            RedisUrl::parse("redis://:secret@h:1"),
            Err(RedisError::PasswordInUrl)
        ));
        let e = RedisUrl::parse("redis://u:secret@h:1").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        let tls = RedisUrl::parse("rediss://u@h:1/2").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.origin(), "rediss://u@h:1/2");
        assert!(!RedisUrl::parse("redis://h").unwrap().tls);
        for bad in [
            "http://h:1",
            "redis://:1",
            "redis://h:x",
            "redis://h:0",
            "redis://h:1/x",
        ] {
            assert!(matches!(RedisUrl::parse(bad), Err(RedisError::Url { .. })), "{bad}");
        }
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n# Replication\r\nrole:master\r\n\
                    # Keyspace\r\ndb3:keys=5,expires=0,avg_ttl=0\r\ndb0:keys=200000,expires=1000,avg_ttl=3599\r\n";
        let (v, role, ks) = parse_info(info);
        assert_eq!((v.as_str(), role.as_str()), ("7.0.15", "master"));
        assert_eq!(
            ks,
            vec![
                RedisKeyspace {
                    db: 0,
                    keys: 200_000,
                    expires: 1000
                },
                RedisKeyspace {
                    db: 3,
                    keys: 5,
                    expires: 0
                }
            ]
        );
    }
}
