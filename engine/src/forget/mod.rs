//! Forget: which snapshots to keep, by restic's `--keep-*` rules within
//! groups of snapshots, and removing the others' snapshot objects. Only the
//! snapshot objects go; the data they alone referenced stays until a prune.

mod duration;
mod policy;
mod table;

use jiff::tz::TimeZone;
use serde::Serialize;

pub use duration::{DurationError, RetentionDuration};
pub use policy::KeepRules;
pub use table::{plan_retention, RetentionRule, RuleMatch};

use crate::backend::BackendError;
use crate::error::Result;
use crate::id::SnapshotId;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;
use policy::Candidate;

/// What makes snapshots one group: the rules count within each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of backed-up paths.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default: host and paths.
    fn default() -> Self {
        Self {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Parses `host,paths,tags` (any subset; empty: one group of all).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => return Err(format!("cannot group by `{other}`: use host, paths and/or tags")),
            }
        }
        Ok(g)
    }
}

/// The values a group shares (only those grouped by are set).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// The host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The paths, sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// The tags, sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    pub(crate) fn of(s: &Snapshot, by: GroupBy) -> Self {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            host: by.host.then(|| s.host.clone()),
            paths: by.paths.then(|| sorted(&s.paths)),
            tags: by.tags.then(|| sorted(&s.tags)),
        }
    }
}

/// A snapshot as a forget report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetSnapshot {
    /// Its id.
    pub id: SnapshotId,
    /// Its time, Unix ns.
    #[serde(skip)]
    pub time_ns: i64,
    /// Its time, RFC 3339.
    pub time: String,
    /// Host.
    pub host: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Paths.
    pub paths: Vec<String>,
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, Serialize)]
pub struct KeepReason {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The rules that want it (`daily snapshot`, `within 30d`, ...).
    pub matches: Vec<String>,
}

/// One group's decisions, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetGroup {
    /// The retention-table rule that decided (`none`: no rule matched);
    /// absent for plain keep rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What the group's snapshots share.
    pub group_key: GroupKey,
    /// Snapshots kept.
    pub keep: Vec<ForgetSnapshot>,
    /// Snapshots to remove.
    pub remove: Vec<ForgetSnapshot>,
    /// Why each kept snapshot is kept (same order as `keep`).
    pub reasons: Vec<KeepReason>,
}

impl ForgetGroup {
    fn new(rule: Option<String>, group_key: GroupKey) -> Self {
        ForgetGroup {
            rule,
            group_key,
            keep: Vec::new(),
            remove: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// Adds `snapshot`, kept for `why` or (`None`) removed.
    fn record(&mut self, (id, s): &(SnapshotId, Snapshot), why: Option<Vec<String>>) {
        match why {
            Some(matches) => {
                self.reasons.push(KeepReason { snapshot: *id, matches });
                self.keep.push(shown(*id, s));
            }
            None => self.remove.push(shown(*id, s)),
        }
    }
}

/// Every group's decisions, decided before anything is removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetPlan {
    /// Groups, by key.
    pub groups: Vec<ForgetGroup>,
}

impl ForgetPlan {
    /// Every snapshot the plan removes.
    pub fn to_remove(&self) -> Vec<SnapshotId> {
        self.groups.iter().flat_map(|g| g.remove.iter().map(|s| s.id)).collect()
    }
}

/// The rules' view of the snapshots at `members`.
fn candidates<'a>(snapshots: &'a [(SnapshotId, Snapshot)], members: &[usize]) -> Vec<Candidate<'a>> {
    members
        .iter()
        .map(|&i| Candidate {
            time_ns: snapshots[i].1.time_ns,
            tags: &snapshots[i].1.tags,
        })
        .collect()
}

fn shown(id: SnapshotId, s: &Snapshot) -> ForgetSnapshot {
    ForgetSnapshot {
        id,
        time_ns: s.time_ns,
        time: crate::time::format_ns(s.time_ns),
        host: s.host.clone(),
        tags: s.tags.clone(),
        paths: s.paths.clone(),
    }
}

/// Decides, group by group, which of `snapshots` `rules` keep, with day,
/// week, month and year boundaries in this machine's time zone (restic's
/// meaning) and "the newest snapshot" never in the future.
pub fn plan_forget(snapshots: &[(SnapshotId, Snapshot)], group_by: GroupBy, rules: &KeepRules) -> ForgetPlan {
    plan_forget_at(snapshots, group_by, rules, &TimeZone::system(), crate::time::now_ns())
}

/// [`plan_forget`] in time zone `tz` at time `now_ns`.
pub(crate) fn plan_forget_at(
    snapshots: &[(SnapshotId, Snapshot)],
    group_by: GroupBy,
    rules: &KeepRules,
    tz: &TimeZone,
    now_ns: i64,
) -> ForgetPlan {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<usize>> = Default::default();
    for (i, (_, s)) in snapshots.iter().enumerate() {
        groups.entry(GroupKey::of(s, group_by)).or_default().push(i);
    }
    let mut plan = ForgetPlan::default();
    for (key, members) in groups {
        let candidates = candidates(snapshots, &members);
        let mut g = ForgetGroup::new(None, key);
        for v in policy::apply(&candidates, rules, tz, now_ns) {
            g.record(&snapshots[members[v.position]], v.keep.then_some(v.matches));
        }
        plan.groups.push(g);
    }
    plan
}

/// Removes the snapshot objects of `ids` (data stays until a prune). A
/// snapshot the storage refuses to delete yet (S3 Object Lock retention) is
/// kept and named in [`ForgetOutcome::retained`], with its date; the others
/// go. Any other failure stops at once.
pub fn forget_snapshots(repo: &Repository, ids: &[SnapshotId]) -> Result<ForgetOutcome> {
    let mut out = ForgetOutcome::default();
    for id in ids {
        match repo.remove_snapshot(id) {
            Ok(()) => out.removed.push(*id),
            Err(RepositoryError::Backend(BackendError::Retained { until, .. })) => {
                out.retained.push(RetainedSnapshot { id: *id, until })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// What [`forget_snapshots`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetOutcome {
    /// Snapshots removed.
    pub removed: Vec<SnapshotId>,
    /// Snapshots kept because the storage refuses to delete them yet.
    pub retained: Vec<RetainedSnapshot>,
}

/// A snapshot forget had to keep: under Object Lock retention.
#[derive(Debug, Clone, Serialize)]
pub struct RetainedSnapshot {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its retention date (RFC 3339, UTC).
    pub until: String,
}

#[cfg(test)]
mod tests;
