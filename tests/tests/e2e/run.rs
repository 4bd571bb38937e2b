//! `cairn run`: a source's configured routine in order (pre-command,
//! backup, copy, post-command, forget --policy), and a failure in each
//! step reported by name and in the exit code.

use std::fs;

use serde_json::Value;

use crate::copy::{local, Repos};
use crate::util::*;

/// Repositories `primary` and `offsite` (initialised) with `extra` appended
/// to cairn.toml.
fn repos(extra: impl FnOnce(&Fixture) -> String) -> Repos {
    let r = Repos::new(|f| vec![local(f, "primary"), local(f, "offsite")]);
    let text = extra(&r.f);
    r.append_config(&text);
    r.init("primary", &[]);
    r.init("offsite", &[]);
    r
}

fn app_source(f: &Fixture, copy_to: &str) -> String {
    let log = s(&f.path("steps.log"));
    format!(
        r#"
[sources.app]
kind = "files"
paths = ["{app}"]
tags = ["app"]
rpo = "24h"
repository = "primary"
copy-to = ["{copy_to}"]
pre-command = "echo pre >> '{log}'"
post-command = "echo post >> '{log}'"
"#,
        app = s(&f.path("app")),
    )
}

fn steps(j: &Value, source: &str) -> Vec<(String, bool)> {
    j["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["source"] == source))
        .and_then(|x| x["steps"].as_array())
        .unwrap_or_else(|| panic!("no steps for {source}: {j:#}"))
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or("").to_string(),
                s["ok"] == Value::Bool(true),
            )
        })
        .collect()
}

fn names(v: &[(String, bool)]) -> Vec<&str> {
    v.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn run_does_backup_copy_and_forget_in_order() {
    let r = repos(|f| app_source(f, "offsite") + "\n[[retention]]\nmatch = { tag = \"app\" }\nmax-age = \"30d\"\n");
    let f = &r.f;
    let app = f.path("app");
    write(&app.join("a.txt"), "application data");
    // A snapshot older than the retention table's 30 days.
    let old = r
        .cairn("primary")
        .args(["backup", "--tag", "app", "--time", "2020-01-01T00:00:00Z"])
        .arg(&app)
        .json();
    let old = str_at(&old, "/snapshot_id").to_string();

    let j = r.cairn("primary").args(["run", "app"]).json();
    assert_eq!(j["ok"], Value::Bool(true), "{j:#}");
    let st = steps(&j, "app");
    assert_eq!(
        names(&st),
        ["pre-command", "backup", "copy to offsite", "post-command", "forget"],
        "{j:#}"
    );
    assert!(st.iter().all(|(_, ok)| *ok), "{j:#}");
    assert_eq!(fs::read_to_string(f.path("steps.log")).unwrap(), "pre\npost\n");

    // The backup's snapshot is in primary and copied; the old one forgotten.
    let new = j["sources"][0]["steps"][1]["result"]["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{j:#}"))
        .to_string();
    let primary: Vec<String> = r
        .snapshots("primary")
        .iter()
        .map(|s| str_at(s, "/id").to_string())
        .collect();
    assert_eq!(primary, vec![new.clone()], "the 2020 snapshot {old} is forgotten");
    let offsite = r.snapshots("offsite");
    assert_eq!(offsite.len(), 1);
    assert_eq!(str_at(&offsite[0], "/copied_from/snapshot"), new);

    // The run is recorded in the repository: status shows it.
    let st = r.cairn("primary").args(["status", "app"]).json();
    let last = &st["sources"][0]["last_run"];
    assert_eq!(last["ok"], Value::Bool(true), "{st:#}");
    assert_eq!(str_at(last, "/snapshot"), new, "{st:#}");
    assert_eq!(last["repository"], "primary");
    assert!(st["sources"][0]["last_drill"].is_null(), "no drill yet: {st:#}");
}

#[test]
fn run_names_the_failed_step_and_all_goes_on_past_a_failing_source() {
    let r = repos(|f| {
        app_source(f, "./not-a-repository")
            + &format!(
                r#"
[sources.broken]
kind = "files"
paths = ["{gone}"]
tags = ["broken"]
repository = "primary"

[sources.stopped]
kind = "files"
paths = ["{app}"]
tags = ["stopped"]
repository = "primary"
pre-command = "exit 7"

[[retention]]
match = {{ tag = "app" }}
max-age = "30 fortnights"
"#,
                gone = s(&f.path("no-such-folder")),
                app = s(&f.path("app"))
            )
    });
    let f = &r.f;
    write(&f.path("app").join("a.txt"), "application data");

    let run = r.cairn("primary").args(["--json", "run", "--all"]).fails();
    assert_eq!(run.code(), Some(1), "{run}");
    let j = run.json();
    assert_eq!(j["ok"], Value::Bool(false));
    // app: backed up, but its copy (to a folder with no repository) and its
    // forget (a retention rule that means nothing) fail; the post-command
    // still runs.
    let app = steps(&j, "app");
    assert_eq!(
        app,
        [
            ("pre-command".into(), true),
            ("backup".into(), true),
            ("copy to ./not-a-repository".into(), false),
            ("post-command".into(), true),
            ("forget".into(), false),
        ],
        "{j:#}"
    );
    // broken: the backup fails, so nothing is copied or forgotten.
    assert_eq!(steps(&j, "broken"), [("backup".to_string(), false)], "{j:#}");
    // stopped: its pre-command fails, so there is no backup.
    assert_eq!(steps(&j, "stopped"), [("pre-command".to_string(), false)], "{j:#}");
    // Each failure is recorded with the step and why; status shows it but
    // (no RPO breached) does not fail.
    let st = r.cairn("primary").arg("status").json();
    let last = |name: &str| {
        st["sources"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["source"] == name))
            .map(|x| x["last_run"].clone())
            .unwrap_or_else(|| panic!("{st:#}"))
    };
    let stopped = last("stopped");
    assert_eq!(stopped["ok"], Value::Bool(false), "{st:#}");
    assert_eq!(stopped["failed_step"], "pre-command", "{st:#}");
    assert!(str_at(&stopped, "/reason").starts_with("exit code 7"), "{st:#}");
    assert_eq!(last("app")["failed_step"], "copy to ./not-a-repository", "{st:#}");
    assert!(last("app")["snapshot"].is_string(), "{st:#}");
    for line in [
        "source app: step copy to ./not-a-repository failed",
        "source app: step forget failed",
        "source broken: step backup failed",
        "source stopped: step pre-command failed",
    ] {
        assert!(run.stderr().contains(line), "{line}\n{run}");
    }
    // The one good backup is there, whatever failed around it.
    let snaps = r.snapshots("primary");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(strings_at(&snaps[0], "/tags"), ["app"]);
}
