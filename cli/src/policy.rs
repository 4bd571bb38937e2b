//! `[sources.NAME]` of cairn.toml: what each source of the backup policy
//! is, where its snapshots go, and the recovery objectives it is held to.
//!
//! A source's snapshots are found by what they record (host, tags, paths
//! and source kind), not by a name stored in them, so a plain
//! `cairn backup` of the same paths with the same tags counts too.

use anyhow::{bail, Context, Result};
use cairn_engine::{Snapshot, SourceKind};
use serde::Deserialize;

/// One `[sources.NAME]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// files, cassandra, redis, command, s3.
    pub kind: String,
    /// What a files or cassandra source reads.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Where a redis source reads its RDB (`redis://host:port`), or the
    /// bucket an s3 source reads (`s3://bucket/prefix`).
    pub url: Option<String>,
    /// The program (and its arguments) whose output a command source
    /// stores, e.g. `["cockroach", "sql", "-e", "..."]`.
    pub command: Option<Vec<String>>,
    /// Name a command source's output is stored under (default
    /// `NAME.out`).
    pub filename: Option<String>,
    /// The `nodetool snapshot -t TAG` a cassandra source backs up.
    pub snapshot_tag: Option<String>,
    /// Run with `sh -c` before the backup (e.g. `nodetool snapshot`); if it
    /// fails, there is no backup.
    pub pre_command: Option<String>,
    /// Run with `sh -c` after the backup, whatever its outcome (e.g.
    /// `nodetool clearsnapshot`).
    pub post_command: Option<String>,
    /// A drill's verification of the restored data, through `sh -c` in the
    /// restored copy of the first of `paths` (else the restore folder), with
    /// CAIRN_DRILL_DIR (the restore folder), CAIRN_DRILL_PATH (where it
    /// runs), CAIRN_DRILL_SNAPSHOT and CAIRN_DRILL_SOURCE set; exit 0
    /// passes. Replaces the built-in step.
    pub verify_command: Option<String>,
    /// The built-in verification a drill runs: `postgresql` (load the
    /// restored SQL dump into a scratch PostgreSQL and compare row counts),
    /// `redis`, `cassandra`, or `none` (restore --verify alone). Default:
    /// by what the snapshot recorded (a Redis dump, Cassandra tables).
    pub verify: Option<String>,
    /// Where PostgreSQL's server binaries are (`initdb`, `pg_ctl`), for
    /// `verify = "postgresql"`; default: the newest
    /// `/usr/lib/postgresql/N/bin`, else `PATH`.
    pub postgresql_bin: Option<String>,
    /// Whether `cairn run` applies `forget --policy` to the source's
    /// snapshots after its backup (default: when there is a retention table).
    pub forget: Option<bool>,
    /// Tags its snapshots carry.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Host its snapshots are recorded under (default: any host).
    pub host: Option<String>,
    /// Recovery point objective: the newest snapshot may be at most this
    /// old (`15m`, `24h`, `7d`; jiff's friendly duration format).
    pub rpo: Option<String>,
    /// Recovery time class: P1 = 1 h, P2 = 4 h, P3 = 24 h.
    pub rto_class: Option<String>,
    /// Repository (profile name or location) its snapshots are in; the
    /// file's default `repository` when absent.
    pub repository: Option<String>,
    /// Repositories its snapshots are copied to; the repository profile's
    /// `copy-to` when absent.
    pub copy_to: Option<Vec<String>>,
}

/// The source kinds a policy can name, and the snapshot kind each records.
const KINDS: [&str; 5] = ["files", "cassandra", "redis", "command", "s3"];

/// The built-in drill verifications `verify` can name.
pub const VERIFIERS: [&str; 4] = ["postgresql", "redis", "cassandra", "none"];

impl SourceConfig {
    /// Checks what can be checked without running anything; the first
    /// problem, if any.
    pub fn validate(&self, name: &str) -> Result<()> {
        match self.problems().into_iter().next() {
            Some((key, why)) => bail!("source {name}: {key}: {why}"),
            None => Ok(()),
        }
    }

    /// Every problem, each with the key at fault (`""`: the table itself).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !KINDS.contains(&self.kind.as_str()) {
            out.push(("kind", format!("{:?} is not one of {}", self.kind, KINDS.join(", "))));
        }
        match self.kind.as_str() {
            "redis" if self.url.is_none() => out.push(("", "a redis source needs url = \"redis://HOST:PORT\"".into())),
            "s3" if self.url.is_none() => out.push(("", "an s3 source needs url = \"s3://BUCKET/PREFIX\"".into())),
            "cassandra" if self.snapshot_tag.is_none() => out.push((
                "",
                "a cassandra source needs snapshot-tag = \"TAG\" (of nodetool snapshot -t)".into(),
            )),
            "command" if self.command.as_ref().is_none_or(|c| c.is_empty()) => out.push((
                "",
                "a command source needs command = [\"program\", \"arg\", ...]".into(),
            )),
            "files" | "cassandra" if self.paths.is_empty() => {
                out.push(("", format!("a {} source needs paths = [...]", self.kind)))
            }
            _ => {}
        }
        if let Some(v) = self.verify.as_deref().filter(|v| !VERIFIERS.contains(v)) {
            out.push(("verify", format!("{v:?} is not one of {}", VERIFIERS.join(", "))));
        }
        if let Some(Err(e)) = self.rpo.as_deref().map(parse_duration) {
            out.push(("rpo", format!("{e:#}")));
        }
        if let Some(Err(e)) = self.rto_class.as_deref().map(rto_seconds) {
            out.push(("rto-class", format!("{e:#}")));
        }
        out
    }

    /// The RPO in seconds, if one is set.
    pub fn rpo_seconds(&self) -> Result<Option<u64>> {
        self.rpo.as_deref().map(parse_duration).transpose()
    }

    /// Whether `s` is one of this source's snapshots: its host (when set),
    /// every tag, every path (when set) and the kind.
    pub fn matches(&self, s: &Snapshot) -> bool {
        let kind_ok = match self.kind.as_str() {
            "files" => matches!(s.source, SourceKind::Files),
            "cassandra" => matches!(s.source, SourceKind::Cassandra),
            "redis" => matches!(s.source, SourceKind::Redis),
            "command" => matches!(s.source, SourceKind::Command { .. } | SourceKind::Stdin { .. }),
            "s3" => matches!(s.source, SourceKind::S3),
            _ => false,
        };
        kind_ok
            && self.host.as_ref().is_none_or(|h| *h == s.host)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self
                .paths
                .iter()
                .all(|p| s.paths.iter().any(|x| x == p.trim_end_matches('/') || x == p))
    }
}

/// Seconds in a duration such as `15m`, `24h`, `7d` or `1h 30m` (days are
/// 24 hours here: an RPO is a span of wall time, not a calendar date).
pub fn parse_duration(text: &str) -> Result<u64> {
    let span: jiff::Span = text
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 15m, 24h or 7d"))?;
    let secs = span
        .total((jiff::Unit::Second, jiff::SpanRelativeTo::days_are_24_hours()))
        .with_context(|| format!("{text:?}: weeks, months and years are not fixed lengths; use days"))?;
    if secs <= 0.0 {
        bail!("{text:?} must be longer than zero");
    }
    Ok(secs.round() as u64)
}

/// The recovery time a class allows, in seconds (the policy's classes).
pub fn rto_seconds(class: &str) -> Result<u64> {
    Ok(match class.trim().to_ascii_uppercase().as_str() {
        "P1" => 3600,
        "P2" => 4 * 3600,
        "P3" => 24 * 3600,
        other => bail!("{other:?} is not an RTO class: P1 (1 h), P2 (4 h) or P3 (24 h)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_seconds() {
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86_400);
        assert_eq!(parse_duration("1h 30m").unwrap(), 5400);
        for bad in ["", "soon", "0m", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rto_classes_are_the_policys() {
        assert_eq!(rto_seconds("P1").unwrap(), 3600);
        assert_eq!(rto_seconds("p2").unwrap(), 14_400);
        assert_eq!(rto_seconds("P3").unwrap(), 86_400);
        assert!(rto_seconds("P4").is_err());
    }
}
