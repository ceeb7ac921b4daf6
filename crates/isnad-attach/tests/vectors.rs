//! Runs every file of spec/vectors/attachments in both directions: the
//! positive vectors are re-sealed from their key, nonce prefix and
//! plaintext (ciphertext, chunk hashes, proofs, root, descriptor and
//! metadata must come out byte for byte) and opened back to the
//! plaintext; each negative vector must be refused with the named error
//! and chunk index, by decoding, by `open` (with the key), by
//! `verify_ciphertext` (without it) and by `ChunkVerifier` for single
//! chunks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

use std::path::Path;

use isnad_attach::*;
use serde_json::Value;

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn files() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/attachments");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_vector_file_is_checked() {
    let all = files();
    let ok = all.iter().filter(|(n, _)| n.starts_with("ok-")).count();
    let err = all.iter().filter(|(n, _)| n.starts_with("err-")).count();
    assert_eq!(ok + err, all.len(), "every file is ok-* or err-*");
    assert!(
        ok >= 10 && err >= 25,
        "{ok} positive, {err} negative vectors"
    );
    for (name, v) in &all {
        if name.starts_with("ok-") {
            positive(name, v);
        } else {
            negative(name, v);
        }
    }
}

fn positive(name: &str, v: &Value) {
    let cs = ChunkSize::new(v["chunk_size"].as_u64().unwrap() as u32).unwrap();
    let key: [u8; 32] = unhex(&v["key_hex"]).try_into().unwrap();
    let prefix: [u8; 7] = unhex(&v["nonce_prefix_hex"]).try_into().unwrap();
    let plain = unhex(&v["plaintext_hex"]);
    let ct = unhex(&v["ciphertext_hex"]);
    assert_eq!(plain.len() as u64, v["plaintext_size"].as_u64().unwrap());

    // Seal: the same bytes come out.
    let mut sealer = ChunkSealer::less_safe_with(
        AttachmentKey::less_safe_from_bytes(key),
        NoncePrefix::from_bytes(prefix),
        cs,
    );
    let mut out = Vec::new();
    seal_with(&mut sealer, &mut &plain[..], &mut out).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(&ct), "{name}: ciphertext");
    let d = sealer.finish().unwrap().describe(
        FileName::new(v["name"].as_str().unwrap()).unwrap(),
        MediaType::new(v["media_type"].as_str().unwrap()).unwrap(),
    );
    assert_eq!(
        d.encode(),
        unhex(&v["descriptor_hex"]),
        "{name}: descriptor"
    );
    assert_eq!(d.meta().encode(), unhex(&v["meta_hex"]), "{name}: meta");
    assert_eq!(d.digest().to_hex(), v["digest_hex"].as_str().unwrap());
    assert_eq!(
        d.ciphertext_root().to_hex(),
        v["ciphertext_root_hex"].as_str().unwrap()
    );
    assert_eq!(
        d.layout().ciphertext_size(),
        v["ciphertext_size"].as_u64().unwrap()
    );

    // Decode: the descriptor and the metadata, from the file's bytes.
    let decoded = AttachmentDescriptor::decode(&unhex(&v["descriptor_hex"])).unwrap();
    assert_eq!(decoded, d, "{name}");
    assert_eq!(decoded.key(), &AttachmentKey::less_safe_from_bytes(key));
    let meta = AttachmentMeta::decode(&unhex(&v["meta_hex"])).unwrap();
    assert_eq!(meta, d.meta());

    // Chunks: offsets, lengths, leaf hashes, proofs.
    let chunks = v["chunks"].as_array().unwrap();
    assert_eq!(chunks.len() as u64, d.layout().chunks(), "{name}");
    let verifier = ChunkVerifier::new(&meta);
    let tree = verify_ciphertext(&meta, &ct[..], true).unwrap().unwrap();
    for c in chunks {
        let i = c["index"].as_u64().unwrap();
        let off = c["offset"].as_u64().unwrap() as usize;
        let len = c["length"].as_u64().unwrap() as usize;
        assert_eq!(d.layout().ciphertext_offset(i) as usize, off);
        assert_eq!(d.layout().ciphertext_chunk_len(i), Some(len as u64));
        let chunk = &ct[off..off + len];
        assert_eq!(
            leaf_hash(chunk).to_hex(),
            c["leaf_hash_hex"].as_str().unwrap()
        );
        let proof = InclusionProof::decode(&unhex(&c["proof_hex"])).unwrap();
        assert_eq!(tree.proof(i).unwrap(), proof, "{name} chunk {i}");
        verifier.verify(i, chunk, &proof).unwrap();
    }

    // Open: the plaintext comes back.
    let mut back = Vec::new();
    open(&decoded, &ct[..], &mut back).unwrap();
    assert_eq!(back, plain, "{name}");
}

fn negative(name: &str, v: &Value) {
    if let Some(want) = v["expect_decode"].as_str() {
        let got = if let Some(h) = v.get("descriptor_hex") {
            AttachmentDescriptor::decode(&unhex(h)).map(|_| ())
        } else {
            AttachmentMeta::decode(&unhex(&v["meta_hex"])).map(|_| ())
        };
        match got {
            Err(e) => assert_eq!(e.name(), want, "{name}: {e}"),
            Ok(()) => panic!("{name}: decoded, expected {want}"),
        }
        return;
    }
    let d = AttachmentDescriptor::decode(&unhex(&v["descriptor_hex"]))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let ct = unhex(&v["ciphertext_hex"]);
    let mut sink = Vec::new();
    same(
        name,
        "open",
        open(&d, &ct[..], &mut sink),
        &v["expect_open"],
    );
    same(
        name,
        "verify",
        verify_ciphertext(&d.meta(), &ct[..], false).map(|_| ()),
        &v["expect_verify"],
    );
    let verifier = ChunkVerifier::new(&d.meta());
    for c in v["chunk_checks"].as_array().unwrap() {
        let i = c["index"].as_u64().unwrap();
        let chunk = unhex(&c["chunk_hex"]);
        match InclusionProof::decode(&unhex(&c["proof_hex"])) {
            Err(e) => assert_eq!(Some(e.name()), c["expect"]["error"].as_str(), "{name}"),
            Ok(p) => same(name, "chunk", verifier.verify(i, &chunk, &p), &c["expect"]),
        }
    }
}

fn same(name: &str, what: &str, got: Result<(), OpenError>, want: &Value) {
    match (got, want["error"].as_str()) {
        (Ok(()), None) => {}
        (Err(e), Some(w)) => {
            assert_eq!(e.name(), w, "{name} {what}: {e}");
            assert_eq!(e.chunk(), want["chunk"].as_u64(), "{name} {what}: {e}");
        }
        (got, want) => panic!("{name} {what}: got {got:?}, want {want:?}"),
    }
}
