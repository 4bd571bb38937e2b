//! The `[[retention]]` table of cairn.toml: ordered rules, the first that
//! matches a snapshot decides. Unknown keys are errors that name the key.
//!
//! ```toml
//! [[retention]]
//! match = { tag = "audit" }
//! max-age = "5y"
//!
//! [[retention]]
//! match = { tag = "db" }
//! max-age = "90d"
//! keep-daily = 90
//! ```

use anyhow::{bail, Context, Result};
use cairn_engine::{KeepRules, RetentionDuration, RetentionRule, RuleMatch, SourceKind};
use serde::Deserialize;

/// Which snapshots a rule is for.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchEntry {
    pub tag: Option<String>,
    pub source: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
}

/// One rule as written. Counts are a number, or -1 for unlimited.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionEntry {
    #[serde(rename = "match", default)]
    pub matches: MatchEntry,
    pub max_age: Option<String>,
    pub keep_last: Option<i32>,
    pub keep_hourly: Option<i32>,
    pub keep_daily: Option<i32>,
    pub keep_weekly: Option<i32>,
    pub keep_monthly: Option<i32>,
    pub keep_yearly: Option<i32>,
    pub keep_within: Option<String>,
    pub keep_within_hourly: Option<String>,
    pub keep_within_daily: Option<String>,
    pub keep_within_weekly: Option<String>,
    pub keep_within_monthly: Option<String>,
    pub keep_within_yearly: Option<String>,
    #[serde(default)]
    pub keep_tag: Vec<String>,
}

/// The keep rules from counts, durations and tag lists, as flags or table
/// keys give them (`what` names the source in errors).
pub struct KeepSpec<'a> {
    pub counts: [i32; 6],
    pub within: [Option<&'a str>; 6],
    pub tags: &'a [String],
}

impl KeepSpec<'_> {
    pub fn rules(&self, what: &str) -> Result<KeepRules> {
        const WITHIN: [&str; 6] = ["", "-hourly", "-daily", "-weekly", "-monthly", "-yearly"];
        for c in self.counts {
            if c < -1 {
                bail!("{what}: a keep count is a number or -1 (unlimited), not {c}");
            }
        }
        let mut w = [RetentionDuration::default(); 6];
        for (i, text) in self.within.iter().enumerate() {
            if let Some(t) = text {
                w[i] = RetentionDuration::parse(t).with_context(|| format!("{what}: keep-within{}", WITHIN[i]))?;
            }
        }
        let [last, hourly, daily, weekly, monthly, yearly] = self.counts;
        let [within, within_hourly, within_daily, within_weekly, within_monthly, within_yearly] = w;
        Ok(KeepRules {
            last,
            hourly,
            daily,
            weekly,
            monthly,
            yearly,
            within,
            within_hourly,
            within_daily,
            within_weekly,
            within_monthly,
            within_yearly,
            tags: self
                .tags
                .iter()
                .map(|l| l.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect())
                .collect(),
        })
    }
}

impl RetentionEntry {
    /// The engine's rule for entry `n` (1-based), or what is wrong with it.
    pub fn rule(&self, n: usize) -> Result<RetentionRule> {
        let m = &self.matches;
        let mut parts = Vec::new();
        for (k, v) in [
            ("tag", &m.tag),
            ("source", &m.source),
            ("host", &m.host),
            ("path", &m.path),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        let name = format!(
            "{n} ({})",
            if parts.is_empty() {
                "all".into()
            } else {
                parts.join(", ")
            }
        );
        let what = format!("retention rule {name}");
        let sources = SourceKind::LABELS;
        if let Some(s) = m.source.as_deref().filter(|s| !sources.contains(s)) {
            bail!("{what}: unknown source `{s}` (use {})", sources.join(", "));
        }
        let mut matcher = RuleMatch::default();
        matcher.tag = m.tag.clone();
        matcher.source = m.source.clone();
        matcher.host = m.host.clone();
        if let Some(p) = &m.path {
            matcher = matcher.with_path(p).map_err(anyhow::Error::msg)?;
        }
        let max_age = self
            .max_age
            .as_deref()
            .map(RetentionDuration::parse)
            .transpose()
            .with_context(|| format!("{what}: max-age"))?;
        let keep = KeepSpec {
            counts: [
                self.keep_last,
                self.keep_hourly,
                self.keep_daily,
                self.keep_weekly,
                self.keep_monthly,
                self.keep_yearly,
            ]
            .map(|c| c.unwrap_or(0)),
            within: [
                self.keep_within.as_deref(),
                self.keep_within_hourly.as_deref(),
                self.keep_within_daily.as_deref(),
                self.keep_within_weekly.as_deref(),
                self.keep_within_monthly.as_deref(),
                self.keep_within_yearly.as_deref(),
            ],
            tags: &self.keep_tag,
        }
        .rules(&what)?;
        if max_age.is_none() && keep.is_empty() {
            bail!("{what} needs max-age or keep-* keys: as it is, it would remove every snapshot it matches");
        }
        Ok(RetentionRule {
            name,
            matcher,
            max_age,
            keep,
        })
    }
}

/// The engine's table from the configuration's entries, numbered from 1.
pub fn table(entries: &[RetentionEntry]) -> Result<Vec<RetentionRule>> {
    entries.iter().enumerate().map(|(i, e)| e.rule(i + 1)).collect()
}
