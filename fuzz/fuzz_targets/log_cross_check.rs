//! Cross-check two logs built from records, and render the report over them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::cross_check(data));
