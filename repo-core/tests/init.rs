//! `Repository::init` on a location an interrupted init left (its key file written, no
//! config yet): the init completes on every backend, and the new repository has exactly its
//! own key, since the orphan wraps a master key that nothing uses.
#![allow(clippy::field_reassign_with_default)] // InitOptions is non_exhaustive

use std::sync::Arc;

use repo_core::{
    Backend, FileType, InitOptions, KdfParams, LocalBackend, MemoryBackend, OpenOptions,
    Repository, Secret,
};

fn completes_an_interrupted_init(backend: Arc<dyn Backend>) {
    backend.create().unwrap();
    backend
        .write(
            FileType::Key,
            &"ab".repeat(32),
            b"the key file of an init that stopped",
        )
        .unwrap();
    let secret = Secret::password("pw");
    let mut init = InitOptions::default();
    init.kdf = KdfParams::insecure_fast();
    let _ = Repository::init(Arc::clone(&backend), &secret, &init).unwrap();
    let keys = backend.list(FileType::Key).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_ne!(keys[0].0, "ab".repeat(32), "the orphaned key is removed");
    let _ = Repository::open(backend, &secret, &OpenOptions::default()).unwrap();
}

#[test]
fn init_completes_an_interrupted_init_in_memory() {
    completes_an_interrupted_init(Arc::new(MemoryBackend::new()));
}

#[test]
fn init_completes_an_interrupted_init_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    completes_an_interrupted_init(Arc::new(LocalBackend::new(dir.path().join("repo"))));
}
