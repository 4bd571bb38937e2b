//! `cairn config check`: every problem of a configuration file, each with
//! its line and key, before a nightly job finds it.

use anyhow::{Context, Result};
use cairn_engine::Repository;
use serde::Serialize;

use std::path::Path;

use super::Ctx;
use crate::args::ConfigCheckArgs;
use crate::config::{self, FileConfig};
use crate::output;
use crate::password;

/// One problem: where and what.
#[derive(Debug, Serialize)]
struct Problem {
    /// 1-based line in the file, when known.
    line: Option<usize>,
    /// Dotted key (`sources.app.rpo`), when the problem has one.
    key: Option<String>,
    message: String,
}

pub fn run(ctx: &Ctx, explicit: Option<&Path>, a: &ConfigCheckArgs) -> Result<u8> {
    let path = config::path(explicit)
        .context("no configuration file: give --config FILE, or write ~/.config/cairn/cairn.toml")?;
    let text = config::read_text(&path)?;
    let mut problems = Vec::new();
    match toml::from_str::<FileConfig>(&text) {
        // serde stops at the first: syntax, a wrong type, or an unknown key
        // (with the keys that are allowed there).
        Err(e) => problems.push(Problem {
            line: e.span().map(|s| line_of(&text, s.start)),
            key: None,
            message: e.message().trim().to_string(),
        }),
        Ok(cfg) => {
            let doc = toml_edit::ImDocument::parse(text.as_str()).ok();
            let mut put = |keys: &[&str], message: String| {
                problems.push(Problem {
                    line: doc.as_ref().and_then(|d| span_of(d, keys)).map(|at| line_of(&text, at)),
                    key: Some(
                        keys.iter()
                            .filter(|k| !k.is_empty())
                            .copied()
                            .collect::<Vec<_>>()
                            .join("."),
                    ),
                    message,
                })
            };
            semantic(&cfg, &mut put);
            if a.online {
                for name in cfg.repositories.keys() {
                    if let Err(e) = open(ctx, &cfg, name) {
                        put(&["repositories", name], format!("cannot be opened: {e:#}"));
                    }
                }
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    if ctx.json {
        output::json(&serde_json::json!({"file": path, "ok": problems.is_empty(), "problems": problems}))?;
    } else {
        for p in &problems {
            eprintln!(
                "{}:{}: {}{}",
                path.display(),
                p.line.map_or("?".into(), |l| l.to_string()),
                p.key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default(),
                p.message
            );
        }
        if problems.is_empty() {
            if !ctx.quiet {
                output::outln(&format!("{}: no problems found", path.display()))?;
            }
        } else {
            eprintln!("{} problem(s) in {}", problems.len(), path.display());
        }
    }
    Ok(if problems.is_empty() { 0 } else { crate::EXIT_FAILURE })
}

/// What serde cannot see: values that parse but mean nothing, and names
/// that point nowhere.
fn semantic(cfg: &FileConfig, put: &mut dyn FnMut(&[&str], String)) {
    // A bare word that is no profile would silently become a local folder
    // of that name in the current directory: almost always a typo.
    let refers = |r: &str| cfg.repositories.contains_key(r) || r.contains('/') || r.contains(':');
    let nowhere = |r: &str| {
        format!(
            "{r:?} names no [repositories.{r}] profile (defined: {}); write a local folder as ./{r}",
            cfg.repositories.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    if let Some(r) = &cfg.repository {
        if !refers(r) {
            put(&["repository"], nowhere(r));
        }
    }
    for (name, p) in &cfg.repositories {
        for to in &p.copy_to {
            if !refers(to) {
                put(&["repositories", name, "copy-to"], nowhere(to));
            }
        }
        if p.password_file.is_some() && p.password_command.is_some() {
            put(
                &["repositories", name],
                "give password-file or password-command, not both".into(),
            );
        }
        if let Err(e) = cfg.target(Some(name)).and_then(|t| t.backend_options()) {
            put(&["repositories", name, "s3"], format!("{e:#}"));
        }
    }
    for (class, usd) in &cfg.prices {
        if let Some(why) = crate::config::price_problem(*usd) {
            put(&["prices", class], why);
        }
    }
    for (i, e) in cfg.retention.iter().enumerate() {
        if let Err(err) = e.rule(i + 1) {
            put(&["retention", &i.to_string()], format!("{err:#}"));
        }
    }
    for (name, s) in &cfg.sources {
        for (key, why) in s.problems() {
            put(&["sources", name, key], why);
        }
        match s.repository.as_deref().or(cfg.repository.as_deref()) {
            Some(r) if s.repository.is_some() && !refers(r) => put(&["sources", name, "repository"], nowhere(r)),
            Some(_) => {}
            None => put(
                &["sources", name],
                "no repository: set repository = \"...\" here or at the top of the file".into(),
            ),
        }
        for to in s.copy_to.iter().flatten() {
            if !refers(to) {
                put(&["sources", name, "copy-to"], nowhere(to));
            }
        }
    }
}

/// Opens the repository of profile `name` with the profile's own password.
fn open(ctx: &Ctx, cfg: &FileConfig, name: &str) -> Result<()> {
    let t = cfg.target(Some(name))?;
    let backend = ctx.backend(&t)?;
    let pw = match (&t.password_file, &t.password_command) {
        (Some(f), _) => password::from_file(f)?,
        (None, Some(c)) => password::from_command(c)?,
        (None, None) => password::repository(None, None)?,
    };
    Repository::open(backend, &pw)?;
    Ok(())
}

/// The byte offset where `keys` (a path of table keys; a number indexes
/// an array of tables, where the walk ends) is written, or where its
/// nearest written parent is.
fn span_of(doc: &toml_edit::ImDocument<&str>, keys: &[&str]) -> Option<usize> {
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best = None;
    for k in keys.iter().filter(|k| !k.is_empty()) {
        if let (toml_edit::Item::ArrayOfTables(a), Ok(i)) = (item, k.parse::<usize>()) {
            return a.get(i).and_then(|t| t.span()).map(|s| s.start).or(best);
        }
        let Some((key, v)) = item.as_table_like().and_then(|t| t.get_key_value(k)) else {
            return best;
        };
        best = key.span().map(|s| s.start).or(best);
        item = v;
    }
    best
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
