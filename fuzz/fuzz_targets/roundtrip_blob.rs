//! Fuzz target `roundtrip_blob`: see repo_core::fuzzing::roundtrip_blob.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::roundtrip_blob(data));
