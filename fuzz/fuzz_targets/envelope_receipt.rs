//! Fuzz `Opener::open_signed` (bare signed messages: receipts).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_envelope::fuzzing::open_signed(data));
