//! Helpers shared by the integration tests of repo-core and the CLI, so that each exists once:
//! [`Xorshift`] and [`noise`], the one deterministic data generator; [`Tmpfs`], a small file
//! system that really runs full; [`FaultyBackend`], a backend wrapper that injects failures;
//! [`backend_conformance`], the suite every backend must pass; [`TreeCompare`], the one
//! comparison of two directory trees by content and metadata; running as nobody (`setpriv`),
//! so tests about permissions mean something as root.
//! Used only as a dev-dependency, from integration tests (`tests/*.rs`), never from unit tests.

mod conformance;
mod data;
mod faulty;
mod nobody;
mod tmpfs;
mod tree;

pub use conformance::backend_conformance;
pub use data::{noise, Xorshift};
pub use faulty::{Fault, FaultyBackend};
pub use nobody::{
    as_nobody, chown_nobody, chown_tree_nobody, copy_for_nobody, nobody_command, open_to_others,
    rerun_as_nobody, NOBODY,
};
pub use tmpfs::Tmpfs;
pub use tree::{assert_same_tree, entries, first_difference, tree_differences, TreeCompare};

/// True when the tests run as root (CI does).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
