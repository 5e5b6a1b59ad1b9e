//! Fuzz target `decode_keyfile`: see repo_core::fuzzing::decode_keyfile.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_keyfile(data));
