//! Report objects (format-spec "Report objects"): what `cairn run` and
//! `cairn drill` did for a source, kept in the repository so that `status`
//! and its metrics show the last run and the last restore drill wherever
//! they are read from, not only on the host that ran them.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::encoding::Limit;
use crate::id::SnapshotId;
use crate::repository::{RepoFile, Repository, RepositoryError};

/// Version byte of an encoded report object.
pub const REPORT_VERSION: u8 = 1;
/// Object kind bound into a report's authenticated data.
pub const REPORT_KIND: &str = "report";

/// The longest `detail` a step keeps: the tail of a command's output is
/// what explains a failure, and reports must stay small.
pub const DETAIL_MAX: usize = 4096;

/// How many of the newest report objects [`Repository::latest_reports`]
/// reads at most: enough for every source's last run and drill in any
/// sane policy, while a repository with years of nightly reports is not
/// read whole on every `status`.
const READ_AT_MOST: usize = 512;

/// What a report is about. Field order and variant order are the format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub enum ReportKind {
    /// A `cairn run` of the source: its hooks, backup, copies and forget.
    Run,
    /// A `cairn drill`: a restore of the source's newest snapshot and its
    /// verification.
    Drill,
}

impl ReportKind {
    /// `run` or `drill`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Run => "run",
            ReportKind::Drill => "drill",
        }
    }
}

/// One step of a run or drill, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ReportStep {
    /// e.g. `backup`, `copy to offsite`, `restore`, `redis-server`.
    pub name: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why it failed, or what it found (at most [`DETAIL_MAX`] bytes).
    pub detail: String,
}

impl ReportStep {
    /// A step with its detail cut to the last [`DETAIL_MAX`] bytes.
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if detail.len() > DETAIL_MAX {
            let mut cut = detail.len() - DETAIL_MAX;
            while !detail.is_char_boundary(cut) {
                cut += 1;
            }
            detail.replace_range(..cut, "");
        }
        ReportStep {
            name: name.into(),
            ok,
            detail,
        }
    }
}

/// One report object. Field order is part of the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Report {
    /// Run or drill.
    pub kind: ReportKind,
    /// The policy's source name (`[sources.NAME]`).
    pub source: String,
    /// Host that ran it.
    pub host: String,
    /// When it started, Unix ns.
    pub started_ns: i64,
    /// How long it took, ns (for a drill: the restore alone, which is what
    /// the recovery time objective measures).
    pub duration_ns: u64,
    /// Whether every step succeeded.
    pub ok: bool,
    /// The snapshot the run wrote or the drill restored.
    pub snapshot: Option<SnapshotId>,
    /// Bytes the drill restored or the run's backup read.
    pub bytes: u64,
    /// The time allowed (a drill's RTO), ns.
    pub limit_ns: Option<u64>,
    /// What was done, in order.
    pub steps: Vec<ReportStep>,
}

impl RepoFile for Report {
    const KIND: ObjectKind = ObjectKind::Report;
    const AAD: &'static str = REPORT_KIND;
    const VERSION: u8 = REPORT_VERSION;
    // A handful of steps with details of at most 4 KiB each.
    const LIMIT: Limit = Limit::Mib1;
}

impl Report {
    /// A report of `kind` for `source`, started now on this host, with no
    /// step yet (so not ok until steps say so).
    pub fn begin(kind: ReportKind, source: &str) -> Self {
        Report {
            kind,
            source: source.to_string(),
            host: crate::repository::host_and_user().0,
            started_ns: crate::time::now_ns(),
            duration_ns: 0,
            ok: false,
            snapshot: None,
            bytes: 0,
            limit_ns: None,
            steps: Vec::new(),
        }
    }

    /// Adds a step; the report is ok while every step is.
    pub fn push(&mut self, step: ReportStep) {
        self.steps.push(step);
        self.ok = self.steps.iter().all(|s| s.ok);
    }

    /// The first step that failed, for one-line messages.
    pub fn failed_step(&self) -> Option<&ReportStep> {
        self.steps.iter().find(|s| !s.ok)
    }
}

impl Repository {
    /// Stores a report (content-named, like every sealed object).
    pub fn save_report(&self, report: &Report) -> Result<(), RepositoryError> {
        self.save_file(report).map(|_| ())
    }

    /// The newest report of each kind per source, among the newest report
    /// objects by their stored time. A damaged report is skipped: reports
    /// explain, they never hold data, so one must not hide the others.
    pub fn latest_reports(&self) -> Result<BTreeMap<(String, ReportKind), Report>, RepositoryError> {
        let mut listed = self.backend().list(ObjectKind::Report)?;
        listed.sort_by_key(|o| std::cmp::Reverse(o.modified_ns));
        listed.truncate(READ_AT_MOST);
        let reports: Vec<Report> = listed
            .par_iter()
            .filter_map(|o| self.load_file::<Report>(&o.name).ok())
            .collect();
        let mut newest: BTreeMap<(String, ReportKind), Report> = BTreeMap::new();
        for r in reports {
            let key = (r.source.clone(), r.kind);
            if newest.get(&key).is_none_or(|old| old.started_ns < r.started_ns) {
                newest.insert(key, r);
            }
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(source: &str, kind: ReportKind, started_ns: i64, ok: bool) -> Report {
        Report {
            kind,
            source: source.into(),
            host: "h".into(),
            started_ns,
            duration_ns: 5,
            ok,
            snapshot: None,
            bytes: 1,
            limit_ns: None,
            steps: vec![ReportStep::new("backup", ok, "")],
        }
    }

    #[test]
    fn newest_per_source_and_kind() {
        let repo = crate::testing::memory_repo();
        for r in [
            report("db", ReportKind::Run, 10, true),
            report("db", ReportKind::Run, 30, false),
            report("db", ReportKind::Run, 20, true),
            report("db", ReportKind::Drill, 15, true),
            report("redis", ReportKind::Drill, 5, false),
        ] {
            repo.save_report(&r).unwrap();
        }
        let got = repo.latest_reports().unwrap();
        assert_eq!(got.len(), 3);
        let run = &got[&("db".to_string(), ReportKind::Run)];
        assert_eq!((run.started_ns, run.ok), (30, false));
        assert_eq!(got[&("db".to_string(), ReportKind::Drill)].started_ns, 15);
        assert!(!got[&("redis".to_string(), ReportKind::Drill)].ok);
    }

    #[test]
    fn long_details_keep_their_tail() {
        let long = format!("{}é{}", "x".repeat(5000), "the reason");
        let s = ReportStep::new("verify", false, long);
        assert!(s.detail.len() <= DETAIL_MAX, "{}", s.detail.len());
        assert!(s.detail.ends_with("the reason"));
    }
}
