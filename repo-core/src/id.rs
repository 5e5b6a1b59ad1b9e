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
///
/// Binary encodings (postcard, the on-disk format) carry the 32 raw bytes; human-readable
/// ones (JSON) carry the 64-digit hex form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; 32]);

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            Self::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

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

/// At most the first 8 bytes of a name, for messages, cut at a character boundary: names come
/// from listings of storage that anyone may have written to, and need not be hex.
pub(crate) fn short(name: &str) -> &str {
    let mut end = name.len().min(8);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

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

    #[test]
    fn id_is_hex_in_json_and_raw_in_postcard() {
        let id = Id::hash(b"abc");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", id.to_hex())
        );
        assert_eq!(
            serde_json::from_str::<Id>(&serde_json::to_string(&id).unwrap()).unwrap(),
            id
        );
        assert_eq!(postcard::to_stdvec(&id).unwrap(), id.0.to_vec());
        let typed = crate::id::BlobId(id);
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            format!("\"{}\"", id.to_hex())
        );
    }
}
