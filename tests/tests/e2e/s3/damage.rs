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
