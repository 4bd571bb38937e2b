//! `cairn status`: RPO per configured source, copies per destination, and
//! the Prometheus textfile read back by the reference parser.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::copy::{local, Repos};
use crate::util::*;

/// The `[sources]` tables of the test's policy.
fn sources(app: &Path, logs: &Path) -> String {
    format!(
        r#"
[sources.app]
kind = "files"
paths = ["{app}"]
tags = ["app"]
rpo = "24h"
rto-class = "P2"
repository = "primary"
copy-to = ["offsite"]

[sources.logs]
kind = "files"
paths = ["{logs}"]
tags = ["logs"]
rpo = "15m"
repository = "primary"

[sources.sessions]
kind = "redis"
url = "redis://127.0.0.1:6379"
tags = ["redis"]
rpo = "15m"
repository = "primary"
"#,
        app = s(app),
        logs = s(logs)
    )
}

fn source<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["source"] == name))
        .unwrap_or_else(|| panic!("no source {name}: {j:#}"))
}

/// The samples of a textfile as `prometheus_client`'s own parser reads
/// them: `[name, labels, value]` triples. `None` when the parser's Python
/// is not there and the S3 tests (which install it) are skipped.
fn parse_prometheus(file: &Path) -> Option<Vec<(String, Value, f64)>> {
    let Some(python) = std::env::var_os("CAIRN_TEST_PYTHON") else {
        if std::env::var("CAIRN_SKIP_S3").is_ok_and(|v| v == "1") {
            let _ = std::io::stderr()
                .write_all(b"\nSKIPPED: the Prometheus file is not parsed (no CAIRN_TEST_PYTHON, CAIRN_SKIP_S3=1)\n");
            return None;
        }
        panic!(
            "CAIRN_TEST_PYTHON is not set: scripts/s3-servers.sh start installs prometheus-client and writes it to \
             target/s3-servers.env (CAIRN_SKIP_S3=1 skips)"
        );
    };
    // One line per statement: Rust's `\` line continuation would eat the
    // indentation Python needs.
    let script = [
        "import json, sys",
        "from prometheus_client.parser import text_string_to_metric_families",
        "text = open(sys.argv[1]).read()",
        "out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(text) for s in f.samples]",
        "print(json.dumps(out))",
    ]
    .join("\n");
    let out = Command::new(python).arg("-c").arg(script).arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "the parser rejects the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    Some(v)
}

fn sample(samples: &[(String, Value, f64)], name: &str, source: &str) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l["source"] == source)
        .map(|x| x.2)
        .unwrap_or_else(|| panic!("no {name} for {source}: {samples:?}"))
}

#[test]
fn status_reports_each_sources_rpo_and_copies_and_writes_parsable_metrics() {
    let r = Repos::new(|f| vec![local(f, "primary"), local(f, "offsite")]);
    let f = &r.f;
    let (app, logs) = (f.path("app"), f.path("logs"));
    write(&app.join("a.txt"), "app data, night one");
    write(&logs.join("l.txt"), "a log line");
    r.append_config(&sources(&app, &logs));
    r.init("primary", &[]);
    r.init("offsite", &[]);

    let first = r.cairn("primary").args(["backup", "--tag", "app"]).arg(&app).json();
    let first = str_at(&first, "/snapshot_id").to_string();
    r.copy("primary", &["--to", "offsite", "--tag", "app"]);
    write(&app.join("a.txt"), "app data, night two");
    let second = r.cairn("primary").args(["backup", "--tag", "app"]).arg(&app).json();
    let second = str_at(&second, "/snapshot_id").to_string();
    // The logs' newest snapshot is two hours old: over its 15 minutes.
    let two_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7200;
    r.cairn("primary")
        .args(["backup", "--tag", "logs", "--time", &format!("@{two_hours_ago}")])
        .arg(&logs)
        .json();

    // The disaster path's drill: app restored from the off-site copy.
    let drill = r.cairn("primary").args(["drill", "app", "--from", "offsite"]).json();
    assert_eq!(drill["ok"], Value::Bool(true), "{drill:#}");

    let prom = f.path("metrics/cairn.prom");
    fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let run = r
        .cairn("primary")
        .args(["status", "--json", "--prometheus"])
        .arg(&prom)
        .fails();
    assert_eq!(run.code(), Some(1), "a breach fails the command\n{run}");
    let j = run.json();
    assert_eq!(j["ok"], Value::Bool(false));
    let a = source(&j, "app");
    assert_eq!(a["state"], "ok", "{a:#}");
    assert_eq!(a["snapshots"], 2);
    assert_eq!(str_at(a, "/newest/id"), second);
    assert_eq!(a["copies"][0]["repository"], "offsite");
    assert_eq!(str_at(&a["copies"][0], "/snapshot"), first, "only night one was copied");
    assert_eq!(a["copies"][0]["missing"], 1, "{a:#}");
    assert_eq!(a["last_drill"]["ok"], Value::Bool(true), "{a:#}");
    assert_eq!(a["last_drill"]["repository"], "offsite", "{a:#}");
    assert_eq!(
        a["last_drill"]["snapshot"], drill["sources"][0]["snapshot"],
        "the copy of night one, as the drill restored it: {a:#}"
    );
    assert_eq!(a["last_drill"]["limit_seconds"], 14_400, "P2: {a:#}");
    let l = source(&j, "logs");
    assert_eq!(l["state"], "breach", "{l:#}");
    assert!(u64_at(l, "/newest/age_seconds") >= 7200, "{l:#}");
    let sessions = source(&j, "sessions");
    assert_eq!(
        sessions["state"], "breach",
        "no snapshot at all is a breach: {sessions:#}"
    );
    assert!(sessions["newest"].is_null());

    let text = r.cairn("primary").arg("status").fails();
    assert!(text.stderr().contains("BREACH: source logs"), "{text}");
    assert!(text.stderr().contains("BREACH: source sessions"), "{text}");
    assert!(text.stdout().contains("app"), "{text}");
    // The one source within its RPO passes on its own.
    r.cairn("primary").args(["status", "app"]).ok();
    let r2 = r.cairn("primary").args(["status", "nope"]).fails();
    assert!(r2.stderr().contains("no source \"nope\""), "{r2}");

    if let Some(samples) = parse_prometheus(&prom) {
        assert_eq!(
            sample(&samples, "cairn_last_snapshot_timestamp_seconds", "logs"),
            two_hours_ago as f64
        );
        assert_eq!(sample(&samples, "cairn_rpo_seconds", "logs"), 900.0);
        assert_eq!(sample(&samples, "cairn_rpo_breach", "logs"), 1.0);
        assert_eq!(sample(&samples, "cairn_rpo_breach", "app"), 0.0);
        assert_eq!(sample(&samples, "cairn_rpo_breach", "sessions"), 1.0);
        assert_eq!(sample(&samples, "cairn_snapshots", "app"), 2.0);
        assert_eq!(sample(&samples, "cairn_copy_missing_snapshots", "app"), 1.0);
        let copy = samples
            .iter()
            .find(|(n, l, _)| n == "cairn_last_copy_timestamp_seconds" && l["destination"] == "offsite")
            .unwrap_or_else(|| panic!("{samples:?}"));
        assert_eq!(copy.1["repository"], "primary");
        assert!(copy.2 > 1e9 && copy.2 < two_hours_ago as f64 + 7300.0);
        let drill = |name: &str| {
            samples
                .iter()
                .find(|(n, l, _)| n == name && l["source"] == "app")
                .unwrap_or_else(|| panic!("no {name}: {samples:?}"))
                .clone()
        };
        let success = drill("cairn_last_drill_success");
        assert_eq!(success.2, 1.0);
        assert_eq!(
            success.1["repository"], "offsite",
            "a drill is labelled with where it restored from"
        );
        assert!(drill("cairn_last_drill_timestamp_seconds").2 > two_hours_ago as f64);
        assert!(drill("cairn_last_drill_restore_seconds").2 > 0.0);
        assert_eq!(sample(&samples, "cairn_rto_seconds", "app"), 14_400.0);
    }
    let leftovers: Vec<_> = fs::read_dir(prom.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "only the metrics file is left: {leftovers:?}");
}
