//! Split tlog-tiles entry bundles and decode their entries.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::bundle(data));
