//! Fuzz target `roundtrip_tree`: see repo_core::fuzzing::roundtrip_tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::roundtrip_tree(data));
