//! What the format-vector tests (`format_vectors.rs`, `vectors_lock.rs`)
//! share: where the committed vectors are and the hint printed when they no
//! longer match, and the independent decoder's pieces written from
//! `format-spec/README.md` alone (a bincode reader, XChaCha20-Poly1305
//! opening, the flag byte, ADs), so no engine code decodes what it checks.
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The committed vector repository's password (also in its manifest).
pub const PASSWORD: &str = "cairn-test-vector-password";

/// The snapshot `Summary` fields, in their encoded order (format-spec "Snapshots").
pub const SUMMARY_FIELDS: [&str; 14] = [
    "files_new",
    "files_changed",
    "files_unchanged",
    "dirs",
    "bytes_new",
    "bytes_changed",
    "bytes_unchanged",
    "bytes_read",
    "data_blobs_added",
    "tree_blobs_added",
    "bytes_added_raw",
    "bytes_added_stored",
    "errors",
    "duration_ns",
];

pub const REGENERATE_HINT: &str = "\n\nThe committed format test vectors (format-spec/test-vectors) no longer match \
what this code reads. If the on-disk format changed on purpose, regenerate them IN THE SAME COMMIT with\n    \
CAIRN_WRITE_VECTORS=1 cargo test -p cairn-engine --test format_vectors -- --ignored\n\
and update format-spec/README.md (byte layouts and the change log; bump the format version if old repositories \
would read differently). If the format did not change on purpose, this is a compatibility break: fix the code.";

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../format-spec/test-vectors")
}

/// Runs `f`; on a panic, panics again with the regeneration hint appended.
pub fn with_hint(f: impl FnOnce() + std::panic::UnwindSafe) {
    if let Err(p) = std::panic::catch_unwind(f) {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{msg}{REGENERATE_HINT}");
    }
}

pub fn manifest() -> Value {
    let path = vectors_dir().join("manifest.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}{REGENERATE_HINT}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Reader of bincode 2 `config::standard()` values (spec "Metadata encoding").
pub struct Bin<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Bin<'a> {
    /// Checks the leading version byte and returns a reader over the body.
    pub fn new(what: &'static str, bytes: &'a [u8], version: u8) -> Self {
        assert!(!bytes.is_empty(), "{what}: empty");
        assert_eq!(bytes[0], version, "{what}: version byte");
        Self {
            buf: bytes,
            pos: 1,
            what,
        }
    }
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.pos + n <= self.buf.len(),
            "{}: truncated at byte {}",
            self.what,
            self.pos
        );
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    /// Unsigned varint: 0..=250 in one byte; 251 + u16 LE; 252 + u32 LE; 253 + u64 LE.
    pub fn varint(&mut self) -> u64 {
        match self.u8() {
            b @ 0..=250 => u64::from(b),
            251 => u64::from(u16::from_le_bytes(self.take(2).try_into().unwrap())),
            252 => u64::from(u32::from_le_bytes(self.take(4).try_into().unwrap())),
            253 => u64::from_le_bytes(self.take(8).try_into().unwrap()),
            b => panic!("{}: bad varint tag {b} at byte {}", self.what, self.pos - 1),
        }
    }
    pub fn u32(&mut self) -> u32 {
        u32::try_from(self.varint()).unwrap()
    }
    pub fn u64(&mut self) -> u64 {
        self.varint()
    }
    /// Signed: zigzag, then varint.
    pub fn i64(&mut self) -> i64 {
        let z = self.varint();
        ((z >> 1) as i64) ^ -((z & 1) as i64)
    }
    pub fn i32(&mut self) -> i32 {
        i32::try_from(self.i64()).unwrap()
    }
    pub fn len(&mut self) -> usize {
        usize::try_from(self.varint()).unwrap()
    }
    pub fn bytes(&mut self) -> Vec<u8> {
        let n = self.len();
        self.take(n).to_vec()
    }
    pub fn string(&mut self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
    pub fn id(&mut self) -> [u8; 32] {
        self.take(32).try_into().unwrap()
    }
    pub fn option<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        match self.u8() {
            0 => None,
            1 => Some(f(self)),
            b => panic!("{}: bad option tag {b}", self.what),
        }
    }
    pub fn vec<T>(&mut self, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.len();
        (0..n).map(|_| f(self)).collect()
    }
    pub fn strings(&mut self) -> Vec<String> {
        self.vec(|b| b.string())
    }
    pub fn finish(self) {
        assert_eq!(self.pos, self.buf.len(), "{}: trailing bytes", self.what);
    }
}

/// nonce (24) || ciphertext || tag (16), XChaCha20-Poly1305.
pub fn aead_open(key: &[u8; 32], ad: &[u8], sealed: &[u8], what: &str) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    assert!(sealed.len() >= 40, "{what}: shorter than nonce + tag");
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[..24]),
            Payload {
                msg: &sealed[24..],
                aad: ad,
            },
        )
        .unwrap_or_else(|_| panic!("{what}: does not decrypt with AD {:?}", String::from_utf8_lossy(ad)))
}

/// Sealed payload: decrypt, then flag 0 = raw, 1 = one zstd frame. Returns
/// (flag, plaintext); panics on anything else.
pub fn open_payload(key: &[u8; 32], ad: &[u8], sealed: &[u8], what: &str) -> (u8, Vec<u8>) {
    let plain = aead_open(key, ad, sealed, what);
    decode_payload(&plain).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `flag || payload` after decryption (spec "Sealed payload"): flag 0 = raw;
/// flag 1 = exactly one zstd frame (not a skippable one) that records its
/// content size, nothing after it. Read with zstd's streaming decoder told to
/// stop after one frame, which then must have consumed every byte.
pub fn decode_payload(plain: &[u8]) -> Result<(u8, Vec<u8>), String> {
    use std::io::Read;
    let (&flag, body) = plain.split_first().ok_or("empty plaintext")?;
    match flag {
        0 => Ok((0, body.to_vec())),
        1 => {
            if !body.starts_with(&0xFD2F_B528u32.to_le_bytes()) {
                return Err("flag 1 but the payload does not start with a zstd frame".into());
            }
            let size = zstd::zstd_safe::get_frame_content_size(body)
                .map_err(|e| format!("zstd frame header: {e:?}"))?
                .ok_or("zstd frame without content size")?;
            let mut d = zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| e.to_string())?
                .single_frame();
            let mut out = Vec::new();
            d.read_to_end(&mut out).map_err(|e| format!("zstd: {e}"))?;
            let rest = d.finish();
            if !rest.is_empty() {
                return Err(format!("{} bytes after the zstd frame", rest.len()));
            }
            if out.len() as u64 != size {
                return Err(format!("zstd frame content size {size}, decoded {}", out.len()));
            }
            Ok((1, out))
        }
        f => Err(format!("unknown flag {f}")),
    }
}

pub fn object_ad(kind: &str) -> Vec<u8> {
    [b"cairn.object.".as_slice(), kind.as_bytes()].concat()
}

pub fn blob_ad(blob_type: u8, id: &[u8; 32]) -> Vec<u8> {
    [b"cairn.blob".as_slice(), &[blob_type], id].concat()
}

pub fn assert_content_named(name: &str, bytes: &[u8]) {
    assert_eq!(
        blake3::hash(bytes).to_hex().as_str(),
        name,
        "object name is the BLAKE3 of its bytes"
    );
}
