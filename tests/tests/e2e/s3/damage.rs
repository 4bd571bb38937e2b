//! Best-effort restore from S3: a data pack gone from the bucket costs only
//! the file whose data it held.

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
