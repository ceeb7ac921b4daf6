//! Decode audit-log entries; a successful decode must re-encode identically.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::entry_decode(data));
