//! The S3 test servers: SeaweedFS (signatures, conditional writes,
//! multipart: the main server) and moto (archive storage classes as AWS
//! keeps them), both on 127.0.0.1, started by `scripts/s3-servers.sh`, which
//! writes their settings to `target/s3-servers.env`:
//!
//! ```sh
//! scripts/s3-servers.sh start && set -a && . target/s3-servers.env && set +a
//! cargo test ...
//! scripts/s3-servers.sh stop
//! ```
//!
//! (`scripts/test-all.sh` does this.) Without those settings a test that
//! asks for a server fails, saying how to start them; with `CAIRN_SKIP_S3=1`
//! it gets `None` and a notice is printed once per test process, past the
//! test harness's capture, so a skipped S3 suite never passes silently.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One server's settings.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A bucket that exists; tests share it under [`unique`] prefixes.
    pub bucket: String,
    /// Access key id.
    pub key: String,
    /// Secret access key.
    pub secret: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the S3 tests need their servers. Run `scripts/s3-servers.sh start`, then \
             `set -a; . target/s3-servers.env; set +a` before `cargo test` (scripts/test-all.sh does both), or set \
             CAIRN_SKIP_S3=1 to skip these tests"
        )
    })
}

/// Whether `CAIRN_SKIP_S3=1`; the first call that says yes prints the notice.
pub fn skipped() -> bool {
    static NOTICE: Once = Once::new();
    if std::env::var("CAIRN_SKIP_S3").is_ok_and(|v| v == "1") {
        // Straight to the process's standard error: the test harness
        // captures eprintln! of passing tests, and this must be seen.
        NOTICE.call_once(|| {
            let _ = std::io::stderr().write_all(
                b"\n**********************************************************************\n\
                  SKIPPED: S3 tests need a server (CAIRN_SKIP_S3=1); nothing was tested\n\
                  **********************************************************************\n",
            );
        });
        return true;
    }
    false
}

/// SeaweedFS, or `None` when the S3 tests are skipped.
pub fn seaweed() -> Option<Server> {
    if skipped() {
        return None;
    }
    Some(Server {
        endpoint: env("CAIRN_TEST_S3_ENDPOINT"),
        bucket: env("CAIRN_TEST_S3_BUCKET"),
        key: env("CAIRN_TEST_S3_KEY"),
        secret: env("CAIRN_TEST_S3_SECRET"),
    })
}

/// moto (it accepts any credentials), or `None` when the S3 tests are skipped.
pub fn moto() -> Option<Server> {
    if skipped() {
        return None;
    }
    Some(Server {
        endpoint: env("CAIRN_TEST_MOTO_ENDPOINT"),
        bucket: std::env::var("CAIRN_TEST_MOTO_BUCKET").unwrap_or_else(|_| env("CAIRN_TEST_S3_BUCKET")),
        key: "test".into(),
        secret: "test".into(),
    })
}

/// A key prefix of its own for each call (`tests/TEST-` and 12 hex digits),
/// so tests and runs share a bucket without meeting.
pub fn unique(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    format!("tests/{test}-{}", &h.finalize().to_hex()[..12])
}

/// A credentials file's text in the `key=value` format cairn reads.
pub fn credentials_text(key: &str, secret: &str) -> String {
    format!("aws_access_key_id={key}\naws_secret_access_key={secret}\n")
}

/// A temporary credentials file (mode 0600); removed when dropped.
pub fn creds_file(key: &str, secret: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("creating a credentials file");
    f.write_all(credentials_text(key, secret).as_bytes())
        .expect("writing a credentials file");
    f
}

impl Server {
    /// The repository location of `prefix` in this server's bucket.
    pub fn location(&self, prefix: &str) -> String {
        format!("s3:{}/{}/{}", self.endpoint.trim_end_matches('/'), self.bucket, prefix)
    }

    /// A temporary file with this server's credentials.
    pub fn creds_file(&self) -> tempfile::NamedTempFile {
        creds_file(&self.key, &self.secret)
    }

    /// Writes this server's credentials to `path`, readable by the owner only.
    pub fn write_credentials(&self, path: &Path) {
        std::fs::write(path, credentials_text(&self.key, &self.secret))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code (0 if the status line did not parse).
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    /// The body, as sent (no chunked decoding: the servers here send lengths).
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header called `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request on its own connection to `endpoint`
/// (`http://HOST:PORT`): for moto's test API, for looking at objects as a
/// lifecycle rule would change them, and for the fault proxy's counters.
pub fn try_http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut c = TcpStream::connect(host).map_err(|e| format!("connecting to {host}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut answer = Vec::new();
    c.write_all(req.as_bytes())
        .and_then(|()| c.write_all(body))
        .and_then(|()| c.read_to_end(&mut answer))
        .map_err(|e| format!("{method} {path} on {host}: {e}"))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP answer: {}", String::from_utf8_lossy(&answer)))?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Answer {
        status,
        head,
        body: answer[split + 4..].to_vec(),
    })
}

/// [`try_http`], panicking on a failed connection.
pub fn http(endpoint: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    try_http(endpoint, method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

/// A signature-shaped header for moto: it checks none, but routes requests
/// without one differently.
pub const MOTO_AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

const IMMEDIATE: &str = r#"{"progression":"immediate"}"#;

/// How moto advances archive retrievals, which is global to the server:
/// holding this keeps other tests of this process from changing it, and
/// dropping it (even when a test fails) puts moto back to finishing
/// retrievals at once.
pub struct MotoRestores<'a> {
    moto: &'a Server,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// Takes moto's retrieval progression for this test and sets it to finish
/// retrievals at once.
pub fn moto_restores(moto: &Server) -> MotoRestores<'_> {
    static LOCK: Mutex<()> = Mutex::new(());
    let r = MotoRestores {
        moto,
        _one_at_a_time: LOCK.lock().unwrap_or_else(|p| p.into_inner()),
    };
    r.immediate();
    r
}

impl MotoRestores<'_> {
    fn set(&self, transition: &str) -> Result<(), String> {
        let body = format!(r#"{{"model_name":"s3::keyrestore","transition":{transition}}}"#);
        let a = try_http(
            &self.moto.endpoint,
            "POST",
            "/moto-api/state-manager/set-transition",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )?;
        if (200..300).contains(&a.status) {
            Ok(())
        } else {
            Err(format!("setting moto's restore progression: {}", a.head))
        }
    }

    /// Retrievals finish as soon as they are requested.
    pub fn immediate(&self) {
        self.set(IMMEDIATE).unwrap_or_else(|e| panic!("{e}"));
    }

    /// A retrieval finishes after the object has been looked at `times`
    /// times (HEAD or GET).
    pub fn manual(&self, times: u32) {
        self.set(&format!(r#"{{"progression":"manual","times":{times}}}"#))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for MotoRestores<'_> {
    fn drop(&mut self) {
        let _ = self.set(IMMEDIATE);
    }
}
