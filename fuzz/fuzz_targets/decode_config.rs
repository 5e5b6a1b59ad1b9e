//! Fuzz target `decode_config`: see repo_core::fuzzing::decode_config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_config(data));
