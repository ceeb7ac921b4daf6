//! Regenerates `spec/vectors/attachments/*.json` from fixed inputs (keys
//! and nonce prefixes are SHA-256 of the vector's name). Run:
//! `cargo run -p isnad-attach --example gen_vectors`. The format is
//! described in spec/attachments.md §9; `crates/isnad-attach/tests/vectors.rs`
//! checks every file in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A developer tool: panics are fine.

use std::path::Path;

use ciborium::value::Value;
use isnad_attach::*;
use serde_json::{json, Value as Json};

fn main() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/vectors/attachments"
    ));
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(p).unwrap();
        }
    }
    for (name, cs, size, what) in POSITIVE {
        let v = positive(name, *cs, *size, what);
        write(dir, name, v);
    }
    for (name, v) in negative() {
        write(dir, &name, v);
    }
}

const POSITIVE: &[(&str, u32, usize, &str)] = &[
    (
        "ok-empty",
        64,
        0,
        "The empty file: one chunk holding only a tag, sealed as the last.",
    ),
    ("ok-one-byte", 64, 1, "One byte: one short last chunk."),
    (
        "ok-one-chunk-exact",
        64,
        64,
        "Exactly one chunk: a full chunk is the last; no empty chunk follows.",
    ),
    (
        "ok-one-chunk-minus-one",
        64,
        63,
        "One byte short of a chunk.",
    ),
    (
        "ok-one-chunk-plus-one",
        64,
        65,
        "One byte over a chunk: a full chunk, then a last chunk of one byte.",
    ),
    (
        "ok-two-chunks-exact",
        64,
        128,
        "Exactly two chunks: the second, full, is the last.",
    ),
    (
        "ok-seven-chunks",
        64,
        443,
        "Seven chunks (an unbalanced tree), the last of 59 bytes.",
    ),
    (
        "ok-cs256",
        256,
        1000,
        "256-byte chunks, four chunks, the last of 232 bytes.",
    ),
    ("ok-cs1024", 1024, 3000, "1 KiB chunks, three chunks."),
    (
        "ok-cs4096-boundary",
        4096,
        8193,
        "4 KiB chunks: two full chunks and a last of one byte.",
    ),
];

fn sha(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().try_into().unwrap()
}

fn key_for(name: &str) -> (AttachmentKey, NoncePrefix) {
    let k = sha(&format!("isnad attachment vector key {name}"));
    let p = sha(&format!("isnad attachment vector nonce {name}"));
    (
        AttachmentKey::less_safe_from_bytes(k),
        NoncePrefix::from_bytes(p[..7].try_into().unwrap()),
    )
}

fn plaintext(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 37 + 11) as u8).collect()
}

/// Seals `plain` with the vector's fixed key; returns descriptor and ciphertext.
fn sealed(name: &str, cs: u32, plain: &[u8]) -> (AttachmentDescriptor, Vec<u8>) {
    let (key, prefix) = key_for(name);
    let mut sealer = ChunkSealer::less_safe_with(key, prefix, ChunkSize::new(cs).unwrap());
    let mut ct = Vec::new();
    seal_with(&mut sealer, &mut &plain[..], &mut ct).unwrap();
    let d = sealer.finish().unwrap().describe(
        FileName::new("evidence-report.bin").unwrap(),
        MediaType::new("application/octet-stream").unwrap(),
    );
    (d, ct)
}

/// The ciphertext's chunks, as the layout cuts it.
fn chunks(layout: Layout, ct: &[u8]) -> Vec<Vec<u8>> {
    (0..layout.chunks())
        .map(|i| {
            let off = layout.ciphertext_offset(i) as usize;
            let len = layout.ciphertext_chunk_len(i).unwrap() as usize;
            ct[off..off + len].to_vec()
        })
        .collect()
}

fn positive(name: &str, cs: u32, size: usize, what: &str) -> Json {
    let plain = plaintext(size);
    let (d, ct) = sealed(name, cs, &plain);
    let layout = d.layout();
    let parts = chunks(layout, &ct);
    let tree = ChunkTree::from_leaves(parts.iter().map(|c| leaf_hash(c)).collect()).unwrap();
    let chunk_list: Vec<Json> = parts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let last = i as u64 + 1 == layout.chunks();
            let mut nonce = d.nonce_prefix().as_bytes().to_vec();
            nonce.extend_from_slice(&(i as u32).to_be_bytes());
            nonce.push(u8::from(last));
            json!({
                "index": i,
                "offset": layout.ciphertext_offset(i as u64),
                "length": c.len(),
                "last": last,
                "nonce_hex": hex::encode(nonce),
                "leaf_hash_hex": leaf_hash(c).to_hex(),
                "proof_hex": hex::encode(tree.proof(i as u64).unwrap().encode()),
            })
        })
        .collect();
    json!({
        "description": what,
        "chunk_size": cs,
        "name": d.name().as_str(),
        "media_type": d.media_type().as_str(),
        "key_hex": hex::encode(sha(&format!("isnad attachment vector key {name}"))),
        "nonce_prefix_hex": hex::encode(d.nonce_prefix().as_bytes()),
        "plaintext_size": size,
        "plaintext_hex": hex::encode(&plain),
        "digest_hex": d.digest().to_hex(),
        "ciphertext_size": ct.len(),
        "ciphertext_hex": hex::encode(&ct),
        "ciphertext_root_hex": d.ciphertext_root().to_hex(),
        "chunks": chunk_list,
        "descriptor_hex": hex::encode(d.encode()),
        "meta_hex": hex::encode(d.meta().encode()),
    })
}

/// A descriptor's CBOR map with one field changed (and re-encoded
/// deterministically: ciborium keeps the order given, which is the
/// canonical one).
fn edit(d: &AttachmentDescriptor, key: &str, value: Value) -> Vec<u8> {
    let v: Value = ciborium::from_reader(&d.encode()[..]).unwrap();
    let Value::Map(mut m) = v else { panic!() };
    for (k, val) in &mut m {
        if k.as_text() == Some(key) {
            *val = value.clone();
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(m), &mut out).unwrap();
    out
}

fn map_of(d: &AttachmentDescriptor) -> Vec<(Value, Value)> {
    let v: Value = ciborium::from_reader(&d.encode()[..]).unwrap();
    let Value::Map(m) = v else { panic!() };
    m
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

fn expect(error: &str, chunk: Option<u64>) -> Json {
    json!({ "error": error, "chunk": chunk })
}

fn ok() -> Json {
    json!({ "error": null, "chunk": null })
}

/// A negative vector on the stream level.
#[allow(clippy::too_many_arguments)]
fn stream_case(
    what: &str,
    descriptor: &[u8],
    ct: &[u8],
    open: Json,
    verify: Json,
    checks: Vec<Json>,
) -> Json {
    json!({
        "description": what,
        "descriptor_hex": hex::encode(descriptor),
        "ciphertext_hex": hex::encode(ct),
        "expect_decode": null,
        "expect_open": open,
        "expect_verify": verify,
        "chunk_checks": checks,
    })
}

fn check(index: u64, chunk: &[u8], proof: &[u8], expect: Json) -> Json {
    json!({
        "index": index,
        "chunk_hex": hex::encode(chunk),
        "proof_hex": hex::encode(proof),
        "expect": expect,
    })
}

fn decode_case(what: &str, field: &str, bytes: &[u8], error: &str) -> Json {
    json!({
        "description": what,
        field: hex::encode(bytes),
        "expect_decode": error,
    })
}

fn negative() -> Vec<(String, Json)> {
    let mut out = Vec::new();
    // The base: 300 bytes in 64-byte chunks = 5 chunks (4 full, the last of 44).
    let base = "err-base";
    let plain = plaintext(300);
    let (d, ct) = sealed(base, 64, &plain);
    let layout = d.layout();
    let parts = chunks(layout, &ct);
    let tree = ChunkTree::from_leaves(parts.iter().map(|c| leaf_hash(c)).collect()).unwrap();
    let proof = |i: u64| tree.proof(i).unwrap().encode();
    let de = d.encode();
    let join = |p: &[Vec<u8>]| p.concat();

    // 1. A flipped bit in chunk 2.
    let mut bad = parts.clone();
    bad[2][10] ^= 0x04;
    out.push(stream_case(
        "A flipped bit in chunk 2: the chunk does not match the root (no key needed) and does not decrypt.",
        &de,
        &join(&bad),
        expect("undecryptable", Some(2)),
        expect("root-mismatch", None),
        vec![
            check(2, &bad[2], &proof(2), expect("chunk-mismatch", Some(2))),
            check(1, &bad[1], &proof(1), ok()),
        ],
    ));
    // 2. Chunk 1 of another attachment (same chunk size and size, another key).
    let (_, other_ct) = sealed("err-other", 64, &plaintext(300));
    let other = chunks(layout, &other_ct);
    let mut bad = parts.clone();
    bad[1] = other[1].clone();
    out.push(stream_case(
        "Chunk 1 replaced by chunk 1 of another attachment of the same size.",
        &de,
        &join(&bad),
        expect("undecryptable", Some(1)),
        expect("root-mismatch", None),
        vec![check(
            1,
            &bad[1],
            &proof(1),
            expect("chunk-mismatch", Some(1)),
        )],
    ));
    // 3. Chunks 1 and 2 swapped.
    let mut bad = parts.clone();
    bad.swap(1, 2);
    out.push(stream_case(
        "Chunks 1 and 2 swapped: each is at another position than it was sealed for.",
        &de,
        &join(&bad),
        expect("undecryptable", Some(1)),
        expect("root-mismatch", None),
        vec![
            check(1, &bad[1], &proof(1), expect("chunk-mismatch", Some(1))),
            check(1, &bad[1], &proof(2), expect("chunk-mismatch", Some(1))),
        ],
    ));
    // 4. The final chunk truncated by 5 bytes.
    let mut bad = parts.clone();
    let l = bad[4].len();
    bad[4].truncate(l - 5);
    out.push(stream_case(
        "The final chunk truncated by 5 bytes.",
        &de,
        &join(&bad),
        expect("truncated", None),
        expect("truncated", None),
        vec![check(
            4,
            &bad[4],
            &proof(4),
            expect("chunk-length", Some(4)),
        )],
    ));
    // 5. The final chunk missing.
    out.push(stream_case(
        "The final chunk missing: the stream ends at a chunk boundary.",
        &de,
        &join(&parts[..4]),
        expect("truncated", None),
        expect("truncated", None),
        vec![],
    ));
    // 6. An extra chunk after the declared size.
    let mut bad = parts.clone();
    bad.push(parts[0].clone());
    out.push(stream_case(
        "An extra chunk beyond the declared size (the sender declared 5 chunks and sends 6).",
        &de,
        &join(&bad),
        expect("oversize", None),
        expect("oversize", None),
        vec![
            check(5, &parts[0], &proof(0), expect("chunk-beyond-end", Some(5))),
            check(4, &parts[0], &proof(4), expect("chunk-length", Some(4))),
        ],
    ));
    // 7. One byte after a full last chunk.
    let (d2, ct2) = sealed("err-extra-byte", 64, &plaintext(128));
    let mut bad = ct2.clone();
    bad.push(0);
    out.push(stream_case(
        "One byte after the declared size of a file of exactly two chunks.",
        &d2.encode(),
        &bad,
        expect("oversize", None),
        expect("oversize", None),
        vec![],
    ));
    // 8. The wrong key.
    let wrong = edit(&d, "key", Value::Bytes(vec![0x5a; 32]));
    out.push(stream_case(
        "A descriptor whose key does not open the ciphertext: the ciphertext itself matches its root.",
        &wrong,
        &ct,
        expect("undecryptable", Some(0)),
        ok(),
        vec![check(0, &parts[0], &proof(0), ok())],
    ));
    // 9. The wrong nonce prefix.
    let wrong = edit(&d, "nonce-prefix", Value::Bytes(vec![0; 7]));
    out.push(stream_case(
        "A descriptor with another nonce prefix.",
        &wrong,
        &ct,
        expect("undecryptable", Some(0)),
        ok(),
        vec![],
    ));
    // 10. Truncation at a chunk boundary with metadata made to fit: the
    // last-chunk flag catches it.
    let cut = &parts[..3];
    let cut_tree = ChunkTree::from_leaves(cut.iter().map(|c| leaf_hash(c)).collect()).unwrap();
    let mut m = map_of(&d);
    for (k, v) in &mut m {
        match k.as_text() {
            Some("size") => *v = Value::Integer(192.into()),
            Some("ciphertext-size") => *v = Value::Integer(240.into()),
            Some("ciphertext-root") => *v = Value::Bytes(cut_tree.root().as_bytes().to_vec()),
            Some("digest") => {
                let dg = ring::digest::digest(&ring::digest::SHA256, &plain[..192]);
                *v = Value::Bytes(dg.as_ref().to_vec())
            }
            _ => {}
        }
    }
    out.push(stream_case(
        "The first 3 of 5 chunks with a descriptor rewritten to 3 chunks (sizes, root and digest all fit): chunk 2 was not sealed as the last.",
        &cbor(&Value::Map(m)),
        &join(cut),
        expect("undecryptable", Some(2)),
        ok(),
        vec![],
    ));
    // 11. A digest that is not the plaintext's.
    let wrong = edit(&d, "digest", Value::Bytes(vec![0x11; 32]));
    out.push(stream_case(
        "A descriptor whose content digest is not the plaintext's.",
        &wrong,
        &ct,
        expect("digest-mismatch", None),
        ok(),
        vec![],
    ));
    // 12. A root that is not the ciphertext's.
    let wrong = edit(&d, "ciphertext-root", Value::Bytes(vec![0x22; 32]));
    out.push(stream_case(
        "A descriptor whose ciphertext root is not the ciphertext's: every chunk decrypts, the root does not match.",
        &wrong,
        &ct,
        expect("root-mismatch", None),
        expect("root-mismatch", None),
        vec![check(0, &parts[0], &proof(0), expect("chunk-mismatch", Some(0)))],
    ));
    // 13. An inclusion proof of a wrong length.
    out.push(stream_case(
        "Chunk checks with proofs of the wrong length (one hash short, one too many).",
        &de,
        &ct,
        ok(),
        ok(),
        vec![
            check(
                0,
                &parts[0],
                &proof(0)[32..],
                expect("chunk-mismatch", Some(0)),
            ),
            check(
                0,
                &parts[0],
                &[proof(0), vec![0; 32]].concat(),
                expect("chunk-mismatch", Some(0)),
            ),
            check(0, &parts[0], &[0; 33], expect("proof-length", None)),
        ],
    ));
    let names = [
        "err-flipped-bit",
        "err-chunk-from-other-attachment",
        "err-chunks-swapped",
        "err-truncated-final-chunk",
        "err-final-chunk-missing",
        "err-extra-chunk",
        "err-extra-byte",
        "err-wrong-key",
        "err-wrong-nonce-prefix",
        "err-truncated-at-boundary",
        "err-digest-mismatch",
        "err-root-mismatch",
        "err-proof-length",
    ];
    let mut named: Vec<(String, Json)> = names.iter().map(|n| (*n).to_owned()).zip(out).collect();

    // Descriptor and metadata decoding.
    let dec = |name: &str, what: &str, bytes: Vec<u8>, error: &str| {
        (
            name.to_owned(),
            decode_case(what, "descriptor_hex", &bytes, error),
        )
    };
    named.push(dec(
        "err-descriptor-size-mismatch",
        "size says 301 bytes, ciphertext-size says 380 (the ciphertext of 300).",
        edit(&d, "size", Value::Integer(301.into())),
        "sizes",
    ));
    named.push(dec(
        "err-descriptor-chunk-size",
        "chunk-size 100 is not a power of two.",
        edit(&d, "chunk-size", Value::Integer(100.into())),
        "field",
    ));
    named.push(dec(
        "err-descriptor-chunk-size-small",
        "chunk-size 32 is below the minimum of 64.",
        edit(&d, "chunk-size", Value::Integer(32.into())),
        "field",
    ));
    named.push(dec(
        "err-descriptor-short-key",
        "a 31-byte key.",
        edit(&d, "key", Value::Bytes(vec![1; 31])),
        "schema",
    ));
    named.push(dec(
        "err-descriptor-key-as-text",
        "the key as a text string of hex digits.",
        edit(&d, "key", Value::Text("00".repeat(32))),
        "schema",
    ));
    named.push(dec(
        "err-descriptor-name-path",
        "a file name with a path separator.",
        edit(&d, "name", Value::Text("../evidence.bin".into())),
        "field",
    ));
    named.push(dec(
        "err-descriptor-media-type",
        "a media type without a subtype.",
        edit(&d, "media-type", Value::Text("pdf".into())),
        "field",
    ));
    let mut m = map_of(&d);
    m.push((Value::Text("x-note".into()), Value::Text("hi".into())));
    named.push(dec(
        "err-descriptor-unknown-key",
        "an unknown key.",
        cbor(&Value::Map(m)),
        "schema",
    ));
    let mut m = map_of(&d);
    m.push(m[0].clone());
    named.push(dec(
        "err-descriptor-duplicate-key",
        "the key \"key\" twice.",
        cbor(&Value::Map(m)),
        "schema",
    ));
    let mut m = map_of(&d);
    m.remove(3);
    named.push(dec(
        "err-descriptor-missing-digest",
        "no digest.",
        cbor(&Value::Map(m)),
        "schema",
    ));
    let mut m = map_of(&d);
    m.swap(0, 1);
    named.push(dec(
        "err-descriptor-key-order",
        "keys out of deterministic order.",
        cbor(&Value::Map(m)),
        "not-deterministic",
    ));
    let mut long = de.clone();
    long.push(0x00);
    named.push(dec(
        "err-descriptor-trailing-bytes",
        "a byte after the map.",
        long,
        "schema",
    ));
    // chunk-size 64 encoded in two bytes (0x18 0x40) instead of one: find
    // the value after the "chunk-size" key.
    let mut m = map_of(&d);
    m.retain(|(k, _)| k.as_text() != Some("chunk-size"));
    let mut nd = Vec::new();
    nd.push(0xa9);
    for (i, (k, v)) in m.iter().enumerate() {
        if i == 4 {
            nd.extend_from_slice(&cbor(&Value::Text("chunk-size".into())));
            nd.extend_from_slice(&[0x19, 0x00, 0x40]);
        }
        nd.extend_from_slice(&cbor(k));
        nd.extend_from_slice(&cbor(v));
    }
    named.push(dec(
        "err-descriptor-long-integer",
        "chunk-size 64 in a three-byte integer (not the shortest form).",
        nd,
        "not-deterministic",
    ));
    let meta = d.meta().encode();
    let meta_edit = |key: &str, value: Value| {
        let v: Value = ciborium::from_reader(&meta[..]).unwrap();
        let Value::Map(mut m) = v else { panic!() };
        for (k, val) in &mut m {
            if k.as_text() == Some(key) {
                *val = value.clone();
            }
        }
        cbor(&Value::Map(m))
    };
    named.push((
        "err-meta-sizes".into(),
        decode_case(
            "relay metadata: 90 bytes of ciphertext in 64-byte chunks leave a last chunk of 10 bytes, shorter than a tag.",
            "meta_hex",
            &meta_edit("ciphertext-size", Value::Integer(90.into())),
            "sizes",
        ),
    ));
    named.push((
        "err-meta-tag-only-chunk".into(),
        decode_case(
            "relay metadata: 96 bytes in 64-byte chunks would end with a chunk of only a tag, allowed only for the empty file.",
            "meta_hex",
            &meta_edit("ciphertext-size", Value::Integer(96.into())),
            "sizes",
        ),
    ));
    named.push((
        "err-meta-key-field".into(),
        decode_case(
            "relay metadata with a key: unknown field.",
            "meta_hex",
            &{
                let v: Value = ciborium::from_reader(&meta[..]).unwrap();
                let Value::Map(mut m) = v else { panic!() };
                m.insert(0, (Value::Text("key".into()), Value::Bytes(vec![0; 32])));
                cbor(&Value::Map(m))
            },
            "schema",
        ),
    ));
    named
}

fn write(dir: &Path, name: &str, v: Json) {
    let s = serde_json::to_string_pretty(&v).unwrap() + "\n";
    std::fs::write(dir.join(format!("{name}.json")), s).unwrap();
}
