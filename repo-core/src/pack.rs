//! Packs as seen from above the format: reading blobs out of them ([`reader`]).
//!
//! The byte layout of a pack lives in [`crate::format::pack`] (spec/04-pack.md); this module
//! combines it with the backend, the key and the local cache.

pub(crate) mod reader;
