//! Cairn core library: encrypted, deduplicating, content-addressed backup repositories.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod chunker;
pub mod crypto;
mod error;
#[doc(hidden)]
pub mod format;
pub mod id;
pub mod index;

pub use error::{CorruptionKind, Error, ErrorKind, Result};
