//! Every input a fuzz run ever crashed on stays a test, and so does each
//! target's minimized corpus: each file under `fuzz/regressions/<target>/`
//! is run through the same entry point as the fuzz target of that name
//! (fuzz/fuzz_targets/<target>.rs). A panic is a failure. Add a crash here
//! (named `crash-<what-it-broke>`) when you fix it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

use std::path::Path;

/// A fuzz entry point.
type Entry = fn(&[u8]);

/// Fuzz target name → its entry point.
const TARGETS: &[(&str, Entry)] = &[
    ("envelope_open", isnad_envelope::fuzzing::open),
    ("envelope_decoders", isnad_envelope::fuzzing::decoders),
    ("envelope_receipt", isnad_envelope::fuzzing::open_signed),
    ("wire_frames", isnad_wire::fuzzing::frames),
    ("log_entry", isnad_log::fuzzing::entry_decode),
    ("log_note", isnad_log::fuzzing::note_open),
    ("log_tlog_proof", isnad_log::fuzzing::tlog_proof),
    ("log_bundle", isnad_log::fuzzing::bundle),
    ("log_export", isnad_log::fuzzing::export),
    ("log_cross_check", isnad_log::fuzzing::cross_check),
    (
        "federation_directory",
        isnad_trust::fuzzing::directory_decode,
    ),
    ("federation_verify", isnad_trust::fuzzing::directory_verify),
    ("trust_certificate", isnad_trust::fuzzing::certificate),
    ("mla_records", isnad_mla::fuzzing::records),
    ("relay_body", isnad_envelope::fuzzing::relay_body),
    ("witness_fork_evidence", isnad_log::fuzzing::fork_evidence),
    ("witness_request", isnad_log::fuzzing::witness_request),
    ("attach_decoders", isnad_attach::fuzzing::decoders),
    ("attach_chunks", isnad_attach::fuzzing::chunks),
    ("attach_transfer", isnad_wire::attach::fuzz),
];

/// Every fuzz target has its entry point here.
#[test]
fn every_fuzz_target_is_listed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_owned))
        .collect();
    names.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(names, listed);
}

/// Every input under `fuzz/regressions/<target>/` (past crashes and each
/// target's minimized corpus) runs through its target's entry point
/// without a panic, and every target has inputs there: an empty or missing
/// directory would make this test replay nothing for that target.
#[test]
fn every_recorded_fuzz_input_is_handled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for target in std::fs::read_dir(&dir).unwrap() {
        let target = target.unwrap().path();
        if target.is_dir() {
            let name = target.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/regressions/{name}: no such target here; add it to TARGETS"
            );
        }
    }
    let mut ran = 0;
    for (name, entry) in TARGETS {
        let target = dir.join(name);
        let inputs: Vec<_> = match std::fs::read_dir(&target) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(e) => panic!("fuzz/regressions/{name}: {e}; seed it (fuzz/regressions/README.md)"),
        };
        assert!(
            !inputs.is_empty(),
            "fuzz/regressions/{name} is empty; seed it (fuzz/regressions/README.md)"
        );
        for input in inputs {
            eprintln!("{}", input.display());
            entry(&std::fs::read(&input).unwrap());
            ran += 1;
        }
    }
    eprintln!("{ran} recorded fuzz inputs handled");
}
