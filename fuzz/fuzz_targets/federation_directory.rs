//! Fuzz `Directory::from_cbor` (strict decoding and the directory checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_trust::fuzzing::directory_decode(data));
