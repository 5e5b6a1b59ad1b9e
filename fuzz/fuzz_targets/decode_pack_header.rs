//! Fuzz target `decode_pack_header`: see repo_core::fuzzing::decode_pack_header.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_pack_header(data));
