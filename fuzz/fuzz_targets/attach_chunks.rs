//! Chunk checking and decryption of hostile bytes (isnad-attach): a
//! descriptor, then chunk bytes and a proof; nothing may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    isnad_attach::fuzzing::chunks(data);
});
