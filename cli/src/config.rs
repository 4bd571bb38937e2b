//! cairn.toml: named repositories and defaults. Unknown keys are errors that
//! name the key (serde's deny_unknown_fields). Read from `--config FILE` or
//! the user's `~/.config/cairn/cairn.toml`, never from the current folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cairn_engine::{BackendOptions, DataStorageClass, ObjectLock, ObjectLockMode, S3Credentials, S3Options};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Default repository: a profile name or a location.
    pub repository: Option<String>,
    #[serde(default)]
    pub repositories: BTreeMap<String, Profile>,
    #[serde(default)]
    pub backup: BackupDefaults,
    /// `[[retention]]`: the retention table `forget --policy` applies.
    #[serde(default)]
    pub retention: Vec<crate::retention::RetentionEntry>,
    /// `[redis]`: where the password of `backup --redis` comes from.
    #[serde(default)]
    pub redis: crate::source_redis::RedisConfig,
    /// `[s3-source]`: how to reach the bucket of `backup --s3-source` and
    /// `restore --to-s3` (same keys as a repository's s3 table).
    pub s3_source: Option<S3Profile>,
    /// `[sources.NAME]`: the backup policy's sources (see `policy`).
    #[serde(default)]
    pub sources: BTreeMap<String, crate::policy::SourceConfig>,
    /// `[prices]`: storage class = US dollars per GB-month, for `stats
    /// --cost` (over AWS's us-east-1 list prices).
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
}

/// Why a `[prices]` entry is unusable, if it is: a price is US dollars per
/// GB-month, a finite number of 0 or more.
pub fn price_problem(usd: f64) -> Option<String> {
    (!usd.is_finite() || usd < 0.0).then(|| format!("{usd} is not a price: give US dollars per GB-month, 0 or more"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    pub location: String,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    /// `[repositories.NAME.s3]`: settings of an `s3:` location.
    pub s3: Option<S3Profile>,
    /// Repositories (profile names or locations) each backup with this
    /// profile is copied to right after it is saved; `cairn copy` without
    /// `--to` copies to them.
    #[serde(default)]
    pub copy_to: Vec<String>,
}

/// How to reach an S3 repository. Secrets never go here, only where to read
/// them (a file or a command); without either, the standard AWS chain
/// (environment, shared files, instance role) is used.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Profile {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub connections: Option<usize>,
    /// Storage class of data packs (everything else stays STANDARD).
    pub storage_class: Option<String>,
    pub multipart_threshold_mib: Option<u64>,
    pub part_size_mib: Option<u64>,
    pub credentials_file: Option<PathBuf>,
    pub credentials_command: Option<String>,
    /// `object-lock = { mode = "compliance" | "governance", days = N }`: S3
    /// Object Lock retention on every object written (the bucket must have
    /// Object Lock enabled); `days` defaults to the longest `max-age` of the
    /// `[[retention]]` table.
    pub object_lock: Option<ObjectLockSetting>,
}

/// The `object-lock` setting of an S3 profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockSetting {
    pub mode: String,
    pub days: Option<u32>,
}

impl ObjectLockSetting {
    /// Fills in `days`, when not given, with the longest `max-age` of the
    /// retention table (in whole days, rounded up: a year counts 366 days, a
    /// month 31), so that no snapshot the table still keeps loses its
    /// protection early.
    fn default_days(&mut self, table: &[crate::retention::RetentionEntry]) -> Result<()> {
        if self.days.is_some() {
            return Ok(());
        }
        let mut longest = None;
        for age in table.iter().filter_map(|e| e.max_age.as_deref()) {
            let d = cairn_engine::RetentionDuration::parse(age).context("retention max-age")?;
            let days = i64::from(d.years) * 366
                + i64::from(d.months) * 31
                + i64::from(d.days)
                + (i64::from(d.hours) + 23) / 24;
            longest = longest.max(Some(days));
        }
        let days = longest.context(
            "s3 object-lock has no `days` and the [[retention]] table has no max-age to take it from: give days = N",
        )?;
        self.days = Some(u32::try_from(days).context("s3 object-lock: the longest max-age is too long")?);
        Ok(())
    }
}

impl S3Profile {
    /// The engine's S3 options, checked against the engine's limits
    /// (`S3Options::validate`), which `S3Backend::open` applies too.
    pub fn options(&self) -> Result<S3Options> {
        let mib = |m: u64, key: &str| {
            m.checked_mul(1024 * 1024)
                .with_context(|| format!("s3 {key} {m} is too large"))
        };
        let mut o = S3Options {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            path_style: self.path_style,
            ..Default::default()
        };
        if let Some(c) = self.connections {
            o.connections = c;
        }
        if let Some(c) = &self.storage_class {
            o.data_storage_class = c.parse::<DataStorageClass>().map_err(anyhow::Error::msg)?;
        }
        if let Some(m) = self.multipart_threshold_mib {
            o.multipart_threshold = mib(m, "multipart-threshold-mib")?;
        }
        if let Some(m) = self.part_size_mib {
            o.multipart_part_size = mib(m, "part-size-mib")?;
        }
        o.credentials = match (&self.credentials_file, &self.credentials_command) {
            (Some(_), Some(_)) => anyhow::bail!("give s3 credentials-file or credentials-command, not both"),
            (Some(f), None) => S3Credentials::File(f.clone()),
            (None, Some(c)) => S3Credentials::Command(c.clone()),
            (None, None) => S3Credentials::Chain,
        };
        if let Some(l) = &self.object_lock {
            let mode = l.mode.parse::<ObjectLockMode>().map_err(anyhow::Error::msg)?;
            match l.days {
                Some(0) | None => anyhow::bail!("s3 object-lock needs days = N of at least 1"),
                Some(d) => o.object_lock = Some(ObjectLock::days(mode, d)),
            }
        }
        o.validate()?;
        Ok(o)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackupDefaults {
    #[serde(default)]
    pub exclude: Vec<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub one_file_system: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The user's own configuration file, read when `--config` names none.
/// Never one in the current folder: a folder others can write to would then
/// choose the password command cairn runs.
fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("cairn").join("cairn.toml"))
}

/// The file `load` reads: `explicit`, else the user's own if it exists.
pub fn path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => default_path().filter(|p| p.is_file()),
    }
}

/// The text of the configuration file at `path`, refused unless only its
/// owner (the user or root) may write it: it can name commands to run.
/// Kept in zeroized memory, as the engine reads it: a careless file may
/// hold a secret.
pub fn read_text(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    let mut bytes = cairn_engine::read_private_file(path, "configuration file")?;
    let text = String::from_utf8(std::mem::take(&mut *bytes))
        .with_context(|| format!("configuration file {} is not UTF-8 text", path.display()))?;
    Ok(zeroize::Zeroizing::new(text))
}

/// Loads `explicit` (which must exist) or, if it exists, the user's
/// `~/.config/cairn/cairn.toml`.
pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
    let Some(path) = path(explicit) else {
        return Ok(FileConfig::default());
    };
    let text = read_text(&path)?;
    toml::from_str(&text).with_context(|| format!("configuration file {} is invalid", path.display()))
}

/// A repository to open: where, and where its password comes from.
#[derive(Debug)]
pub struct Target {
    pub location: String,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    pub s3: Option<S3Profile>,
    /// The profile's `copy-to` list (empty for a bare location).
    pub copy_to: Vec<String>,
}

impl Target {
    /// How to open the location (S3 settings from the profile).
    pub fn backend_options(&self) -> Result<BackendOptions> {
        let mut o = BackendOptions::default();
        if let Some(s3) = &self.s3 {
            o.s3 = s3
                .options()
                .with_context(|| format!("the s3 settings of repository {} are invalid", self.location))?;
        }
        Ok(o)
    }
}

impl FileConfig {
    /// The price table of `stats --cost`: AWS's list prices with `[prices]`
    /// over them.
    pub fn prices(&self) -> Result<cairn_engine::Prices> {
        let mut p = cairn_engine::Prices::default();
        for (class, usd) in &self.prices {
            if let Some(why) = price_problem(*usd) {
                anyhow::bail!("cairn.toml [prices] {class}: {why}");
            }
            p.set(class, *usd);
        }
        Ok(p)
    }

    /// Resolves `-r`/CAIRN_REPOSITORY (or the config's default) to a location.
    pub fn target(&self, repo: Option<&str>) -> Result<Target> {
        let name = repo
            .map(str::to_string)
            .or_else(|| self.repository.clone())
            .context("no repository given: use -r/--repo, set CAIRN_REPOSITORY, or set `repository` in cairn.toml")?;
        Ok(match self.repositories.get(&name) {
            Some(p) => Target {
                location: p.location.clone(),
                password_file: p.password_file.clone(),
                password_command: p.password_command.clone(),
                s3: match p.s3.clone() {
                    Some(mut s3) => {
                        if let Some(l) = s3.object_lock.as_mut() {
                            l.default_days(&self.retention)
                                .with_context(|| format!("repository {name}"))?;
                        }
                        Some(s3)
                    }
                    None => None,
                },
                copy_to: p.copy_to.clone(),
            },
            None => Target {
                location: name,
                password_file: None,
                password_command: None,
                s3: None,
                copy_to: Vec::new(),
            },
        })
    }
}
