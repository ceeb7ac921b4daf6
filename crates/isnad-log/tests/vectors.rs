//! Runs every file in `spec/vectors/audit-log/`, dispatching on its `type`.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use isnad_log::note::{self, SignerKey, VerifierKey};
use isnad_log::{
    open_checkpoint, tiles, verify_consistency, verify_inclusion, Entry, Hash, TlogProof, Tree,
};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/vectors/audit-log");

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn hashes(v: &Value) -> Result<Vec<Hash>, isnad_log::ProofError> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_hex(s(h)))
        .collect()
}

#[test]
fn every_vector_file() {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "expected the vector files in {DIR}");
    let mut cases = 0;
    for path in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.display().to_string();
        cases += match s(&v["type"]) {
            "merkle" => merkle(&v),
            "signed-note" => signed_note(&v),
            "entries" => entries(&v),
            "checkpoint" => checkpoint(&v),
            "tlog-proof" => tlog_proof(&v),
            "tiles" => tiles_vectors(&v),
            other => panic!("{name}: unknown vector type {other}"),
        };
    }
    eprintln!("{cases} vector cases");
}

fn merkle(v: &Value) -> usize {
    let leaves: Vec<Vec<u8>> = v["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| unhex(s(l)))
        .collect();
    let tree = Tree::from_leaves(leaves.iter().map(|l| isnad_log::leaf_hash(l)));
    for (size, root) in v["roots"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            tree.root_at(size as u64).unwrap().to_hex(),
            s(root),
            "root {size}"
        );
    }
    let mut count = 0;
    for c in v["inclusion"].as_array().unwrap() {
        let name = s(&c["name"]);
        let (index, size) = (n(&c["index"]), n(&c["size"]));
        let leaf = isnad_log::leaf_hash(&unhex(s(&c["leaf"])));
        let root = Hash::from_hex(s(&c["root"])).unwrap();
        let ok = hashes(&c["proof"])
            .and_then(|p| verify_inclusion(index, size, &leaf, &p, &root))
            .is_ok();
        assert_eq!(ok, c["valid"].as_bool().unwrap(), "inclusion {name}");
        if ok {
            // Our generator produces exactly the published proof.
            assert_eq!(
                tree.inclusion_proof(index, size).unwrap(),
                hashes(&c["proof"]).unwrap()
            );
        }
        count += 1;
    }
    for c in v["consistency"].as_array().unwrap() {
        let name = s(&c["name"]);
        let (first, second) = (n(&c["first"]), n(&c["second"]));
        let r1 = Hash::from_hex(s(&c["first_root"])).unwrap();
        let r2 = Hash::from_hex(s(&c["second_root"])).unwrap();
        let ok = hashes(&c["proof"])
            .and_then(|p| verify_consistency(first, second, &r1, &r2, &p))
            .is_ok();
        assert_eq!(ok, c["valid"].as_bool().unwrap(), "consistency {name}");
        if ok {
            assert_eq!(
                tree.consistency_proof(first, second).unwrap(),
                hashes(&c["proof"]).unwrap()
            );
        }
        count += 1;
    }
    count
}

fn signed_note(v: &Value) -> usize {
    let mut count = 0;
    for c in v["notes"].as_array().unwrap() {
        let name = s(&c["name"]);
        let keys: Vec<VerifierKey> = c["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| VerifierKey::parse(s(k)).unwrap())
            .collect();
        let r = note::open(s(&c["note"]).as_bytes(), &keys);
        assert_eq!(
            r.is_ok(),
            c["valid"].as_bool().unwrap(),
            "note {name}: {r:?}"
        );
        if let Ok(n) = r {
            assert_eq!(n.text, s(&c["text"]), "{name}");
            let names: Vec<&str> = n.signatures.iter().map(|s| s.name.as_str()).collect();
            let want: Vec<&str> = c["verified"].as_array().unwrap().iter().map(s).collect();
            assert_eq!(names, want, "{name}");
            // The Go checksum database's tree heads are checkpoints too.
            if let Some(size) = name.strip_prefix("sum.golang.org-checkpoint-") {
                let cp = isnad_log::Checkpoint::parse_body(&n.text).unwrap();
                assert_eq!(cp.origin, "go.sum database tree");
                assert_eq!(cp.size.to_string(), size);
            }
        }
        count += 1;
    }
    for c in v["keys"].as_array().unwrap() {
        let name = s(&c["name"]);
        let valid = c["valid"].as_bool().unwrap();
        let vk = VerifierKey::parse(s(&c["verifier"]));
        assert_eq!(vk.is_ok(), valid, "key {name}");
        if let Some(signer) = c.get("signer") {
            let sk = SignerKey::parse(s(signer)).unwrap();
            assert_eq!(sk.verifier(), vk.unwrap(), "{name}");
            assert_eq!(sk.to_secret_string(), s(signer));
            assert_eq!(
                sk.sign_note(s(&c["sign_text"])).unwrap(),
                s(&c["signed_note"]),
                "{name}"
            );
        }
        count += 1;
    }
    count
}

fn entries(v: &Value) -> usize {
    let mut count = 0;
    for c in v["valid"].as_array().unwrap() {
        let name = s(&c["name"]);
        let bytes = unhex(s(&c["cbor"]));
        let e = Entry::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(e.encode().unwrap(), bytes, "{name} re-encodes identically");
        assert_eq!(e.seq, n(&c["seq"]));
        assert_eq!(e.time_ms, n(&c["time_ms"]));
        assert_eq!(e.event.as_str(), s(&c["event"]));
        assert_eq!(isnad_log::leaf_hash(&bytes).to_hex(), s(&c["leaf_hash"]));
        count += 1;
    }
    for c in v["invalid"].as_array().unwrap() {
        let name = s(&c["name"]);
        let err = Entry::decode(&unhex(s(&c["cbor"]))).expect_err(name);
        let dbg = format!("{err:?}");
        assert!(
            dbg.starts_with(s(&c["error"])),
            "{name}: got {dbg}, want {}",
            s(&c["error"])
        );
        count += 1;
    }
    count
}

fn checkpoint(v: &Value) -> usize {
    let key = VerifierKey::parse(s(&v["log_key"])).unwrap();
    let mut count = 0;
    for c in v["cases"].as_array().unwrap() {
        let name = s(&c["name"]);
        let r = open_checkpoint(s(&c["note"]).as_bytes(), &key);
        assert_eq!(
            r.is_ok(),
            c["valid"].as_bool().unwrap(),
            "checkpoint {name}: {r:?}"
        );
        if let Ok(cp) = r {
            assert_eq!(cp.size, n(&c["size"]));
            assert_eq!(cp.root.to_hex(), s(&c["root"]));
        }
        if let Some(w) = c.get("cosigner_key") {
            let w = VerifierKey::parse(s(w)).unwrap();
            let ts = note::verify_cosignature(s(&c["note"]).as_bytes(), &w).unwrap();
            assert_eq!(ts, n(&c["cosignature_time"]));
        }
        count += 1;
    }
    count
}

fn tlog_proof(v: &Value) -> usize {
    let key = VerifierKey::parse(s(&v["log_key"])).unwrap();
    let mut count = 0;
    for c in v["cases"].as_array().unwrap() {
        let name = s(&c["name"]);
        let entry = unhex(s(&c["entry"]));
        let r = TlogProof::parse(s(&c["proof"]).as_bytes()).and_then(|p| {
            p.verify(&entry, &key)?;
            Ok(p)
        });
        assert_eq!(
            r.is_ok(),
            c["valid"].as_bool().unwrap(),
            "proof {name}: {r:?}"
        );
        if let Ok(p) = r {
            assert_eq!(p.index, n(&c["index"]));
            assert_eq!(p.to_text(), s(&c["proof"]), "{name} round-trips");
        }
        count += 1;
    }
    count
}

fn tiles_vectors(v: &Value) -> usize {
    let mut count = 0;
    for c in v["paths"].as_array().unwrap() {
        let (level, index, width) = (n(&c["level"]) as u32, n(&c["index"]), n(&c["width"]));
        let p = match s(&c["kind"]) {
            "tile" => tiles::tile_path(level, index, width),
            _ => tiles::entries_path(index, width),
        };
        assert_eq!(p, s(&c["path"]));
        count += 1;
    }
    for c in v["tiles_for"].as_array().unwrap() {
        let got = tiles::tiles_for(n(&c["size"]));
        if let Some(list) = c.get("tiles") {
            let want: Vec<(u32, u64, u64)> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (n(&t[0]) as u32, n(&t[1]), n(&t[2])))
                .collect();
            assert_eq!(got, want);
        } else {
            assert_eq!(got.len() as u64, n(&c["count"]));
            let l = &c["last"];
            assert_eq!(got.last(), Some(&(n(&l[0]) as u32, n(&l[1]), n(&l[2]))));
        }
        count += 1;
    }
    count
}
