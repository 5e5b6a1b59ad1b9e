//! Fuzz target `decode_snapshot`: see repo_core::fuzzing::decode_snapshot.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_snapshot(data));
