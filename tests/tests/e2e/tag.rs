//! `tag`: changing snapshots' tags after the fact, as filters and retention
//! rules then see them; dry runs, JSON and refusals.

use serde_json::Value;

use crate::util::*;

/// Backs up `content` as `/x` dated `time`, tagged `tags` (comma-separated,
/// or empty); returns the snapshot id.
fn backup(f: &Fixture, time: &str, tags: &str, content: &str) -> String {
    let mut c = f.cairn();
    c.args(["backup", "--stdin", "--stdin-filename", "x", "--time", time]);
    for t in tags.split(',').filter(|t| !t.is_empty()) {
        c.args(["--tag", t]);
    }
    let v = c.stdin(content.to_string()).json();
    str_at(&v, "/snapshot_id").to_string()
}

/// Every snapshot id, sorted.
fn ids(f: &Fixture) -> Vec<String> {
    let mut ids: Vec<String> = f.snapshots().iter().map(|s| str_at(s, "/id").to_string()).collect();
    ids.sort();
    ids
}

/// The snapshot with id `id` in `snapshots --json`.
fn listed(f: &Fixture, id: &str) -> Value {
    f.snapshots()
        .into_iter()
        .find(|s| str_at(s, "/id") == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

/// Midnight UTC `n` days ago, as `@SECONDS`: the retention test means the same every day.
fn days_ago(n: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("@{}", (now.as_secs() / 86_400 - n) * 86_400)
}

#[test]
fn an_added_tag_is_found_by_snapshots_tag_on_the_replacing_snapshot() {
    let f = Fixture::init();
    let old = backup(&f, "2026-01-10T03:00:00Z", "nightly", "first\n");
    let other = backup(&f, "2026-01-11T03:00:00Z", "nightly", "second\n");
    let before = listed(&f, &old);

    let v = f.cairn().args(["tag", &old[..8], "--add", "audit"]).json();
    let done = &v["snapshots"].as_array().unwrap()[..];
    assert_eq!(done.len(), 1, "{v:#}");
    assert_eq!(str_at(&done[0], "/original"), old);
    let new = str_at(&done[0], "/tagged").to_string();
    assert_ne!(new, old);

    let found = f.cairn().args(["snapshots", "--tag", "audit"]).json();
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let s = &found[0];
    assert_eq!(str_at(s, "/id"), new);
    assert_eq!(strings_at(s, "/tags"), ["nightly", "audit"]);
    assert_eq!(str_at(s, "/rewritten_from"), old);
    for field in ["/time", "/tree", "/host", "/user", "/paths", "/summary", "/parent"] {
        assert_eq!(s.pointer(field), before.pointer(field), "{field}");
    }
    let mut want = vec![new.clone(), other];
    want.sort();
    assert_eq!(ids(&f), want, "the old snapshot is gone, the other untouched");
    let r = f.cairn().args(["ls", &old]).fails();
    assert!(r.stderr().contains(&old), "{r}");

    assert_eq!(f.dump(&new, "/x"), b"first\n");
    f.cairn().args(["check"]).ok();
}

/// The point of the command: a retention rule that matches a tag treats a
/// snapshot tagged afterwards by its new tag.
#[test]
fn forget_policy_treats_a_retagged_snapshot_by_its_new_tag() {
    let f = Fixture::init();
    let time = days_ago(100);
    let audited = backup(&f, &time, "nightly", "the same data\n");
    let plain = backup(&f, &time, "nightly", "the same data\n");
    write(
        &f.user_config(),
        r#"
[[retention]]
match = { tag = "audit" }
max-age = "5y"

[[retention]]
match = { tag = "nightly" }
max-age = "30d"
"#,
    );
    let v = f.cairn().args(["tag", &audited, "--add", "audit"]).json();
    let audited = str_at(&v, "/snapshots/0/tagged").to_string();

    let dry = f.cairn().args(["forget", "--policy", "--dry-run"]).json();
    let rule_of = |id: &str| -> (String, bool) {
        for g in dry.as_array().unwrap() {
            for (list, keep) in [("keep", true), ("remove", false)] {
                if g[list].as_array().unwrap().iter().any(|s| str_at(s, "/id") == id) {
                    return (g["rule"].as_str().unwrap().to_string(), keep);
                }
            }
        }
        panic!("{id} is in no group: {dry:#}");
    };
    assert_eq!(rule_of(&audited), ("1 (tag=audit)".into(), true));
    assert_eq!(rule_of(&plain), ("2 (tag=nightly)".into(), false));

    f.cairn().args(["forget", "--policy"]).ok();
    assert_eq!(ids(&f), [audited]);
}

#[test]
fn set_remove_dry_run_and_json() {
    let f = Fixture::init();
    let a = backup(&f, "2026-02-01T03:00:00Z", "nightly,db", "a\n");
    let b = backup(&f, "2026-02-02T03:00:00Z", "nightly", "b\n");
    let before = ids(&f);

    // A dry run reports every change and writes nothing.
    let dry = f.cairn().args(["tag", "--remove", "nightly", "--dry-run"]).json();
    assert_eq!(dry["dry_run"], Value::Bool(true), "{dry:#}");
    assert_eq!((u64_at(&dry, "/changed"), u64_at(&dry, "/unchanged")), (2, 0));
    let entries = dry["snapshots"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{dry:#}");
    for e in entries {
        assert_eq!(e["tagged"], Value::Null, "{dry:#}");
        assert_eq!(e["changed"], Value::Bool(true));
    }
    let of = |v: &Value, id: &str| -> Value {
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| str_at(e, "/original") == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} is not in {v:#}"))
    };
    assert_eq!(strings_at(&of(&dry, &a), "/tags_before"), ["nightly", "db"]);
    assert_eq!(strings_at(&of(&dry, &a), "/tags_after"), ["db"]);
    assert!(strings_at(&of(&dry, &b), "/tags_after").is_empty());
    let text = f.cairn().args(["tag", "--remove", "nightly", "-n"]).ok().stdout();
    assert!(text.contains("nothing was written"), "{text}");
    assert!(text.contains(&format!("{}: would get tags db", &a[..8])), "{text}");
    assert_eq!(ids(&f), before, "a dry run changes no snapshot");

    // --set replaces every tag of the snapshots named.
    let set = f
        .cairn()
        .args(["tag", &a, "--set", "weekly,db", "--set", "keep"])
        .json();
    assert_eq!(set["dry_run"], Value::Bool(false));
    assert_eq!((u64_at(&set, "/changed"), u64_at(&set, "/unchanged")), (1, 0));
    assert_eq!(strings_at(&set, "/snapshots/0/tags_after"), ["weekly", "db", "keep"]);
    let a2 = str_at(&set, "/snapshots/0/tagged").to_string();
    assert_eq!(strings_at(&listed(&f, &a2), "/tags"), ["weekly", "db", "keep"]);

    // --remove on every snapshot: the one without the tag is left alone.
    let removed = f.cairn().args(["tag", "--remove", "nightly,absent"]).json();
    assert_eq!((u64_at(&removed, "/changed"), u64_at(&removed, "/unchanged")), (1, 1));
    let same = of(&removed, &a2);
    assert_eq!((&same["changed"], &same["tagged"]), (&Value::Bool(false), &Value::Null));
    let b2 = str_at(&of(&removed, &b), "/tagged").to_string();
    assert!(strings_at(&listed(&f, &b2), "/tags").is_empty());
    let mut want = vec![a2.clone(), b2.clone()];
    want.sort();
    assert_eq!(ids(&f), want);

    // The human output names each replacement and the total.
    let text = f.cairn().args(["tag", "--add", "x", "--tag", "keep"]).ok().stdout();
    let a3 = str_at(&f.cairn().args(["snapshots", "--tag", "x"]).json(), "/0/id").to_string();
    assert!(
        text.contains(&format!("{} -> {}: tags weekly,db,keep,x", &a2[..8], &a3[..8])),
        "{text}"
    );
    assert!(
        text.contains("changed the tags of 1 snapshot(s), 0 unchanged"),
        "{text}"
    );
}

#[test]
fn refuses_no_change_set_with_add_and_empty_tags() {
    let f = Fixture::init();
    let id = backup(&f, "2026-03-01T03:00:00Z", "nightly", "x\n");

    let r = f.cairn().args(["tag", &id]).fails();
    assert!(r.stderr().contains("--add") && r.stderr().contains("--set"), "{r}");
    let r = f.cairn().args(["tag", "--set", "a", "--add", "b"]).fails();
    assert!(r.stderr().contains("cannot be used with"), "{r}");
    let r = f.cairn().args(["tag", "--set", "a", "--remove", "nightly"]).fails();
    assert!(r.stderr().contains("cannot be used with"), "{r}");
    for bad in ["", "a,,b", "audit,"] {
        let r = f.cairn().args(["tag", "--add", bad]).fails();
        assert!(r.stderr().contains("empty tag"), "{bad:?}\n{r}");
    }
    let r = f.cairn().args(["tag", "ffffffff", "--add", "a"]).fails();
    assert!(r.stderr().contains("ffffffff"), "{r}");
    assert_eq!(ids(&f), [id], "nothing was changed");
}
