//! `backup --redis`, `--redis-rdb`, `--redis-data-dir`: the options, where
//! the Redis password comes from, and the lines the summary shows.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cairn_engine::{RedisDetails, RedisSource};
use clap::Args;
use serde::Deserialize;

use crate::output::bytes;
use crate::password::{self, Password};

/// The Redis options of `backup`.
#[derive(Debug, Args, Default)]
pub struct RedisArgs {
    /// Back up a live Redis server's dump, taken as a replica takes it
    /// (`redis-cli --rdb`): `redis://[USER@]HOST[:PORT][/DB]`, or `rediss://`
    /// for TLS (the server's `tls-port`). It is stored as
    /// `/redis/HOST:PORT/dump.rdb`. The password comes from
    /// CAIRN_REDIS_PASSWORD_FILE or cairn.toml's [redis] table, never the URL.
    #[arg(long, value_name = "URL", group = "redis_source", conflicts_with_all = ["paths", "stdin", "stdin_from_command"])]
    pub redis: Option<String>,
    /// Back up a Redis dump file (checked: header, version, checksum).
    #[arg(long, value_name = "FILE", group = "redis_source", conflicts_with_all = ["paths", "stdin", "stdin_from_command"])]
    pub redis_rdb: Option<PathBuf>,
    /// Back up a Redis data folder: its RDB (checked) and `appendonlydir/`.
    #[arg(long, value_name = "DIR", group = "redis_source", conflicts_with_all = ["paths", "stdin", "stdin_from_command"])]
    pub redis_data_dir: Option<PathBuf>,
    /// For `rediss://`: a PEM file of the CA that signed the server's
    /// certificate, trusted besides the system's roots (default: cairn.toml's
    /// [redis] ca-file).
    #[arg(long, value_name = "FILE", requires = "redis")]
    pub redis_ca_file: Option<PathBuf>,
    /// The RDB's name in --redis-data-dir (the server's `dbfilename`).
    #[arg(long, value_name = "NAME", default_value = "dump.rdb", requires = "redis_data_dir")]
    pub redis_dbfilename: String,
}

/// `[redis]` in cairn.toml: where the password of `--redis` servers comes
/// from (never the password itself).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedisConfig {
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    /// CA certificates (PEM) for `rediss://` servers.
    pub ca_file: Option<PathBuf>,
}

/// The password for `--redis`: CAIRN_REDIS_PASSWORD_FILE, then the
/// `[redis]` table's file or command; none means no `AUTH`.
fn redis_password(config: &RedisConfig) -> Result<Option<Password>> {
    if let Some(f) = std::env::var_os("CAIRN_REDIS_PASSWORD_FILE") {
        return password::from_file(Path::new(&f))
            .map(Some)
            .context("reading the Redis password (CAIRN_REDIS_PASSWORD_FILE)");
    }
    match (&config.password_file, &config.password_command) {
        (Some(_), Some(_)) => anyhow::bail!("give [redis] password-file or password-command in cairn.toml, not both"),
        (Some(f), None) => password::from_file(f)
            .map(Some)
            .context("reading the Redis password ([redis] password-file)"),
        (None, Some(c)) => password::from_command(c)
            .map(Some)
            .context("getting the Redis password ([redis] password-command)"),
        (None, None) => Ok(None),
    }
}

/// The Redis source the options ask for, if any.
pub fn source(a: &RedisArgs, config: &RedisConfig) -> Result<Option<RedisSource>> {
    if let Some(url) = &a.redis {
        let pw = redis_password(config)?;
        let ca = a.redis_ca_file.as_deref().or(config.ca_file.as_deref());
        return Ok(Some(RedisSource::live(url, pw.as_ref().map(|p| p.as_slice()), ca)?));
    }
    if let Some(f) = &a.redis_rdb {
        return Ok(Some(RedisSource::rdb_file(f)?));
    }
    if let Some(d) = &a.redis_data_dir {
        return Ok(Some(RedisSource::data_dir(d, &a.redis_dbfilename)?));
    }
    Ok(None)
}

/// The summary's lines about the dump.
pub fn report_lines(d: &RedisDetails) -> Vec<String> {
    let mut out = Vec::new();
    if d.server_version.is_empty() {
        out.push(format!("Redis:  {}", d.origin));
    } else {
        out.push(format!(
            "Redis:  {} (version {}, role {})",
            d.origin, d.server_version, d.role
        ));
    }
    let crc = match d.rdb_crc64 {
        Some(c) => format!("CRC-64 {c:016x} verified"),
        None => "no checksum in the dump".into(),
    };
    out.push(format!(
        "RDB:    version {}, {} ({} bytes), {crc}",
        d.rdb_version,
        bytes(d.rdb_size),
        d.rdb_size
    ));
    if !d.keyspace.is_empty() {
        let dbs: Vec<String> = d
            .keyspace
            .iter()
            .map(|k| format!("db{} {} keys ({} with expiry)", k.db, k.keys, k.expires))
            .collect();
        out.push(format!("Keys:   {}", dbs.join(", ")));
    }
    if d.aof {
        out.push("AOF:    appendonlydir/ backed up too".into());
    }
    out
}
