//! Runs every relay-body test vector in `spec/vectors/relay/` (format in
//! spec/relay.md §9). `ISNAD_WRITE_VECTORS=1 cargo test -p isnad-envelope
//! --test relay_vectors -- --ignored` regenerates the files.

use std::path::{Path, PathBuf};

use isnad_envelope::*;
use serde_json::{json, Value as Json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/relay")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn field<'a>(v: &'a Json, key: &str) -> Result<&'a Json, String> {
    v.get(key).ok_or_else(|| format!("vector lacks {key:?}"))
}

fn text<'a>(v: &'a Json, key: &str) -> Result<&'a str, String> {
    field(v, key)?
        .as_str()
        .ok_or_else(|| format!("{key:?} must be a string"))
}

/// Runs one vector; returns what happened: `Ok(position)` or the error name.
fn run(v: &Json) -> Result<Result<usize, String>, Box<dyn std::error::Error>> {
    let mut directory = Vec::new();
    for a in field(v, "directory")?
        .as_array()
        .ok_or("directory must be an array")?
    {
        directory.push(SenderKey {
            agency: AgencyId::new(text(a, "agency")?)?,
            key: VerifyingKey::from_cose_key(&unhex(text(a, "sign_cose_key_hex")?)?)?,
            valid_from: None,
            valid_until: None,
            revoked_at: None,
        });
    }
    let me = AgencyId::new(text(v, "me")?)?;
    let peer = AgencyId::new(text(v, "peer")?)?;
    let now = field(v, "now")?.as_u64().ok_or("now must be a uint")?;
    let body = unhex(text(v, "body_hex")?)?;
    let relay = match Relay::from_cbor(&body, &Limits::default()) {
        Ok(r) => r,
        Err(_) => return Ok(Err("malformed".into())),
    };
    Ok(verify_hop(&relay, &me, &peer, &directory, now).map_err(|e| e.as_str().to_owned()))
}

#[test]
fn every_relay_vector() -> TestResult {
    let mut n = 0;
    for entry in std::fs::read_dir(vector_dir())? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let v: Json = serde_json::from_slice(&std::fs::read(&path)?)?;
        let got = run(&v).map_err(|e| format!("{}: {e}", path.display()))?;
        let expect = field(&v, "expect")?;
        match (expect.as_str(), got) {
            (Some("ok"), Ok(pos)) => {
                assert_eq!(
                    Some(pos as u64),
                    field(&v, "position")?.as_u64(),
                    "{}",
                    path.display()
                );
            }
            (None, Err(name)) => {
                assert_eq!(
                    Some(name.as_str()),
                    expect.get("error").and_then(Json::as_str),
                    "{}",
                    path.display()
                );
            }
            (_, got) => panic!("{}: expected {expect}, got {got:?}", path.display()),
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} relay vectors found");
    Ok(())
}

#[test]
#[ignore = "writes spec/vectors/relay; run with ISNAD_WRITE_VECTORS=1"]
fn regenerate_relay_vectors() -> TestResult {
    use ciborium::value::Value;
    if std::env::var("ISNAD_WRITE_VECTORS").as_deref() != Ok("1") {
        return Ok(());
    }
    let rng = ring::rand::SystemRandom::new();
    let names = ["iq.moi.ahtd", "iq.moj.ca", "fr.mj.bepi", "fr.pn.ocrtis"];
    let ids: Vec<AgencyId> = names
        .iter()
        .map(|s| AgencyId::new(s))
        .collect::<Result<_, _>>()?;
    let keys: Vec<SigningKey> = ids
        .iter()
        .map(|_| SigningKey::generate(SignatureAlgorithm::Ed25519, &rng))
        .collect::<Result<_, _>>()?;
    let stranger = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let directory: Vec<Json> = ids
        .iter()
        .zip(&keys)
        .map(|(a, k)| {
            json!({"agency": a.as_str(), "sign_cose_key_hex": hex(&k.verifying_key().to_cose_key())})
        })
        .collect();
    let now = 1_800_000_000u64;
    // The inner envelope is opaque to this check: any bytes do; a real one
    // is sealed to fr.pn.ocrtis in the node tests.
    let inner: Vec<u8> = (0u8..=200).collect();
    let base = |upto: usize| -> Result<Relay, Box<dyn std::error::Error>> {
        let mut r = Relay::new(
            ids.clone(),
            MessageId::from_bytes([0x5a; 16]),
            Kind::MlaRequest,
            now + 3600,
            inner.clone(),
        );
        for k in &keys[..upto] {
            endorse(&mut r, k, &rng)?;
        }
        Ok(r)
    };
    let dir = vector_dir();
    std::fs::create_dir_all(&dir)?;
    for e in std::fs::read_dir(&dir)? {
        std::fs::remove_file(e?.path())?;
    }
    let write = |name: &str,
                 description: &str,
                 me: usize,
                 peer: usize,
                 at: u64,
                 body: Vec<u8>,
                 expect: Json|
     -> TestResult {
        let mut v = json!({
            "description": description,
            "directory": directory,
            "me": names[me],
            "peer": names[peer],
            "now": at,
            "body_hex": hex(&body),
            "expect": expect,
        });
        if v["expect"] == "ok" {
            v["position"] = json!(me);
        }
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&v)? + "\n",
        )?;
        Ok(())
    };
    let err = |name: &str| json!({ "error": name });
    write(
        "ok-at-first-relay",
        "first hop: the originator's endorsement only, checked by its central authority",
        1,
        0,
        now,
        base(1)?.to_cbor()?,
        json!("ok"),
    )?;
    write(
        "ok-at-partner-central-authority",
        "second hop: originator and own central authority endorsed",
        2,
        1,
        now,
        base(2)?.to_cbor()?,
        json!("ok"),
    )?;
    write(
        "ok-at-final-recipient",
        "last hop: three endorsements, checked by the final recipient",
        3,
        2,
        now,
        base(3)?.to_cbor()?,
        json!("ok"),
    )?;
    let mut r = base(3)?;
    r.inner_expires += 86_400;
    write(
        "err-tampered-metadata",
        "a relay extended inner-expires after the endorsements were made",
        3,
        2,
        now,
        r.to_cbor()?,
        err("tampered-metadata"),
    )?;
    let mut r = base(3)?;
    r.endorsements.swap(1, 2);
    write(
        "err-wrong-endorser",
        "endorsement 1 is signed by fr.mj.bepi, not by iq.moj.ca",
        3,
        2,
        now,
        r.to_cbor()?,
        err("wrong-endorser"),
    )?;
    let r = base(2)?;
    write(
        "err-missing-hop",
        "fr.mj.bepi forwarded without endorsing: two endorsements at the final recipient",
        3,
        2,
        now,
        r.to_cbor()?,
        err("missing-endorsement"),
    )?;
    let mut r = base(3)?;
    if let Some(b) = r.inner.0.get_mut(10) {
        *b ^= 1;
    }
    write(
        "err-digest-mismatch",
        "one bit of the inner envelope flipped in transit",
        3,
        2,
        now,
        r.to_cbor()?,
        err("digest-mismatch"),
    )?;
    let mut r = base(2)?;
    endorse(&mut r, &stranger, &rng)?;
    write(
        "err-unknown-endorser",
        "endorsement 2 is signed with a key no directory lists",
        3,
        2,
        now,
        r.to_cbor()?,
        err("unknown-endorser"),
    )?;
    let mut r = base(3)?;
    if let Some(last) = r.endorsements.get_mut(2).and_then(|e| e.0.last_mut()) {
        *last ^= 1;
    }
    write(
        "err-bad-signature",
        "the last bit of endorsement 2's signature flipped",
        3,
        2,
        now,
        r.to_cbor()?,
        err("bad-endorsement"),
    )?;
    write(
        "err-misrouted-skipped-hop",
        "iq.moi.ahtd delivers straight to fr.mj.bepi, skipping iq.moj.ca",
        2,
        0,
        now,
        base(2)?.to_cbor()?,
        err("misrouted"),
    )?;
    write(
        "err-expired",
        "the inner message expired while relayed",
        3,
        2,
        now + 3600,
        base(3)?.to_cbor()?,
        err("expired"),
    )?;
    // Shape errors cannot be encoded by `to_cbor`, so the body is edited as CBOR.
    let edit = |key: &str, value: Option<Value>| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let body = base(1)?.to_cbor()?;
        let mut v: Value = ciborium::de::from_reader(body.as_slice())?;
        if let Value::Map(m) = &mut v {
            match value {
                Some(new) => match m.iter_mut().find(|(k, _)| k.as_text() == Some(key)) {
                    Some(slot) => slot.1 = new,
                    None => m.push((Value::Text(key.into()), new)),
                },
                None => m.retain(|(k, _)| k.as_text() != Some(key)),
            }
        }
        Ok(testing::deterministic(&v))
    };
    let short = Value::Array(vec![
        Value::Text(names[0].into()),
        Value::Text(names[1].into()),
    ]);
    write(
        "err-route-too-short",
        "a two-agency route (that would be direct delivery)",
        1,
        0,
        now,
        edit("route", Some(short))?,
        err("malformed"),
    )?;
    write(
        "err-nested-relay",
        "inner-kind relay: a relay body cannot carry another relay",
        1,
        0,
        now,
        edit("inner-kind", Some(Value::Text("relay".into())))?,
        err("malformed"),
    )?;
    write(
        "err-unknown-field",
        "an unknown key in the relay body",
        1,
        0,
        now,
        edit("via", Some(Value::Text("x".into())))?,
        err("malformed"),
    )?;
    write(
        "err-missing-digest",
        "the relay body lacks inner-digest",
        1,
        0,
        now,
        edit("inner-digest", None)?,
        err("malformed"),
    )?;
    let mut body = base(1)?.to_cbor()?;
    body.push(0);
    write(
        "err-trailing-bytes",
        "one byte after the relay body",
        1,
        0,
        now,
        body,
        err("malformed"),
    )?;
    Ok(())
}
