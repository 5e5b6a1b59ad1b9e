//! The backend contract (`repo_core::Backend`'s documentation) checked on every backend there
//! is, with repo-testkit's `backend_conformance`: the memory and local backends, and the
//! fault-injecting wrapper without faults (which must be transparent).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use repo_core::{Backend, LocalBackend, MemoryBackend};
use repo_testkit::{backend_conformance, FaultyBackend};

#[test]
fn memory_backend_conforms() {
    backend_conformance(|| Arc::new(MemoryBackend::new()));
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    backend_conformance(|| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        Arc::new(LocalBackend::new(dir.path().join(format!("repo{n}")))) as Arc<dyn Backend>
    });
}

#[test]
fn faulty_backend_without_faults_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    backend_conformance(|| Arc::new(FaultyBackend::new()));
    backend_conformance(|| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let local = LocalBackend::new(dir.path().join(format!("repo{n}")));
        Arc::new(FaultyBackend::wrap(Arc::new(local))) as Arc<dyn Backend>
    });
}
