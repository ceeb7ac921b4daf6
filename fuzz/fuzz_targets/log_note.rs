//! Parse signed notes, checkpoints and key strings.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isnad_log::fuzzing::note_open(data));
