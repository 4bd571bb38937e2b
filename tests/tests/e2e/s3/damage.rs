//! Best-effort restore from S3: a data pack gone from the bucket costs only
//! the file whose data it held, and a restore drill names that file.

use std::collections::BTreeSet;

use cairn_test_support::s3::moto;

use super::*;

#[test]
fn s3_restore_with_a_deleted_pack_restores_the_rest_and_names_the_file() {
    let Some(m) = moto() else { return };
    let (f, prefix) = s3_fixture(&m, "damage", &[profile("plain", &m.endpoint, "")]);
    f.init_repo(&[]);
    let src = f.path("src");
    let files = ["a.bin", "b.bin", "c.bin"].map(|n| src.join(n));
    let mut packs = Vec::new();
    for (i, file) in files.iter().enumerate() {
        write(file, Rng::new(200 + i as u64).bytes(150_000));
        let before: BTreeSet<String> = moto_data_packs(&m, &prefix).into_keys().collect();
        f.backup(&[&s(&src)]);
        let new: Vec<String> = moto_data_packs(&m, &prefix)
            .into_keys()
            .filter(|k| !before.contains(k))
            .collect();
        assert_eq!(new.len(), 1, "one new data pack per backup: {new:?}");
        packs.extend(new);
    }
    let gone = &packs[1];
    let a = http(
        &m.endpoint,
        "DELETE",
        &format!("/{}/{gone}", m.bucket),
        &[("Authorization", MOTO_AUTH)],
        b"",
    );
    assert!(a.status == 204 || a.status == 200, "DELETE {gone}: {}", a.head);

    let target = f.path("restored");
    let r = f
        .cairn()
        .args(["restore", "latest", "--json", "--target", &s(&target)])
        .fails();
    assert_eq!(r.code(), Some(1), "{r}");
    let out = r.json();
    let bad = under(&target, &files[1]);
    let failed = out["summary"]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{out:#}");
    assert_eq!(failed[0]["path"], s(&bad), "{out:#}");
    let pack_name = gone.rsplit('/').next().unwrap();
    assert!(
        failed[0]["reason"].as_str().unwrap().contains(pack_name),
        "the reason names the pack {pack_name}: {out:#}"
    );
    assert!(std::fs::symlink_metadata(&bad).is_err(), "nothing under its name");
    for good in [&files[0], &files[2]] {
        assert_eq!(entry(&under(&target, good)), entry(good));
    }
}

/// `cairn drill` on a repository in a bucket: it passes, then, with the
/// data pack of one file deleted from the bucket, fails naming that file.
#[test]
fn s3_drill_passes_then_fails_naming_the_file_whose_pack_is_gone() {
    let Some(m) = moto() else { return };
    let prefix = cairn_test_support::s3::unique("e2e-drill");
    let r = crate::copy::Repos::new(|f| vec![super::copy::s3_repo(f, &m, "primary", &m.bucket, &prefix, "")]);
    let app = r.f.path("app");
    r.append_config(&format!(
        "\n[sources.app]\nkind = \"files\"\npaths = [\"{}\"]\ntags = [\"app\"]\nrto-class = \"P1\"\nrepository = \"primary\"\n",
        s(&app)
    ));
    r.init("primary", &[]);
    write(&app.join("small.txt"), "kept apart");
    r.cairn("primary").args(["backup", "--tag", "app"]).arg(&app).json();
    let before: BTreeSet<String> = moto_data_packs(&m, &prefix).into_keys().collect();
    write(&app.join("big.bin"), Rng::new(clock_seed()).bytes(400_000));
    r.cairn("primary").args(["backup", "--tag", "app"]).arg(&app).json();
    let new: Vec<String> = moto_data_packs(&m, &prefix)
        .into_keys()
        .filter(|k| !before.contains(k))
        .collect();
    assert_eq!(new.len(), 1, "big.bin's data is in one new pack: {new:?}");

    let scratch = r.f.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let j = r.cairn("primary").args(["drill", "--scratch"]).arg(&scratch).json();
    let a = crate::drill::source(&j, "app");
    assert_eq!(a["ok"], Value::Bool(true), "{j:#}");
    assert!(u64_at(a, "/bytes") >= 400_000, "{j:#}");

    let gone = http(
        &m.endpoint,
        "DELETE",
        &format!("/{}/{}", m.bucket, new[0]),
        &[("Authorization", MOTO_AUTH)],
        b"",
    );
    assert!(
        gone.status == 204 || gone.status == 200,
        "DELETE {}: {}",
        new[0],
        gone.head
    );
    let run = r
        .cairn("primary")
        .args(["--json", "drill", "--scratch"])
        .arg(&scratch)
        .fails();
    assert_eq!(run.code(), Some(1), "{run}");
    let a = crate::drill::source(&run.json(), "app").clone();
    assert_eq!(a["ok"], Value::Bool(false), "{a:#}");
    let reasons = a["reasons"].to_string();
    assert!(reasons.contains("big.bin"), "the file is named: {a:#}");
    assert!(!reasons.contains("small.txt"), "only that file: {a:#}");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0, "nothing left behind");
}

/// `check --read-data` verifies what the bucket holds: a tree pack damaged
/// in the bucket is found although the local metadata cache still holds a
/// good copy of it (restic's check likewise keeps out of its cache).
#[test]
fn s3_check_read_data_reads_tree_packs_from_the_bucket_not_the_cache() {
    let Some(m) = moto() else { return };
    let (f, prefix) = s3_fixture(&m, "check-cache", &[profile("plain", &m.endpoint, "")]);
    f.init_repo(&[]);
    let src = f.path("src");
    write(&src.join("a.txt"), "kept in a tree");
    f.backup(&[&s(&src)]);
    f.cairn().args(["ls", "latest"]).ok();
    let trees: Vec<String> = moto_objects(&m, &format!("{prefix}/tree/")).into_keys().collect();
    let key = trees.first().expect("a tree pack in the bucket");
    let name = key.rsplit('/').next().unwrap().to_string();
    let cached = files_under(&f.home.join(".cache"))
        .into_iter()
        .any(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name));
    assert!(cached, "`ls` left tree pack {name} in the cache");

    let path = format!("/{}/{key}", m.bucket);
    let got = http(&m.endpoint, "GET", &path, &[("Authorization", MOTO_AUTH)], b"");
    assert_eq!(got.status, 200, "GET {key}: {}", got.head);
    let mut bytes = got.body;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let put = http(&m.endpoint, "PUT", &path, &[("Authorization", MOTO_AUTH)], &bytes);
    assert_eq!(put.status, 200, "PUT {key}: {}", put.head);

    let r = f.cairn().args(["check", "--read-data", "--json"]).fails();
    assert_eq!(r.code(), Some(1), "{r}");
    let j = r.json();
    assert_eq!(j["ok"], Value::Bool(false), "{j:#}");
    assert!(
        j.to_string().contains(&name),
        "the damaged tree pack {name} is named: {j:#}"
    );
}
