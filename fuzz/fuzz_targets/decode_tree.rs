//! Fuzz target `decode_tree`: see repo_core::fuzzing::decode_tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_tree(data));
