use std::fs;
use std::path::Path;

use super::*;
use crate::backup::{backup, BackupOptions, BackupSource};
use crate::id::SnapshotId;
use crate::prune::mark::reachable;
use crate::testing::{memory_repo, noise};

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn back_up(repo: &Repository, src: &Path, host: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
    let opts = BackupOptions {
        host: Some(host.into()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    let out = backup(repo, BackupSource::Paths(vec![src.to_path_buf()]), &opts).unwrap();
    (out.id.unwrap(), out.snapshot)
}

fn whole(mode: StatsMode) -> StatsOptions {
    StatsOptions {
        mode,
        whole_repository: true,
        prices: Some(Prices::default()),
        unclassed: "local".into(),
    }
}

/// Sealed bytes of the blobs `of` reaches and `others` do not, computed
/// with prune's marker rather than the stats walk.
fn only_reached_by(repo: &Repository, of: &[(SnapshotId, Snapshot)], others: &[(SnapshotId, Snapshot)]) -> u64 {
    let index = repo.load_index().unwrap();
    let mine = reachable(repo, &index, of);
    let theirs = reachable(repo, &index, others);
    let files = repo.readable_index_files().unwrap();
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .flat_map(|f| &f.packs)
        .flat_map(|p| &p.blobs)
        .filter(|b| {
            let k = crate::prune::mark::key_of(&b.id);
            mine.contains(&k) && !theirs.contains(&k) && seen.insert(k)
        })
        .map(|b| u64::from(b.length))
        .sum()
}

#[test]
fn restore_size_and_unique_bytes_match_the_files_and_an_independent_marking() {
    let repo = memory_repo();
    let shared = noise(300_000, 1);
    let a = tempfile::tempdir().unwrap();
    write(a.path(), "own.bin", &noise(500_000, 2));
    write(a.path(), "sub/shared.bin", &shared);
    let b = tempfile::tempdir().unwrap();
    write(b.path(), "own.bin", &noise(200_000, 3));
    write(b.path(), "shared.bin", &shared);
    let sa = back_up(&repo, a.path(), "db-1", &["db"]);
    // The second night of source A changes nothing: its trees are shared.
    let sa2 = back_up(&repo, a.path(), "db-1", &["db"]);
    let sb = back_up(&repo, b.path(), "web-1", &["web"]);
    let all = vec![sa.clone(), sa2.clone(), sb.clone()];

    let r = stats(&repo, &all, &whole(StatsMode::RestoreSize), &|_| {}).unwrap();
    assert_eq!(r.restore_size, 2 * (500_000 + 300_000) + 200_000 + 300_000);
    assert_eq!(r.total_size, r.restore_size);
    assert_eq!(r.total_file_count, Some(6));
    assert_eq!(r.sources.len(), 2);
    let src_a = r.sources.iter().find(|s| s.host == "db-1").unwrap();
    let src_b = r.sources.iter().find(|s| s.host == "web-1").unwrap();
    assert_eq!(src_a.snapshots, 2);
    assert_eq!(src_a.restore_size, 2 * 800_000);
    assert_eq!(src_a.tags, vec!["db".to_string()]);
    let a_only = only_reached_by(&repo, &[sa.clone(), sa2.clone()], std::slice::from_ref(&sb));
    let b_only = only_reached_by(&repo, std::slice::from_ref(&sb), &[sa, sa2]);
    assert_eq!(src_a.unique_bytes, a_only);
    assert_eq!(src_b.unique_bytes, b_only);
    // The shared file's blobs are in both, unique to neither.
    assert!(src_a.shared_bytes >= 300_000, "{src_a:?}");
    assert_eq!(src_a.shared_bytes, src_b.shared_bytes);
    assert!(a_only > 500_000 && b_only > 200_000);
    let totals = &r.repository;
    assert_eq!(totals.referenced_bytes, Some(a_only + b_only + src_a.shared_bytes));
    assert_eq!(totals.unreferenced_bytes, Some(0));
    // Incompressible data: about as many plaintext bytes as sealed ones.
    assert!(
        totals.compression_ratio > 0.95 && totals.compression_ratio < 1.01,
        "{totals:?}"
    );
    let dedup = totals.dedup_ratio.unwrap();
    assert!((dedup - r.restore_size as f64 / totals.stored_bytes as f64).abs() < 1e-9);
    assert!(totals.repository_bytes > totals.stored_bytes);
    // Tags are one per source here, so they free what their source frees.
    let db = r.tags.iter().find(|t| t.tag == "db").unwrap();
    assert_eq!(db.unique_bytes, a_only);
    assert_eq!(db.snapshots, 2);
    // A folder repository is one class, `local`, priced at nothing.
    let cost = r.cost.unwrap();
    assert_eq!(cost.classes.len(), 1);
    assert_eq!(cost.classes[0].class, "local");
    assert_eq!(cost.classes[0].bytes, totals.stored_bytes);
    assert_eq!(cost.monthly_usd, 0.0);
}

#[test]
fn a_tag_on_snapshots_of_two_sources_frees_what_only_they_reference() {
    let repo = memory_repo();
    let shared = noise(100_000, 9);
    let a = tempfile::tempdir().unwrap();
    write(a.path(), "x", &shared);
    write(a.path(), "a", &noise(50_000, 10));
    let b = tempfile::tempdir().unwrap();
    write(b.path(), "x", &shared);
    let c = tempfile::tempdir().unwrap();
    write(c.path(), "x", &shared);
    write(c.path(), "c", &noise(70_000, 11));
    let sa = back_up(&repo, a.path(), "h", &["audit", "x"]);
    let sb = back_up(&repo, b.path(), "h", &["audit"]);
    let sc = back_up(&repo, c.path(), "h", &[]);
    let all = vec![sa.clone(), sb.clone(), sc.clone()];
    let r = stats(&repo, &all, &whole(StatsMode::RestoreSize), &|_| {}).unwrap();
    let audit = r.tags.iter().find(|t| t.tag == "audit").unwrap();
    // The shared content is referenced by the untagged source too.
    let expected = only_reached_by(&repo, &[sa.clone(), sb.clone()], std::slice::from_ref(&sc));
    assert_eq!(audit.unique_bytes, expected);
    assert_eq!(audit.snapshots, 2);
    let x = r.tags.iter().find(|t| t.tag == "x").unwrap();
    assert_eq!(
        x.unique_bytes,
        only_reached_by(&repo, std::slice::from_ref(&sa), &[sb.clone(), sc])
    );
    let reached = only_reached_by(&repo, &[sa, sb], &[]);
    assert_eq!(audit.referenced_bytes, reached);
    assert_eq!(audit.shared_bytes, reached - expected);
    assert!(audit.shared_bytes >= 100_000, "the shared file is shared: {audit:?}");
}

#[test]
fn hard_links_count_once_and_raw_data_and_contents_count_distinct_data() {
    let repo = memory_repo();
    let src = tempfile::tempdir().unwrap();
    let body = noise(40_000, 5);
    write(src.path(), "one", &body);
    write(src.path(), "copy-of-one", &body);
    fs::hard_link(src.path().join("one"), src.path().join("link-to-one")).unwrap();
    write(src.path(), "two", &noise(10_000, 6));
    let s = back_up(&repo, src.path(), "h", &[]);
    let snaps = vec![s.clone(), back_up(&repo, src.path(), "h", &[])];

    let opts = |mode| StatsOptions {
        mode,
        ..Default::default()
    };
    let r = stats(&repo, &snaps, &opts(StatsMode::RestoreSize), &|_| {}).unwrap();
    // Per snapshot: one, its copy and two; the hard link adds no bytes.
    assert_eq!(r.total_size, 2 * (40_000 + 40_000 + 10_000));
    assert_eq!(r.total_file_count, Some(8));
    assert!(r.sources.is_empty(), "only the whole repository gets a breakdown");

    let r = stats(&repo, &snaps, &opts(StatsMode::FilesByContents), &|_| {}).unwrap();
    assert_eq!(r.total_file_count, Some(2));
    assert_eq!(r.total_size, 50_000);

    let r = stats(&repo, &snaps, &opts(StatsMode::RawData), &|_| {}).unwrap();
    let index = repo.load_index().unwrap();
    let files = repo.readable_index_files().unwrap();
    let used = reachable(&repo, &index, &snaps);
    let raw: u64 = files
        .iter()
        .flat_map(|f| &f.packs)
        .flat_map(|p| &p.blobs)
        .filter(|b| used.contains(&crate::prune::mark::key_of(&b.id)))
        .map(|b| u64::from(b.raw_length))
        .sum();
    assert_eq!(r.total_size, raw);
    assert_eq!(r.total_blob_count, Some(used.len() as u64));
    assert!(r.total_size >= 50_000);
    assert_eq!(r.missing_blobs, 0);
}

#[test]
fn modes_parse_by_restic_names() {
    assert_eq!("raw-data".parse::<StatsMode>().unwrap(), StatsMode::RawData);
    assert_eq!(
        "files-by-contents".parse::<StatsMode>().unwrap(),
        StatsMode::FilesByContents
    );
    let e = "blobs".parse::<StatsMode>().unwrap_err();
    assert!(e.contains("restore-size"), "{e}");
}
