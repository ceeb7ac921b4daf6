//! Parse and verify fork evidence files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::fork_evidence(data));
