//! Helpers shared by the integration tests of repo-core and the CLI, so that each exists once:
//! [`Xorshift`] and [`noise`], the one deterministic data generator; [`Tmpfs`], a small file
//! system that really runs full; [`FaultyBackend`], a backend wrapper that injects failures;
//! [`backend_conformance`], the suite every backend must pass.
//! Used only as a dev-dependency, from integration tests (`tests/*.rs`), never from unit tests.

mod conformance;
mod data;
mod faulty;
mod tmpfs;

pub use conformance::backend_conformance;
pub use data::{noise, Xorshift};
pub use faulty::{Fault, FaultyBackend};
pub use tmpfs::Tmpfs;

/// True when the tests run as root (CI does).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
