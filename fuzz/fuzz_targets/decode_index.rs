//! Fuzz target `decode_index`: see repo_core::fuzzing::decode_index.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_index(data));
