//! Fuzz the relay body decoder and endorsement-chain checks (spec/relay.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_envelope::fuzzing::relay_body(data));
