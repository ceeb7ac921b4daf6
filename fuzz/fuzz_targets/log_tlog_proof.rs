//! Parse and verify C2SP tlog-proof files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::tlog_proof(data));
