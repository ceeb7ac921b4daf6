//! Runs every file in `spec/vectors/witness/` (spec/witness.md §7),
//! dispatching on its `type`; `generate` (ignored) rewrites the files:
//! `cargo test -p isnad-log --test witness_vectors -- --ignored generate`.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use isnad_log::note::{SignerKey, VerifierKey, TYPE_COSIGNATURE_V1, TYPE_ED25519};
use isnad_log::witness::{
    add_checkpoint, AddCheckpoint, ForkError, ForkEvidence, ForkProof, WitnessError, Witnessed,
};
use isnad_log::{leaf_hash, Checkpoint, Hash, Tree};
use serde_json::{json, Value};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/vectors/witness");
const ORIGIN: &str = "iq.moi.ahtd/audit";
const NOW: u64 = 1_790_000_000;

/// The outcome name of a decision (spec/witness.md §3.3).
fn outcome(r: &Result<isnad_log::witness::Cosigned, WitnessError>) -> &'static str {
    match r {
        Ok(_) => "cosigned",
        Err(WitnessError::Conflict { .. }) => "conflict",
        Err(WitnessError::UnknownLog { .. }) => "unknown-log",
        Err(WitnessError::Unauthentic(_)) => "unauthentic",
        Err(WitnessError::BadProof) => "inconsistent",
        Err(WitnessError::Fork(_)) => "fork",
        Err(_) => "bad-request",
    }
}

fn fork_outcome(r: &Result<ForkProof, ForkError>) -> &'static str {
    match r {
        Ok(ForkProof::SameSize { .. }) => "proven-same-size",
        Ok(ForkProof::Diverged { .. }) => "proven-diverged",
        Err(ForkError::Consistent) => "consistent",
        Err(ForkError::Unproven) => "unproven",
        Err(ForkError::Checkpoint(_)) => "bad-checkpoint",
        Err(_) => "malformed",
    }
}

#[test]
fn every_vector_file() {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "vectors missing in {DIR}");
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let name = f.display();
        let log_key = VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
        // The fuzz entry points must hold on every seed (fuzz/seed-corpus.py).
        for key in ["request", "evidence"] {
            if let Some(text) = v[key].as_str() {
                isnad_log::fuzzing::witness_request(text.as_bytes());
                isnad_log::fuzzing::fork_evidence(text.as_bytes());
            }
        }
        match v["type"].as_str().unwrap() {
            "add-checkpoint" => {
                let witness = SignerKey::parse(v["witness_secret"].as_str().unwrap()).unwrap();
                assert_eq!(
                    witness.verifier().to_string(),
                    v["witness_key"].as_str().unwrap()
                );
                let stored = v["stored"]
                    .as_str()
                    .map(|n| Witnessed::from_stored_note(n).unwrap());
                let want = &v["expect"];
                let r = AddCheckpoint::parse(v["request"].as_str().unwrap().as_bytes()).and_then(
                    |req| {
                        add_checkpoint(
                            &witness,
                            &log_key,
                            stored.as_ref(),
                            &req,
                            v["now"].as_u64().unwrap(),
                        )
                    },
                );
                assert_eq!(
                    outcome(&r),
                    want["outcome"].as_str().unwrap(),
                    "{name}: {r:?}"
                );
                match r {
                    Ok(c) => {
                        assert_eq!(
                            c.cosignature,
                            want["cosignature"].as_str().unwrap(),
                            "{name}"
                        );
                        assert_eq!(
                            c.state.checkpoint.size,
                            want["stored_size"].as_u64().unwrap()
                        );
                        let cosigned = format!("{}{}", c.state.note, c.cosignature);
                        let wkey = VerifierKey::parse(v["witness_key"].as_str().unwrap()).unwrap();
                        assert_eq!(
                            isnad_log::note::verify_cosignature(cosigned.as_bytes(), &wkey),
                            Ok(v["now"].as_u64().unwrap())
                        );
                    }
                    Err(WitnessError::Conflict { known_size }) => {
                        assert_eq!(known_size, want["known_size"].as_u64().unwrap(), "{name}");
                    }
                    Err(WitnessError::Fork(ev)) => {
                        assert_eq!(ev.to_text(), want["evidence"].as_str().unwrap(), "{name}");
                        assert_eq!(
                            fork_outcome(&ev.verify(&log_key)),
                            want["fork"].as_str().unwrap(),
                            "{name}"
                        );
                    }
                    _ => {}
                }
            }
            "fork-evidence" => {
                let r = ForkEvidence::parse(v["evidence"].as_str().unwrap().as_bytes())
                    .and_then(|e| e.verify(&log_key));
                assert_eq!(
                    fork_outcome(&r),
                    v["expect"].as_str().unwrap(),
                    "{name}: {r:?}"
                );
            }
            other => panic!("{name}: unknown type {other}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Generator

struct Fixture {
    log: SignerKey,
    impostor: SignerKey,
    other: SignerKey,
    witness: SignerKey,
    a: Tree,
    b: Tree,
}

fn fixture() -> Fixture {
    let tree = |p: u8| Tree::from_leaves((0..20u8).map(|i| leaf_hash(&[p, i])));
    Fixture {
        log: SignerKey::from_seed(ORIGIN, TYPE_ED25519, [1; 32]).unwrap(),
        impostor: SignerKey::from_seed(ORIGIN, TYPE_ED25519, [3; 32]).unwrap(),
        other: SignerKey::from_seed("fr.mj.bepi/audit", TYPE_ED25519, [4; 32]).unwrap(),
        witness: SignerKey::from_seed("fr.mj.bepi/witness", TYPE_COSIGNATURE_V1, [2; 32]).unwrap(),
        a: tree(0),
        b: tree(1),
    }
}

fn signed(key: &SignerKey, origin: &str, size: u64, root: Hash) -> String {
    Checkpoint::new(origin, size, root)
        .unwrap()
        .sign(key)
        .unwrap()
}

impl Fixture {
    fn at(&self, t: &Tree, size: u64) -> String {
        signed(&self.log, ORIGIN, size, t.root_at(size).unwrap())
    }

    fn request(&self, old: u64, proof: Vec<Hash>, note: String) -> String {
        AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note,
        }
        .to_text()
    }

    /// An add-checkpoint case; the expectation is computed and written, the
    /// generator asserts it is the outcome the case is named for.
    fn case(
        &self,
        name: &str,
        description: &str,
        stored: Option<String>,
        request: String,
        want: &str,
    ) -> (String, Value) {
        let st = stored
            .as_deref()
            .map(|n| Witnessed::from_stored_note(n).unwrap());
        let r = AddCheckpoint::parse(request.as_bytes()).and_then(|req| {
            add_checkpoint(&self.witness, &self.log.verifier(), st.as_ref(), &req, NOW)
        });
        assert_eq!(outcome(&r), want, "{name}: {r:?}");
        let expect = match &r {
            Ok(c) => {
                json!({"outcome": want, "cosignature": c.cosignature, "stored_size": c.state.checkpoint.size})
            }
            Err(WitnessError::Conflict { known_size }) => {
                json!({"outcome": want, "known_size": known_size})
            }
            Err(WitnessError::Fork(ev)) => json!({
                "outcome": want,
                "evidence": ev.to_text(),
                "fork": fork_outcome(&ev.verify(&self.log.verifier())),
            }),
            Err(_) => json!({"outcome": want}),
        };
        (
            name.to_owned(),
            json!({
                "type": "add-checkpoint",
                "description": description,
                "log_key": self.log.verifier().to_string(),
                "witness_secret": self.witness.to_secret_string(),
                "witness_key": self.witness.verifier().to_string(),
                "stored": stored,
                "request": request,
                "now": NOW,
                "expect": expect,
            }),
        )
    }

    fn fork_case(
        &self,
        name: &str,
        description: &str,
        evidence: String,
        want: &str,
    ) -> (String, Value) {
        let r =
            ForkEvidence::parse(evidence.as_bytes()).and_then(|e| e.verify(&self.log.verifier()));
        assert_eq!(fork_outcome(&r), want, "{name}: {r:?}");
        (
            name.to_owned(),
            json!({
                "type": "fork-evidence",
                "description": description,
                "log_key": self.log.verifier().to_string(),
                "evidence": evidence,
                "expect": want,
            }),
        )
    }
}

#[test]
#[ignore = "rewrites spec/vectors/witness; run on purpose"]
fn generate() {
    let f = fixture();
    let (a, b) = (&f.a, &f.b);
    let s5 = Some(f.at(a, 5));
    let h = a.root().to_base64();
    let mut bad_proof = a.consistency_proof(5, 9).unwrap();
    bad_proof[0] = leaf_hash(b"not a node");
    let cases = vec![
        f.case(
            "ok-first-checkpoint",
            "No state for the origin: old 0, no proof, cosigned and stored.",
            None,
            f.request(0, vec![], f.at(a, 5)),
            "cosigned",
        ),
        f.case(
            "ok-growth",
            "Stored size 5; old 5 and a valid consistency proof to 9.",
            s5.clone(),
            f.request(5, a.consistency_proof(5, 9).unwrap(), f.at(a, 9)),
            "cosigned",
        ),
        f.case(
            "ok-same-checkpoint-again",
            "The stored checkpoint again (old = size, empty proof): cosigned again.",
            s5.clone(),
            f.request(5, vec![], f.at(a, 5)),
            "cosigned",
        ),
        f.case(
            "ok-from-empty-tree",
            "Stored size 0 (the empty tree); old 0 and no proof.",
            Some(signed(&f.log, ORIGIN, 0, isnad_log::empty_root())),
            f.request(0, vec![], f.at(a, 3)),
            "cosigned",
        ),
        f.case(
            "err-conflict-stale-old-size",
            "Stored size 5, old 3: conflict with known size 5.",
            s5.clone(),
            f.request(3, a.consistency_proof(3, 9).unwrap(), f.at(a, 9)),
            "conflict",
        ),
        f.case(
            "err-conflict-no-state",
            "No state, old 4: conflict with known size 0.",
            None,
            f.request(4, a.consistency_proof(4, 9).unwrap(), f.at(a, 9)),
            "conflict",
        ),
        f.case(
            "err-bad-proof",
            "A proof hash replaced: inconsistent, no fork evidence.",
            s5.clone(),
            f.request(5, bad_proof, f.at(a, 9)),
            "inconsistent",
        ),
        f.case(
            "err-short-proof",
            "The last proof hash missing: inconsistent.",
            s5.clone(),
            f.request(
                5,
                a.consistency_proof(5, 9).unwrap()[..2].to_vec(),
                f.at(a, 9),
            ),
            "inconsistent",
        ),
        f.case(
            "err-fork-diverged",
            "Another history of size 9 under the log key, with its honest proof: fork proven.",
            s5.clone(),
            f.request(5, b.consistency_proof(5, 9).unwrap(), f.at(b, 9)),
            "fork",
        ),
        f.case(
            "err-fork-same-size",
            "Size 5 with another root: fork proven.",
            s5.clone(),
            f.request(5, vec![], f.at(b, 5)),
            "fork",
        ),
        f.case(
            "err-rollback",
            "Stored size 5, old 5, checkpoint size 3: bad request (old size larger).",
            s5.clone(),
            f.request(5, vec![], f.at(a, 3)),
            "bad-request",
        ),
        f.case(
            "err-rollback-claimed-old",
            "Stored size 5, the log claims old 3 for size 3: conflict, known 5.",
            s5.clone(),
            f.request(3, vec![], f.at(a, 3)),
            "conflict",
        ),
        f.case(
            "err-wrong-key",
            "Signed by another key of the same name: unauthentic.",
            s5.clone(),
            f.request(
                5,
                a.consistency_proof(5, 9).unwrap(),
                signed(&f.impostor, ORIGIN, 9, a.root_at(9).unwrap()),
            ),
            "unauthentic",
        ),
        f.case(
            "err-unknown-origin",
            "A checkpoint of another origin: unknown log.",
            None,
            f.request(
                0,
                vec![],
                signed(&f.other, "fr.mj.bepi/audit", 3, a.root_at(3).unwrap()),
            ),
            "unknown-log",
        ),
        f.case(
            "err-old-leading-zero",
            "old 05: malformed.",
            s5.clone(),
            format!("old 05\n\n{}", f.at(a, 5)),
            "bad-request",
        ),
        f.case(
            "err-old-missing",
            "No old line: malformed.",
            None,
            format!("\n{}", f.at(a, 5)),
            "bad-request",
        ),
        f.case(
            "err-proof-with-old-zero",
            "old 0 with a proof line: malformed.",
            None,
            format!("old 0\n{h}\n\n{}", f.at(a, 5)),
            "bad-request",
        ),
        f.case(
            "err-too-many-proof-lines",
            "64 proof lines: malformed.",
            s5.clone(),
            format!("old 5\n{}\n{}", format!("{h}\n").repeat(64), f.at(a, 9)),
            "bad-request",
        ),
        f.case(
            "err-proof-not-base64",
            "A proof line that is not base64 of 32 bytes: malformed.",
            s5.clone(),
            format!("old 5\nAAAA\n\n{}", f.at(a, 9)),
            "bad-request",
        ),
        f.case(
            "err-proof-between-equal-sizes",
            "old = size with a proof line: malformed.",
            s5.clone(),
            format!("old 5\n{h}\n\n{}", f.at(a, 5)),
            "bad-request",
        ),
        f.case(
            "err-not-a-checkpoint",
            "A signed note that is not a checkpoint body: malformed.",
            None,
            f.request(0, vec![], f.log.sign_note("hello\n").unwrap()),
            "bad-request",
        ),
        f.case(
            "err-empty-tree-wrong-root",
            "Size 0 with a root other than SHA-256(\"\"): inconsistent.",
            None,
            f.request(0, vec![], signed(&f.log, ORIGIN, 0, a.root())),
            "inconsistent",
        ),
    ];
    let diverged = ForkEvidence {
        witnessed: f.at(a, 5),
        offered: f.at(b, 9),
        proof: b.consistency_proof(5, 9).unwrap(),
    };
    let same = ForkEvidence {
        witnessed: f.at(a, 5),
        offered: f.at(b, 5),
        proof: vec![],
    };
    let consistent = ForkEvidence {
        witnessed: f.at(a, 5),
        offered: f.at(a, 9),
        proof: a.consistency_proof(5, 9).unwrap(),
    };
    let unproven = ForkEvidence {
        proof: vec![leaf_hash(b"x")],
        ..diverged.clone()
    };
    let impostor = ForkEvidence {
        offered: signed(&f.impostor, ORIGIN, 9, b.root_at(9).unwrap()),
        ..diverged.clone()
    };
    let forks = vec![
        f.fork_case(
            "fork-ok-diverged",
            "Size 5 signed, and a size-9 tree whose proof implies another root at 5.",
            diverged.to_text(),
            "proven-diverged",
        ),
        f.fork_case(
            "fork-ok-same-size",
            "Two signed roots for size 5.",
            same.to_text(),
            "proven-same-size",
        ),
        f.fork_case(
            "fork-ok-reversed-order",
            "The larger checkpoint first: the order does not matter.",
            ForkEvidence {
                witnessed: diverged.offered.clone(),
                offered: diverged.witnessed.clone(),
                proof: diverged.proof.clone(),
            }
            .to_text(),
            "proven-diverged",
        ),
        f.fork_case(
            "fork-err-consistent",
            "5 and 9 of one tree with a valid proof: no fork.",
            consistent.to_text(),
            "consistent",
        ),
        f.fork_case(
            "fork-err-same-checkpoint",
            "The same checkpoint twice: no fork.",
            ForkEvidence {
                witnessed: f.at(a, 5),
                offered: f.at(a, 5),
                proof: vec![],
            }
            .to_text(),
            "consistent",
        ),
        f.fork_case(
            "fork-err-unproven",
            "A proof that neither verifies nor reaches the larger root.",
            unproven.to_text(),
            "unproven",
        ),
        f.fork_case(
            "fork-err-wrong-key",
            "The offered checkpoint is not signed by the log key.",
            impostor.to_text(),
            "bad-checkpoint",
        ),
        f.fork_case(
            "fork-err-header",
            "Another first line.",
            diverged
                .to_text()
                .replace("isnad-fork-evidence/v1", "isnad-fork-evidence/v2"),
            "malformed",
        ),
        f.fork_case(
            "fork-err-no-final-newline",
            "The file must end with a newline.",
            diverged.to_text().trim_end().to_owned(),
            "malformed",
        ),
        f.fork_case(
            "fork-err-same-size-with-proof",
            "Two checkpoints of one size with a proof line.",
            format!("{}{}\n", same.to_text(), leaf_hash(b"x").to_base64()),
            "malformed",
        ),
    ];
    std::fs::create_dir_all(DIR).unwrap();
    for (name, v) in cases.into_iter().chain(forks) {
        let mut text = serde_json::to_string_pretty(&v).unwrap();
        text.push('\n');
        std::fs::write(format!("{DIR}/{name}.json"), text).unwrap();
    }
}
