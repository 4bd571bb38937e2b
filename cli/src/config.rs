//! cairn.toml: named repositories and defaults. Unknown keys are errors that
//! name the key (serde's deny_unknown_fields).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    pub location: String,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
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

fn default_paths() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("cairn.toml")];
    if let Some(d) = dirs::config_dir() {
        v.push(d.join("cairn").join("cairn.toml"));
    }
    v
}

/// Loads `explicit` (which must exist) or the first default path that exists.
pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => default_paths().into_iter().find(|p| p.is_file()),
    };
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("configuration file {} is invalid", path.display()))
}

/// A repository to open: where, and where its password comes from.
#[derive(Debug)]
pub struct Target {
    pub location: String,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
}

impl FileConfig {
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
            },
            None => Target {
                location: name,
                password_file: None,
                password_command: None,
            },
        })
    }
}
