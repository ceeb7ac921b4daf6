//! Fuzz the attachment transfer frames (open, chunk header, answers).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_wire::attach::fuzz(data));
