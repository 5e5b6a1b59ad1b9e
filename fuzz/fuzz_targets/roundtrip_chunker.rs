//! Fuzz target `roundtrip_chunker`: see repo_core::fuzzing::roundtrip_chunker.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::roundtrip_chunker(data));
