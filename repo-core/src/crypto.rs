//! Keys, key derivation, authenticated encryption and the keyed id hash.
//!
//! Implements the primitives of spec/02-crypto.md. No I/O, no threads. What these primitives
//! protect against, and what they do not, is spelled out in spec/10-threat-model.md.
//! Secret types are wiped on drop, have a redacting `Debug` and no `Display`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of the serialized master key material: encryption key, id key, chunker seed.
pub const MASTER_KEY_LEN: usize = 32 + 32 + 8;

/// The repository's master key material, made at init and wrapped by every key file.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    enc_key: [u8; 32],
    id_key: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Fresh random key material from the operating system.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        random_bytes(&mut bytes[..])?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Rebuilds the key from its 72-byte serialized form.
    pub fn from_bytes(bytes: &[u8; MASTER_KEY_LEN]) -> Self {
        let mut enc_key = [0u8; 32];
        let mut id_key = [0u8; 32];
        enc_key.copy_from_slice(&bytes[..32]);
        id_key.copy_from_slice(&bytes[32..64]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[64..72]);
        // The chunker treats a zero seed as "unseeded"; a non-zero seed is always used.
        let chunker_seed = u64::from_le_bytes(seed).max(1);
        Self {
            enc_key,
            id_key,
            chunker_seed,
        }
    }

    /// The 72-byte serialized form (wrapped inside key files, exported for safe keeping).
    pub fn to_bytes(&self) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        out[..32].copy_from_slice(&self.enc_key);
        out[32..64].copy_from_slice(&self.id_key);
        out[64..].copy_from_slice(&self.chunker_seed.to_le_bytes());
        out
    }

    /// The keyed BLAKE3 id of a blob's plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId::from(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// The FastCDC gear seed of this repository.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Encrypts `plaintext` with a fresh random nonce; returns `nonce || ciphertext || tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        seal_with(&self.enc_key, &nonce, aad, plaintext)
    }

    /// Decrypts `nonce || ciphertext || tag`; `None` when authentication fails.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(&self.enc_key, aad, sealed)
    }
}

/// Encrypts with an explicit key and nonce; returns `nonce || ciphertext || tag`.
pub(crate) fn seal_with(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::internal("encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts `nonce || ciphertext || tag` with an explicit key.
pub(crate) fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[..NONCE_LEN]),
            Payload {
                msg: &sealed[NONCE_LEN..],
                aad,
            },
        )
        .ok()
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf)
        .map_err(|e| Error::internal(format!("no randomness from the operating system: {e}")))
}

/// A password or raw master key used to open a repository.
#[derive(Clone, ZeroizeOnDrop, Zeroize)]
pub enum Secret {
    /// A password, stretched with Argon2id and tried against every key file.
    Password(Vec<u8>),
    /// The raw master key material, as exported by `key export` (opens without key files).
    MasterKey(Vec<u8>),
}

impl Secret {
    /// A password secret.
    pub fn password(p: impl Into<Vec<u8>>) -> Self {
        Self::Password(p.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Argon2id cost parameters, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Parallelism (lanes).
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter second on a current core, 64 MiB of memory per guess.
    fn default() -> Self {
        Self {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Minimal costs, for tests only: never use for real repositories.
    pub fn insecure_fast() -> Self {
        Self {
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Largest memory cost accepted from a key file (1 GiB, 16 times the default), so a hostile
    /// key file cannot make opening a repository exhaust memory.
    pub const MAX_M_COST_KIB: u32 = 1024 * 1024;
    /// Largest pass count accepted from a key file (a hostile file cannot stall open for long).
    pub const MAX_T_COST: u32 = 16;
    /// Largest lane count accepted from a key file.
    pub const MAX_P_COST: u32 = 16;

    /// Derives the 32-byte wrapping key from a password and salt.
    pub fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        if self.m_cost_kib > Self::MAX_M_COST_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.p_cost > Self::MAX_P_COST
        {
            return Err(Error::invalid(
                "key derivation parameters exceed the accepted limits",
            ));
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::invalid(format!("invalid key derivation parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, salt, &mut out[..])
            .map_err(|e| Error::invalid(format!("key derivation failed: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_aad_binding() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"aad", b"hello").unwrap();
        assert_eq!(key.open(b"aad", &sealed).unwrap(), b"hello");
        assert!(key.open(b"other", &sealed).is_none());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(key.open(b"aad", &flipped).is_none());
        assert!(key.open(b"aad", &sealed[..10]).is_none());
    }

    #[test]
    fn master_key_bytes_roundtrip() {
        let key = MasterKey::generate().unwrap();
        let again = MasterKey::from_bytes(&key.to_bytes());
        assert_eq!(key.blob_id(b"x"), again.blob_id(b"x"));
        assert_eq!(key.chunker_seed(), again.chunker_seed());
    }

    #[test]
    fn blob_id_is_keyed() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.blob_id(b"same"), b.blob_id(b"same"));
        assert_ne!(a.blob_id(b"same").0, crate::id::Id::hash(b"same"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let key = MasterKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
        assert_eq!(
            format!("{:?}", Secret::password("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
