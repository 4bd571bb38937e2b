//! `cairn config check`: the examples pass; every problem of a bad policy
//! is named with its line and key.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

fn check(f: &Fixture, text: &str) -> Run {
    let file = f.path("policy.toml");
    write(&file, text);
    chmod(&file, 0o600);
    f.bare()
        .arg("--config")
        .arg(&file)
        .args(["--json", "config", "check"])
        .run()
}

#[test]
fn every_example_policy_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let f = Fixture::empty();
            let r = check(&f, &std::fs::read_to_string(&p).unwrap());
            assert_eq!(r.code(), Some(0), "{}\n{r}", p.display());
            assert_eq!(r.json()["ok"], Value::Bool(true));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example policy in {}", dir.display());
}

#[test]
fn a_bad_policy_gets_every_problem_with_its_line_and_key() {
    let f = Fixture::empty();
    let text = r#"repository = "primary"
[repositories.primary]
location = "/srv/backup/cairn"
copy-to = ["ofsite"]

[[retention]]
match = { tag = "db" }
max-age = "90 parsecs"

[sources.app]
kind = "files"
paths = ["/srv/app"]
rpo = "a while"
rto-class = "P9"

[sources.sessions]
kind = "redis"
rpo = "15m"

[sources.odd]
kind = "tape"

[prices]
STANDARD = 0.02
local = -0.5
"#;
    let r = check(&f, text);
    assert_eq!(r.code(), Some(1), "{r}");
    let j = r.json();
    let got: Vec<(u64, String)> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap_or(0),
                p["key"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // Lines counted from the text above, where each key is written.
    let line = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() as u64 + 1;
    let want = [
        (line("copy-to"), "repositories.primary.copy-to"),
        (line("[[retention]]"), "retention.0"),
        (line("rpo = \"a while\""), "sources.app.rpo"),
        (line("rto-class"), "sources.app.rto-class"),
        (line("[sources.sessions]"), "sources.sessions"),
        (line("kind = \"tape\""), "sources.odd.kind"),
        (line("local = -0.5"), "prices.local"),
    ];
    for (l, key) in want {
        assert!(
            got.contains(&(l, key.to_string())),
            "{key} at line {l} is missing: {got:?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{got:?}");

    // An unknown key is named with the keys allowed there.
    let r = check(&f, "[sources.a]\nkind = \"files\"\npathz = [\"/a\"]\n");
    assert_eq!(r.code(), Some(1), "{r}");
    let p = &r.json()["problems"][0];
    assert_eq!(p["line"], 3, "{p:#}");
    assert!(p["message"].as_str().unwrap().contains("pathz"), "{p:#}");
}

#[test]
fn online_check_opens_every_repository() {
    let f = Fixture::init();
    let text = format!(
        "[repositories.here]\nlocation = \"{}\"\npassword-file = \"{}\"\n\n[repositories.gone]\nlocation = \"{}\"\npassword-file = \"{}\"\n",
        s(&f.repo),
        s(&f.password_file),
        s(&f.path("nothing-here")),
        s(&f.password_file)
    );
    let file = f.path("policy.toml");
    write(&file, &text);
    chmod(&file, 0o600);
    f.bare().arg("--config").arg(&file).args(["config", "check"]).ok();
    let r = f
        .bare()
        .arg("--config")
        .arg(&file)
        .args(["--json", "config", "check", "--online"])
        .run();
    assert_eq!(r.code(), Some(1), "{r}");
    let problems = r.json()["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["key"], "repositories.gone");
    assert_eq!(problems[0]["line"], 5);
}
