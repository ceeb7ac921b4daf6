//! `isnad audit verify-fork` on every fork-evidence vector of
//! spec/vectors/witness, running the real binary: the exit status is the
//! one spec/witness.md §5.2 gives for the vector's expected outcome.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

mod common;

use common::{isnad, p};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/vectors/witness");

#[test]
fn verify_fork_exit_status_follows_the_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let (evidence, expect) = match v["type"].as_str().unwrap() {
            "fork-evidence" => (
                v["evidence"].as_str().unwrap(),
                v["expect"].as_str().unwrap(),
            ),
            _ => match v["expect"]["evidence"].as_str() {
                Some(e) => (e, v["expect"]["fork"].as_str().unwrap()),
                None => continue,
            },
        };
        let name = f.file_stem().unwrap().to_str().unwrap();
        let file = tmp.path().join(format!("{name}.fork"));
        let key = tmp.path().join(format!("{name}.pub"));
        std::fs::write(&file, evidence).unwrap();
        std::fs::write(&key, v["log_key"].as_str().unwrap()).unwrap();
        let o = isnad(&["audit", "verify-fork", p(&file), "--verifier-key", p(&key)]);
        // The exit-code table (README): 3 verified with a warning (a fork
        // shown), 0 verified (consistent: no fork), 2 verification failed
        // (a bad proof showing nothing, a malformed file, a wrong key).
        let want = match expect {
            "proven-same-size" | "proven-diverged" => 3,
            "consistent" => 0,
            _ => 2,
        };
        assert_eq!(
            o.status.code(),
            Some(want),
            "{name}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if want == 3 {
            assert!(String::from_utf8_lossy(&o.stdout).contains("FORK PROVEN"));
        }
        seen.insert(want);
    }
    assert_eq!(seen.len(), 3, "every exit status is exercised");
}
