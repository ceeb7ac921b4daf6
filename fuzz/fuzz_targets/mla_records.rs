//! Stored request and share records of isnad-mla (read back from the node's
//! database): decoding must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    isnad_mla::fuzzing::records(data);
});
