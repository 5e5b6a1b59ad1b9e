//! Doors below the API for tests, fuzz targets, golden vectors and benches (cargo feature
//! `internals`, enabled only by dev-dependencies): the master key and raw backend of an open
//! repository, to build hostile objects the public API refuses to write; the chunker and the
//! index builder, to test and measure them alone. Nothing here is an API.

use std::sync::Arc;

use crate::backend::Backend;
use crate::repository::Repository;

pub use crate::chunker::Chunker;
pub use crate::crypto::{MasterKey, MASTER_KEY_LEN, NONCE_LEN};
pub use crate::index::MasterIndexBuilder;

/// The master key of an open repository.
pub fn master_key<S: Send + Sync>(repo: &Repository<S>) -> &MasterKey {
    repo.master_key()
}

/// The storage backend of an open repository.
pub fn backend<S: Send + Sync>(repo: &Repository<S>) -> &Arc<dyn Backend> {
    repo.backend()
}
