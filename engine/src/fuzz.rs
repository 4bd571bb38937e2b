//! Entry points for the fuzz targets (`fuzz/`, run by `cargo fuzz`) and
//! for the replay of their corpus as ordinary tests
//! (`engine/tests/fuzz_corpus.rs`): one function per decoder, each taking
//! arbitrary bytes and running the same code a reader runs on stored bytes.
//! Each returns whether the bytes were accepted; what matters is that none
//! panics, hangs or allocates far more than its input, whatever the bytes.
//!
//! Sealed objects are authenticated, so random bytes never get past the
//! cipher: the targets feed the bytes to the decoder behind it (as a writer
//! holding the key could), and `blob` also seals the bytes as a plaintext
//! with a fixed test key and opens them again, to reach the decompressor.

use crate::blob::{self, Aad};
use crate::crypto::{Keys, MasterKey};
use crate::index::{Index, IndexFile};
use crate::lock::Lock;
use crate::pack;
use crate::prune::DeletionRecord;
use crate::repository::{Config, KeyFile, RepoFile};
use crate::tree::Tree;

/// Outcome of one entry point: `Ok` if the bytes were accepted, else the
/// error's message.
pub type Outcome = Result<(), String>;

/// The master key of the test vectors' repository (format-spec/test-vectors,
/// `manifest.json`): its packs, sealed under it, seed the `pack` target.
pub const TEST_MASTER_KEY: [u8; 32] = [
    0xaf, 0x9e, 0xdc, 0x6b, 0x48, 0xdc, 0x27, 0x2b, 0x69, 0x67, 0x37, 0xee, 0xce, 0xb4, 0x9c, 0x23, 0x76, 0xf1, 0x1a,
    0x4c, 0xb2, 0x3d, 0x6b, 0x54, 0x1c, 0x1a, 0x67, 0x27, 0xb6, 0x8f, 0x6a, 0x5f,
];

/// The sub-keys every entry point that needs one uses: the test vectors'
/// (public, never a real repository's).
pub fn test_keys() -> Keys {
    MasterKey::from_bytes(TEST_MASTER_KEY).derive()
}

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A tree blob's plaintext, through the one tree decoder (with validation).
pub fn tree(bytes: &[u8]) -> Outcome {
    Tree::decode(bytes).map(drop).map_err(text)
}

/// A snapshot object's plaintext (versions 1, 2 and 3).
pub fn snapshot(bytes: &[u8]) -> Outcome {
    crate::snapshot::decode(bytes).map(drop).map_err(text)
}

/// An index object's plaintext, then the in-memory index built from it.
pub fn index(bytes: &[u8]) -> Outcome {
    let file = IndexFile::decode(bytes).map_err(text)?;
    let idx = Index::from_files(vec![file.clone()]).map_err(text)?;
    for p in &file.packs {
        for b in &p.blobs {
            // Every blob listed is found (a duplicate may point elsewhere).
            if !idx.contains(&b.id) {
                return Err("a listed blob is not found".into());
            }
        }
    }
    Ok(())
}

/// The config object's plaintext, checked as opening a repository does.
pub fn config(bytes: &[u8]) -> Outcome {
    let c = Config::decode(bytes).map_err(text)?;
    c.chunker.validate()
}

/// A key object's stored bytes (not encrypted: the most exposed decoder),
/// checked against the KDF bounds as opening does; a cheap one is then
/// tried with a fixed password.
pub fn key(bytes: &[u8]) -> Outcome {
    let kf = KeyFile::decode(bytes).map_err(text)?;
    kf.kdf.check_bounds()?;
    // Argon2 is run only when cheap: a fuzzer must not wait on it.
    if kf.kdf.cost() <= 256 {
        kf.unwrap_master(b"fuzz").map_err(text)?;
    }
    Ok(())
}

/// A whole pack (trailer, then header through the test key), and the same
/// bytes as a pack header's plaintext.
pub fn pack(bytes: &[u8]) -> Outcome {
    let whole = pack::read_whole(&test_keys(), "fuzz", bytes).map(drop).map_err(text);
    let plain = pack::parse_header_plain("fuzz", bytes, 1 << 24).map(drop).map_err(text);
    whole.or(plain)
}

/// A sealed payload opened with the test key, and the bytes themselves as
/// a payload's plaintext (flag byte, then raw bytes or one zstd frame).
pub fn blob(bytes: &[u8]) -> Outcome {
    let keys = test_keys();
    let aad = Aad::Object("fuzz");
    let direct = blob::open(&keys, aad, bytes).map(drop).map_err(text);
    let mut buf = vec![0u8; crate::crypto::NONCE_LEN];
    buf.extend_from_slice(bytes);
    let sealed = keys.seal_in_place(b"cairn.object.fuzz", buf).map_err(text)?;
    let opened = blob::open(&keys, aad, &sealed).map_err(text);
    let mut again = sealed;
    let in_place = blob::open_in_place(&keys, aad, &mut again)
        .map(|p| p.len())
        .map_err(text);
    if opened.as_ref().ok().map(Vec::len) != in_place.as_ref().ok().copied() {
        return Err("open and open_in_place disagree".into());
    }
    direct.or(opened.map(drop))
}

/// The recovery sheet's text.
pub fn recovery(bytes: &[u8]) -> Outcome {
    crate::recovery::parse_sheet(&String::from_utf8_lossy(bytes))
        .map(drop)
        .map_err(text)
}

/// A lock object's plaintext.
pub fn lock(bytes: &[u8]) -> Outcome {
    Lock::decode(bytes).map(drop).map_err(text)
}

/// A deletion record's plaintext.
pub fn deletion(bytes: &[u8]) -> Outcome {
    DeletionRecord::decode(bytes).map(drop).map_err(text)
}

/// One entry point.
pub type Entry = fn(&[u8]) -> Outcome;

/// Every entry point by the name of its fuzz target and corpus folder.
pub const TARGETS: [(&str, Entry); 10] = [
    ("tree", tree),
    ("snapshot", snapshot),
    ("index", index),
    ("config", config),
    ("key", key),
    ("pack", pack),
    ("blob", blob),
    ("recovery", recovery),
    ("lock", lock),
    ("deletion", deletion),
];
