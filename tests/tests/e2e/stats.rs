//! `cairn stats`: sizes the test knows from the files it wrote, ratios
//! against the repository's size on disk, unique bytes against what a
//! forget and prune of a source really free, and prices from cairn.toml.

use std::path::Path;

use serde_json::Value;

use crate::copy::bytes_under;
use crate::util::*;

/// Bytes of the pack files of the repository at `repo`.
fn pack_bytes(repo: &Path) -> u64 {
    bytes_under(&repo.join("data")) + bytes_under(&repo.join("tree"))
}

fn within(a: f64, b: f64, share: f64) -> bool {
    (a - b).abs() <= share * b.abs()
}

/// Two sources sharing a file: `db` (tagged, two nights) and `web`.
/// Returns the fixture and the restore size of each snapshot, as written.
fn two_sources() -> (Fixture, u64, u64) {
    let f = Fixture::init();
    let shared = Rng::new(70).bytes(2_000_000);
    let a = f.path("src-a");
    write(&a.join("own.bin"), Rng::new(71).bytes(3_000_000));
    write(&a.join("sub/shared.bin"), &shared);
    let b = f.path("src-b");
    write(&b.join("own.bin"), Rng::new(72).bytes(1_500_000));
    write(&b.join("shared.bin"), &shared);
    for _ in 0..2 {
        f.backup(&["--host", "db-1", "--tag", "db", &s(&a)]);
    }
    f.backup(&["--host", "web-1", &s(&b)]);
    (f, 5_000_000, 3_500_000)
}

fn source<'a>(report: &'a Value, host: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["host"] == host)
        .unwrap_or_else(|| panic!("no source of host {host}: {report:#}"))
}

/// A copy of the fixture's repository, for a destructive measurement.
fn copy_repo(f: &Fixture, name: &str) -> std::path::PathBuf {
    let to = f.path(name);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&f.repo)
        .arg(&to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a of the repository");
    to
}

/// Forgets every snapshot of `host` in the repository at `repo`, prunes
/// everything unused, and returns the pack bytes that went.
fn forget_and_prune(f: &Fixture, repo: &Path, host: &str) -> u64 {
    let before = pack_bytes(repo);
    let ids: Vec<String> = match f
        .cairn()
        .env("CAIRN_REPOSITORY", repo)
        .args(["snapshots", "--host", host])
        .json()
    {
        Value::Array(v) => v.iter().map(|s| str_at(s, "/id").to_string()).collect(),
        other => panic!("{other}"),
    };
    assert!(!ids.is_empty());
    f.cairn().env("CAIRN_REPOSITORY", repo).arg("forget").args(&ids).ok();
    f.cairn()
        .env("CAIRN_REPOSITORY", repo)
        .args(["prune", "--max-unused", "0%", "--instant-delete"])
        .ok();
    before - pack_bytes(repo)
}

#[test]
fn stats_restore_size_and_ratios_match_the_files_and_du_and_unique_bytes_what_prune_frees() {
    let (f, size_a, size_b) = two_sources();
    let r = f.cairn().arg("stats").json();
    assert_eq!(r["mode"], "restore-size");
    assert_eq!(u64_at(&r, "/snapshots"), 3);
    assert_eq!(u64_at(&r, "/restore_size"), 2 * size_a + size_b);
    assert_eq!(u64_at(&r, "/total_size"), 2 * size_a + size_b);
    assert_eq!(u64_at(&r, "/total_file_count"), 6);

    // The ratios against the repository's size on disk.
    let on_disk = bytes_under(&f.repo) as f64;
    let repo = &r["repository"];
    // Deduplication: what restoring every snapshot writes over what the
    // repository takes on disk.
    let dedup = repo["dedup_ratio"].as_f64().unwrap();
    let written = (2 * size_a + size_b) as f64;
    assert!(
        within(dedup, written / on_disk, 0.02),
        "dedup ratio {dedup} against {written} / du {on_disk}: {r:#}"
    );
    let compression = repo["compression_ratio"].as_f64().unwrap();
    assert!(
        within(u64_at(repo, "/uncompressed_bytes") as f64 / compression, on_disk, 0.02),
        "uncompressed / compression ratio against du {on_disk}: {r:#}"
    );
    assert_eq!(u64_at(repo, "/stored_bytes"), pack_bytes(&f.repo));
    assert_eq!(u64_at(repo, "/repository_bytes") as f64, on_disk);

    let db = source(&r, "db-1");
    let web = source(&r, "web-1");
    assert_eq!(u64_at(db, "/restore_size"), 2 * size_a);
    assert_eq!(u64_at(web, "/restore_size"), size_b);
    assert_eq!(strings_at(db, "/tags"), vec!["db".to_string()]);
    assert_eq!(
        u64_at(db, "/shared_bytes"),
        u64_at(web, "/shared_bytes"),
        "the one shared file is what each shares: {r:#}"
    );
    // Measured: what forgetting each source and a prune free (pack headers
    // and the repacked packs' framing are the only difference).
    for (host, src) in [("db-1", db), ("web-1", web)] {
        let copy = copy_repo(&f, &format!("copy-{host}"));
        let freed = forget_and_prune(&f, &copy, host);
        let unique = u64_at(src, "/unique_bytes");
        assert!(
            within(unique as f64, freed as f64, 0.01),
            "{host}: stats says {unique} unique bytes, forget + prune freed {freed}"
        );
    }
    let tag = &r["tags"][0];
    assert_eq!(tag["tag"], "db");
    assert_eq!(u64_at(tag, "/unique_bytes"), u64_at(db, "/unique_bytes"));
}

#[test]
fn stats_modes_and_selections() {
    let (f, size_a, size_b) = two_sources();
    let r = f.cairn().args(["stats", "--mode", "files-by-contents"]).json();
    // Three distinct contents: each source's own file and the shared one.
    assert_eq!(u64_at(&r, "/total_file_count"), 3);
    assert_eq!(u64_at(&r, "/total_size"), 3_000_000 + 2_000_000 + 1_500_000);

    let r = f
        .cairn()
        .args(["stats", "--mode", "raw-data", "--host", "web-1"])
        .json();
    assert_eq!(u64_at(&r, "/snapshots"), 1);
    assert_eq!(u64_at(&r, "/restore_size"), size_b);
    // The file data plus the (small) trees.
    let raw = u64_at(&r, "/total_size");
    assert!(raw >= size_b && raw < size_b + 10_000, "{r:#}");
    assert!(u64_at(&r, "/total_blob_count") >= 3);
    assert!(r.get("total_file_count").is_none(), "{r:#}");
    assert_eq!(r["sources"], Value::Array(vec![]), "a selection gets no breakdown");
    assert!(r["repository"]["dedup_ratio"].is_null());

    let r = f.cairn().args(["stats", "latest"]).json();
    assert_eq!(u64_at(&r, "/restore_size"), size_b);
    let human = f.cairn().args(["stats"]).ok().stdout();
    assert!(human.contains("deduplication ratio"), "{human}");
    assert!(human.contains("db-1") && human.contains("web-1"), "{human}");

    let bad = f.cairn().args(["stats", "--mode", "blobs"]).fails();
    assert!(
        bad.stderr().contains("restore-size, raw-data or files-by-contents"),
        "{bad}"
    );
    let none = f.cairn().args(["stats", "--host", "nobody"]).fails();
    assert!(none.stderr().contains("no snapshot passes the filters"), "{none}");
    assert_eq!(
        u64_at(&f.cairn().arg("stats").json(), "/restore_size"),
        2 * size_a + size_b
    );
}

#[test]
fn stats_cost_uses_the_price_table_of_cairn_toml() {
    let (f, _, _) = two_sources();
    let r = f.cairn().args(["stats", "--cost"]).json();
    let cost = &r["cost"];
    assert_eq!(cost["classes"].as_array().unwrap().len(), 1, "{cost:#}");
    assert_eq!(cost["classes"][0]["class"], "local");
    assert_eq!(u64_at(&cost["classes"][0], "/bytes"), pack_bytes(&f.repo));
    assert_eq!(cost["monthly_usd"].as_f64(), Some(0.0));
    assert!(source(&r, "db-1")["cost"]["by_class"].is_array());

    // A price for local disks, as a platform would put its own cost in.
    write(&f.user_config(), "[prices]\nlocal = 0.5\n");
    let r = f.cairn().args(["stats", "--cost"]).json();
    let expected = pack_bytes(&f.repo) as f64 / (1u64 << 30) as f64 * 0.5;
    let got = r["cost"]["monthly_usd"].as_f64().unwrap();
    assert!(within(got, expected, 1e-9), "{got} against {expected}");
    assert!(str_at(&r, "/cost/prices").contains("local"), "{r:#}");
    let db = source(&r, "db-1");
    let db_monthly = db["cost"]["monthly_usd"].as_f64().unwrap();
    let db_expected = u64_at(db, "/unique_bytes") as f64 / (1u64 << 30) as f64 * 0.5;
    assert!(within(db_monthly, db_expected, 1e-9), "{db:#}");
    // Local classes have no minimum storage duration: nothing to charge.
    assert_eq!(db["cost"]["early_deletion_usd"].as_f64(), Some(0.0));

    write(&f.user_config(), "[prices]\nlocal = -1.0\n");
    let bad = f.cairn().args(["stats", "--cost"]).fails();
    assert!(bad.stderr().contains("[prices] local"), "{bad}");
}
