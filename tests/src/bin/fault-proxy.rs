//! A fault-injecting HTTP/1.1 proxy for the S3 end-to-end tests (test-only).
//!
//! It listens on 127.0.0.1 (a free port, printed as the first line of
//! standard output: `listening 127.0.0.1:PORT`) and forwards every request to
//! `--upstream HOST:PORT` unchanged (so request signatures stay valid), on a
//! fresh upstream connection per request. A share of the requests (`--rate`)
//! meets a fault instead, chosen by a seeded generator, so a given `--seed`
//! gives the same sequence of decisions (the k-th request to arrive gets the
//! k-th decision; with parallel requests, which one arrives k-th may vary):
//!
//! | fault | what the client sees |
//! |---|---|
//! | `slowdown` | `503` with an S3 `SlowDown` XML body (nothing forwarded) |
//! | `error500` | `500` with an S3 `InternalError` XML body (nothing forwarded) |
//! | `drop` | the connection closed after the request, without an answer (nothing forwarded) |
//! | `drop-after` | forwarded (the server did it), then the connection closed without the answer |
//! | `truncate` | forwarded, then the answer cut off halfway through its body |
//! | `slow` | forwarded, the answer held back up to `--max-delay-ms` |
//!
//! `--only TEXT` limits faults to requests whose `METHOD TARGET` contains
//! TEXT (e.g. `POST` for the start and completion of multipart uploads).
//!
//! Faults are bounded: at most `--max-faults` in all, at most
//! `--max-per-request` for the same request (method, path and query, range),
//! and at most `--max-per-object` for all requests on one path (whatever the
//! method and query: a multipart upload's parts, its start and completion),
//! so a client that retries a few times always gets through.
//!
//! `--hide-archive-once` (for moto) removes an archive `x-amz-storage-class`
//! header from the first HEAD answer of each object, so the client believes
//! the object readable and meets `InvalidObjectState` on the read, as it
//! would if a lifecycle rule moved it after the client looked.
//!
//! `GET /__fault-proxy/stats` is answered by the proxy itself with counters
//! as JSON. The proxy exits when its standard input closes (so it never
//! outlives the test that started it).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FAULTS: &[&str] = &["slowdown", "error500", "drop", "drop-after", "truncate", "slow"];

#[derive(Debug, Clone)]
struct Config {
    upstream: String,
    seed: u64,
    rate: f64,
    max_faults: u64,
    max_per_request: u32,
    max_per_object: u32,
    max_delay_ms: u64,
    faults: Vec<String>,
    /// Only requests whose `METHOD TARGET` contains this may meet a fault.
    only: Option<String>,
    hide_archive_once: bool,
    verbose: bool,
}

/// xorshift64*: small, seeded, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
struct State {
    requests: u64,
    faults: u64,
    by_fault: HashMap<String, u64>,
    per_request: HashMap<String, u32>,
    per_object: HashMap<String, u32>,
    heads_seen: HashMap<String, u32>,
    hidden: u64,
}

struct Shared {
    cfg: Config,
    rng: Mutex<Rng>,
    state: Mutex<State>,
}

impl Shared {
    /// The fault for this request, if any, and a number for the slow delay.
    fn decide(&self, request: &str, key: &str, object: &str) -> (Option<String>, u64) {
        // The generator moves the same way for every request, fault or not.
        let (roll, pick, extra) = {
            let mut r = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (r.unit(), r.next(), r.next())
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.requests += 1;
        let eligible = self.cfg.only.as_deref().is_none_or(|o| request.contains(o));
        if self.cfg.faults.is_empty() || !eligible || roll >= self.cfg.rate || st.faults >= self.cfg.max_faults {
            return (None, extra);
        }
        if st.per_request.get(key).copied().unwrap_or(0) >= self.cfg.max_per_request
            || st.per_object.get(object).copied().unwrap_or(0) >= self.cfg.max_per_object
        {
            return (None, extra);
        }
        *st.per_request.entry(key.to_string()).or_insert(0) += 1;
        *st.per_object.entry(object.to_string()).or_insert(0) += 1;
        st.faults += 1;
        let f = self.cfg.faults[(pick % self.cfg.faults.len() as u64) as usize].clone();
        *st.by_fault.entry(f.clone()).or_insert(0) += 1;
        (Some(f), extra)
    }

    fn stats_json(&self) -> String {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut by: Vec<_> = st.by_fault.iter().collect();
        by.sort();
        let by = by
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "{{\"requests\":{},\"faults\":{},\"hidden_archive\":{},\"by_fault\":{{{by}}}}}",
            st.requests, st.faults, st.hidden
        )
    }
}

/// One HTTP message: its head (start line and headers, with the final empty
/// line) and its body exactly as sent (chunked bodies stay chunked).
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Message {
    fn start_line(&self) -> String {
        let s = String::from_utf8_lossy(&self.head);
        s.lines().next().unwrap_or("").to_string()
    }

    fn header(&self, name: &str) -> Option<String> {
        let s = String::from_utf8_lossy(&self.head);
        s.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads a head up to and including the empty line; `None` at a clean EOF.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof in head"));
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            if head.len() == line.len() {
                // Stray empty line between messages.
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// Reads a chunked body verbatim (sizes, data, trailers).
fn read_chunked(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof in chunk size",
            ));
        }
        out.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let size_text = text.trim().split(';').next().unwrap_or("").trim().to_string();
        let size = u64::from_str_radix(&size_text, 16).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk size {size_text:?}"))
        })?;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let mut t = Vec::new();
                r.read_until(b'\n', &mut t)?;
                if t.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "eof in trailers",
                    ));
                }
                out.extend_from_slice(&t);
                if t == b"\r\n" || t == b"\n" {
                    return Ok(());
                }
            }
        }
        let start = out.len();
        out.resize(start + size as usize, 0);
        r.read_exact(&mut out[start..])?;
        let mut crlf = Vec::new();
        r.read_until(b'\n', &mut crlf)?;
        out.extend_from_slice(&crlf);
    }
}

/// Reads a body framed by the message's headers. `no_body` for answers to
/// HEAD and for 1xx/204/304. `to_eof` allows reading until the connection
/// closes (answers only).
fn read_body(r: &mut impl BufRead, m: &Message, no_body: bool, to_eof: bool) -> std::io::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    if no_body {
        return Ok((body, false));
    }
    if m.header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(r, &mut body)?;
        return Ok((body, false));
    }
    if let Some(len) = m.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad content-length"))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        return Ok((body, false));
    }
    if to_eof {
        r.read_to_end(&mut body)?;
        return Ok((body, true));
    }
    Ok((body, false))
}

fn status_of(m: &Message) -> u16 {
    m.start_line()
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Sends the request upstream on a fresh connection and reads the answer
/// (skipping interim 1xx answers).
fn forward(cfg: &Config, req: &Message, is_head: bool) -> std::io::Result<(Message, bool)> {
    let mut up = TcpStream::connect(&cfg.upstream)?;
    up.set_nodelay(true)?;
    up.write_all(&req.head)?;
    up.write_all(&req.body)?;
    up.flush()?;
    let mut r = BufReader::with_capacity(1 << 16, up);
    loop {
        let head = read_head(&mut r)?
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "upstream closed without answer"))?;
        let mut m = Message { head, body: Vec::new() };
        let status = status_of(&m);
        if (100..200).contains(&status) {
            continue;
        }
        let no_body = is_head || status == 204 || status == 304;
        let (body, closed) = read_body(&mut r, &m, no_body, true)?;
        m.body = body;
        let close = closed
            || m.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || m.start_line().starts_with("HTTP/1.0");
        return Ok((m, close));
    }
}

fn xml_error(status: u16, reason: &str, code: &str, message: &str, is_head: bool) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>fault-proxy</RequestId></Error>"
    );
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
        if is_head { 0 } else { body.len() }
    )
    .into_bytes();
    if !is_head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Removes an archive storage-class header from a HEAD answer (once per object).
fn hide_archive(shared: &Shared, path: &str, resp: &mut Message) {
    let Some(class) = resp.header("x-amz-storage-class") else {
        return;
    };
    if !(class == "GLACIER" || class == "DEEP_ARCHIVE") {
        return;
    }
    {
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = st.heads_seen.entry(path.to_string()).or_insert(0);
        *n += 1;
        if *n > 1 {
            return;
        }
        st.hidden += 1;
    }
    let text = String::from_utf8_lossy(&resp.head).into_owned();
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("x-amz-storage-class"))
        })
        .collect();
    resp.head = kept.into_bytes();
}

fn serve(shared: Arc<Shared>, client: TcpStream) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut w = client.try_clone()?;
    let mut r = BufReader::with_capacity(1 << 16, client);
    loop {
        let Some(head) = read_head(&mut r)? else {
            return Ok(());
        };
        let mut req = Message { head, body: Vec::new() };
        let line = req.start_line();
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let (body, _) = read_body(&mut r, &req, false, false)?;
        req.body = body;
        let client_close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));

        if target.starts_with("/__fault-proxy/stats") {
            let body = shared.stats_json();
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            if client_close {
                return Ok(());
            }
            continue;
        }

        let is_head = method.eq_ignore_ascii_case("HEAD");
        let key = format!("{method} {target} {}", req.header("range").unwrap_or_default());
        let object = target.split('?').next().unwrap_or("");
        let (fault, extra) = shared.decide(&format!("{method} {target}"), &key, object);
        if shared.cfg.verbose {
            if let Some(f) = &fault {
                eprintln!("fault-proxy: {f}: {method} {target}");
            }
        }
        match fault.as_deref() {
            Some("slowdown") => {
                w.write_all(&xml_error(
                    503,
                    "Slow Down",
                    "SlowDown",
                    "Please reduce your request rate.",
                    is_head,
                ))?;
                continue;
            }
            Some("error500") => {
                w.write_all(&xml_error(
                    500,
                    "Internal Server Error",
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    is_head,
                ))?;
                continue;
            }
            Some("drop") => {
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => {}
        }
        let (mut resp, upstream_closed) = match forward(&shared.cfg, &req, is_head) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("fault-proxy: upstream failed for {method} {target}: {e}");
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
        };
        if shared.cfg.hide_archive_once && is_head {
            hide_archive(&shared, &target, &mut resp);
        }
        let fault = match fault.as_deref() {
            // A body too short to cut (HEAD answers): drop the whole answer.
            Some("truncate") if resp.body.len() < 2 => Some("drop-after"),
            f => f,
        };
        match fault {
            Some("drop-after") => {
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some("truncate") => {
                w.write_all(&resp.head)?;
                w.write_all(&resp.body[..resp.body.len() / 2])?;
                w.flush()?;
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some("slow") => {
                let max = shared.cfg.max_delay_ms.max(1);
                let ms = max / 4 + extra % (max - max / 4 + 1);
                std::thread::sleep(Duration::from_millis(ms));
            }
            _ => {}
        }
        w.write_all(&resp.head)?;
        w.write_all(&resp.body)?;
        w.flush()?;
        if upstream_closed || client_close {
            let _ = w.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "fault-proxy: {msg}\nusage: fault-proxy --upstream HOST:PORT [--seed N] [--rate 0..1] [--max-faults N] \
         [--max-per-request N] [--max-per-object N] [--max-delay-ms N] [--faults a,b,...] [--only TEXT] [--hide-archive-once] [--verbose]\n\
         faults: {}",
        FAULTS.join(",")
    );
    std::process::exit(2)
}

fn parse_args() -> Config {
    let mut cfg = Config {
        upstream: String::new(),
        seed: 1,
        rate: 0.2,
        max_faults: 50,
        max_per_request: 2,
        max_per_object: u32::MAX,
        max_delay_ms: 500,
        faults: FAULTS.iter().map(|s| s.to_string()).collect(),
        only: None,
        hide_archive_once: false,
        verbose: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--upstream" => cfg.upstream = val(),
            "--seed" => cfg.seed = val().parse().unwrap_or_else(|_| usage("bad --seed")),
            "--rate" => cfg.rate = val().parse().unwrap_or_else(|_| usage("bad --rate")),
            "--max-faults" => cfg.max_faults = val().parse().unwrap_or_else(|_| usage("bad --max-faults")),
            "--max-per-request" => {
                cfg.max_per_request = val().parse().unwrap_or_else(|_| usage("bad --max-per-request"))
            }
            "--max-per-object" => cfg.max_per_object = val().parse().unwrap_or_else(|_| usage("bad --max-per-object")),
            "--max-delay-ms" => cfg.max_delay_ms = val().parse().unwrap_or_else(|_| usage("bad --max-delay-ms")),
            "--faults" => {
                let v = val();
                cfg.faults = if v == "none" || v.is_empty() {
                    Vec::new()
                } else {
                    v.split(',').map(str::to_string).collect()
                };
                for f in &cfg.faults {
                    if !FAULTS.contains(&f.as_str()) {
                        usage(&format!("unknown fault {f:?}"));
                    }
                }
            }
            "--only" => cfg.only = Some(val()),
            "--hide-archive-once" => cfg.hide_archive_once = true,
            "--verbose" => cfg.verbose = true,
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if cfg.upstream.is_empty() {
        usage("--upstream is required");
    }
    if !(0.0..=1.0).contains(&cfg.rate) {
        usage("--rate must be between 0 and 1");
    }
    cfg
}

fn main() {
    let cfg = parse_args();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| {
        eprintln!("fault-proxy: cannot listen on 127.0.0.1: {e}");
        std::process::exit(1)
    });
    let addr = listener.local_addr().unwrap_or_else(|e| {
        eprintln!("fault-proxy: {e}");
        std::process::exit(1)
    });
    println!("listening {addr}");
    let _ = std::io::stdout().flush();

    // Gone when the parent is: exit at the end of standard input.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });

    let shared = Arc::new(Shared {
        rng: Mutex::new(Rng(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)),
        cfg,
        state: Mutex::new(State::default()),
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(shared.clone(), conn) {
                if shared.cfg.verbose {
                    eprintln!("fault-proxy: connection ended: {e}");
                }
            }
        });
    }
}
