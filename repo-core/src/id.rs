//! Object ids: 32-byte values shown as hex, with typed newtypes so that a pack id is never
//! passed where a blob id is expected.
//!
//! The names of these objects follow spec/00-terminology.md.
//!
//! `Display` shows the short form (8 hex digits), `{:#}` the full 64 digits.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};

/// A 32-byte object id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The unkeyed BLAKE3 hash of `data` (names of packs, index and snapshot files).
    pub fn hash(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// The 64-digit lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::invalid(format!("{s:?} is not a 64-digit hex id")))?;
        Ok(Self(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.to_hex())
        } else {
            f.write_str(&hex::encode(&self.0[..4]))
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            /// The 64-digit lowercase hex form.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self> {
                Id::from_hex(s).map(Self)
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.to_hex())
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                Self(Id(bytes))
            }
        }
    };
}

typed_id!(
    /// Id of a blob: the keyed BLAKE3 hash of its plaintext (data chunk or encoded tree).
    BlobId
);
typed_id!(
    /// Id of a pack file: the BLAKE3 hash of its stored bytes.
    PackId
);
typed_id!(
    /// Id of an index file: the BLAKE3 hash of its stored bytes.
    IndexId
);
typed_id!(
    /// Id of a snapshot file: the BLAKE3 hash of its stored bytes.
    SnapshotId
);
typed_id!(
    /// Id of a key file: the BLAKE3 hash of its stored bytes.
    KeyId
);
typed_id!(
    /// Id of a lock file: the BLAKE3 hash of its stored bytes.
    LockId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_hex_roundtrip_and_display_forms() {
        let id = Id::hash(b"abc");
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(format!("{id}").len(), 8);
        assert_eq!(format!("{id:#}").len(), 64);
        assert!(Id::from_hex("zz").is_err());
    }
}
