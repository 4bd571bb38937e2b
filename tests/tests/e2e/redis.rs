//! The Redis source: live dumps over the replication protocol (sized and
//! diskless payloads, with and without a password), dump files and data
//! folders, checked against real `redis-server`s: a second server started
//! on the restored dump must hold the same data (`DEBUG DIGEST`) and the
//! keyspace the snapshot recorded.

use std::path::Path;

use cairn_test_support::redis::{resp, RedisServer};
use serde_json::Value;

use crate::util::*;

/// A few hundred thousand keys of every common type, some with a TTL, in
/// two databases.
fn populate(server: &RedisServer) {
    server.cli(&["DEBUG", "POPULATE", "200000", "str", "64"]);
    let mut cmds = Vec::new();
    for i in 0..15_000u32 {
        let n = i.to_string();
        let k = |p: &str| format!("{p}:{i}");
        cmds.extend(resp(&[
            b"HSET",
            k("hash").as_bytes(),
            b"name",
            n.as_bytes(),
            b"size",
            b"42",
            b"tag",
            b"x",
        ]));
        cmds.extend(resp(&[b"RPUSH", k("list").as_bytes(), b"a", n.as_bytes(), b"c", b"d"]));
        cmds.extend(resp(&[b"SADD", k("set").as_bytes(), b"m1", b"m2", n.as_bytes()]));
        cmds.extend(resp(&[b"ZADD", k("zset").as_bytes(), b"1", b"a", b"2.5", n.as_bytes()]));
        if i % 3 == 0 {
            // Long TTLs: nothing expires while the test runs.
            cmds.extend(resp(&[b"EXPIRE", format!("str:{i}").as_bytes(), b"86400"]));
            cmds.extend(resp(&[b"EXPIRE", k("hash").as_bytes(), b"86400"]));
        }
    }
    // Some large values, which Redis stores (and the RDB carries) raw.
    let mut rng = Rng::new(11);
    for i in 0..40 {
        cmds.extend(resp(&[b"SET", format!("blob:{i}").as_bytes(), &rng.bytes(50_000)]));
    }
    cmds.extend(resp(&[b"SELECT", b"3"]));
    for i in 0..2_000 {
        cmds.extend(resp(&[b"SET", format!("other:{i}").as_bytes(), b"v"]));
    }
    server.pipe(&cmds);
    let keyspace = server.keyspace();
    assert_eq!(keyspace.len(), 2, "{keyspace:?}");
    assert!(keyspace[0].1 > 250_000, "{keyspace:?}");
}

/// `INFO keyspace` as (db, keys, expires) per database.
type Keyspace = Vec<(u64, u64, u64)>;

/// The keyspace the snapshot recorded, as (db, keys, expires).
fn recorded_keyspace(details: &Value) -> Keyspace {
    details["keyspace"]
        .as_array()
        .expect("keyspace is a list")
        .iter()
        .map(|k| (u64_at(k, "/db"), u64_at(k, "/keys"), u64_at(k, "/expires")))
        .collect()
}

/// The RDB's own trailer, as the snapshot should record it.
fn trailer(rdb: &[u8]) -> u64 {
    u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap())
}

/// Starts a server on `rdb` in a fresh folder and checks it holds
/// `digest` and `keyspace`.
fn serve_restored(f: &Fixture, rdb: &[u8], digest: &str, keyspace: &[(u64, u64, u64)]) {
    let dir = f.path("restored-server");
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir.join("dump.rdb"), rdb);
    let b = RedisServer::start("redis restored", &dir, &[]).unwrap();
    assert_eq!(b.digest(), digest, "the restored server holds other data");
    assert_eq!(b.keyspace(), keyspace);
}

/// A live backup of `a` (started with `server_args`), then the dump and a
/// restore of it served by a second server. Returns the backup's stderr.
fn live_round_trip(test: &str, server_args: &[&str], redis_password: Option<&str>) -> Option<String> {
    let f = Fixture::init();
    let a = RedisServer::start(test, &f.path("server-a"), server_args)?;
    populate(&a);
    let digest = a.digest();
    let keyspace = a.keyspace();

    let mut c = f.cairn();
    if let Some(pw) = redis_password {
        c.env("CAIRN_REDIS_PASSWORD_FILE", f.password_file_for(pw));
    }
    let run = c.args(["backup", "--json", "-v", "--redis", &a.url()]).ok();
    let out = run.json();
    let rdb_path = format!("/redis/127.0.0.1:{}/dump.rdb", a.port);
    assert_eq!(strings_at(&out, "/paths"), vec![rdb_path.clone()]);
    assert_eq!(str_at(&out, "/details/Redis/role"), "master");
    let stderr = run.stderr();

    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(str_at(&snaps[0], "/source"), "redis");
    let details = &snaps[0]["details"]["Redis"];
    assert_eq!(str_at(details, "/origin"), a.url());
    assert_eq!(str_at(details, "/server_version"), a.info_field("redis_version"));
    assert_eq!(
        recorded_keyspace(details),
        keyspace,
        "the snapshot records INFO keyspace"
    );
    assert!(!details["aof"].as_bool().unwrap());

    let rdb = f.dump("latest", &rdb_path);
    assert_eq!(u64_at(details, "/rdb_size"), rdb.len() as u64);
    assert_eq!(u64_at(details, "/rdb_crc64"), trailer(&rdb));
    assert_eq!(
        u64_at(details, "/rdb_version"),
        std::str::from_utf8(&rdb[5..9]).unwrap().parse::<u64>().unwrap()
    );
    // `restore SNAPSHOT:PATH` gives the same file.
    let target = f.path("restore");
    f.cairn()
        .args(["restore", &format!("latest:{rdb_path}"), "--target"])
        .arg(&target)
        .ok();
    assert_eq!(std::fs::read(target.join("dump.rdb")).unwrap(), rdb);

    serve_restored(&f, &rdb, &digest, &keyspace);
    Some(stderr)
}

#[test]
fn redis_live_backup_restores_the_same_data() {
    let Some(stderr) = live_round_trip("redis_live_backup", &["--repl-diskless-sync", "no"], None) else {
        return;
    };
    assert!(stderr.contains("a sized payload ($<len>)"), "{stderr}");
}

#[test]
fn redis_live_backup_diskless_eof_form() {
    let args = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"];
    let Some(stderr) = live_round_trip("redis_live_backup_diskless", &args, None) else {
        return;
    };
    assert!(stderr.contains("a diskless payload ($EOF:<mark>)"), "{stderr}");
}

#[test]
fn redis_live_backup_with_password() {
    let pw = "s3cret-Redis-pw-93a1";
    let args = ["--requirepass", pw, "--repl-diskless-sync", "no"];
    let Some(stderr) = live_round_trip("redis_live_backup_password", &args, Some(pw)) else {
        return;
    };
    assert!(!stderr.contains(pw));
}

#[test]
fn redis_password_errors_leave_no_snapshot() {
    let f = Fixture::init();
    let pw = "right-pw-5c2e";
    let Some(a) = RedisServer::start("redis_password_errors", &f.path("a"), &["--requirepass", pw]) else {
        return;
    };
    a.cli(&["SET", "k", "v"]);
    let url = a.url();

    let wrong = f
        .cairn()
        .env("CAIRN_REDIS_PASSWORD_FILE", f.password_file_for("wrong-pw-77"))
        .args(["backup", "--redis", &url])
        .fails();
    assert!(
        wrong.stderr().contains("did not accept the password"),
        "{}",
        wrong.stderr()
    );

    let none = f.cairn().args(["backup", "--redis", &url]).fails();
    assert!(none.stderr().contains("requires a password"), "{}", none.stderr());
    assert!(none.stderr().contains("CAIRN_REDIS_PASSWORD_FILE"), "{}", none.stderr());

    let in_url = f
        .cairn()
        .args([
            "backup",
            "--redis",
            &format!("redis://default:{pw}@127.0.0.1:{}", a.port),
        ])
        .fails();
    assert!(
        in_url.stderr().contains("never taken from the command line"),
        "{}",
        in_url.stderr()
    );

    for r in [&wrong, &none, &in_url] {
        assert!(!r.stderr().contains(pw) && !r.stdout().contains(pw));
        assert!(!r.stderr().contains("wrong-pw-77"));
    }
    assert!(f.snapshots().is_empty(), "a failed Redis backup saved a snapshot");

    // The password from cairn.toml's [redis] table works too.
    let pw_file = f.password_file_for(pw);
    let config = f.path("cairn.toml");
    write(&config, format!("[redis]\npassword-file = \"{}\"\n", pw_file.display()));
    chmod(&config, 0o600);
    f.cairn()
        .arg("--config")
        .arg(&config)
        .args(["backup", "--redis", &url])
        .ok();
    assert_eq!(f.snapshots().len(), 1);
}

/// A server's own `SAVE`d dump.rdb of the populated data set.
fn saved_rdb(f: &Fixture, test: &str) -> Option<(Vec<u8>, String, Keyspace)> {
    let a = RedisServer::start(test, &f.path("a"), &[])?;
    populate(&a);
    a.cli(&["SAVE"]);
    Some((std::fs::read(a.dir.join("dump.rdb")).unwrap(), a.digest(), a.keyspace()))
}

#[test]
fn redis_rdb_file_corrupt_or_truncated_is_refused() {
    let f = Fixture::init();
    let Some((rdb, digest, keyspace)) = saved_rdb(&f, "redis_rdb_file") else {
        return;
    };
    let mut flipped = rdb.clone();
    let mid = rdb.len() / 2;
    flipped[mid] ^= 0x01;
    write(&f.path("flipped.rdb"), &flipped);
    let r = f.cairn().args(["backup", "--redis-rdb", "flipped.rdb"]).fails();
    assert!(r.stderr().contains("CRC-64 mismatch"), "{}", r.stderr());
    assert!(r.stderr().contains("no snapshot was saved"), "{}", r.stderr());

    write(&f.path("truncated.rdb"), &rdb[..rdb.len() * 2 / 3]);
    let r = f.cairn().args(["backup", "--redis-rdb", "truncated.rdb"]).fails();
    assert!(r.stderr().contains("truncated"), "{}", r.stderr());
    assert!(f.snapshots().is_empty(), "a bad dump was saved");

    // The intact file is accepted and round-trips.
    write(&f.path("good.rdb"), &rdb);
    let out = f.backup(&["--redis-rdb", "good.rdb"]);
    let path = s(&f.path("good.rdb"));
    assert_eq!(strings_at(&out, "/paths"), vec![path.clone()]);
    assert_eq!(u64_at(&out, "/details/Redis/rdb_crc64"), trailer(&rdb));
    assert_eq!(u64_at(&out, "/details/Redis/rdb_size"), rdb.len() as u64);
    let back = f.dump("latest", &path);
    assert_eq!(back, rdb);
    serve_restored(&f, &back, &digest, &keyspace);
}

/// Every regular file under `dir`, relative, with its content hash.
fn files(dir: &Path) -> Vec<(String, String)> {
    regular_files(dir)
        .into_keys()
        .map(|rel| (s(&rel), hash_file(&dir.join(&rel))))
        .collect()
}

#[test]
fn redis_data_dir_with_aof_restores_identically() {
    let f = Fixture::init();
    let data = f.path("data");
    let Some(a) = RedisServer::start("redis_data_dir", &data, &["--appendonly", "yes"]) else {
        return;
    };
    populate(&a);
    // DEBUG POPULATE bypasses the AOF: a rewrite puts every key in it, so
    // a server started on the folder (which loads the AOF, not the RDB)
    // holds the whole data set.
    a.cli(&["BGREWRITEAOF"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while a.info_field("aof_rewrite_in_progress") != "0" || a.info_field("aof_rewrite_scheduled") != "0" {
        assert!(std::time::Instant::now() < deadline, "the AOF rewrite did not finish");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    a.cli(&["SAVE"]);
    let digest = a.digest();
    let keyspace = a.keyspace();
    a.shutdown();
    // Only the server's files: its log stays out of the comparison.
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "log") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let aof_files = files(&data.join("appendonlydir"));
    assert!(aof_files.iter().any(|(n, _)| n.ends_with(".manifest")), "{aof_files:?}");

    let out = f.backup(&["--redis-data-dir", &s(&data)]);
    assert_eq!(
        strings_at(&out, "/paths"),
        vec![s(&data.join("dump.rdb")), s(&data.join("appendonlydir"))]
    );
    let details = &out["details"]["Redis"];
    assert!(details["aof"].as_bool().unwrap());
    let rdb = std::fs::read(data.join("dump.rdb")).unwrap();
    assert_eq!(u64_at(details, "/rdb_crc64"), trailer(&rdb));

    let target = f.path("restore");
    f.cairn().args(["restore", "latest", "--target"]).arg(&target).ok();
    let restored = target.join(data.strip_prefix("/").unwrap());
    assert_eq!(files(&restored), files(&data), "the data folder restored identically");

    // A server on the restored folder (AOF on) holds the same data.
    let b = RedisServer::start("redis_data_dir restored", &restored, &["--appendonly", "yes"]).unwrap();
    assert_eq!(b.digest(), digest);
    assert_eq!(b.keyspace(), keyspace);
}

/// A CA and a server certificate for 127.0.0.1, made with `openssl` in
/// `dir`: (ca.crt, server.crt, server.key). `None` (said loudly) where
/// `openssl` is missing; in CI that fails instead.
fn test_certificates(dir: &Path) -> Option<(String, String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| std::process::Command::new("openssl").args(args).output();
    if openssl(&["version"]).is_err() {
        assert!(std::env::var_os("CI").is_none(), "openssl is missing (CI must have it)");
        eprintln!("SKIPPED: redis_live_backup_over_tls needs openssl to make certificates");
        return None;
    }
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let steps: [Vec<String>; 3] = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cairn-test-ca",
            "-keyout",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([p("ca.key"), "-out".into(), p("ca.crt")])
        .collect(),
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([p("server.key"), "-out".into(), p("server.csr")])
        .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                p("server.csr"),
                "-CA".into(),
                p("ca.crt"),
                "-CAkey".into(),
                p("ca.key"),
                "-extfile".into(),
                p("ext"),
                "-out".into(),
                p("server.crt"),
            ])
            .collect(),
    ];
    for args in &steps {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = openssl(&args).unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }
    Some((p("ca.crt"), p("server.crt"), p("server.key")))
}

#[test]
fn redis_live_backup_over_tls() {
    let f = Fixture::init();
    let Some((ca, cert, key)) = test_certificates(&f.path("tls")) else {
        return;
    };
    let tls_port = cairn_test_support::redis::free_port().to_string();
    let args = [
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--repl-diskless-sync",
        "no",
    ];
    let Some(a) = RedisServer::start("redis_live_backup_over_tls", &f.path("server-a"), &args) else {
        return;
    };
    a.cli(&["DEBUG", "POPULATE", "20000", "tls", "32"]);
    a.cli(&["HSET", "h", "f", "v"]);
    let digest = a.digest();
    let keyspace = a.keyspace();
    let url = format!("rediss://127.0.0.1:{tls_port}");

    // The server's certificate is signed by a CA the system does not know.
    let untrusted = f.cairn().args(["backup", "--redis", &url]).fails();
    assert!(
        untrusted.stderr().contains("handshake") && untrusted.stderr().contains("--redis-ca-file"),
        "{}",
        untrusted.stderr()
    );
    assert!(f.snapshots().is_empty(), "a failed TLS backup leaves no snapshot");
    // A CA file for plain redis:// is a mistake, said so.
    let plain = f
        .cairn()
        .args(["backup", "--redis", &a.url(), "--redis-ca-file", &ca])
        .fails();
    assert!(plain.stderr().contains("rediss://"), "{}", plain.stderr());

    let out = f
        .cairn()
        .args(["backup", "--json", "--redis", &url, "--redis-ca-file", &ca])
        .ok()
        .json();
    assert_eq!(str_at(&out, "/details/Redis/origin"), url);
    let rdb_path = format!("/redis/127.0.0.1:{tls_port}/dump.rdb");
    assert_eq!(strings_at(&out, "/paths"), vec![rdb_path.clone()]);
    let rdb = f.dump("latest", &rdb_path);
    assert_eq!(u64_at(&out, "/details/Redis/rdb_size"), rdb.len() as u64);
    serve_restored(&f, &rdb, &digest, &keyspace);
}
