//! Fuzz target `decode_lock`: see repo_core::fuzzing::decode_lock.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_lock(data));
