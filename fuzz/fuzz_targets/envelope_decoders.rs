//! Fuzz every envelope-layer decoder (CBOR scan, COSE_Key, claims, bodies, PEM).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_envelope::fuzzing::decoders(data));
