//! The little of the Redis protocol (RESP) a replica-style dump needs:
//! commands as arrays of bulk strings, replies that are simple strings,
//! errors, integers or bulk strings, and the payload `SYNC` answers with.
//!
//! Written by hand on `std::net::TcpStream` (in TLS for `rediss://`,
//! `tls.rs`) rather than with the `redis`
//! crate: that crate has no API for the replication stream (the `$EOF:`
//! payload, the keep-alive newlines before it), which is the point here,
//! and the rest is a few dozen lines.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::tls::{self, Transport};
use super::RedisError;

/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long any one read or write may wait. While it prepares the dump the
/// server sends a newline every second, so this only trips on a dead peer.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest reply line accepted (a status line or a bulk header).
const MAX_LINE: usize = 64 * 1024;

/// Largest bulk reply accepted for an ordinary command (`INFO`).
const MAX_BULK: usize = 16 * 1024 * 1024;

/// Length of the end mark of a diskless payload (`$EOF:<40 bytes>`).
pub(crate) const EOF_MARK_LEN: usize = 40;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n` (or `$-1`, a null).
    Bulk(Option<Vec<u8>>),
}

/// How the server sends the RDB after `SYNC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PayloadForm {
    /// `$<len>`: a dump the server wrote to disk first.
    Sized(u64),
    /// `$EOF:<mark>`: a diskless dump of unknown length that ends with `mark`.
    EofMarked([u8; EOF_MARK_LEN]),
}

impl std::fmt::Display for PayloadForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadForm::Sized(n) => write!(f, "a sized payload ($<len>) of {n} bytes"),
            PayloadForm::EofMarked(_) => write!(f, "a diskless payload ($EOF:<mark>) of unknown length"),
        }
    }
}

/// A connection to one server.
pub(crate) struct Conn {
    /// Replies are read through the buffer; commands are written to the
    /// transport under it (request, then reply: nothing is in flight both ways).
    stream: BufReader<Transport>,
    addr: String,
}

impl Conn {
    /// Connects to `host:port`, trying each address it resolves to; in TLS
    /// checked by `tls` when given.
    pub(crate) fn connect(
        host: &str,
        port: u16,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Conn, RedisError> {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let io_err = |source| RedisError::Connect {
            addr: addr.clone(),
            source,
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
        let mut stream = None;
        for a in (host, port).to_socket_addrs().map_err(io_err)? {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| io_err(last))?;
        let setup = |s: &TcpStream| -> io::Result<()> {
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_nodelay(true)
        };
        setup(&stream).map_err(io_err)?;
        let transport = match tls {
            Some(config) => tls::wrap(stream, host, config)?,
            None => Transport::Plain(stream),
        };
        Ok(Conn {
            stream: BufReader::with_capacity(256 * 1024, transport),
            addr,
        })
    }

    fn io(&self, what: &str, source: io::Error) -> RedisError {
        RedisError::Io {
            what: format!("{what} ({})", self.addr),
            source,
        }
    }

    /// Sends one command and reads its reply.
    pub(crate) fn command(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        self.send(args)?;
        read_reply(&mut self.stream).map_err(|e| self.io("reading a reply", e))
    }

    /// Sends one command.
    pub(crate) fn send(&mut self, args: &[&[u8]]) -> Result<(), RedisError> {
        let bytes = encode_command(args);
        let w = self.stream.get_mut();
        let r = w.write_all(&bytes).and_then(|()| w.flush());
        r.map_err(|e| self.io("sending a command", e))
    }

    /// After `SYNC`: skips keep-alive newlines and reads the payload header.
    pub(crate) fn sync_preamble(&mut self) -> Result<(PayloadForm, u64), RedisError> {
        read_preamble(&mut self.stream).map_err(|e| match e {
            Preamble::Io(e) => self.io("waiting for the dump", e),
            Preamble::Refused(message) => RedisError::Server {
                what: "SYNC".into(),
                message,
            },
        })
    }

    /// The payload as a reader that ends where the RDB ends.
    pub(crate) fn into_payload(self, form: PayloadForm) -> Payload<BufReader<Transport>> {
        Payload::new(self.stream, form)
    }
}

/// A command as RESP: an array of bulk strings.
fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(detail: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail.into())
}

/// One line without its `\r\n`.
fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = r.take(MAX_LINE as u64 + 2).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("a reply line is cut short or too long"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("`{}` is not a number", String::from_utf8_lossy(digits))))
}

/// One reply of the kinds the commands here get.
pub(crate) fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_first().ok_or_else(|| bad("an empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Integer(parse_int(rest)?)),
        b'$' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| bad("a bulk length out of range"))?;
            if len > MAX_BULK {
                return Err(bad(format!("a {len}-byte reply is larger than expected")));
            }
            let mut data = vec![0u8; len + 2];
            r.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(bad("a bulk reply does not end with CRLF"));
            }
            data.truncate(len);
            Ok(Reply::Bulk(Some(data)))
        }
        other => Err(bad(format!("an unexpected reply of type `{}`", char::from(*other)))),
    }
}

/// Why no payload header came.
pub(crate) enum Preamble {
    Io(io::Error),
    Refused(String),
}

/// Skips the newlines the server sends as keep-alives while it prepares
/// the dump, then reads `$<len>` or `$EOF:<mark>`. Returns the form and
/// how many keep-alives came first.
pub(crate) fn read_preamble(r: &mut impl BufRead) -> Result<(PayloadForm, u64), Preamble> {
    let mut keepalives = 0u64;
    loop {
        let buf = r.fill_buf().map_err(Preamble::Io)?;
        let Some(&first) = buf.first() else {
            return Err(Preamble::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before sending the dump",
            )));
        };
        if first == b'\n' {
            keepalives += 1;
            r.consume(1);
            continue;
        }
        break;
    }
    let line = read_line(r).map_err(Preamble::Io)?;
    match line.split_first() {
        Some((b'$', rest)) => {
            if let Some(mark) = rest.strip_prefix(b"EOF:") {
                let mark: [u8; EOF_MARK_LEN] = mark.try_into().map_err(|_| {
                    Preamble::Io(bad(format!(
                        "an end mark of {} bytes instead of {EOF_MARK_LEN}",
                        mark.len()
                    )))
                })?;
                return Ok((PayloadForm::EofMarked(mark), keepalives));
            }
            let len = parse_int(rest).map_err(Preamble::Io)?;
            let len = u64::try_from(len).map_err(|_| Preamble::Io(bad("a negative dump length")))?;
            Ok((PayloadForm::Sized(len), keepalives))
        }
        Some((b'-', rest)) => Err(Preamble::Refused(String::from_utf8_lossy(rest).into_owned())),
        _ => Err(Preamble::Io(bad(format!(
            "`{}` where the dump should begin",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        )))),
    }
}

/// The RDB part of a `SYNC` answer: reads end where the dump ends.
pub(crate) struct Payload<R> {
    inner: R,
    state: State,
}

enum State {
    Sized {
        left: u64,
        total: u64,
    },
    Eof {
        mark: [u8; EOF_MARK_LEN],
        /// Bytes read but not yet passed on; the newest 39 may begin the mark.
        held: Vec<u8>,
        /// Bytes of `held` already passed on.
        start: usize,
        /// Bytes of `held` that are surely RDB data.
        safe: usize,
        /// The mark was found (`held` ends before it).
        found: bool,
    },
}

impl<R: Read> Payload<R> {
    pub(crate) fn new(inner: R, form: PayloadForm) -> Self {
        let state = match form {
            PayloadForm::Sized(n) => State::Sized { left: n, total: n },
            PayloadForm::EofMarked(mark) => State::Eof {
                mark,
                held: Vec::new(),
                start: 0,
                safe: 0,
                found: false,
            },
        };
        Self { inner, state }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<R: Read> Read for Payload<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.state {
            State::Sized { left, total } => {
                if *left == 0 {
                    return Ok(0);
                }
                let want = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the server closed the connection after {} of the dump's {total} bytes: it is truncated",
                            *total - *left
                        ),
                    ));
                }
                *left -= n as u64;
                Ok(n)
            }
            State::Eof {
                mark,
                held,
                start,
                safe,
                found,
            } => loop {
                if *start < *safe {
                    let n = (*safe - *start).min(buf.len());
                    buf[..n].copy_from_slice(&held[*start..*start + n]);
                    *start += n;
                    return Ok(n);
                }
                if *found {
                    return Ok(0);
                }
                // Everything safe was passed on: keep only the possible
                // beginning of the mark, then read more.
                held.drain(..*start);
                *start = 0;
                let from = held.len().saturating_sub(EOF_MARK_LEN - 1);
                let old = held.len();
                held.resize(old + 64 * 1024, 0);
                let n = match self.inner.read(&mut held[old..]) {
                    Ok(n) => n,
                    Err(e) => {
                        held.truncate(old);
                        return Err(e);
                    }
                };
                held.truncate(old + n);
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection before the dump's end mark: it is truncated",
                    ));
                }
                if let Some(p) = find(&held[from..], &mark[..]) {
                    // Whatever follows the mark (replication traffic from a
                    // server without rdb-only) is not part of the dump.
                    held.truncate(from + p);
                    *safe = held.len();
                    *found = true;
                } else {
                    *safe = held.len().saturating_sub(EOF_MARK_LEN - 1);
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Reads in pieces of `step` bytes, like a socket that trickles.
    struct Trickle(Vec<u8>, usize, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = (self.0.len() - self.1).min(self.2).min(buf.len());
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    fn stream(bytes: &[u8], step: usize) -> BufReader<Trickle> {
        BufReader::with_capacity(16, Trickle(bytes.to_vec(), 0, step))
    }

    fn payload(rdb: &[u8], answer: Vec<u8>, step: usize) -> io::Result<(PayloadForm, u64, Vec<u8>)> {
        let _ = rdb;
        let mut r = stream(&answer, step);
        let (form, keepalives) = read_preamble(&mut r).map_err(|e| match e {
            Preamble::Io(e) => e,
            Preamble::Refused(m) => io::Error::other(m),
        })?;
        let mut out = Vec::new();
        Payload::new(r, form.clone()).read_to_end(&mut out)?;
        Ok((form, keepalives, out))
    }

    const MARK: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

    fn rdb() -> Vec<u8> {
        (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn sized_payload_after_keepalives() {
        let rdb = rdb();
        let mut answer = b"\n\n\n".to_vec();
        answer.extend_from_slice(format!("${}\r\n", rdb.len()).as_bytes());
        answer.extend_from_slice(&rdb);
        // Replication traffic after the dump is not part of it.
        answer.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        for step in [1, 5, 4096] {
            let (form, keepalives, out) = payload(&rdb, answer.clone(), step).unwrap();
            assert_eq!(form, PayloadForm::Sized(rdb.len() as u64));
            assert_eq!(keepalives, 3);
            assert_eq!(out, rdb, "step {step}");
        }
    }

    #[test]
    fn eof_marked_payload_ends_at_the_mark() {
        let rdb = rdb();
        let mut answer = b"\n".to_vec();
        answer.extend_from_slice(b"$EOF:");
        answer.extend_from_slice(MARK);
        answer.extend_from_slice(b"\r\n");
        answer.extend_from_slice(&rdb);
        answer.extend_from_slice(MARK);
        answer.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        for step in [1, 39, 40, 41, 100, 100_000] {
            let (form, keepalives, out) = payload(&rdb, answer.clone(), step).unwrap();
            assert_eq!(form, PayloadForm::EofMarked(*MARK));
            assert_eq!(keepalives, 1);
            assert_eq!(out.len(), rdb.len(), "step {step}");
            assert_eq!(out, rdb, "step {step}");
        }
    }

    #[test]
    fn a_part_of_the_mark_inside_the_data_is_data() {
        let mut rdb = rdb();
        rdb.extend_from_slice(&MARK[..39]);
        rdb.extend_from_slice(b"more");
        let mut answer = b"$EOF:".to_vec();
        answer.extend_from_slice(MARK);
        answer.extend_from_slice(b"\r\n");
        answer.extend_from_slice(&rdb);
        answer.extend_from_slice(MARK);
        for step in [1, 7, 64] {
            assert_eq!(payload(&rdb, answer.clone(), step).unwrap().2, rdb);
        }
    }

    #[test]
    fn truncated_payloads_are_errors() {
        let rdb = rdb();
        let mut sized = format!("${}\r\n", rdb.len()).into_bytes();
        sized.extend_from_slice(&rdb[..4000]);
        let e = payload(&rdb, sized, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("after 4000 of the dump's 5000 bytes"), "{e}");

        let mut eof = b"$EOF:".to_vec();
        eof.extend_from_slice(MARK);
        eof.extend_from_slice(b"\r\n");
        eof.extend_from_slice(&rdb);
        eof.extend_from_slice(&MARK[..20]);
        let e = payload(&rdb, eof, 100).unwrap_err();
        assert!(e.to_string().contains("before the dump's end mark"), "{e}");

        let e = payload(&rdb, b"\n\n".to_vec(), 1).unwrap_err();
        assert!(e.to_string().contains("before sending the dump"), "{e}");
    }

    #[test]
    fn refusals_and_garbage_before_the_payload() {
        let e = payload(&[], b"-NOAUTH Authentication required.\r\n".to_vec(), 4).unwrap_err();
        assert!(e.to_string().contains("NOAUTH"), "{e}");
        let e = payload(&[], b"$EOF:short\r\n".to_vec(), 4).unwrap_err();
        assert!(e.to_string().contains("end mark of 5 bytes"), "{e}");
        let e = payload(&[], b"+FULLRESYNC x 0\r\n".to_vec(), 4).unwrap_err();
        assert!(e.to_string().contains("where the dump should begin"), "{e}");
    }

    #[test]
    fn replies_and_commands() {
        assert_eq!(
            encode_command(&[b"AUTH", b"u", b"p w"]),
            b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$3\r\np w\r\n".to_vec()
        );
        let mut r = stream(b"+OK\r\n-ERR no\r\n:12\r\n$5\r\nab\r\nc\r\n$-1\r\n", 3);
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Integer(12));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(Some(b"ab\r\nc".to_vec())));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(None));
        assert!(read_reply(&mut r).is_err());
    }
}
