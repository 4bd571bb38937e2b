//! Reading packs that may sit in an archive storage class (S3 GLACIER,
//! DEEP_ARCHIVE): the one driver that restore and `check --read-data` use,
//! and that copy and restore drills will use next.
//!
//! The driver owns the whole protocol, so no verb repeats it: ask which
//! packs are archived (optionally before reading anything), request each
//! retrieval once (asking first, so a second run never pays twice), hand
//! readable packs to the caller as they become readable, poll with
//! exponential backoff, and stop with the packs still pending when the
//! caller does not want to wait. A pack found archived while being read (a
//! lifecycle rule moved it after the backup) joins the same path: it is
//! never reported as damage.

mod price;

use std::time::Duration;

use rayon::prelude::*;
use serde::Serialize;

pub(crate) use price::{
    age_days, early_deletion_usd, minimum_days, minimum_storage, needs_retrieval, BILLED_GB, DAY_NS,
};
pub use price::{tier_name, TierEstimate};
pub use price::{DEFAULT_PRICES_DATE, DEFAULT_STORAGE_PRICES};

use crate::backend::{ArchiveState, BackendError, ObjectKind, RetrievalRequest, RetrievalTier};
use crate::id::PackId;
use crate::repository::Repository;

/// How to retrieve archived packs.
#[derive(Debug, Clone, Copy)]
pub struct RetrievalOptions {
    /// Speed and price tier.
    pub tier: RetrievalTier,
    /// Days the retrieved copy stays readable.
    pub days: u32,
    /// Wait for retrievals and go on as packs become readable; without it
    /// the caller stops with the packs still pending.
    pub wait: bool,
    /// First polling interval; doubles up to `poll_max`.
    pub poll_initial: Duration,
    /// Longest polling interval.
    pub poll_max: Duration,
}

impl Default for RetrievalOptions {
    fn default() -> Self {
        Self {
            tier: RetrievalTier::Standard,
            days: 7,
            wait: false,
            poll_initial: Duration::from_secs(30),
            poll_max: Duration::from_secs(15 * 60),
        }
    }
}

/// What a command needs from archive storage, and what was asked of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrievalReport {
    /// Packs the command reads.
    pub packs_needed: usize,
    /// Of those, archived (requested or not).
    pub archived: usize,
    /// Bytes of the archived packs.
    pub archived_bytes: u64,
    /// Retrievals requested by this run.
    pub requested_now: usize,
    /// Retrievals that were already in progress (from an earlier run).
    pub already_in_progress: usize,
    /// Archived packs readable again since they were requested.
    pub ready: usize,
    /// Storage classes seen.
    pub classes: Vec<String>,
    /// Cost and time per tier.
    pub estimates: Vec<TierEstimate>,
}

impl RetrievalReport {
    /// The typical retrieval time of `tier` for what this report covers.
    pub fn typical_time(&self, tier: RetrievalTier) -> String {
        self.estimates
            .iter()
            .find(|e| e.tier == tier_name(tier))
            .map(|e| e.typical_time.to_string())
            .unwrap_or_else(|| "hours".into())
    }
}

/// A callback told what must be retrieved (once) and how many packs are
/// ready (on every poll), for the CLI to print.
pub struct RetrievalHook(pub Box<dyn Fn(&RetrievalReport) + Send + Sync>);

impl std::fmt::Debug for RetrievalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetrievalHook")
    }
}

/// A pack the driver may have to retrieve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackRef {
    /// Data or tree pack.
    pub kind: ObjectKind,
    /// Its name.
    pub id: PackId,
    /// Its stored size (what a retrieval moves and is billed for).
    pub size: u64,
}

/// What became of the packs handed to [`drive`].
#[derive(Debug, Default)]
pub(crate) struct Retrieved {
    /// Positions (in the slice given to `drive`) of packs still not readable:
    /// empty unless the options said not to wait.
    pub pending: Vec<usize>,
    /// Set when any pack was archived.
    pub report: Option<RetrievalReport>,
}

/// How [`drive`] is to run.
pub(crate) struct DriveOptions<'a> {
    /// Retrieval settings.
    pub retrieval: &'a RetrievalOptions,
    /// Ask for every pack's archive state before reading any (one request
    /// per pack; free on storage without archive classes). Without it,
    /// packs are read first and only those refusing the read are asked about.
    pub ask_first: bool,
    /// Told the report whenever it changes.
    pub hook: Option<&'a RetrievalHook>,
}

struct Driver<'a> {
    repo: &'a Repository,
    packs: &'a [PackRef],
    opts: &'a DriveOptions<'a>,
    report: RetrievalReport,
    by_class: price::ByClass,
    asked: bool,
}

impl Driver<'_> {
    /// The archive state of each pack. A pack whose state cannot be learned
    /// (missing, or the request failed) counts as readable: reading it then
    /// fails, and the caller reports that pack as damaged, instead of one
    /// lost pack stopping the whole command.
    fn states(&self, idx: &[usize]) -> Result<Vec<ArchiveState>, BackendError> {
        Ok(idx
            .par_iter()
            .map(|&i| {
                let p = &self.packs[i];
                self.repo
                    .backend()
                    .archive_state(p.kind, &p.id.to_hex())
                    .unwrap_or(ArchiveState::Readable)
            })
            .collect())
    }

    /// Looks up `idx`, requests the retrieval of every archived pack not
    /// already being retrieved, and splits them into (readable, waiting).
    fn ask(&mut self, idx: &[usize]) -> Result<(Vec<usize>, Vec<usize>), BackendError> {
        let states = self.states(idx)?;
        let mut to_request = Vec::new();
        let (mut ready, mut waiting) = (Vec::new(), Vec::new());
        for (&i, state) in idx.iter().zip(states) {
            let size = self.packs[i].size;
            let class = match state {
                ArchiveState::Readable => {
                    ready.push(i);
                    continue;
                }
                ArchiveState::Archived { class } => {
                    to_request.push(i);
                    class
                }
                ArchiveState::Retrieving { class } => {
                    self.report.already_in_progress += 1;
                    class
                }
            };
            waiting.push(i);
            let e = self.by_class.entry(class).or_default();
            e.0 += 1;
            e.1 += size;
            self.report.archived += 1;
            self.report.archived_bytes += size;
        }
        let r = self.opts.retrieval;
        to_request
            .par_iter()
            .map(|&i| {
                let p = &self.packs[i];
                self.repo.backend().request_retrieval(
                    p.kind,
                    &p.id.to_hex(),
                    RetrievalRequest {
                        tier: r.tier,
                        days: r.days,
                    },
                )
            })
            .collect::<Result<Vec<()>, BackendError>>()?;
        self.report.requested_now += to_request.len();
        let mut classes: Vec<String> = self.by_class.keys().cloned().collect();
        classes.sort();
        self.report.classes = classes;
        self.report.estimates = price::estimates(&self.by_class);
        if !waiting.is_empty() {
            self.asked = true;
            self.tell();
        }
        Ok((ready, waiting))
    }

    fn tell(&self) {
        if let Some(h) = self.opts.hook {
            (h.0)(&self.report);
        }
    }

    fn finish(self, pending: Vec<usize>) -> Retrieved {
        Retrieved {
            pending,
            report: self.asked.then_some(self.report),
        }
    }
}

/// Reads every pack of `packs` through `read`, retrieving archived ones.
///
/// `read` gets positions in `packs` of packs believed readable, reads them
/// (in parallel, as it likes) and returns the positions of those that
/// refused with [`BackendError::Archived`]. Every archived pack is requested
/// at most once per run, and not at all when a retrieval is already in
/// progress. With `wait`, the driver polls (backoff from `poll_initial` to
/// `poll_max`) until every pack was read; without it, it returns the
/// pending ones after the first round.
pub(crate) fn drive<E: From<BackendError>>(
    repo: &Repository,
    packs: &[PackRef],
    opts: &DriveOptions<'_>,
    mut read: impl FnMut(&[usize]) -> Result<Vec<usize>, E>,
) -> Result<Retrieved, E> {
    let mut d = Driver {
        repo,
        packs,
        opts,
        report: RetrievalReport {
            packs_needed: packs.len(),
            ..Default::default()
        },
        by_class: Default::default(),
        asked: false,
    };
    let mut ready: Vec<usize> = (0..packs.len()).collect();
    let mut waiting = Vec::new();
    if opts.ask_first && !ready.is_empty() {
        (ready, waiting) = d.ask(&ready)?;
    }
    let mut delay = opts.retrieval.poll_initial;
    loop {
        let refused = read(&ready)?;
        if !refused.is_empty() {
            let (now_readable, still) = d.ask(&refused)?;
            waiting.extend(still);
            // A retrieval that finished between the read and the look-up:
            // one more read now; a pack that still refuses waits for a poll.
            if !now_readable.is_empty() {
                waiting.extend(read(&now_readable)?);
            }
        }
        if waiting.is_empty() || !opts.retrieval.wait {
            return Ok(d.finish(waiting));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(opts.retrieval.poll_max);
        let states = d.states(&waiting)?;
        let mut still = Vec::new();
        ready = Vec::new();
        for (i, s) in waiting.into_iter().zip(states) {
            if s == ArchiveState::Readable {
                ready.push(i);
            } else {
                still.push(i);
            }
        }
        waiting = still;
        d.report.ready += ready.len();
        d.tell();
    }
}
