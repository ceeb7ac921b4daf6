//! Verify tlog-tiles exports built from the input (hash tiles, entry bundles,
//! previous checkpoints) and build inclusion proofs from them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::export(data));
