//! Tag: changing the tags of existing snapshots (restic `tag`), so that
//! retention rules that match tags can be corrected after the fact.
//!
//! A snapshot object is named by its sealed content, so its tags cannot be
//! edited in place: a changed snapshot is saved again with its new tags and
//! everything else as it was (the same tree: no data or tree is written),
//! with `rewritten_from` naming the original, whose object is then removed.
//! Its id therefore changes. Order of durable writes (format-spec rule F2):
//! the new snapshot, then the removal of the original; a crash in between
//! leaves both, which only keeps more. Like forget (F1) and rewrite (F2), tag
//! takes no lock: it only adds snapshot objects and removes snapshot objects.

use std::collections::HashSet;

use serde::Serialize;

use crate::backup::BackupError;
use crate::id::SnapshotId;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::Snapshot;

/// Errors of a tag change.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// Nothing to add, remove or set: the command would change nothing.
    #[error("no tag change given: add, remove or set at least one tag")]
    NoChange,
    /// Setting the tags was combined with adding or removing some.
    #[error("setting the tags replaces them all: it cannot be combined with adding or removing tags")]
    SetWithAddOrRemove,
    /// A tag list holds an empty tag (`""`, `a,,b`, a trailing comma).
    #[error("empty tag in {list:?}: every tag needs a name")]
    EmptyTag {
        /// The list as given.
        list: String,
    },
    /// Listing deletion records, saving or removing a snapshot failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The snapshot's tree is no longer safe to refer to: a prune that ran
    /// meanwhile is deleting some of it (rule B4).
    #[error(transparent)]
    Verify(#[from] BackupError),
}

/// Which tags to change. Each entry is one tag or a comma-separated list.
#[derive(Debug, Clone, Default)]
pub struct TagOptions {
    /// Tags to append, after the existing ones, unless already there.
    pub add: Vec<String>,
    /// Tags to remove (after adding, as restic does); one that is not there
    /// changes nothing.
    pub remove: Vec<String>,
    /// The complete new tags, replacing all of them; `Some` of an empty list
    /// removes every tag. Cannot be combined with `add` or `remove`.
    pub set: Option<Vec<String>>,
    /// Report what would change; write and remove nothing.
    pub dry_run: bool,
}

/// What happened to one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotTagging {
    /// The snapshot as selected.
    pub original: SnapshotId,
    /// The snapshot object that replaced it; `None` when its tags did not
    /// change and in a dry run.
    pub tagged: Option<SnapshotId>,
    /// Its tags before.
    pub tags_before: Vec<String>,
    /// Its tags after (would be, in a dry run).
    pub tags_after: Vec<String>,
    /// Whether its tags change (otherwise it is left alone).
    pub changed: bool,
}

/// The outcome of a tag change, one entry per snapshot given.
#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    /// Whether this was a dry run (nothing written or removed).
    pub dry_run: bool,
    /// Each snapshot, in the order given.
    pub snapshots: Vec<SnapshotTagging>,
    /// Snapshots whose tags changed (would change, in a dry run).
    pub changed: usize,
    /// Snapshots left alone: they already had the tags asked for.
    pub unchanged: usize,
}

/// Changes the tags of each of `snapshots` by `opts`. A snapshot whose tags
/// change is replaced: a new snapshot object with the same tree, time, host,
/// paths, parent, summary and details, the new tags, this program's version
/// and `rewritten_from` naming the original is saved, then the original's
/// object is removed, so its id changes. A snapshot that already has the
/// tags asked for is left alone.
///
/// Costs one small write and one removal per changed snapshot, and a listing
/// of the deletion records; no tree or data is read or written (unless a
/// prune records new deletions meanwhile, when the tree is checked as a
/// backup checks what it reuses).
pub fn tag_snapshots(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &TagOptions,
) -> crate::error::Result<TagReport> {
    Ok(tag(repo, snapshots, opts)?)
}

fn tag(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)], opts: &TagOptions) -> Result<TagReport, TagError> {
    let change = Change::parse(opts)?;
    let started = std::time::Instant::now();
    // B4: the deletion records as of now, so that one a prune writes before a
    // copy is saved is noticed (it may be deleting the tree the copy names).
    let deletions = repo.load_deletions()?;
    let mut report = TagReport {
        dry_run: opts.dry_run,
        snapshots: Vec::with_capacity(snapshots.len()),
        changed: 0,
        unchanged: 0,
    };
    let mut seen = HashSet::new();
    for (id, snap) in snapshots {
        // A second copy of the same original would leave two snapshots.
        if !seen.insert(*id) {
            continue;
        }
        let after = change.apply(&snap.tags);
        let changed = as_set(&after) != as_set(&snap.tags);
        let mut done = SnapshotTagging {
            original: *id,
            tagged: None,
            tags_before: snap.tags.clone(),
            tags_after: if changed { after } else { snap.tags.clone() },
            changed,
        };
        if changed {
            report.changed += 1;
        } else {
            report.unchanged += 1;
        }
        if changed && !opts.dry_run {
            let copy = retagged(snap, *id, done.tags_after.clone());
            crate::backup::verify_reuse(repo, &deletions, started.elapsed(), &copy.tree)?;
            done.tagged = Some(repo.save_snapshot(&copy)?);
            repo.remove_snapshot(id)?;
        }
        report.snapshots.push(done);
    }
    Ok(report)
}

/// The change asked for, as single tags.
#[derive(Debug, PartialEq)]
enum Change {
    Set(Vec<String>),
    Edit { add: Vec<String>, remove: Vec<String> },
}

impl Change {
    fn parse(opts: &TagOptions) -> Result<Change, TagError> {
        match &opts.set {
            Some(_) if !opts.add.is_empty() || !opts.remove.is_empty() => Err(TagError::SetWithAddOrRemove),
            Some(set) => Ok(Change::Set(split(set)?)),
            None if opts.add.is_empty() && opts.remove.is_empty() => Err(TagError::NoChange),
            None => Ok(Change::Edit {
                add: split(&opts.add)?,
                remove: split(&opts.remove)?,
            }),
        }
    }

    /// The tags `tags` would have: existing ones keep their order and new
    /// ones are appended, so a listing changes no more than it must.
    fn apply(&self, tags: &[String]) -> Vec<String> {
        let (mut out, add, remove) = match self {
            Change::Set(set) => (Vec::new(), set, None),
            Change::Edit { add, remove } => (tags.to_vec(), add, Some(remove)),
        };
        for t in add {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        if let Some(remove) = remove {
            out.retain(|t| !remove.contains(t));
        }
        out
    }
}

/// The single tags of `lists` (each a tag or a comma-separated list).
fn split(lists: &[String]) -> Result<Vec<String>, TagError> {
    let mut out = Vec::new();
    for list in lists {
        for t in list.split(',') {
            if t.is_empty() {
                return Err(TagError::EmptyTag { list: list.clone() });
            }
            out.push(t.to_string());
        }
    }
    Ok(out)
}

/// Tags are matched as a set (filters, retention rules): only a change of
/// the set is worth a new snapshot object, not of order or repetition.
fn as_set(tags: &[String]) -> std::collections::BTreeSet<&str> {
    tags.iter().map(String::as_str).collect()
}

/// The copy of `snap` (id `id`) with `tags`.
fn retagged(snap: &Snapshot, id: SnapshotId, tags: Vec<String>) -> Snapshot {
    let mut copy = snap.clone();
    copy.tags = tags;
    copy.program_version = crate::VERSION.to_string();
    copy.rewritten_from = Some(id);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{backup, BackupOptions, BackupSource};
    use crate::error::ErrorKind;
    use crate::snapshot::SourceKind;
    use crate::sources::Stream;
    use crate::testing::memory_repo;

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    /// A snapshot of a small stream, tagged `tags`.
    fn back_up(repo: &Repository, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let source = BackupSource::Stream {
            stream: Stream::from_reader(Box::new(&b"some data"[..])),
            filename: "db.sql".into(),
            kind: SourceKind::Stdin {
                filename: "db.sql".into(),
            },
        };
        let opts = BackupOptions {
            tags: strings(tags),
            host: Some("node-1".into()),
            ..Default::default()
        };
        let out = backup(repo, source, &opts).unwrap();
        (out.id.unwrap(), out.snapshot)
    }

    fn ids(repo: &Repository) -> Vec<SnapshotId> {
        let mut ids: Vec<SnapshotId> = repo.list_snapshots().unwrap().into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids
    }

    fn edit(add: &[&str], remove: &[&str]) -> TagOptions {
        TagOptions {
            add: strings(add),
            remove: strings(remove),
            ..Default::default()
        }
    }

    fn set(tags: &[&str]) -> TagOptions {
        TagOptions {
            set: Some(strings(tags)),
            ..Default::default()
        }
    }

    #[test]
    fn adding_replaces_the_snapshot_with_a_copy_that_differs_only_in_tags() {
        let repo = memory_repo();
        let original = back_up(&repo, &["nightly"]);
        let report = tag_snapshots(&repo, std::slice::from_ref(&original), &edit(&["audit,legal"], &[])).unwrap();

        assert_eq!((report.changed, report.unchanged, report.dry_run), (1, 0, false));
        let done = &report.snapshots[0];
        assert_eq!(done.original, original.0);
        assert!(done.changed);
        assert_eq!(done.tags_before, ["nightly"]);
        assert_eq!(done.tags_after, ["nightly", "audit", "legal"]);
        let new_id = done.tagged.unwrap();
        assert_ne!(new_id, original.0);
        assert_eq!(ids(&repo), [new_id], "the original is gone");

        let copy = repo.load_snapshot(&new_id).unwrap();
        assert_eq!(copy.tags, ["nightly", "audit", "legal"]);
        assert_eq!(copy.rewritten_from, Some(original.0));
        let mut want = original.1.clone();
        want.tags = copy.tags.clone();
        want.rewritten_from = Some(original.0);
        assert_eq!(copy, want, "everything else is the original's");
    }

    #[test]
    fn removing_keeps_the_order_of_the_rest_and_a_missing_tag_changes_nothing() {
        let repo = memory_repo();
        let a = back_up(&repo, &["x", "audit", "y"]);
        let b = back_up(&repo, &["x", "y"]);
        let report = tag_snapshots(&repo, &[a.clone(), b.clone()], &edit(&[], &["audit"])).unwrap();

        assert_eq!((report.changed, report.unchanged), (1, 1));
        let (ra, rb) = (&report.snapshots[0], &report.snapshots[1]);
        assert_eq!(ra.tags_after, ["x", "y"]);
        let new_a = ra.tagged.unwrap();
        assert!(!rb.changed);
        assert_eq!(rb.tagged, None);
        assert_eq!(rb.tags_after, rb.tags_before);
        let mut want = vec![new_a, b.0];
        want.sort();
        assert_eq!(ids(&repo), want, "the unchanged snapshot keeps its object");
    }

    #[test]
    fn add_then_remove_as_restic_does() {
        let change = Change::parse(&edit(&["a,b"], &["b", "old"])).unwrap();
        assert_eq!(change.apply(&strings(&["old", "keep", "a"])), ["keep", "a"]);
    }

    #[test]
    fn set_replaces_every_tag_and_the_same_set_in_another_order_is_no_change() {
        let repo = memory_repo();
        let a = back_up(&repo, &["b", "a"]);
        let b = back_up(&repo, &["nightly", "db"]);
        let report = tag_snapshots(&repo, &[a.clone(), b.clone()], &set(&["a,b", "a"])).unwrap();

        assert!(!report.snapshots[0].changed, "{report:?}");
        assert_eq!(report.snapshots[0].tags_after, ["b", "a"]);
        assert_eq!(report.snapshots[1].tags_after, ["a", "b"]);
        let new_b = report.snapshots[1].tagged.unwrap();
        assert_eq!(repo.load_snapshot(&new_b).unwrap().tags, ["a", "b"]);
        assert!(ids(&repo).contains(&a.0));
        assert!(!ids(&repo).contains(&b.0));

        let cleared = tag_snapshots(&repo, &[(new_b, repo.load_snapshot(&new_b).unwrap())], &set(&[])).unwrap();
        let newer = cleared.snapshots[0].tagged.unwrap();
        assert!(repo.load_snapshot(&newer).unwrap().tags.is_empty());
        assert_eq!(repo.load_snapshot(&newer).unwrap().rewritten_from, Some(new_b));
    }

    #[test]
    fn a_dry_run_reports_the_change_and_writes_nothing() {
        let repo = memory_repo();
        let original = back_up(&repo, &["nightly"]);
        let opts = TagOptions {
            dry_run: true,
            ..edit(&["audit"], &["nightly"])
        };
        let report = tag_snapshots(&repo, std::slice::from_ref(&original), &opts).unwrap();
        assert!(report.dry_run);
        assert_eq!(report.changed, 1);
        assert_eq!(report.snapshots[0].tags_after, ["audit"]);
        assert_eq!(report.snapshots[0].tagged, None);
        assert_eq!(ids(&repo), [original.0]);
        assert_eq!(repo.load_snapshot(&original.0).unwrap().tags, ["nightly"]);
    }

    #[test]
    fn a_snapshot_named_twice_is_replaced_once() {
        let repo = memory_repo();
        let original = back_up(&repo, &[]);
        let twice = [original.clone(), original.clone()];
        let report = tag_snapshots(&repo, &twice, &edit(&["audit"], &[])).unwrap();
        assert_eq!(report.snapshots.len(), 1);
        assert_eq!(ids(&repo).len(), 1);
    }

    #[test]
    fn refuses_no_change_set_with_add_and_empty_tags() {
        let repo = memory_repo();
        let original = back_up(&repo, &["nightly"]);
        let snaps = std::slice::from_ref(&original);
        let refused = |opts: TagOptions| {
            let e = tag_snapshots(&repo, snaps, &opts).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            e.to_string()
        };
        assert!(refused(TagOptions::default()).contains("no tag change"));
        let both = TagOptions {
            add: strings(&["a"]),
            ..set(&["b"])
        };
        assert!(refused(both).contains("cannot be combined"));
        for bad in ["", "a,,b", "a,"] {
            let msg = refused(edit(&[bad], &[]));
            assert!(msg.contains(&format!("empty tag in {bad:?}")), "{msg}");
        }
        assert!(refused(edit(&[], &[""])).contains("empty tag"));
        assert_eq!(ids(&repo), [original.0], "nothing was written");
    }
}
