//! `forget`: by keep rules (restic's meaning), by id, dry runs and JSON.

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
    let groups = dry.as_array().unwrap();
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
    assert_eq!(ids(&f), std::slice::from_ref(&b));
    // `unlimited` keeps every day's newest.
    f.cairn().args(["forget", "--keep-daily", "unlimited"]).ok();
    assert_eq!(ids(&f), [b]);
}

/// `forget --policy`: the retention table of the user's cairn.toml, first matching rule
/// deciding, unmatched snapshots kept and said to be.
#[test]
fn the_retention_table_in_cairn_toml_decides_by_the_first_matching_rule() {
    let f = Fixture::init();
    let tagged = |tag: &str, time: &str| {
        let v = f
            .cairn()
            .args([
                "backup",
                "--stdin",
                "--stdin-filename",
                tag,
                "--tag",
                tag,
                "--time",
                time,
            ])
            .stdin(format!("{tag} {time}\n"))
            .json();
        str_at(&v, "/snapshot_id").to_string()
    };
    // Dated back from now, so the test means the same every day it runs.
    let days_ago = |n: i64| {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(n as u64 * 86_400);
        format!("@{}", t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
    };
    let audit_old = tagged("audit", &days_ago(4 * 365));
    let db_new = tagged("db", &days_ago(10));
    let db_old = tagged("db", &days_ago(100));
    let logs_old = tagged("logs", &days_ago(40));
    let misc = tagged("misc", &days_ago(3000));
    write(
        &f.user_config(),
        r#"
[[retention]]
match = { tag = "audit" }
max-age = "5y"

[[retention]]
match = { tag = "db" }
max-age = "90d"
keep-daily = 90

[[retention]]
match = { tag = "logs" }
max-age = "30d"
"#,
    );
    let dry = f.cairn().args(["forget", "--policy", "--dry-run"]).json();
    let groups = dry.as_array().unwrap();
    let rule_of = |id: &str| -> (String, bool) {
        for g in groups {
            for (list, keep) in [("keep", true), ("remove", false)] {
                if g[list].as_array().unwrap().iter().any(|s| str_at(s, "/id") == id) {
                    return (g["rule"].as_str().unwrap().to_string(), keep);
                }
            }
        }
        panic!("{id} is in no group: {dry:#}");
    };
    assert_eq!(rule_of(&audit_old), ("1 (tag=audit)".into(), true));
    assert_eq!(rule_of(&db_new), ("2 (tag=db)".into(), true));
    assert_eq!(rule_of(&db_old), ("2 (tag=db)".into(), false));
    assert_eq!(rule_of(&logs_old), ("3 (tag=logs)".into(), false));
    assert_eq!(rule_of(&misc), ("none".into(), true));
    assert_eq!(ids(&f).len(), 5, "a dry run removes nothing");

    f.cairn().args(["forget", "--policy"]).ok();
    let mut left = ids(&f);
    left.sort();
    let mut want = vec![audit_old, db_new, misc];
    want.sort();
    assert_eq!(left, want);

    // A rule that would remove everything it matches is refused.
    write(&f.user_config(), "[[retention]]\nmatch = { tag = \"db\" }\n");
    let r = f.cairn().args(["forget", "--policy"]).fails();
    assert!(r.stderr().contains("needs max-age or keep-*"), "{r}");
    write(&f.user_config(), "[[retention]]\nmax-age = \"1y\"\nkeep-dialy = 3\n");
    let r = f.cairn().args(["forget", "--policy"]).fails();
    assert!(r.stderr().contains("keep-dialy"), "unknown keys are named\n{r}");
    std::fs::remove_file(f.user_config()).unwrap();
    assert_eq!(ids(&f).len(), 3);
}
