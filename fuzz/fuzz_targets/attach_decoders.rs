//! The decoders of isnad-attach (attachment descriptor, relay metadata,
//! inclusion proof): decoding must never panic, and what decodes must
//! encode back to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    isnad_attach::fuzzing::decoders(data);
});
