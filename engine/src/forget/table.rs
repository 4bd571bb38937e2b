//! A retention table: an ordered list of rules, each for the snapshots it
//! matches (by tag, source kind, host, path glob), with a maximum age and/or
//! keep rules. The first matching rule decides a snapshot's fate; a snapshot
//! no rule matches is kept, and the plan says so.
//!
//! Within a rule, snapshots are grouped as for `forget` and its keep rules
//! apply per group (all are kept when it has none); a maximum age then
//! removes whatever is older than that, counted back from now: retention
//! periods are wall-clock promises ("database backups 90 days").

use globset::{Glob, GlobMatcher};
use jiff::tz::TimeZone;

use super::duration::RetentionDuration;
use super::policy::{self, KeepRules};
use super::{candidates, ForgetGroup, ForgetPlan, GroupBy, GroupKey};
use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

/// Which snapshots a rule is for; every field given must match.
#[derive(Debug, Clone, Default)]
pub struct RuleMatch {
    /// Has this tag.
    pub tag: Option<String>,
    /// Came from this kind of source (`files`, `stdin`, `command`, `redis`, `cassandra`).
    pub source: Option<String>,
    /// Of this host.
    pub host: Option<String>,
    /// Has a backed-up path matching this glob (set with [`RuleMatch::with_path`]).
    path: Option<GlobMatcher>,
}

impl RuleMatch {
    /// Also requires a backed-up path matching the glob `pattern`.
    pub fn with_path(mut self, pattern: &str) -> Result<Self, String> {
        let g = Glob::new(pattern).map_err(|e| format!("bad path pattern `{pattern}`: {e}"))?;
        self.path = Some(g.compile_matcher());
        Ok(self)
    }

    fn matches(&self, s: &Snapshot) -> bool {
        self.tag.as_ref().is_none_or(|t| s.tags.contains(t))
            && self.source.as_deref().is_none_or(|k| s.source.label() == k)
            && self.host.as_ref().is_none_or(|h| &s.host == h)
            && self.path.as_ref().is_none_or(|g| s.paths.iter().any(|p| g.is_match(p)))
    }
}

/// One row of a retention table.
#[derive(Debug, Clone, Default)]
pub struct RetentionRule {
    /// How the rule is named in plans (e.g. `tag=db`).
    pub name: String,
    /// Which snapshots it is for.
    pub matcher: RuleMatch,
    /// Snapshots older than this (from now) are removed.
    pub max_age: Option<RetentionDuration>,
    /// Keep rules within the rule's snapshots (none: keep all within `max_age`).
    pub keep: KeepRules,
}

/// Applies `table` to `snapshots`: one group per rule and group key, and one
/// group (rule `none`) of the snapshots no rule matches, all kept.
pub fn plan_retention(snapshots: &[(SnapshotId, Snapshot)], table: &[RetentionRule], group_by: GroupBy) -> ForgetPlan {
    plan_retention_at(snapshots, table, group_by, &TimeZone::system(), crate::time::now_ns())
}

/// [`plan_retention`] in time zone `tz` at time `now_ns`.
pub(crate) fn plan_retention_at(
    snapshots: &[(SnapshotId, Snapshot)],
    table: &[RetentionRule],
    group_by: GroupBy,
    tz: &TimeZone,
    now_ns: i64,
) -> ForgetPlan {
    // (rule number or None, group key) → positions in `snapshots`.
    let mut groups: std::collections::BTreeMap<(Option<usize>, GroupKey), Vec<usize>> = Default::default();
    for (i, (_, s)) in snapshots.iter().enumerate() {
        let rule = table.iter().position(|r| r.matcher.matches(s));
        groups.entry((rule, GroupKey::of(s, group_by))).or_default().push(i);
    }
    let now = jiff::Timestamp::from_nanosecond(i128::from(now_ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let mut plan = ForgetPlan::default();
    for ((rule, key), members) in groups {
        let name = rule.map(|r| table[r].name.clone()).unwrap_or_else(|| "none".into());
        let mut g = ForgetGroup::new(Some(name), key);
        // Newest first, each with why it is kept (`None`: removed).
        let newest_first = |why: Vec<String>| -> Vec<(usize, Option<Vec<String>>)> {
            let mut order = members.clone();
            order.sort_by(|&a, &b| snapshots[b].1.time_ns.cmp(&snapshots[a].1.time_ns));
            order.into_iter().map(|i| (i, Some(why.clone()))).collect()
        };
        let decided = match rule.map(|r| &table[r]) {
            None => newest_first(vec!["no retention rule matches: kept".into()]),
            Some(r) => {
                let mut d = if r.keep.is_empty() {
                    newest_first(Vec::new())
                } else {
                    policy::apply(&candidates(snapshots, &members), &r.keep, tz, now_ns)
                        .into_iter()
                        .map(|v| (members[v.position], v.keep.then_some(v.matches)))
                        .collect()
                };
                if let (Some(age), Some(limit)) = (r.max_age, r.max_age.and_then(|a| a.before(now, tz))) {
                    for (i, why) in &mut d {
                        if i128::from(snapshots[*i].1.time_ns) < limit.as_nanosecond() {
                            *why = None;
                        } else if let Some(w) = why {
                            w.push(format!("younger than {age}"));
                        }
                    }
                }
                d
            }
        };
        for (i, why) in decided {
            g.record(&snapshots[i], why);
        }
        plan.groups.push(g);
    }
    plan
}
