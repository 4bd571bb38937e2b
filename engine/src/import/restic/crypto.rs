//! restic's encryption, as its design document gives it: AES-256 in
//! counter mode with a random 16-byte IV, authenticated by Poly1305-AES over
//! the ciphertext (`IV || CIPHERTEXT || MAC`), and scrypt key files that
//! wrap the master keys. Only opening: the importer never writes to a
//! restic repository.
//!
//! Poly1305-AES is composed here from the RustCrypto `poly1305` and `aes`
//! crates (no crate offers the composition): the one-time key is `r`
//! followed by `AES-128_k(IV)`, which is what Bernstein's paper defines.

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use zeroize::Zeroizing;

use super::ResticError;

/// Bytes an encrypted object or blob has besides its plaintext.
pub(super) const OVERHEAD: usize = 32;

/// scrypt memory (128 · N · r bytes) a key file may ask for: restic's own
/// calibration stays far below; a hostile key file must not exhaust memory.
const SCRYPT_MAX_MEMORY: u64 = 1 << 30;

/// The master keys of a restic repository.
pub(super) struct MasterKey {
    encrypt: Zeroizing<[u8; 32]>,
    mac_k: Zeroizing<[u8; 16]>,
    mac_r: Zeroizing<[u8; 16]>,
}

impl MasterKey {
    /// From the three key parts (the key file's JSON, or scrypt's output).
    pub(super) fn from_parts(encrypt: &[u8], mac_k: &[u8], mac_r: &[u8]) -> Option<Self> {
        let mut k = Self {
            encrypt: Zeroizing::new([0; 32]),
            mac_k: Zeroizing::new([0; 16]),
            mac_r: Zeroizing::new([0; 16]),
        };
        if encrypt.len() != 32 || mac_k.len() != 16 || mac_r.len() != 16 {
            return None;
        }
        k.encrypt.copy_from_slice(encrypt);
        k.mac_k.copy_from_slice(mac_k);
        k.mac_r.copy_from_slice(mac_r);
        Some(k)
    }

    /// The key a password gives with a key file's scrypt parameters: 64
    /// bytes, the AES key first, then the MAC's `k` and `r`.
    pub(super) fn derive(password: &[u8], salt: &[u8], n: u64, r: u32, p: u32) -> Result<Self, ResticError> {
        let bad = |why: &str| ResticError::Key(format!("scrypt parameters N={n} r={r} p={p}: {why}"));
        if n < 2 || !n.is_power_of_two() {
            return Err(bad("N must be a power of two"));
        }
        if r == 0 || p == 0 || p > 64 {
            return Err(bad("out of range"));
        }
        if 128u64.saturating_mul(n).saturating_mul(u64::from(r)) > SCRYPT_MAX_MEMORY {
            return Err(bad("more than 1 GiB of memory"));
        }
        let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| bad("N too large"))?;
        let params = scrypt::Params::new(log_n, r, p, 64).map_err(|e| bad(&e.to_string()))?;
        let mut out = Zeroizing::new([0u8; 64]);
        scrypt::scrypt(password, salt, &params, out.as_mut()).map_err(|e| bad(&e.to_string()))?;
        Self::from_parts(&out[..32], &out[32..48], &out[48..]).ok_or_else(|| bad("output length"))
    }

    /// Authenticates and decrypts `IV || CIPHERTEXT || MAC`; `None` when
    /// the MAC does not match (a wrong key, or damage).
    pub(super) fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        let (iv, rest) = sealed.split_at(16);
        let (ciphertext, mac) = rest.split_at(rest.len() - 16);
        let expected = self.mac(iv, ciphertext);
        // Constant time, so a forger learns nothing from how long it took.
        if expected.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let mut plain = ciphertext.to_vec();
        let mut ctr = ctr::Ctr128BE::<aes::Aes256>::new(self.encrypt.as_ref().into(), iv.into());
        ctr.apply_keystream(&mut plain);
        Some(plain)
    }

    /// Poly1305-AES of `ciphertext` under nonce `iv`.
    fn mac(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        let mut key = Zeroizing::new([0u8; 32]);
        key[..16].copy_from_slice(self.mac_r.as_ref());
        let mut s = aes::Block::clone_from_slice(iv);
        aes::Aes128::new(self.mac_k.as_ref().into()).encrypt_block(&mut s);
        key[16..].copy_from_slice(&s);
        // `poly1305` clamps `r` itself, as the paper (and restic) mask it.
        let tag = poly1305::Poly1305::new(key.as_ref().into()).compute_unpadded(ciphertext);
        tag.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seals as restic does, for the reader's own tests.
    pub(crate) fn seal(key: &MasterKey, iv: [u8; 16], plain: &[u8]) -> Vec<u8> {
        let mut ct = plain.to_vec();
        ctr::Ctr128BE::<aes::Aes256>::new(key.encrypt.as_ref().into(), (&iv).into()).apply_keystream(&mut ct);
        let mac = key.mac(&iv, &ct);
        [&iv[..], &ct, &mac].concat()
    }

    #[test]
    fn opens_what_it_seals_and_refuses_any_flipped_bit() {
        let key = MasterKey::from_parts(&[1; 32], &[2; 16], &[3; 16]).unwrap();
        let sealed = seal(&key, [9; 16], b"restic data");
        assert_eq!(key.open(&sealed).unwrap(), b"restic data");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(key.open(&bad).is_none(), "flipped byte {i} was accepted");
        }
        assert!(key.open(&sealed[..31]).is_none());
        let other = MasterKey::from_parts(&[1; 32], &[2; 16], &[4; 16]).unwrap();
        assert!(other.open(&sealed).is_none());
    }

    #[test]
    fn poly1305_aes_matches_the_papers_example() {
        // Bernstein, "The Poly1305-AES message-authentication code", appendix
        // B, the second example: k, r, nonce, a 16-byte message and its MAC.
        let k = hex::decode("ec074c835580741701425b623235add6").unwrap();
        let r = hex::decode("851fc40c3467ac0be05cc20404f3f700").unwrap();
        let n = hex::decode("fb447350c4e868c52ac3275cf9d4327e").unwrap();
        let m = hex::decode("f3f6").unwrap();
        let want = hex::decode("f4c633c3044fc145f84f335cb81953de").unwrap();
        let key = MasterKey::from_parts(&[0; 32], &k, &r).unwrap();
        assert_eq!(key.mac(&n, &m).to_vec(), want);
    }

    #[test]
    fn hostile_scrypt_parameters_are_refused_before_any_work() {
        for (n, r, p) in [
            (0, 8, 1),
            (1000, 8, 1),
            (1 << 24, 8, 1),
            (1 << 14, 0, 1),
            (1 << 14, 8, 1000),
        ] {
            assert!(MasterKey::derive(b"pw", b"salt", n, r, p).is_err(), "N={n} r={r} p={p}");
        }
    }
}
