//! `cairn import restic` from a restic repository in a SeaweedFS bucket
//! (made there by restic 0.19.1 itself), named by a cairn.toml profile.

use cairn_test_support::s3::seaweed;

use super::*;
use crate::forget_restic::{restic, run_restic_with};
use crate::import_restic::assert_cairn_restores_as;

#[test]
fn s3_import_restic_repository_from_seaweedfs() {
    let Some(sw) = seaweed() else { return };
    let Some(bin) = restic() else { return };
    let (mut f, prefix) = offsite_fixture(&sw, "import-restic");
    // The Cairn repository is a local folder; the profile is restic's bucket.
    f.repo = f.path("repo");
    f.init_repo(&[]);
    let url = format!("s3:{}/{}/{prefix}", sw.endpoint.trim_end_matches('/'), sw.bucket);
    let env = [
        ("AWS_ACCESS_KEY_ID", sw.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", sw.secret.as_str()),
    ];
    let restic_run = |args: &[&str]| run_restic_with(&bin, url.as_ref(), &f.password_file, args, b"", &env);
    let src = f.path("src");
    s3_tree(&src);
    restic_run(&["init", "--repository-version", "2"]);
    restic_run(&["backup", &s(&src), "--tag", "s3"]);
    write(&src.join("data/later.txt"), "later\n");
    restic_run(&["backup", &s(&src)]);

    let run = f
        .cairn()
        .args(["--json", "import", "restic", "--from", "offsite"])
        .env("CAIRN_FROM_PASSWORD_FILE", &f.password_file)
        .run();
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let v = run.json();
    assert_eq!(v["imported"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["location"].as_str(), Some(url.as_str()));

    // The newest snapshot restores through Cairn as restic restores it.
    let latest: Value = serde_json::from_slice(&restic_run(&["snapshots", "latest", "--json"])).unwrap();
    let rid = latest[0]["id"].as_str().unwrap();
    let by_restic = f.path("by-restic");
    restic_run(&["restore", rid, "--target", &s(&by_restic)]);
    assert_cairn_restores_as(&f, rid, &by_restic);
}
