//! Decode audit-log entries; a successful decode must re-encode identically
//! (and its attachments detail read). Also the attachments detail parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::entry_decode(data));
