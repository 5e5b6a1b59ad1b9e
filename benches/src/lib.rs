//! Benchmarks live in throughput.rs; see benches/README.md.
