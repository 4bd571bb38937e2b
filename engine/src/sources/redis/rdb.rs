//! Checking an RDB while it streams past: the header (`REDIS` and a
//! four-digit version), the EOF opcode (0xFF) before the trailer, and the
//! CRC-64 trailer over every byte before it. The bytes pass through
//! unchanged; a bad dump turns the final read (or the first, for a bad
//! header) into an error, so the backup fails before its snapshot is saved.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use crc::{Crc, CRC_64_REDIS};

use super::RedisError;

/// The newest RDB format this validator knows (Redis 7.4 writes 12).
pub(crate) const MAX_RDB_VERSION: u32 = 12;

/// The first version with a CRC-64 trailer (Redis 2.6).
const FIRST_CHECKSUMMED_VERSION: u32 = 5;

/// `REDIS` + four digits.
const HEADER_LEN: usize = 9;

/// The trailer: CRC-64, little-endian.
const TRAILER_LEN: usize = 8;

const RDB_OPCODE_EOF: u8 = 0xFF;

static CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);

/// What a fully read, valid RDB is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RdbFacts {
    /// Format version from the header.
    pub version: u32,
    /// Length in bytes.
    pub size: u64,
    /// The trailer, `None` when absent (old version) or zero (written
    /// with `rdbchecksum no`).
    pub crc64: Option<u64>,
}

/// Where a validator leaves its result once the stream has ended well.
pub(crate) type FactsCell = Arc<Mutex<Option<RdbFacts>>>;

/// Passes `inner` through and checks it as an RDB.
pub(crate) struct Validator<R> {
    inner: R,
    /// Names the dump in errors.
    what: String,
    header: Vec<u8>,
    version: Option<u32>,
    digest: crc::Digest<'static, u64>,
    /// The newest bytes, not yet in the digest: they may be the trailer.
    pending: Vec<u8>,
    /// The newest byte in the digest: must be the EOF opcode at the end.
    last_digested: Option<u8>,
    size: u64,
    facts: FactsCell,
    failed: Option<String>,
}

impl<R: Read> Validator<R> {
    /// Checks `inner`, naming it `what` in errors; the facts land in
    /// `facts` when the end is reached and everything is right.
    pub(crate) fn new(inner: R, what: impl Into<String>, facts: FactsCell) -> Self {
        Self {
            inner,
            what: what.into(),
            header: Vec::with_capacity(HEADER_LEN),
            version: None,
            digest: CRC64.digest(),
            pending: Vec::with_capacity(2 * TRAILER_LEN),
            last_digested: None,
            size: 0,
            facts,
            failed: None,
        }
    }

    fn fail(&mut self, detail: String) -> io::Error {
        self.failed = Some(detail.clone());
        io::Error::new(
            io::ErrorKind::InvalidData,
            RedisError::Rdb {
                what: self.what.clone(),
                detail,
            },
        )
    }

    fn take_header(&mut self, data: &[u8]) -> Result<(), String> {
        if self.version.is_some() {
            return Ok(());
        }
        let want = HEADER_LEN - self.header.len();
        self.header.extend_from_slice(&data[..want.min(data.len())]);
        if self.header.len() < HEADER_LEN {
            return Ok(());
        }
        self.version = Some(parse_header(&self.header)?);
        Ok(())
    }

    /// Feeds `data` to the digest, holding back the newest eight bytes.
    fn absorb(&mut self, data: &[u8]) {
        if data.len() >= TRAILER_LEN {
            let older = std::mem::take(&mut self.pending);
            self.digest_bytes(&older);
            let (body, tail) = data.split_at(data.len() - TRAILER_LEN);
            self.digest_bytes(body);
            self.pending.extend_from_slice(tail);
        } else {
            self.pending.extend_from_slice(data);
            if self.pending.len() > TRAILER_LEN {
                let excess = self.pending.len() - TRAILER_LEN;
                let older: Vec<u8> = self.pending.drain(..excess).collect();
                self.digest_bytes(&older);
            }
        }
    }

    fn digest_bytes(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.digest.update(bytes);
            self.last_digested = Some(last);
        }
    }

    /// The end was reached: is this a whole RDB?
    fn conclude(&mut self) -> Result<RdbFacts, String> {
        let Some(version) = self.version else {
            return Err(format!(
                "only {} byte(s): too short to be an RDB (it is truncated or empty)",
                self.size
            ));
        };
        let checksummed = version >= FIRST_CHECKSUMMED_VERSION;
        let min = (HEADER_LEN + 1 + if checksummed { TRAILER_LEN } else { 0 }) as u64;
        if self.size < min {
            return Err(format!(
                "only {} bytes: too short to be a whole RDB (it is truncated)",
                self.size
            ));
        }
        if !checksummed {
            // No trailer: the newest byte is the EOF opcode itself.
            if self.pending.last() != Some(&RDB_OPCODE_EOF) {
                return Err("it does not end with the EOF opcode (0xFF): the dump is truncated or corrupt".into());
            }
            return Ok(RdbFacts {
                version,
                size: self.size,
                crc64: None,
            });
        }
        if self.last_digested != Some(RDB_OPCODE_EOF) {
            return Err(
                "the byte before its checksum is not the EOF opcode (0xFF): the dump is truncated or corrupt".into(),
            );
        }
        let mut trailer = [0u8; TRAILER_LEN];
        trailer.copy_from_slice(&self.pending);
        let stored = u64::from_le_bytes(trailer);
        if stored == 0 {
            // Written with `rdbchecksum no`: nothing to compare.
            return Ok(RdbFacts {
                version,
                size: self.size,
                crc64: None,
            });
        }
        let computed = self.digest.clone().finalize();
        if computed != stored {
            return Err(format!(
                "CRC-64 mismatch: the trailer says {stored:016x}, the content gives {computed:016x}: the dump is corrupt or truncated"
            ));
        }
        Ok(RdbFacts {
            version,
            size: self.size,
            crc64: Some(stored),
        })
    }
}

/// The version of an RDB header, or why it is not one this code accepts.
pub(crate) fn parse_header(header: &[u8]) -> Result<u32, String> {
    if header.len() < HEADER_LEN || &header[..5] != b"REDIS" {
        return Err("it does not start with `REDIS`: not an RDB file".into());
    }
    let digits = &header[5..HEADER_LEN];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "its header `{}` has no four-digit version: not an RDB file",
            String::from_utf8_lossy(header)
        ));
    }
    let version = digits.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    if version == 0 || version > MAX_RDB_VERSION {
        return Err(format!(
            "RDB format version {version} is not one this cairn can check (1 to {MAX_RDB_VERSION}); a newer Redis needs a newer cairn"
        ));
    }
    Ok(version)
}

impl<R: Read> Read for Validator<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(detail) = &self.failed {
            let detail = detail.clone();
            return Err(self.fail(detail));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return match self.conclude() {
                Ok(facts) => {
                    if let Ok(mut cell) = self.facts.lock() {
                        *cell = Some(facts);
                    }
                    Ok(0)
                }
                Err(detail) => Err(self.fail(detail)),
            };
        }
        let data = &buf[..n];
        self.size += n as u64;
        if let Err(detail) = self.take_header(data) {
            return Err(self.fail(detail));
        }
        self.absorb(data);
        Ok(n)
    }
}

/// Reads all of `reader` through a validator (a dump checked before it is
/// backed up as a file); returns its facts.
pub(crate) fn validate_all(reader: impl Read, what: &str) -> Result<RdbFacts, RedisError> {
    let cell = FactsCell::default();
    let mut v = Validator::new(reader, what, cell.clone());
    io::copy(&mut v, &mut io::sink()).map_err(|e| into_redis_error(e, what))?;
    let facts = cell.lock().ok().and_then(|c| *c);
    facts.ok_or_else(|| RedisError::Rdb {
        what: what.to_string(),
        detail: "it was not read to its end".into(),
    })
}

/// The validator's own error back out of an `io::Error`, or a read error.
pub(crate) fn into_redis_error(e: io::Error, what: &str) -> RedisError {
    if e.get_ref().is_some_and(|inner| inner.is::<RedisError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(r) = inner.downcast::<RedisError>() {
                return *r;
            }
        }
        return RedisError::Rdb {
            what: what.to_string(),
            detail: "invalid".into(),
        };
    }
    RedisError::Io {
        what: what.to_string(),
        source: e,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A small but real-shaped RDB: header, an aux field, one string key,
    /// EOF, trailer.
    pub(crate) fn sample_rdb(version: u32) -> Vec<u8> {
        let mut v = format!("REDIS{version:04}").into_bytes();
        v.extend_from_slice(b"\xfa\x09redis-ver\x057.0.0");
        v.extend_from_slice(b"\xfe\x00\xfb\x01\x00");
        v.extend_from_slice(b"\x00\x03key\x05value");
        v.push(0xFF);
        if version >= 5 {
            let crc = CRC64.checksum(&v);
            v.extend_from_slice(&crc.to_le_bytes());
        }
        v
    }

    /// Reads `data` through a validator in reads of `step` bytes.
    fn run(data: &[u8], step: usize) -> Result<RdbFacts, RedisError> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        validate_all(Trickle(data, step), "test.rdb")
    }

    fn detail(r: Result<RdbFacts, RedisError>) -> String {
        match r {
            Err(RedisError::Rdb { detail, .. }) => detail,
            other => panic!("expected an RDB error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_dump_passes_in_any_read_size() {
        let rdb = sample_rdb(10);
        let crc = u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap());
        for step in [1, 3, 7, 8, 9, 64, 4096] {
            let f = run(&rdb, step).unwrap();
            assert_eq!(
                f,
                RdbFacts {
                    version: 10,
                    size: rdb.len() as u64,
                    crc64: Some(crc)
                },
                "step {step}"
            );
        }
    }

    #[test]
    fn the_redis_crc_matches_its_reference_check_value() {
        // CRC-64/Jones as Redis's crc64.c documents: "123456789" → e9c6d914c4b8d9ca.
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn every_single_flipped_byte_is_caught() {
        let rdb = sample_rdb(11);
        for i in 0..rdb.len() {
            let mut bad = rdb.clone();
            bad[i] ^= 0x20;
            assert!(run(&bad, 5).is_err(), "flip at {i} passed");
        }
    }

    #[test]
    fn every_truncation_is_caught() {
        let rdb = sample_rdb(10);
        for len in 0..rdb.len() {
            let d = detail(run(&rdb[..len], 4));
            assert!(d.contains("truncated") || d.contains("not an RDB"), "len {len}: {d}");
        }
    }

    #[test]
    fn a_zero_trailer_means_no_checksum() {
        let mut rdb = sample_rdb(10);
        let n = rdb.len();
        rdb[n - 8..].fill(0);
        assert_eq!(run(&rdb, 100).unwrap().crc64, None);
    }

    #[test]
    fn old_versions_without_trailer_end_with_eof() {
        let rdb = sample_rdb(4);
        assert_eq!(run(&rdb, 2).unwrap().crc64, None);
        assert!(run(&rdb[..rdb.len() - 1], 2).is_err());
    }

    #[test]
    fn bad_magic_and_unknown_versions_are_refused_early() {
        let mut rdb = sample_rdb(10);
        rdb[0] = b'X';
        assert!(detail(run(&rdb, 100)).contains("not an RDB"));
        let d = detail(run(&sample_rdb(13), 100));
        assert!(d.contains("version 13"), "{d}");
        assert!(detail(run(b"REDIS00a1", 100)).contains("four-digit"));
        // The header error comes on the first read, not after the whole stream.
        let mut v = Validator::new(&b"NOTREDIS0...................."[..], "x", FactsCell::default());
        let mut buf = [0u8; 64];
        assert!(v.read(&mut buf).is_err());
    }
}
