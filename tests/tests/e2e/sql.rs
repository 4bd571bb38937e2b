//! SQL dumps through `--stdin-from-command`: a real PostgreSQL 15 server
//! (started here on 127.0.0.1 and a free port), `pg_dump` streamed into the
//! repository, restored with `cairn dump | psql` into a fresh database.

use std::process::{Command, Stdio};

use cairn_test_support::postgres::{Postgres, PASSWORD};
use serde_json::Value;

use crate::util::*;

/// The server, or a loud skip (a failure when CI=true).
pub(crate) fn server() -> Option<Postgres> {
    match Postgres::start() {
        Ok(pg) => Some(pg),
        Err(m) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL is required in CI: {}",
                m.0
            );
            eprintln!("SKIPPED: PostgreSQL test: {}", m.0);
            None
        }
    }
}

/// Tables of mixed types (text, numeric, timestamps, arrays, jsonb, bytea,
/// uuid, booleans, NULLs), a few 10k rows each, the same on every run.
pub(crate) const SCHEMA: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text, balance numeric(12,2),
  active boolean, created timestamptz, tags text[], profile jsonb);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers(id), placed date,
  amount numeric(10,2), note text, payload bytea);
CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, kind text, ref uuid, data jsonb, score double precision);
INSERT INTO customers SELECT i, 'customer ' || md5(i::text), 'c' || i || '@example.com',
  (i * 37 % 100000) / 100.0, i % 3 <> 0, timestamptz '2024-01-01 00:00:00+00' + i * interval '17 minutes',
  ARRAY['t' || i % 7, 't' || i % 11], jsonb_build_object('level', i % 5, 'city', 'city-' || i % 97)
  FROM generate_series(1, 20000) i;
INSERT INTO orders SELECT i, 1 + i % 20000, date '2024-01-01' + i % 700, (i * 7919 % 1000000) / 100.0,
  CASE WHEN i % 10 = 0 THEN NULL ELSE 'order note ' || md5((i * 3)::text) END, decode(md5(i::text), 'hex')
  FROM generate_series(1, 40000) i;
INSERT INTO events SELECT i, timestamptz '2025-06-01 00:00:00+00' + i * interval '3 seconds',
  (ARRAY['login','logout','purchase','refund'])[1 + i % 4], md5(i::text)::uuid,
  jsonb_build_object('n', i, 'ok', i % 2 = 0), i / 7.0
  FROM generate_series(1, 30000) i;
";

pub(crate) const TABLES: [&str; 3] = ["customers", "orders", "events"];

/// Row count and a checksum of every row's text form, per table.
fn fingerprint(pg: &Postgres, db: &str) -> Vec<(String, String)> {
    TABLES
        .iter()
        .map(|t| {
            let v = pg.psql(
                db,
                &format!("SELECT count(*) || ' ' || md5(string_agg(x::text, ',' ORDER BY x.id)) FROM {t} x"),
            );
            (t.to_string(), v)
        })
        .collect()
}

/// `cairn backup --stdin-from-command -- pg_dump ... DB` (password from the
/// `.pgpass` file, nothing secret on the command line).
fn backup_dump(f: &Fixture, pg: &Postgres, db: &str, extra: &[&str]) -> Run {
    let mut c = f.cairn();
    c.args([
        "backup",
        "--json",
        "--stdin-from-command",
        "--stdin-filename",
        "shop.sql",
    ])
    .args(extra)
    .arg("--")
    .arg("pg_dump")
    .args(pg.conn_args())
    .args(["-w", db])
    .env("PGPASSFILE", &pg.pgpass);
    c.run()
}

/// `cairn dump SNAPSHOT /shop.sql | psql` into a new database `db`.
fn restore_into(f: &Fixture, pg: &Postgres, snapshot: &str, db: &str) {
    pg.create_db(db);
    let mut psql = pg
        .client("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting psql");
    let pipe = psql.stdin.take().expect("psql's stdin");
    f.cairn()
        .args(["dump", snapshot, "/shop.sql"])
        .stdout_to(Stdio::from(pipe))
        .ok();
    let out = psql.wait_with_output().expect("waiting for psql");
    assert!(
        out.status.success(),
        "psql restoring the dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dedup figures of a backup's --json are counters of the same bytes:
/// they add up to the stream's length, and new bytes are part of what the
/// backup added.
fn check_dedup(out: &Value) -> f64 {
    let d = &out["dedup"];
    let total = u64_at(d, "/bytes");
    let (known, repeated, new) = (
        u64_at(d, "/bytes_known"),
        u64_at(d, "/bytes_repeated"),
        u64_at(d, "/bytes_new"),
    );
    assert_eq!(total, u64_at(out, "/summary/bytes_read"), "{out:#}");
    assert_eq!(known + repeated + new, total, "{out:#}");
    assert!(new <= u64_at(out, "/summary/bytes_added_raw"), "{out:#}");
    let pct = d["percent_known"].as_f64().expect("percent_known");
    let expect = known as f64 * 100.0 / total as f64;
    assert!((pct - expect).abs() < 0.01, "percent_known {pct} vs {expect}: {out:#}");
    pct
}

#[test]
fn pg_dump_round_trips_through_cairn_dump_and_psql() {
    let Some(pg) = server() else { return };
    pg.create_db("shop");
    pg.psql("shop", SCHEMA);
    let source = fingerprint(&pg, "shop");
    assert!(source[0].1.starts_with("20000 "), "{source:?}");

    let f = Fixture::init();
    // Night 1, with small chunks: a dump changes a little everywhere.
    let r = backup_dump(&f, &pg, "shop", &["--chunk-size", "16KiB"]);
    assert_eq!(r.code(), Some(0), "{r}");
    let night1 = r.json();
    check_dedup(&night1);
    assert_eq!(u64_at(&night1, "/chunk_sizes/avg_size"), 16 * 1024, "{night1:#}");
    // Cut with those sizes: no chunk is over the 128 KiB maximum, so there
    // are at least as many blobs as 128 KiB pieces (the repository's 512 KiB
    // minimum would give fewer than a quarter of that).
    let max = u64_at(&night1, "/chunk_sizes/max_size");
    assert_eq!(max, 128 * 1024);
    assert!(
        u64_at(&night1, "/summary/data_blobs_added") >= u64_at(&night1, "/summary/bytes_read") / max,
        "{night1:#}"
    );
    assert_eq!(night1["details"]["Command"]["exit_code"], 0, "{night1:#}");

    // The snapshot keeps the command and its exit status; no secret in it.
    let snaps = f.cairn().args(["snapshots", "--json"]).ok();
    assert!(!snaps.stdout().contains(PASSWORD));
    let list = snaps.json();
    let argv: Vec<String> = strings_at(&list[0], "/command");
    assert_eq!(argv[0], "pg_dump");
    assert_eq!(argv.last().map(String::as_str), Some("shop"));
    assert_eq!(list[0]["details"]["Command"]["exit_code"], 0);
    let text = f.cairn().arg("snapshots").ok().stdout();
    let id = str_at(&list[0], "/short_id").to_string();
    assert!(
        text.lines()
            .any(|l| l.contains(&id) && l.contains("exit 0") && l.contains("pg_dump")),
        "{text}"
    );

    restore_into(&f, &pg, "latest", "restored1");
    assert_eq!(
        fingerprint(&pg, "restored1"),
        source,
        "restored database equals the source"
    );

    // Night 2: ~1 % of customers changed, some new orders.
    pg.psql(
        "shop",
        "UPDATE customers SET balance = balance + 1, active = NOT active WHERE id % 97 = 5;
         INSERT INTO orders SELECT i, 1 + i % 20000, date '2026-01-01', 1.00, 'night 2', NULL
           FROM generate_series(40001, 40300) i;",
    );
    let source2 = fingerprint(&pg, "shop");
    assert_ne!(source2, source);
    let r = backup_dump(&f, &pg, "shop", &[]);
    assert_eq!(r.code(), Some(0), "{r}");
    let night2 = r.json();
    // The parent's chunk sizes are kept without --chunk-size.
    assert_eq!(night2["chunk_sizes"], night1["chunk_sizes"], "{night2:#}");
    assert_eq!(night2["parent"], night1["snapshot_id"]);
    let pct = check_dedup(&night2);
    assert!(pct > 0.0 && pct < 100.0, "night 2 deduplicated {pct} %: {night2:#}");
    assert!(
        u64_at(&night2, "/dedup/bytes_new") > 0,
        "the change is stored: {night2:#}"
    );
    let r2 = backup_dump(&f, &pg, "shop", &[]);
    assert_eq!(r2.code(), Some(0), "{r2}");
    // Nothing changed since night 2: more of it deduplicates (not all of it
    // need: the server may have moved rows within its pages meanwhile).
    let again = check_dedup(&r2.json());
    assert!(again > pct, "unchanged database: {again} % vs night 2's {pct} %");
    restore_into(&f, &pg, str_at(&night2, "/snapshot_id"), "restored2");
    assert_eq!(fingerprint(&pg, "restored2"), source2);
}

#[test]
fn failing_pg_dump_leaves_no_snapshot() {
    let Some(pg) = server() else { return };
    let f = Fixture::init();
    let r = backup_dump(&f, &pg, "no_such_database", &[]);
    assert_no_panic(&r);
    // pg_dump's own status (1) is cairn's, and the error names it.
    let status = Command::new("pg_dump")
        .args(pg.conn_args())
        .args(["-w", "no_such_database"])
        .env("PGPASSFILE", &pg.pgpass)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running pg_dump");
    assert!(!status.success());
    assert_eq!(r.code(), status.code(), "{r}");
    let err = r.stderr();
    assert!(err.contains("pg_dump") && err.contains("no snapshot was saved"), "{r}");
    assert!(
        err.contains(&format!("exit status: {}", status.code().unwrap_or(-1))),
        "{r}"
    );
    assert!(!err.contains(PASSWORD));
    assert_eq!(f.snapshots().len(), 0, "no snapshot for a failed dump");
}
