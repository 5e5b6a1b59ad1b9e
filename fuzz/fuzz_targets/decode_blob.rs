//! Fuzz target `decode_blob`: see repo_core::fuzzing::decode_blob.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_blob(data));
