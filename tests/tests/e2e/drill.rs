//! `cairn drill`: restore tests that pass on a good repository, fail naming
//! the file when a pack is damaged, run verify commands and a real
//! redis-server, drill from the off-site copy, and hand the report on.

use std::fs;

use cairn_test_support::redis::RedisServer;
use serde_json::Value;

use crate::copy::{local, Repos};
use crate::util::*;

fn repos(extra: &str) -> Repos {
    let r = Repos::new(|f| vec![local(f, "primary"), local(f, "offsite")]);
    r.append_config(extra);
    r.init("primary", &[]);
    r.init("offsite", &[]);
    r
}

fn files_source(name: &str, dir: &str, extra: &str) -> String {
    format!(
        "\n[sources.{name}]\nkind = \"files\"\npaths = [\"{dir}\"]\ntags = [\"{name}\"]\nrto-class = \"P1\"\nrepository = \"primary\"\n{extra}\n"
    )
}

/// The largest data pack: the one holding big.bin.
fn largest_data_pack(repo: &std::path::Path) -> std::path::PathBuf {
    files_under(&repo.join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a data pack")
}

pub(crate) fn source<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["source"] == name))
        .unwrap_or_else(|| panic!("no source {name}: {j:#}"))
}

#[test]
fn drill_passes_fails_on_damage_and_runs_verify_and_notify_commands() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().canonicalize().unwrap();
    let (app, docs) = (root.join("app"), root.join("docs"));
    let report = root.join("report.json");
    let extra = files_source(
        "app",
        &s(&app),
        "verify-command = \"test -f a.txt && grep -q night a.txt\"",
    ) + &files_source(
        "docs",
        &s(&docs),
        "verify-command = \"echo docs are wrong >&2; exit 3\"",
    );
    let r = repos(&extra);
    let f = &r.f;
    let scratch = f.path("scratch");
    fs::create_dir_all(&scratch).unwrap();
    write(&app.join("a.txt"), "night one");
    write(&app.join("big.bin"), Rng::new(clock_seed()).bytes(3 << 20));
    write(&docs.join("d.txt"), "docs");
    r.cairn("primary").args(["backup", "--tag", "app"]).arg(&app).json();
    r.cairn("primary").args(["backup", "--tag", "docs"]).arg(&docs).json();

    // app passes; docs' verify command fails and is reported with its output.
    let run = r
        .cairn("primary")
        .args(["--json", "drill", "--scratch"])
        .arg(&scratch)
        .arg("--notify-command")
        .arg(format!("cat > '{}'", s(&report)))
        .fails();
    assert_eq!(run.code(), Some(1), "{run}");
    let j = run.json();
    let a = source(&j, "app");
    assert_eq!(a["ok"], Value::Bool(true), "{a:#}");
    assert_eq!(a["verification"]["kind"], "verify-command");
    assert!(u64_at(a, "/bytes") >= 3 << 20, "{a:#}");
    assert_eq!(u64_at(a, "/rto_seconds"), 3600);
    let d = source(&j, "docs");
    assert_eq!(d["ok"], Value::Bool(false), "{d:#}");
    assert!(d["reasons"][0].as_str().unwrap().contains("docs are wrong"), "{d:#}");
    assert!(run.stderr().contains("drill: source docs"), "{run}");
    let notified: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(notified, j, "the notify command got the same report");
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "nothing left behind");
    // Both drills are recorded in the repository: status shows them.
    let st = r.cairn("primary").arg("status").json();
    let app_drill = &source(&st, "app")["last_drill"];
    assert_eq!(app_drill["ok"], Value::Bool(true), "{st:#}");
    assert_eq!(app_drill["limit_seconds"], 3600, "{st:#}");
    assert_eq!(app_drill["snapshot"], a["snapshot"], "{st:#}");
    let docs_drill = &source(&st, "docs")["last_drill"];
    assert_eq!(docs_drill["ok"], Value::Bool(false), "{st:#}");
    assert!(str_at(docs_drill, "/reason").contains("docs are wrong"), "{st:#}");
    let text = r.cairn("primary").arg("status").run();
    assert!(text.stderr().contains("docs last drill: FAILED"), "{text}");

    // --keep keeps the restored data, exact.
    let j = r
        .cairn("primary")
        .args(["drill", "app", "--keep", "--scratch"])
        .arg(&scratch)
        .json();
    let kept = std::path::PathBuf::from(str_at(source(&j, "app"), "/kept"));
    let restored = kept.join(app.strip_prefix("/").unwrap()).join("big.bin");
    assert_eq!(hash_file(&restored), hash_file(&app.join("big.bin")));
    fs::remove_dir_all(&kept).unwrap();

    // Damage the pack holding big.bin: the drill fails, naming the file.
    let pack = largest_data_pack(&f.root.join("primary"));
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    chmod(&pack, 0o644);
    fs::write(&pack, &bytes).unwrap();
    let run = r
        .cairn("primary")
        .args(["--json", "drill", "app", "--scratch"])
        .arg(&scratch)
        .fails();
    let a = source(&run.json(), "app").clone();
    assert_eq!(a["ok"], Value::Bool(false), "{a:#}");
    assert!(
        a["reasons"].to_string().contains("big.bin"),
        "the damaged file is named: {a:#}"
    );
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "nothing left behind");
}

#[test]
fn drill_from_the_offsite_copy() {
    let base = tempfile::tempdir().unwrap();
    let app = base.path().canonicalize().unwrap().join("app");
    let r = repos(&files_source("app", &s(&app), ""));
    write(&app.join("a.txt"), "to be copied");
    r.cairn("primary").args(["backup", "--tag", "app"]).arg(&app).json();
    // Nothing copied yet: the off-site drill fails and says so.
    let run = r
        .cairn("primary")
        .args(["--json", "drill", "--from", "offsite"])
        .fails();
    assert!(
        source(&run.json(), "app")["reasons"]
            .to_string()
            .contains("no snapshot"),
        "{run}"
    );
    r.copy("primary", &["--to", "offsite"]);
    let j = r.cairn("primary").args(["drill", "--from", "offsite"]).json();
    let a = source(&j, "app");
    assert_eq!(a["ok"], Value::Bool(true), "{a:#}");
    assert_eq!(a["repository"], "offsite");
    assert_eq!(a["verification"]["kind"], "restore --verify");
}

#[test]
fn redis_drill_loads_the_dump_into_a_real_redis_server() {
    let base = tempfile::tempdir().unwrap();
    let Some(server) = RedisServer::start("redis drill", &base.path().join("redis"), &[]) else {
        return;
    };
    server.cli(&["DEBUG", "POPULATE", "5000", "k", "16"]);
    server.cli(&["SELECT", "2"]);
    let extra = format!(
        "\n[sources.sessions]\nkind = \"redis\"\nurl = \"{}\"\ntags = [\"redis\"]\nrpo = \"15m\"\nrepository = \"primary\"\n",
        server.url()
    );
    let r = repos(&extra);
    r.cairn("primary")
        .args(["backup", "--tag", "redis", "--redis", &server.url()])
        .json();
    let j = r.cairn("primary").args(["drill", "sessions"]).json();
    let v = &source(&j, "sessions")["verification"];
    assert_eq!(v["kind"], "redis-server", "{j:#}");
    assert_eq!(v["ok"], Value::Bool(true), "{j:#}");
    assert!(v["output"].as_str().unwrap().contains("db0=5000"), "{j:#}");
}

/// An SSTable `nb-GEN-big-*` in `dir` with `components`, its TOC.txt
/// listing `toc`.
fn sstable(dir: &std::path::Path, generation: u32, components: &[&str], toc: &[&str]) {
    let mut rng = Rng::new(u64::from(generation));
    for c in components {
        let bytes = if *c == "TOC.txt" {
            toc.join("\n").into_bytes()
        } else {
            rng.bytes(2000)
        };
        write(&dir.join(format!("nb-{generation}-big-{c}")), bytes);
    }
}

#[test]
fn cassandra_drill_checks_every_sstables_component_set() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().canonicalize().unwrap().join("data");
    let all = ["Data.db", "Index.db", "Statistics.db", "Filter.db", "TOC.txt"];
    let messages = data.join("chat/messages-0123456789abcdef0123456789abcdef/snapshots/nightly");
    sstable(&messages, 1, &all, &all);
    let extra = format!(
        "\n[sources.cassandra]\nkind = \"cassandra\"\npaths = [\"{}\"]\nsnapshot-tag = \"nightly\"\ntags = [\"cassandra\"]\nrepository = \"primary\"\n",
        s(&data)
    );
    let r = repos(&extra);
    let backup = |r: &Repos| {
        r.cairn("primary")
            .args([
                "backup",
                "--tag",
                "cassandra",
                "--snapshot-tag",
                "nightly",
                "--cassandra",
            ])
            .arg(&data)
            .json()
    };
    backup(&r);
    let j = r.cairn("primary").args(["drill", "cassandra"]).json();
    let v = &source(&j, "cassandra")["verification"];
    assert_eq!(v["kind"], "sstables", "{j:#}");
    assert!(v["output"].as_str().unwrap().starts_with("1 SSTable"), "{j:#}");

    // A table whose SSTable lost its Index.db (listed in its TOC.txt).
    let users = data.join("chat/users-fedcba9876543210fedcba9876543210/snapshots/nightly");
    sstable(&users, 2, &["Data.db", "Statistics.db", "Filter.db", "TOC.txt"], &all);
    backup(&r);
    let run = r.cairn("primary").args(["--json", "drill", "cassandra"]).fails();
    let c = source(&run.json(), "cassandra").clone();
    assert_eq!(c["ok"], Value::Bool(false), "{c:#}");
    assert!(
        c["reasons"].to_string().contains("nb-2-big-Index.db is missing"),
        "{c:#}"
    );
}

/// A `command` source whose command is `sh -c SCRIPT`, verified by loading
/// its dump into a scratch PostgreSQL.
fn sql_source(name: &str, script: &str) -> String {
    format!(
        "\n[sources.{name}]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {script:?}]\nfilename = \"{name}.sql\"\ntags = [\"{name}\"]\nverify = \"postgresql\"\nrepository = \"primary\"\n"
    )
}

#[test]
fn sql_drill_loads_the_dump_into_a_scratch_postgresql_and_compares_row_counts() {
    let Some(pg) = crate::sql::server() else { return };
    pg.create_db("shop");
    pg.psql("shop", crate::sql::SCHEMA);
    let rows: u64 = crate::sql::TABLES
        .iter()
        .map(|t| {
            pg.psql("shop", &format!("SELECT count(*) FROM {t}"))
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    let dump = format!("pg_dump {} -w", pg.conn_args().join(" "));
    // plain: pg_dump's SQL; custom: -Fc, turned back into SQL by
    // pg_restore; broken: a dump whose events table was renamed on the
    // way, so its rows have nowhere to go.
    let extra = sql_source("plain", &format!("{dump} shop"))
        + &sql_source("custom", &format!("{dump} -Fc shop"))
        + &sql_source(
            "broken",
            &format!("{dump} shop | sed 's/^CREATE TABLE public.events /CREATE TABLE public.events_renamed /'"),
        );
    let r = repos(&extra);
    let ran = r
        .cairn("primary")
        .args(["run", "--all"])
        .env("PGPASSFILE", &pg.pgpass)
        .json();
    assert_eq!(ran["ok"], Value::Bool(true), "{ran:#}");

    let scratch = r.f.path("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let run = r
        .cairn("primary")
        .args(["--json", "drill", "--scratch"])
        .arg(&scratch)
        .fails();
    let j = run.json();
    for name in ["plain", "custom"] {
        let v = &source(&j, name)["verification"];
        assert_eq!(v["kind"], "postgresql", "{j:#}");
        assert_eq!(v["ok"], Value::Bool(true), "{name}: {j:#}");
        assert!(
            str_at(v, "/output").contains(&format!("3 table(s), {rows} row(s)")),
            "{name}: the rows PostgreSQL counted are the source's: {j:#}"
        );
    }
    let b = source(&j, "broken");
    assert_eq!(b["ok"], Value::Bool(false), "{j:#}");
    assert!(
        b["reasons"].to_string().contains("public.events"),
        "the failed load names the table: {b:#}"
    );
    // The restored data and the scratch clusters are gone, whatever the
    // outcome.
    let left: Vec<_> = fs::read_dir(&scratch).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
