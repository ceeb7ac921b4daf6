//! Fuzz the transport framing decoders (request and response frames).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_wire::fuzzing::frames(data));
