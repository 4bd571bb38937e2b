//! The Redis drill: `redis-server` started on the restored RDB (loopback,
//! a free port, no persistence), its keys per database compared with those
//! the backup recorded.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{files_under, free_port, Verification};
use crate::snapshot::RedisKeyspace;

const KIND: &str = "redis-server";

/// Loads the first `.rdb` file under `dir` into a throwaway `redis-server`
/// and compares its keyspace with `recorded` (nothing to compare when the
/// backup recorded none: then loading is the test).
pub fn verify_redis(dir: &Path, recorded: &[RedisKeyspace], wait: Duration) -> Verification {
    let Some(rdb) = files_under(dir)
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "rdb"))
    else {
        return Verification::fail(KIND, "no .rdb file in the restored data");
    };
    let port = match free_port() {
        Ok(p) => p,
        Err(e) => return Verification::fail(KIND, format!("no free port: {e}")),
    };
    let (Some(folder), Some(file)) = (rdb.parent(), rdb.file_name()) else {
        return Verification::fail(KIND, format!("{} has no folder", rdb.display()));
    };
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(folder)
        .arg("--dbfilename")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Verification::fail(KIND, format!("cannot start redis-server (is it installed?): {e}")),
    };
    let got = crate::sources::redis::loaded_keyspace("127.0.0.1", port, wait);
    let _ = child.kill();
    let _ = child.wait();
    let got = match got {
        Ok(k) => k,
        Err(e) => return Verification::fail(KIND, format!("redis-server did not load the dump: {e}")),
    };
    let show = |k: &[RedisKeyspace]| {
        k.iter()
            .map(|x| format!("db{}={}", x.db, x.keys))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let same = recorded.is_empty()
        || recorded
            .iter()
            .map(|k| (k.db, k.keys))
            .eq(got.iter().map(|k| (k.db, k.keys)));
    Verification {
        kind: KIND.into(),
        ok: same,
        output: if recorded.is_empty() {
            format!("loaded: {} (no key counts were recorded at backup)", show(&got))
        } else if same {
            format!("loaded with the keys recorded at backup: {}", show(&got))
        } else {
            format!("keys differ: recorded {}, loaded {}", show(recorded), show(&got))
        },
    }
}
