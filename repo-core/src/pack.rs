//! Packs above the format layer: the one way blobs go into packs and the one way they come out.
//!
//! [`writer`] seals blobs (compress, encrypt, verify before upload), fills and uploads packs and
//! writes the index files that list them; [`reader`] reads runs of ranges out of one pack and
//! decrypts, verifies and decompresses each blob, through the local cache where the caller
//! allows it. The byte layout lives in [`crate::format::pack`] (spec/04-pack.md, spec/05-index.md;
//! write order in spec/09-invariants.md).

pub(crate) mod reader;
mod writer;

pub(crate) use writer::{Abort, BlobQueue, PackWriter};
