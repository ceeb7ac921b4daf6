//! Fuzz `Opener::open` with arbitrary envelope bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_envelope::fuzzing::open(data));
