//! Fuzz the TLS pin of a peer certificate (`spki_sha256`) and the peer-set lookup.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_trust::fuzzing::certificate(data));
