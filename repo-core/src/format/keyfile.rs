//! Implements spec/02-crypto.md (key files): the master key wrapped by a password.
//!
//! `keyfile = magic "CAIRNKEY" || version:u8 || kdf:u8 || m_cost_kib:u32le || t_cost:u32le ||
//! p_cost:u32le || salt:32 || created_unix:i64le || nonce:24 || wrapped_master_key:72 || tag:16`,
//! 174 bytes. The associated data is every byte before the nonce, so the KDF parameters cannot be
//! altered without detection.

use zeroize::Zeroizing;

use crate::crypto::{self, KdfParams, MasterKey, MASTER_KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{CorruptionKind, Error, ErrorKind, Result};

/// Magic bytes at the start of every key file.
pub const MAGIC: &[u8; 8] = b"CAIRNKEY";
/// Key file layout version.
pub const KEYFILE_VERSION: u8 = 1;
/// KDF identifier: Argon2id, version 0x13.
pub const KDF_ARGON2ID: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 1 + 12 + 32 + 8;
/// Exact length of a key file.
pub const KEYFILE_LEN: usize = HEADER_LEN + NONCE_LEN + MASTER_KEY_LEN + TAG_LEN;

/// The cleartext fields of a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileHeader {
    /// Argon2id costs.
    pub kdf: KdfParams,
    /// Random salt.
    pub salt: [u8; 32],
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: i64,
}

impl KeyFileHeader {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEYFILE_LEN);
        out.extend_from_slice(MAGIC);
        out.push(KEYFILE_VERSION);
        out.push(KDF_ARGON2ID);
        out.extend_from_slice(&self.kdf.m_cost_kib.to_le_bytes());
        out.extend_from_slice(&self.kdf.t_cost.to_le_bytes());
        out.extend_from_slice(&self.kdf.p_cost.to_le_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.created_unix.to_le_bytes());
        out
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Parses the cleartext header of a key file, checking length, magic and version.
pub fn decode_header(bytes: &[u8], object: &dyn std::fmt::Display) -> Result<KeyFileHeader> {
    if bytes.len() < KEYFILE_LEN {
        return Err(Error::corrupt(
            CorruptionKind::Truncated,
            object,
            format!("{} bytes, expected {KEYFILE_LEN}", bytes.len()),
        ));
    }
    if bytes.len() > KEYFILE_LEN {
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            format!("{} bytes, expected {KEYFILE_LEN}", bytes.len()),
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            "not a cairn key file",
        ));
    }
    if bytes[8] > KEYFILE_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "{object}: key file version {} is newer than this program reads; upgrade cairn",
                bytes[8]
            ),
        ));
    }
    if bytes[8] != KEYFILE_VERSION || bytes[9] != KDF_ARGON2ID {
        return Err(Error::corrupt(
            CorruptionKind::UnknownVersion,
            object,
            "unknown key file version or KDF",
        ));
    }
    let kdf = KdfParams {
        m_cost_kib: le_u32(&bytes[10..]),
        t_cost: le_u32(&bytes[14..]),
        p_cost: le_u32(&bytes[18..]),
    };
    if kdf.m_cost_kib > KdfParams::MAX_M_COST_KIB
        || kdf.t_cost > KdfParams::MAX_T_COST
        || kdf.p_cost > KdfParams::MAX_P_COST
        || kdf.t_cost == 0
        || kdf.p_cost == 0
        || kdf.m_cost_kib < 8 * kdf.p_cost
    {
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            "key derivation parameters out of range",
        ));
    }
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&bytes[22..54]);
    let mut created = [0u8; 8];
    created.copy_from_slice(&bytes[54..62]);
    Ok(KeyFileHeader {
        kdf,
        salt,
        created_unix: i64::from_le_bytes(created),
    })
}

/// Wraps `master` under `password` with a fresh random salt and nonce.
pub fn encode(
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    created_unix: i64,
) -> Result<Vec<u8>> {
    let mut salt = [0u8; 32];
    crypto::random_bytes(&mut salt)?;
    let mut nonce = [0u8; NONCE_LEN];
    crypto::random_bytes(&mut nonce)?;
    encode_with(
        master,
        password,
        &KeyFileHeader {
            kdf,
            salt,
            created_unix,
        },
        &nonce,
    )
}

/// Wraps with a given salt and nonce (golden vectors).
#[doc(hidden)]
pub fn encode_with(
    master: &MasterKey,
    password: &[u8],
    header: &KeyFileHeader,
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    let wrapping = header.kdf.derive(password, &header.salt)?;
    let mut out = header.encode();
    let sealed = crypto::seal_with(&wrapping, nonce, &out, &master.to_bytes()[..])?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Unwraps the master key with `password`. A wrong password is `WrongSecret`; a key file that is
/// not structurally valid is `Corrupt`.
pub fn decode(bytes: &[u8], password: &[u8], object: &dyn std::fmt::Display) -> Result<MasterKey> {
    let header = decode_header(bytes, object)?;
    let wrapping = header.kdf.derive(password, &header.salt)?;
    let plain = crypto::open_with(&wrapping, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
        .map(Zeroizing::new)
        .ok_or_else(|| Error::new(ErrorKind::WrongSecret, format!("{object}: wrong password")))?;
    let mut material = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    if plain.len() != MASTER_KEY_LEN {
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            "wrapped key has the wrong length",
        ));
    }
    material.copy_from_slice(&plain);
    Ok(MasterKey::from_bytes(&material))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyfile_roundtrip_and_wrong_password() {
        let master = MasterKey::generate().unwrap();
        let bytes = encode(&master, b"pw", KdfParams::insecure_fast(), 1_700_000_000).unwrap();
        assert_eq!(bytes.len(), KEYFILE_LEN);
        let back = decode(&bytes, b"pw", &"key x").unwrap();
        assert_eq!(back.blob_id(b"a"), master.blob_id(b"a"));
        assert_eq!(
            decode(&bytes, b"nope", &"key x").unwrap_err().kind(),
            ErrorKind::WrongSecret
        );
        assert_eq!(
            decode(&bytes[..100], b"pw", &"key x").unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
}
