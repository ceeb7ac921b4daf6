//! Parse C2SP tlog-witness add-checkpoint request bodies and decide them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::witness_request(data));
