//! `cairn copy` with S3 on either side: local → SeaweedFS → a second bucket
//! on the same server, SeaweedFS → local, a source whose data packs are in
//! GLACIER on moto, and a destination whose profile sets `storage-class`.
//! Every repository has its own password and its own credentials file; the
//! helpers (profiles, restores, checks) are crate::copy's.

use std::collections::{BTreeMap, BTreeSet};

use cairn_engine::TestBucket;
use cairn_test_support::s3::{moto, moto_restores, seaweed, unique, Server};
use serde_json::Value;

use super::*;
use crate::copy::{assert_nothing_copied, assert_path, copied, local, RepoDef, Repos};

/// A profile for `prefix` in `bucket` on `server`, with the server's
/// credentials in a file of its own and `extra` lines for its s3 table.
pub(super) fn s3_repo(
    f: &Fixture,
    server: &Server,
    name: &'static str,
    bucket: &str,
    prefix: &str,
    extra: &str,
) -> RepoDef<'static> {
    let creds = f.root.join(format!("{name}.cred"));
    server.write_credentials(&creds);
    RepoDef {
        name,
        location: format!("s3:{}/{bucket}/{prefix}", server.endpoint.trim_end_matches('/')),
        extra: String::new(),
        s3: Some(format!(
            "region = \"us-east-1\"\ncredentials-file = \"{}\"\n{extra}",
            s(&creds)
        )),
    }
}

/// A fresh bucket on `server`; returns its name.
fn fresh_bucket(server: &Server, f: &Fixture, test: &str) -> String {
    let id = unique(test);
    let hex = id.rsplit('-').next().expect("unique ends in hex");
    let bucket = format!("cairn-copy-{hex}");
    let creds = f.root.join(format!("bucket-{hex}.cred"));
    server.write_credentials(&creds);
    let location = format!("s3:{}/{bucket}", server.endpoint.trim_end_matches('/'));
    let b = TestBucket::open(&location, &creds).expect("opening the test bucket");
    b.create().unwrap_or_else(|e| panic!("creating {location}: {e}"));
    bucket
}

/// Two snapshots of a changing tree in `repo`; returns the source folder
/// and each snapshot's manifest by id.
fn two_snapshots(
    r: &Repos,
    repo: &str,
) -> (
    std::path::PathBuf,
    BTreeMap<String, BTreeMap<std::path::PathBuf, Entry>>,
) {
    let src = r.f.path("src");
    s3_tree(&src);
    let mut expected = BTreeMap::new();
    let a = r.backup(repo, &[&src]);
    expected.insert(str_at(&a, "/snapshot_id").to_string(), manifest(&src));
    write(&src.join("hello.txt"), "hello again\n");
    write(&src.join("data/added.bin"), Rng::new(61).bytes(1_500_000));
    let b = r.backup(repo, &[&src]);
    expected.insert(str_at(&b, "/snapshot_id").to_string(), manifest(&src));
    (src, expected)
}

#[test]
fn s3_copy_local_to_seaweedfs_then_to_a_second_bucket_fast_path_restores_exactly() {
    let Some(sw) = seaweed() else { return };
    let r = Repos::new(|f| {
        let other_bucket = fresh_bucket(&sw, f, "copy-second");
        vec![
            local(f, "primary"),
            s3_repo(f, &sw, "offsite", &sw.bucket, &unique("e2e-copy-offsite"), ""),
            s3_repo(f, &sw, "other", &other_bucket, "cairn", ""),
        ]
    });
    r.init("primary", &[]);
    r.init_like("offsite", "primary", &[]);
    r.init_like("other", "offsite", &[]);
    let (src, expected) = two_snapshots(&r, "primary");

    // local → S3
    let to_s3 = r.copy("primary", &["--to", "offsite"]);
    assert_path(&to_s3, "fast");
    assert_eq!(copied(&to_s3).len(), 2, "{to_s3:#}");
    assert!(u64_at(&to_s3, "/bytes_written") > BIG as u64, "{to_s3:#}");
    r.assert_copies_restore("offsite", &to_s3, &src, &expected);
    r.assert_check("offsite", true, "local → S3");

    // S3 → S3, into another bucket of the same server: the copies of the
    // copies are keyed by their own source (offsite), so all are new there.
    let s3_to_s3 = r.copy("offsite", &["--to", "other"]);
    assert_path(&s3_to_s3, "fast");
    assert_eq!(copied(&s3_to_s3).len(), 2, "{s3_to_s3:#}");
    assert!(u64_at(&s3_to_s3, "/packs_read") > 0, "{s3_to_s3:#}");
    // Expected trees by the offsite ids the report names as sources.
    let by_offsite: BTreeMap<String, _> = copied(&to_s3)
        .into_iter()
        .map(|(from, to)| (to, expected[&from].clone()))
        .collect();
    r.assert_copies_restore("other", &s3_to_s3, &src, &by_offsite);
    r.assert_check("other", true, "S3 → S3");

    // Run again: nothing to copy, no pack read.
    assert_nothing_copied(&r.copy("primary", &["--to", "offsite"]), 2);
    assert_nothing_copied(&r.copy("offsite", &["--to", "other"]), 2);
}

#[test]
fn s3_copy_seaweedfs_to_local_rechunks_and_restores_exactly() {
    let Some(sw) = seaweed() else { return };
    let r = Repos::new(|f| {
        vec![
            s3_repo(f, &sw, "primary", &sw.bucket, &unique("e2e-copy-s3-src"), ""),
            local(f, "home"),
        ]
    });
    r.init("primary", &[]);
    r.init("home", &[]);
    let (src, expected) = two_snapshots(&r, "primary");
    let back = r.copy("primary", &["--to", "home"]);
    assert_path(&back, "rechunk");
    assert_eq!(copied(&back).len(), 2, "{back:#}");
    r.assert_copies_restore("home", &back, &src, &expected);
    r.assert_check("home", true, "S3 → local");
    assert_nothing_copied(&r.copy("primary", &["--to", "home"]), 2);
}

#[test]
fn s3_copy_from_glacier_packs_on_moto_requests_only_the_needed_retrievals() {
    let Some(m) = moto() else { return };
    let restores = moto_restores(&m);
    let prefix = unique("e2e-copy-glacier");
    let r = Repos::new(|f| vec![s3_repo(f, &m, "archive", &m.bucket, &prefix, ""), local(f, "near")]);
    r.init("archive", &[]);
    r.init_like("near", "archive", &[]);
    let src = r.f.path("src");
    s3_tree(&src);
    let first = r.backup("archive", &[&src]);
    let mut expected = BTreeMap::from([(str_at(&first, "/snapshot_id").to_string(), manifest(&src))]);
    r.copy("archive", &["--to", "near"]);
    let old_packs: BTreeSet<String> = moto_data_packs(&m, &prefix).into_keys().collect();

    write(&src.join("data/second.bin"), Rng::new(62).bytes(3_000_000));
    let second = r.backup("archive", &[&src]);
    expected.insert(str_at(&second, "/snapshot_id").to_string(), manifest(&src));
    let all: BTreeSet<String> = moto_data_packs(&m, &prefix).into_keys().collect();
    let new_packs: BTreeSet<String> = all.difference(&old_packs).cloned().collect();
    assert!(!new_packs.is_empty());
    // A lifecycle rule moves every data pack to GLACIER.
    for key in &all {
        moto_move_to_glacier(&m, key);
    }

    // Retrievals that take a few looks to finish.
    restores.manual(3);
    let run = || r.cairn("archive").args(["copy", "--to", "near", "--json"]).run();
    let first_run = run();
    let j = assert_pending(&first_run).json();
    let c = &j["copies"][0];
    assert_eq!(c["retrieval_pending"], Value::Bool(true), "{j:#}");
    assert_eq!(u64_at(c, "/retrieval/requested_now"), new_packs.len() as u64, "{j:#}");
    // Archived among the packs it needs (tree packs stay STANDARD): the new data packs.
    assert_eq!(u64_at(c, "/retrieval/archived"), new_packs.len() as u64, "{j:#}");
    assert_eq!(u64_at(c, "/pending_packs"), new_packs.len() as u64, "{j:#}");
    assert!(r.snapshots("near").len() == 1, "a snapshot was copied without its data");
    // The packs the destination has already were not asked for.
    for key in &old_packs {
        let (class, restore) = moto_head(&m, key);
        assert_eq!(class.as_deref(), Some("GLACIER"), "{key}");
        assert_eq!(restore, None, "{key} was requested, but the destination holds its data");
    }

    // Run again until the retrievals are done; none is requested twice.
    let mut runs = 1;
    let done = loop {
        let r2 = run();
        runs += 1;
        assert_no_damage_reported(&r2);
        match r2.code() {
            Some(0) => break r2.json(),
            Some(14) => {
                let j = r2.json();
                assert_eq!(u64_at(&j, "/copies/0/retrieval/requested_now"), 0, "asked twice: {j:#}");
            }
            _ => panic!("expected 0 or 14\n{r2}"),
        }
        assert!(runs < 10, "the retrievals never finished");
    };
    let c = &done["copies"][0];
    assert_eq!(copied(c).len(), 1, "{done:#}");
    assert_eq!(u64_at(c, "/skipped"), 1, "{done:#}");
    r.assert_copies_restore("near", c, &src, &expected);
    r.assert_check("near", true, "after the copy from GLACIER");
}

#[test]
fn s3_copy_into_a_destination_with_storage_class_writes_its_data_packs_in_that_class() {
    let Some(m) = moto() else { return };
    let prefix = unique("e2e-copy-class");
    let r = Repos::new(|f| {
        vec![
            local(f, "primary"),
            s3_repo(f, &m, "cold", &m.bucket, &prefix, "storage-class = \"STANDARD_IA\""),
        ]
    });
    r.init("primary", &[]);
    r.init_like("cold", "primary", &[]);
    let (src, expected) = two_snapshots(&r, "primary");
    let c = r.copy("primary", &["--to", "cold"]);
    assert_eq!(copied(&c).len(), 2, "{c:#}");
    let objects = moto_objects(&m, &format!("{prefix}/"));
    let data = format!("{prefix}/data/");
    assert!(objects.keys().any(|k| k.starts_with(&data)), "{objects:#?}");
    for (key, class) in &objects {
        let want = if key.starts_with(&data) {
            "STANDARD_IA"
        } else {
            "STANDARD"
        };
        assert_eq!(class, want, "{key}");
    }
    r.assert_copies_restore("cold", &c, &src, &expected);
    r.assert_check("cold", true, "destination with storage-class");
}
