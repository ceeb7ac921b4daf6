//! Fuzz `verify_signed` and `TrustStore::accept` with arbitrary signed directories.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_trust::fuzzing::directory_verify(data));
