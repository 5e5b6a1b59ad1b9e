//! Packs above the format layer: [`writer`] seals blobs, fills and uploads packs and writes the
//! index files that list them (spec/04-pack.md, spec/05-index.md, spec/09-invariants.md).

mod writer;

pub(crate) use writer::{Abort, BlobQueue, PackWriter};
