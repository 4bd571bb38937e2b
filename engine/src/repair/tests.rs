use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::*;
use crate::backend::{Backend, ObjectKind};
use crate::backup::{backup, BackupOptions, BackupSource, ParentChoice};
use crate::check::{check, CheckOptions, CheckReport};
use crate::id::SnapshotId;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::testing::memory_repo;

fn back_up(repo: &Repository, src: &Path, parent: ParentChoice) -> (SnapshotId, Snapshot) {
    let opts = BackupOptions {
        parent,
        ..Default::default()
    };
    let out = backup(repo, BackupSource::Paths(vec![src.to_path_buf()]), &opts).unwrap();
    (out.id.unwrap(), out.snapshot)
}

fn data_packs(repo: &Repository) -> HashSet<String> {
    repo.backend()
        .list(ObjectKind::DataPack)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

/// The snapshots `check` says depend on something damaged.
fn damaged_snapshots(r: &CheckReport) -> HashSet<SnapshotId> {
    r.problems
        .iter()
        .flat_map(|p| p.dependents.iter().map(|d| d.snapshot))
        .collect()
}

/// The content of `rel` in `snap`, through the readers' index.
fn content(repo: &Repository, snap: &Snapshot, src: &Path, rel: &str) -> Vec<u8> {
    let index = repo.load_index().unwrap();
    let mut out = Vec::new();
    crate::browse::dump(repo, &index, snap, &format!("{}/{rel}", src.display()), &mut out).unwrap();
    out
}

#[test]
fn backups_after_a_lost_pack_reference_only_stored_data() {
    let repo = memory_repo();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a"), vec![7u8; 100_000]).unwrap();
    fs::write(src.path().join("b"), b"bee").unwrap();
    let (first, _) = back_up(&repo, src.path(), ParentChoice::Auto);
    for p in data_packs(&repo) {
        repo.backend().remove(ObjectKind::DataPack, &p).unwrap();
    }
    let r = check(&repo, &CheckOptions::default()).unwrap();
    assert_eq!(damaged_snapshots(&r), HashSet::from([first]), "{:?}", r.problems);
    let (with_parent, s1) = back_up(&repo, src.path(), ParentChoice::Auto);
    assert_eq!(s1.parent, Some(first));
    let (forced, s2) = back_up(&repo, src.path(), ParentChoice::None);
    // The data is stored again under the same ids, so the first snapshot
    // is whole again too: only the lost pack itself is still reported.
    let r = check(&repo, &CheckOptions::default()).unwrap();
    assert!(damaged_snapshots(&r).is_empty(), "{:?}", r.problems);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let first_snap = repo.load_snapshot(&first).unwrap();
    for s in [&s1, &s2, &first_snap] {
        assert_eq!(content(&repo, s, src.path(), "a"), vec![7u8; 100_000]);
        assert_eq!(content(&repo, s, src.path(), "b"), b"bee");
    }
    assert_ne!(with_parent, forced);
}

#[test]
fn repair_index_then_repair_snapshots_heal_a_lost_pack() {
    let repo = memory_repo();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a"), vec![1u8; 50_000]).unwrap();
    back_up(&repo, src.path(), ParentChoice::Auto);
    let before = data_packs(&repo);
    fs::write(src.path().join("b"), vec![2u8; 50_000]).unwrap();
    let (damaged, snap) = back_up(&repo, src.path(), ParentChoice::Auto);
    let new: Vec<String> = data_packs(&repo).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1);
    repo.backend().remove(ObjectKind::DataPack, &new[0]).unwrap();

    let r = check(&repo, &CheckOptions::default()).unwrap();
    let b = format!("{}/b", src.path().display());
    let p = r
        .problems
        .iter()
        .find(|p| p.object.contains(&new[0]))
        .expect("the lost pack is a problem");
    assert_eq!(p.dependents.len(), 1, "{p:?}");
    assert_eq!(
        (p.dependents[0].snapshot, p.dependents[0].path.as_str()),
        (damaged, b.as_str())
    );

    let opts = RepairSnapshotsOptions {
        forget: true,
        ..Default::default()
    };
    let report = repair_snapshots(&repo, &[(damaged, snap)], &opts).unwrap();
    let done = &report.snapshots[0];
    let copy = done.repaired.expect("a copy");
    assert!(done.forgotten);
    assert_eq!(done.damaged.len(), 1);
    assert_eq!(
        done.damaged[0].new_path.as_deref(),
        Some(format!("{b}{DAMAGED_SUFFIX}").as_str())
    );
    let copied = repo.load_snapshot(&copy).unwrap();
    assert_eq!(copied.rewritten_from, Some(damaged));
    assert!(copied.tags.iter().any(|t| t == REPAIRED_TAG));
    assert_eq!(content(&repo, &copied, src.path(), "a"), vec![1u8; 50_000]);

    // The lost pack still troubles the index until repair index drops it.
    assert!(!check(&repo, &CheckOptions::default()).unwrap().ok());
    let ir = repair_index(&repo, &RepairIndexOptions::default()).unwrap();
    assert_eq!(ir.packs_missing.len(), 1, "{ir:?}");
    let r = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.errors);
}

#[test]
fn init_refuses_a_location_with_keys_but_no_config() {
    let backend = std::sync::Arc::new(crate::backend::memory::MemoryBackend::new());
    crate::testing::init_with(&backend, b"pw", crate::testing::CHEAP_KDF).unwrap();
    backend.remove(ObjectKind::Config, "config").unwrap();
    let e = crate::testing::init_with(&backend, b"pw", crate::testing::CHEAP_KDF).unwrap_err();
    assert!(matches!(e, crate::repository::RepositoryError::NotEmpty { .. }), "{e}");
    assert_eq!(backend.list(ObjectKind::Key).unwrap().len(), 1);
}
