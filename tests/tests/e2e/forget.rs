//! `forget`: by keep rules (restic's meaning), by id, dry runs and JSON.

use serde_json::Value;

use crate::util::*;

/// Backs up `content` as `/x` dated `time` (UTC); returns the snapshot id.
fn night(f: &Fixture, time: &str, content: &str) -> String {
    let v = f
        .cairn()
        .args(["backup", "--stdin", "--stdin-filename", "x", "--time", time])
        .stdin(content.to_string())
        .json();
    str_at(&v, "/snapshot_id").to_string()
}

fn ids(f: &Fixture) -> Vec<String> {
    f.snapshots().iter().map(|s| str_at(s, "/id").to_string()).collect()
}

#[test]
fn keep_rules_remove_what_no_rule_wants_and_the_rest_still_restores() {
    let f = Fixture::init();
    // TZ is pinned so day boundaries do not depend on the test machine.
    let times = [
        "2026-11-01T10:00:00Z",
        "2026-11-02T09:00:00Z",
        "2026-11-02T21:00:00Z",
        "2026-11-09T09:00:00Z",
        "2026-11-20T09:00:00Z",
    ];
    let made: Vec<String> = times.iter().map(|t| night(&f, t, &format!("night {t}\n"))).collect();

    let dry = f
        .cairn()
        .env("TZ", "UTC")
        .args(["forget", "--keep-daily", "2", "--keep-weekly", "3", "--dry-run"])
        .json();
    assert_eq!(dry["dry_run"], Value::Bool(true));
    let groups = dry["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{dry:#}");
    let keep: Vec<&str> = groups[0]["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_at(s, "/id"))
        .collect();
    let remove: Vec<&str> = groups[0]["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_at(s, "/id"))
        .collect();
    // daily: 20 Nov, 9 Nov; weekly (ISO): 20 Nov (W47), 9 Nov (W46), and
    // 2 Nov 21:00 (W45, the newest of that week).
    assert_eq!(keep, [&made[4], &made[3], &made[2]]);
    assert_eq!(remove, [&made[1], &made[0]]);
    let reasons = groups[0]["reasons"].as_array().unwrap();
    assert_eq!(reasons[2]["matches"], serde_json::json!(["weekly snapshot"]), "{dry:#}");
    assert_eq!(ids(&f).len(), 5, "a dry run removes nothing");

    f.cairn()
        .env("TZ", "UTC")
        .args(["forget", "--keep-daily", "2", "--keep-weekly", "3"])
        .ok();
    let mut left = ids(&f);
    left.sort();
    let mut want = vec![made[2].clone(), made[3].clone(), made[4].clone()];
    want.sort();
    assert_eq!(left, want);
    for (i, id) in made.iter().enumerate().skip(2) {
        assert_eq!(f.dump(&id[..12], "/x"), format!("night {}\n", times[i]).into_bytes());
    }
    f.cairn().args(["check"]).ok();
}

#[test]
fn forget_by_id_and_refusals() {
    let f = Fixture::init();
    let a = night(&f, "2026-01-01T00:00:00Z", "a\n");
    let b = night(&f, "2026-01-02T00:00:00Z", "b\n");
    let r = f.cairn().args(["forget"]).fails();
    assert!(r.stderr().contains("no keep rule given"), "{r}");
    let r = f.cairn().args(["forget", &a[..8], "--keep-last", "1"]).fails();
    assert!(r.stderr().contains("not both"), "{r}");
    let r = f.cairn().args(["forget", "--keep-within", "3x"]).fails();
    assert!(r.stderr().contains("not a duration"), "{r}");
    let r = f.cairn().args(["forget", "--keep-daily", "many"]).fails();
    assert_eq!(r.code(), Some(2), "a usage error\n{r}");
    assert_eq!(ids(&f).len(), 2, "refusals remove nothing");

    f.cairn().args(["forget", &a[..8].to_ascii_uppercase()]).ok();
    assert_eq!(ids(&f), [b.clone()]);
    // `unlimited` keeps every day's newest.
    f.cairn().args(["forget", "--keep-daily", "unlimited"]).ok();
    assert_eq!(ids(&f), [b]);
}
