//! Keys and the authenticated cipher. This module is the only user of
//! XChaCha20-Poly1305 and Argon2id; `blob.rs` is the only user of zstd.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of the random nonce stored in front of every ciphertext.
pub const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag stored after every ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message is longer than its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// BLAKE3 `derive_key` context for the encryption sub-key.
pub const CONTEXT_ENCRYPTION: &str = "cairn 2026-11 v1 encryption key";
/// BLAKE3 `derive_key` context for the blob-id (keyed hash) sub-key.
pub const CONTEXT_BLOB_ID: &str = "cairn 2026-11 v1 blob id key";

/// Errors of key handling and the cipher.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, or the bytes were changed.
    #[error("authentication failed (wrong key, or the data was modified or truncated)")]
    Authentication,
    /// The sealed message is shorter than nonce + tag.
    #[error("sealed data is truncated ({len} bytes, at least {SEAL_OVERHEAD} needed)")]
    Truncated {
        /// Length seen.
        len: usize,
    },
    /// The operating system's random source failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Argon2 rejected its parameters or salt.
    #[error("invalid key-derivation parameters: {0}")]
    Kdf(String),
    /// Argon2id parameters outside [`KdfParams::check_bounds`]: a bad option
    /// when writing a key (readers report such a stored key as damaged).
    #[error("invalid option: {0}")]
    KdfOutOfBounds(String),
}

/// Fills `buf` with cryptographically secure random bytes.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// The repository's 256-bit master key, wiped from memory when dropped.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; 32]);
        random_bytes(k.as_mut())?;
        Ok(Self(k))
    }

    /// Wraps existing key bytes. The caller's array is a copy this does not
    /// wipe: for key material read at run time use [`MasterKey::from_slice`].
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies key bytes (from a key object or a recovery sheet) straight into
    /// wiped-on-drop memory; `None` unless `bytes` is 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != k.len() {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    /// The raw key bytes; callers must not log them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives the per-purpose sub-keys.
    pub fn derive(&self) -> Keys {
        let blob_id = derive_subkey(CONTEXT_BLOB_ID, &self.0);
        Keys {
            encryption: derive_subkey(CONTEXT_ENCRYPTION, &self.0),
            blob_id_hasher: Zeroizing::new(blake3::Hasher::new_keyed(&blob_id)),
        }
    }

    /// The blob-id key this master key derives (used unless the config
    /// names a shared one).
    pub(crate) fn derived_blob_id_key(&self) -> BlobIdKey {
        BlobIdKey(derive_subkey(CONTEXT_BLOB_ID, &self.0))
    }
}

/// The key blob ids are computed with (keyed BLAKE3), when a repository
/// shares it with another (`init --chunker-params-from`): then both name
/// the same plaintext with the same id, so copies between them keep every
/// blob and tree id. Stored in the encrypted config; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobIdKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for BlobIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobIdKey(..)")
    }
}

impl BlobIdKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

impl serde::Serialize for BlobIdKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A fixed-size array: 32 bytes in the encoding, no length prefix.
        (*self.0).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for BlobIdKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 32]>::deserialize(d).map(Self::from_bytes)
    }
}

impl bincode::Encode for BlobIdKey {
    fn encode<E: bincode::enc::Encoder>(&self, e: &mut E) -> Result<(), bincode::error::EncodeError> {
        bincode::Encode::encode(&*self.0, e)
    }
}

impl<C> bincode::Decode<C> for BlobIdKey {
    fn decode<D: bincode::de::Decoder<Context = C>>(d: &mut D) -> Result<Self, bincode::error::DecodeError> {
        <[u8; 32] as bincode::Decode<C>>::decode(d).map(Self::from_bytes)
    }
}

bincode::impl_borrow_decode!(BlobIdKey);

/// `blake3::derive_key`, writing straight into wiped-on-drop memory and
/// wiping the hasher's state (which holds key material) afterwards.
fn derive_subkey(context: &str, master: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(master);
    let mut reader = h.finalize_xof();
    reader.fill(out.as_mut());
    reader.zeroize();
    h.zeroize();
    out
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Sub-keys derived from the master key, wiped from memory when dropped.
#[derive(Clone)]
pub struct Keys {
    encryption: Zeroizing<[u8; 32]>,
    /// A BLAKE3 hasher keyed with the blob-id sub-key: each id is computed
    /// on a copy that is wiped afterwards (`blake3::keyed_hash` would leave
    /// a keyed hasher behind on every call).
    blob_id_hasher: Zeroizing<blake3::Hasher>,
}

impl Keys {
    /// These keys with blob ids computed under `key` instead of the
    /// derived one (a config that shares another repository's ids).
    pub(crate) fn with_blob_id_key(mut self, key: &BlobIdKey) -> Self {
        self.blob_id_hasher = Zeroizing::new(blake3::Hasher::new_keyed(&key.0));
        self
    }

    /// Keyed BLAKE3 of a blob's plaintext: its id.
    pub fn blob_id(&self, data: &[u8]) -> crate::id::BlobId {
        let mut h = Zeroizing::new((*self.blob_id_hasher).clone());
        h.update(data);
        crate::id::BlobId::from_bytes(*h.finalize().as_bytes())
    }

    /// Seals `buf[NONCE_LEN..]` in place: fills the nonce into the first
    /// `NONCE_LEN` bytes (reserved by the caller), encrypts the rest and
    /// appends the tag: nonce (24) || ciphertext || tag (16).
    pub fn seal_in_place(&self, ad: &[u8], mut buf: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        if buf.len() < NONCE_LEN {
            return Err(CryptoError::Truncated { len: buf.len() });
        }
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = xchacha(&self.encryption, &nonce)?
            .seal_in_place_separate_tag(ietf_nonce(&nonce), Aad::from(ad), &mut buf[NONCE_LEN..])
            .map_err(|_| CryptoError::Authentication)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(buf)
    }

    /// Reverses [`Keys::seal_in_place`] in place, returning the plaintext as a slice of
    /// `sealed` (no copy). On failure `sealed` is left garbled.
    pub fn open_in_place<'a>(&self, ad: &[u8], sealed: &'a mut [u8]) -> Result<&'a [u8], CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::Truncated { len: sealed.len() });
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let split = rest.len() - TAG_LEN;
        let (ct, tag) = rest.split_at_mut(split);
        open_detached(&self.encryption, nonce, ad, ct, tag)?;
        Ok(&*ct)
    }

    /// Reverses [`Keys::seal_in_place`]; fails on any change to the bytes or the AD.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.encryption, ad, sealed)
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Seals a short secret (the master key in a key object) under `key`:
/// nonce (24) || ciphertext || tag (16). The plaintext is copied into the
/// output buffer and encrypted there, so no copy of it outlives the call
/// (the buffer is wiped if encryption fails).
pub(crate) fn seal_with(key: &[u8; 32], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let sealed = xchacha(key, &nonce).and_then(|c| {
        c.seal_in_place_separate_tag(ietf_nonce(&nonce), Aad::from(ad), &mut out[NONCE_LEN..])
            .map_err(|_| CryptoError::Authentication)
    });
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Ok(out)
        }
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut out);
            Err(e)
        }
    }
}

pub(crate) fn open_with(key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Truncated { len: sealed.len() });
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = ct.to_vec();
    open_detached(key, nonce, ad, &mut buf, tag)?;
    Ok(buf)
}

/// Decrypts `ct` in place if `tag` authenticates it with `nonce` and `ad`.
fn open_detached(key: &[u8; 32], nonce: &[u8], ad: &[u8], ct: &mut [u8], tag: &[u8]) -> Result<(), CryptoError> {
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Authentication)?;
    let tag = Tag::try_from(tag).map_err(|_| CryptoError::Authentication)?;
    xchacha(key, nonce)?
        .open_in_place_separate_tag(ietf_nonce(nonce), Aad::from(ad), tag, ct, 0..)
        .map(|_| ())
        .map_err(|_| CryptoError::Authentication)
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03) for one message: the
/// HChaCha20 sub-key of `key` and the nonce's first 16 bytes, used with
/// ChaCha20-Poly1305 (RFC 8439) under the nonce's last 8 bytes.
///
/// Why not the `chacha20poly1305` crate's `XChaCha20Poly1305`, which is the
/// same construction: ring's assembly opens and seals at about 2.6 GB/s on
/// one core here against 1.3 GB/s for 1 MiB blobs, and the cipher was a
/// quarter of a restore's and `check --read-data`'s CPU time. The bytes
/// are identical: a test compares both on every length up to a few blocks,
/// and the format vectors are decoded by an independent reader that uses
/// the `chacha20poly1305` crate.
///
/// The sub-key computed here is wiped. ring keeps a copy of it in the
/// returned key (on the caller's stack) and does not wipe that when it is
/// dropped: a trade the RustCrypto cipher did not make, as it wiped its
/// copy of the key on drop. That copy opens only the one message its
/// nonce belongs to, never the repository key, which stays in `Keys`.
fn xchacha(key: &[u8; 32], nonce: &[u8; NONCE_LEN]) -> Result<LessSafeKey, CryptoError> {
    let mut sub = chacha20::hchacha::<chacha20::cipher::consts::U10>(key.into(), nonce[..16].into());
    let k = UnboundKey::new(&CHACHA20_POLY1305, sub.as_slice());
    sub.as_mut_slice().zeroize();
    // ring refuses only a key of the wrong length, and HChaCha20 gives 32 bytes.
    k.map(LessSafeKey::new).map_err(|_| CryptoError::Authentication)
}

/// The RFC 8439 nonce of an XChaCha20 nonce: four zero bytes, then its
/// last eight.
fn ietf_nonce(nonce: &[u8; NONCE_LEN]) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce[16..]);
    Nonce::assume_unique_for_key(n)
}

/// Argon2id cost parameters, stored in each key object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, bincode::Encode, bincode::Decode)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 2 lanes: the floor the design asks for. The two
    /// lanes are filled on two threads, so deriving takes about half the
    /// wall time of one lane over the same memory (about 0.07 s instead of
    /// 0.14 s here), which every command pays once; see format-spec.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 2,
        }
    }
}

impl KdfParams {
    /// Smallest memory Argon2 accepts, and the floor per lane (RFC 9106: 8 KiB per lane).
    pub const MIN_MEMORY_KIB: u32 = 8;
    /// Most passes a key object may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Most lanes a key object may ask for.
    pub const MAX_PARALLELISM: u32 = 64;
    /// Most work a key object may ask for, in KiB × passes: twice the
    /// default's (64 MiB × 3 passes). Argon2id's work grows with memory ×
    /// passes (lanes only spread it over threads), so no key object,
    /// planted or not, costs more than twice a default one's work, and no
    /// key object asks for more than 384 MiB.
    pub const MAX_COST: u64 = 2 * 64 * 1024 * 3;
    /// Largest memory a key object may ask for (at one pass): 384 MiB.
    pub const MAX_MEMORY_KIB: u32 = Self::MAX_COST as u32;

    /// The work Argon2id does for these parameters, in KiB × passes (what
    /// [`KdfParams::MAX_COST`] bounds and readers sort key objects by).
    pub fn cost(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }

    /// The bounds of format version 1 (format-spec "KDF bounds"), the one
    /// set for writing and reading: a writer that stored parameters outside
    /// them would make a key no reader opens, and a reader that accepted any
    /// would let a forged key object (key objects are not authenticated)
    /// exhaust memory or run for hours. `derive_kek` applies them, so every
    /// caller gets them; the repository's reader applies them first to
    /// report such a key object as damaged.
    pub fn check_bounds(&self) -> Result<(), String> {
        let ok = (Self::MIN_MEMORY_KIB..=Self::MAX_MEMORY_KIB).contains(&self.memory_kib)
            && (1..=Self::MAX_ITERATIONS).contains(&self.iterations)
            && (1..=Self::MAX_PARALLELISM).contains(&self.parallelism)
            && u64::from(self.memory_kib) >= 8 * u64::from(self.parallelism)
            && self.cost() <= Self::MAX_COST;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "Argon2id parameters out of bounds ({} KiB, {} passes, {} lanes): memory must be {} KiB to {} KiB \
                 and at least 8 KiB per lane, passes 1 to {}, lanes 1 to {}, and memory × passes at most {} \
                 (twice the default 65536 KiB × 3)",
                self.memory_kib,
                self.iterations,
                self.parallelism,
                Self::MIN_MEMORY_KIB,
                Self::MAX_MEMORY_KIB,
                Self::MAX_ITERATIONS,
                Self::MAX_PARALLELISM,
                Self::MAX_COST,
            ))
        }
    }
}

/// Derives a key-encryption key from a password. Parameters outside
/// [`KdfParams::check_bounds`] fail with `CryptoError::KdfOutOfBounds`
/// before any memory is allocated.
pub fn derive_kek(password: &[u8], salt: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    params.check_bounds().map_err(CryptoError::KdfOutOfBounds)?;
    let p = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    // Our own memory blocks, so they are wiped afterwards (argon2's own
    // allocation is freed as it is).
    let mut blocks = Zeroizing::new(vec![argon2::Block::default(); p.block_count()]);
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into_with_memory(password, salt, out.as_mut(), blocks.as_mut_slice())
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = MasterKey::from_bytes([7; 32]).derive();
        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(b"hello");
        let sealed = k.seal_in_place(b"ad", buf).unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(k.open(b"ad", &sealed).unwrap(), b"hello");
        assert!(matches!(k.open(b"other", &sealed), Err(CryptoError::Authentication)));
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(matches!(k.open(b"ad", &bad), Err(CryptoError::Authentication)));
        assert!(matches!(
            k.open(b"ad", &sealed[..10]),
            Err(CryptoError::Truncated { .. })
        ));
    }

    /// ring's ChaCha20-Poly1305 under an HChaCha20 sub-key is exactly the
    /// `chacha20poly1305` crate's XChaCha20-Poly1305: the same bytes out of
    /// every seal and each side opening the other's, at lengths around the
    /// 64-byte block and the 16-byte Poly1305 block and well past the sizes
    /// where ring's assembly changes path.
    #[test]
    fn ring_construction_matches_rustcrypto_xchacha20_poly1305() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let mut lens: Vec<usize> = (0..200).collect();
        lens.extend([255, 256, 257, 511, 512, 513, 1023, 4096, 65_537, (1 << 20) + 7]);
        for (i, len) in lens.into_iter().enumerate() {
            let mut key = [0u8; 32];
            random_bytes(&mut key).unwrap();
            let k = Keys {
                encryption: Zeroizing::new(key),
                blob_id_hasher: Zeroizing::new(blake3::Hasher::new()),
            };
            let mut plain = vec![0u8; len];
            random_bytes(&mut plain).unwrap();
            let ad = vec![i as u8; i % 40];
            let mut buf = vec![0u8; NONCE_LEN];
            buf.extend_from_slice(&plain);
            let ours = k.seal_in_place(&ad, buf).unwrap();

            let theirs_cipher = XChaCha20Poly1305::new((&key).into());
            let mut theirs = plain.clone();
            let tag = theirs_cipher
                .encrypt_in_place_detached(XNonce::from_slice(&ours[..NONCE_LEN]), &ad, &mut theirs)
                .unwrap();
            theirs.extend_from_slice(&tag);
            assert_eq!(&ours[NONCE_LEN..], &theirs[..], "length {len}");

            let mut other = ours.clone();
            other[NONCE_LEN..].copy_from_slice(&theirs);
            assert_eq!(k.open(&ad, &other).unwrap(), plain, "length {len}");
            let mut in_place = ours.clone();
            assert_eq!(k.open_in_place(&ad, &mut in_place).unwrap(), &plain[..]);
            let mut opened = ours[NONCE_LEN..ours.len() - TAG_LEN].to_vec();
            theirs_cipher
                .decrypt_in_place_detached(
                    XNonce::from_slice(&ours[..NONCE_LEN]),
                    &ad,
                    &mut opened,
                    chacha20poly1305::Tag::from_slice(&ours[ours.len() - TAG_LEN..]),
                )
                .unwrap();
            assert_eq!(opened, plain);
            // Every flipped part is refused: nonce, ciphertext, tag.
            for at in [0, NONCE_LEN + len / 2, ours.len() - 1] {
                let mut bad = ours.clone();
                bad[at] ^= 0x10;
                assert!(matches!(k.open(&ad, &bad), Err(CryptoError::Authentication)), "{len} {at}");
            }
        }
    }

    #[test]
    fn kdf_bounds_are_inclusive_and_refused_outside() {
        let p = |memory_kib, iterations, parallelism| KdfParams {
            memory_kib,
            iterations,
            parallelism,
        };
        for ok in [
            KdfParams::default(),
            p(8, 1, 1),
            p(KdfParams::MAX_MEMORY_KIB, 1, KdfParams::MAX_PARALLELISM),
            p(8 * 64, KdfParams::MAX_ITERATIONS, 64),
            // Exactly twice the default's cost.
            p(128 * 1024, 3, 1),
            p(64 * 1024, 6, 4),
        ] {
            assert!(ok.check_bounds().is_ok(), "{ok:?}");
        }
        for bad in [
            p(7, 1, 1),
            p(KdfParams::MAX_MEMORY_KIB + 1, 1, 1),
            p(64, 0, 1),
            p(64, KdfParams::MAX_ITERATIONS + 1, 1),
            p(64, 1, 0),
            p(1024, 1, KdfParams::MAX_PARALLELISM + 1),
            // Argon2 needs 8 KiB per lane.
            p(8 * 4 - 1, 1, 4),
            // More than twice the default's work.
            p(128 * 1024 + 1, 3, 1),
            p(64 * 1024, 7, 1),
            // What format version 1 allowed before the cost bound.
            p(4 * 1024 * 1024, 64, 1),
            p(1024 * 1024, 1, 1),
        ] {
            assert!(bad.check_bounds().is_err(), "{bad:?}");
            assert!(
                matches!(derive_kek(b"pw", &[0; 32], bad), Err(CryptoError::KdfOutOfBounds(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn seal_with_round_trips_through_open_with() {
        let key = [9u8; 32];
        let sealed = seal_with(&key, b"ad", &[5u8; 32]).unwrap();
        assert_eq!(sealed.len(), 32 + SEAL_OVERHEAD);
        assert_eq!(open_with(&key, b"ad", &sealed).unwrap(), [5u8; 32]);
    }

    #[test]
    fn subkeys_differ() {
        let k = MasterKey::from_bytes([1; 32]);
        let d = k.derive();
        let blob_id_key = blake3::derive_key(CONTEXT_BLOB_ID, k.expose());
        assert_ne!(d.encryption.as_ref(), &blob_id_key);
        assert_eq!(d.encryption.as_ref(), &blake3::derive_key(CONTEXT_ENCRYPTION, k.expose()));
        // The streamed derivation and the keyed hasher agree with blake3's own functions.
        assert_eq!(
            d.blob_id(b"data").as_bytes(),
            blake3::keyed_hash(&blob_id_key, b"data").as_bytes()
        );
    }

    #[test]
    fn master_key_from_slice_needs_32_bytes() {
        assert_eq!(MasterKey::from_slice(&[3; 32]).unwrap().expose(), &[3; 32]);
        assert!(MasterKey::from_slice(&[3; 31]).is_none());
        assert!(MasterKey::from_slice(&[3; 33]).is_none());
    }
}
