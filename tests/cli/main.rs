//! Integration tests of the `cairn` binary: each test runs it in a temporary directory and
//! checks exit codes, output and restored bytes.
//!
//! `support` holds the helpers (a test environment with a repository path, password and cache,
//! sample trees, tree comparison); the other modules group tests by theme. Repositories are
//! always created with the hidden `--insecure-kdf` flag so tests stay fast.

mod basic;
mod concurrency;
mod diskfull;
mod excludes;
mod filekinds;
mod forget;
mod hostile_names;
mod hostile_repo;
mod incremental;
mod json_docs;
mod keys;
mod progress;
mod restore;
mod scale;
mod support;
mod trust;
