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
use super::{candidates, shown, ForgetGroup, ForgetPlan, GroupBy, GroupKey, KeepReason};
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
        let mut g = ForgetGroup {
            rule: Some(rule.map(|r| table[r].name.clone()).unwrap_or_else(|| "none".into())),
            group_key: key,
            keep: Vec::new(),
            remove: Vec::new(),
            reasons: Vec::new(),
        };
        let mut order = members.clone();
        order.sort_by(|&a, &b| snapshots[b].1.time_ns.cmp(&snapshots[a].1.time_ns));
        let verdicts: Vec<(usize, Vec<String>)> = match rule.map(|r| &table[r]) {
            None => order
                .iter()
                .map(|&i| (i, vec!["no retention rule matches: kept".to_string()]))
                .collect(),
            Some(r) => {
                let oldest_kept = r.max_age.and_then(|a| a.before(now, tz)).map(|t| t.as_nanosecond());
                let by_rules: Vec<(usize, Vec<String>)> = if r.keep.is_empty() {
                    order.iter().map(|&i| (i, Vec::new())).collect()
                } else {
                    policy::apply(&candidates(snapshots, &members), &r.keep, tz, now_ns)
                        .into_iter()
                        .filter(|v| v.keep)
                        .map(|v| (members[v.position], v.matches))
                        .collect()
                };
                let wanted: std::collections::HashMap<usize, Vec<String>> = by_rules.into_iter().collect();
                order
                    .iter()
                    .filter_map(|&i| {
                        let mut why = wanted.get(&i)?.clone();
                        if let (Some(limit), Some(age)) = (oldest_kept, r.max_age) {
                            if i128::from(snapshots[i].1.time_ns) < limit {
                                return None;
                            }
                            why.push(format!("younger than {age}"));
                        }
                        Some((i, why))
                    })
                    .collect()
            }
        };
        let kept: std::collections::HashMap<usize, Vec<String>> = verdicts.into_iter().collect();
        for &i in &order {
            let (id, s) = &snapshots[i];
            match kept.get(&i) {
                Some(why) => {
                    g.reasons.push(KeepReason {
                        snapshot: *id,
                        matches: why.clone(),
                    });
                    g.keep.push(shown(*id, s));
                }
                None => g.remove.push(shown(*id, s)),
            }
        }
        plan.groups.push(g);
    }
    plan
}
