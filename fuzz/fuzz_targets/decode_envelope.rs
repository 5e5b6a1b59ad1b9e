//! Fuzz target `decode_envelope`: see repo_core::fuzzing::decode_envelope.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_core::fuzzing::decode_envelope(data));
