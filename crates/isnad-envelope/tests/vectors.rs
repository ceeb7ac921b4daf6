//! Runs every envelope test vector in `spec/vectors/envelope/` (format in
//! spec/protocol.md §12). `ISNAD_WRITE_VECTORS=1 cargo test -p isnad-envelope
//! --test vectors -- --ignored` regenerates the files.

use std::path::{Path, PathBuf};

use isnad_envelope::*;
use serde_json::{json, Value as Json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/envelope")
}

fn get<'a>(v: &'a Json, key: &str) -> Result<&'a Json, String> {
    v.get(key).ok_or_else(|| format!("vector lacks {key:?}"))
}

fn get_str<'a>(v: &'a Json, key: &str) -> Result<&'a str, String> {
    get(v, key)?
        .as_str()
        .ok_or_else(|| format!("{key:?} must be a string"))
}

fn get_u64(v: &Json, key: &str) -> Result<u64, String> {
    get(v, key)?
        .as_u64()
        .ok_or_else(|| format!("{key:?} must be an unsigned integer"))
}

/// The JSON form of a message used in vectors.
fn message_json(m: &Message) -> Result<Json, Box<dyn std::error::Error>> {
    Ok(json!({
        "id": m.header.id.to_hex(),
        "from": m.header.sender.as_str(),
        "to": m.header.recipient.as_str(),
        "iat": m.header.created,
        "exp": m.header.expires,
        "kind": m.body.kind().as_str(),
        "body": serde_json::from_str::<Json>(&body_to_json(&m.body)?)?,
    }))
}

fn message_from_json(v: &Json) -> Result<Message, Box<dyn std::error::Error>> {
    let kind = Kind::parse(get_str(v, "kind")?).ok_or("unknown kind")?;
    Ok(Message {
        header: Header {
            id: MessageId::from_hex(get_str(v, "id")?).ok_or("bad id")?,
            sender: AgencyId::new(get_str(v, "from")?)?,
            recipient: AgencyId::new(get_str(v, "to")?)?,
            created: get_u64(v, "iat")?,
            expires: get_u64(v, "exp")?,
        },
        body: body_from_json(kind, &get(v, "body")?.to_string())?,
    })
}

fn run_vector(path: &Path) -> TestResult {
    let text = std::fs::read_to_string(path)?;
    let v: Json = serde_json::from_str(&text)?;
    let recipient = get(&v, "recipient")?;
    let me = AgencyId::new(get_str(recipient, "agency")?)?;
    let keys = [EncryptionKey::from_pkcs8_pem(get_str(
        recipient,
        "enc_pkcs8_pem",
    )?)?];
    assert_eq!(
        hex::encode(keys[0].public_key().to_cose_key()),
        get_str(recipient, "enc_cose_key_hex")?,
        "recipient COSE_Key"
    );
    let sender = get(&v, "sender")?;
    let signer = SigningKey::from_pkcs8_pem(get_str(sender, "sign_pkcs8_pem")?)?;
    assert_eq!(
        hex::encode(signer.verifying_key().to_cose_key()),
        get_str(sender, "sign_cose_key_hex")?,
        "sender COSE_Key"
    );
    // What the opener trusts (defaults to the sender's key and agency).
    let trusted = match v.get("trusted_sender") {
        Some(t) => SenderKey {
            agency: AgencyId::new(get_str(t, "agency")?)?,
            key: VerifyingKey::from_cose_key(&hex::decode(get_str(t, "cose_key_hex")?)?)?,
            valid_from: t.get("valid_from").and_then(Json::as_u64),
            valid_until: t.get("valid_until").and_then(Json::as_u64),
            revoked_at: t.get("revoked_at").and_then(Json::as_u64),
        },
        None => SenderKey {
            agency: AgencyId::new(get_str(sender, "agency")?)?,
            key: signer.verifying_key().clone(),
            valid_from: None,
            valid_until: None,
            revoked_at: None,
        },
    };
    let mut limits = Limits::default();
    if let Some(max) = v.get("limits").and_then(|l| l.get("max_envelope_bytes")) {
        limits.max_envelope_bytes = usize::try_from(max.as_u64().ok_or("limit")?)?;
    }
    if let Some(grace) = v.get("limits").and_then(|l| l.get("revocation_grace_secs")) {
        limits.revocation_grace_secs = grace.as_u64().ok_or("grace")?;
    }
    let envelope = hex::decode(get_str(&v, "envelope_hex")?)?;
    let now = get_u64(&v, "now")?;
    let opener = Opener {
        me: &me,
        keys: &keys,
        limits,
    };
    let senders = vec![trusted];
    let mut replay = MemoryReplayGuard::default();
    let mut result = opener.open(&envelope, now, &senders, &mut replay);
    if v.get("open_twice").and_then(Json::as_bool) == Some(true) {
        assert!(
            result.is_ok(),
            "first open of a replay vector must succeed: {result:?}"
        );
        result = opener.open(&envelope, now + 1, &senders, &mut replay);
    }
    let expect = get(&v, "expect")?;
    if expect == "ok" {
        let opened = result.map_err(|e| format!("expected ok, got {e:?}"))?;
        assert_eq!(
            message_json(&opened.message)?,
            *get(&v, "message")?,
            "message"
        );
        let want = message_from_json(get(&v, "message")?)?;
        assert_eq!(opened.message, want, "message from JSON");
        assert_eq!(
            hex::encode(claims_bytes(&opened.message)?),
            get_str(&v, "claims_hex")?
        );
        assert_eq!(hex::encode(&opened.signed), get_str(&v, "signed_hex")?);
        assert_eq!(opened.envelope_digest, Digest::sha256(&envelope));
        if signer.algorithm() == SignatureAlgorithm::Ed25519 {
            // Ed25519 is deterministic: re-signing reproduces the bytes.
            let again = signed_bytes(&want, &signer, &ring::rand::SystemRandom::new())?;
            assert_eq!(
                hex::encode(again),
                get_str(&v, "signed_hex")?,
                "re-signed bytes"
            );
        }
    } else {
        let want_code = get_str(expect, "error")?;
        let err = match result {
            Ok(_) => return Err(format!("expected error {want_code}, got ok").into()),
            Err(e) => e,
        };
        assert_eq!(err.code().as_str(), want_code, "error code ({err:?})");
        if let Some(detail) = expect.get("detail").and_then(Json::as_str) {
            match &err {
                OpenError::Unauthentic(u) => assert_eq!(u.detail().as_str(), detail),
                other => {
                    return Err(
                        format!("expected unauthentic detail {detail}, got {other:?}").into(),
                    )
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_envelope_vector() -> TestResult {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vector_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the full vector set, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        if let Err(e) = run_vector(f) {
            failures.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "failing vectors:\n{}",
        failures.join("\n")
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Generator

mod generate {
    use super::*;
    use ciborium::value::Value;
    use ring::rand::SystemRandom;

    pub(super) const NOW: u64 = 1_793_000_000;

    pub(super) struct Party {
        pub(super) agency: AgencyId,
        pub(super) sign: SigningKey,
        pub(super) enc: EncryptionKey,
    }

    pub(super) fn party(
        id: &str,
        alg: SignatureAlgorithm,
        curve: EncryptionCurve,
    ) -> Result<Party, Box<dyn std::error::Error>> {
        let rng = SystemRandom::new();
        Ok(Party {
            agency: AgencyId::new(id)?,
            sign: SigningKey::generate(alg, &rng)?,
            enc: EncryptionKey::generate(curve, &rng)?,
        })
    }

    pub(super) fn mla_request() -> Body {
        Body::MlaRequest(Box::new(MlaRequest {
            reference: "IQ-MOI-AHTD-2026-0042".into(),
            requesting_authority:
                "مديرية مكافحة الاتجار بالبشر — Anti-Trafficking Directorate, Ministry of Interior"
                    .into(),
            requested_authority: Some("Ministère de la Justice, BEPI".into()),
            subject: "Recruitment of Iraqi nationals through fictitious job offers".into(),
            nature: ProceedingNature::Investigation,
            summary_of_facts: "Between 2025 and 2026 a network recruited victims online and moved them through third countries.".into(),
            offences: vec![Offence {
                description: "trafficking in persons".into(),
                legal_provision: "Law No. 28 of 2012, art. 6".into(),
                penalty: "imprisonment up to 15 years".into(),
            }],
            assistance_sought: vec![AssistanceType::Records, AssistanceType::LocatingPersons],
            assistance_details:
                "Subscriber records for two telephone numbers; current address of one suspect."
                    .into(),
            persons: vec![Person {
                role: PersonRole::Suspect,
                name: "أحمد علي".into(),
                name_latin: Some("Ahmed Ali".into()),
                date_of_birth: Some("1988-03-14".into()),
                nationality: Some("IQ".into()),
                identifiers: None,
            }],
            procedure: None,
            confidentiality: Confidentiality {
                required: true,
                reason: Some("ongoing investigation".into()),
            },
            urgency: Urgency::Urgent,
            deadline: Some(Deadline {
                date: "2026-12-15".into(),
                reason: Some("trial date".into()),
            }),
            legal_basis: vec!["UNTOC art. 18".into()],
            case_references: vec![CaseReference {
                authority: "Baghdad Investigative Court".into(),
                reference: "2026/117".into(),
            }],
            attachments: Vec::new(),
            extensions: Extensions::new(),
        }))
    }

    pub(super) fn intel() -> Body {
        Body::IntelShare(Box::new(IntelShare {
            share_id: MessageId::from_bytes([7; 16]),
            handling: HandlingCode::H2,
            source_grading: SourceGrading::B,
            information_grading: 2,
            tlp: Tlp::AmberStrict,
            classification: "RESTRICTED".into(),
            case_id: Some("AHTD-OPS-19".into()),
            summary: "Boat departure planned".into(),
            content: "A crossing is planned for the first week of December.".into(),
            entities: vec![Entity {
                entity_type: EntityType::Phone,
                value: "+964 770 000 0000".into(),
                note: None,
            }],
            originator: None,
            permission: None,
            attachments: Vec::new(),
            extensions: Extensions::new(),
        }))
    }

    pub(super) fn msg(
        from: &Party,
        to: &AgencyId,
        body: Body,
    ) -> Result<Message, Box<dyn std::error::Error>> {
        Ok(Message {
            header: Header {
                id: MessageId::random(&SystemRandom::new())?,
                sender: from.agency.clone(),
                recipient: to.clone(),
                created: NOW - 60,
                expires: NOW + 7 * 86400,
            },
            body,
        })
    }

    pub(super) fn claims_value(m: &Message) -> Result<Value, Box<dyn std::error::Error>> {
        Ok(ciborium::de::from_reader(claims_bytes(m)?.as_slice())?)
    }

    pub(super) fn map_set(v: &mut Value, key: &str, new: Value) {
        if let Value::Map(entries) = v {
            entries.retain(|(k, _)| k.as_text() != Some(key));
            entries.push((Value::Text(key.into()), new));
        }
    }

    /// Writes an `ok` vector: `body` from `from` to `to`, signed and encrypted.
    pub(super) fn write_ok(
        name: &str,
        desc: &str,
        from: &Party,
        to: &Party,
        body: Body,
        rng: &SystemRandom,
    ) -> TestResult {
        let m = msg(from, &to.agency, body)?;
        let signed = signed_bytes(&m, &from.sign, rng)?;
        let env = testing::encrypt_raw(&signed, to.enc.public_key(), rng)?;
        let v = json!({
            "description": desc,
            "expect": "ok",
            "message": message_json(&m)?,
            "claims_hex": hex::encode(claims_bytes(&m)?),
            "signed_hex": hex::encode(&signed),
        });
        write(name, v, from, to, &env)
    }

    pub(super) fn write(
        name: &str,
        mut v: Json,
        from: &Party,
        to: &Party,
        envelope: &[u8],
    ) -> TestResult {
        v["sender"] = json!({
            "agency": from.agency.as_str(),
            "sign_pkcs8_pem": from.sign.to_pkcs8_pem().as_str(),
            "sign_cose_key_hex": hex::encode(from.sign.verifying_key().to_cose_key()),
        });
        v["recipient"] = json!({
            "agency": to.agency.as_str(),
            "enc_pkcs8_pem": to.enc.to_pkcs8_pem().as_str(),
            "enc_cose_key_hex": hex::encode(to.enc.public_key().to_cose_key()),
        });
        v["envelope_hex"] = json!(hex::encode(envelope));
        if v.get("now").is_none() {
            v["now"] = json!(NOW);
        }
        let path = vector_dir().join(format!("{name}.json"));
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
        Ok(())
    }
}

#[test]
#[ignore = "writes spec/vectors/envelope; run with ISNAD_WRITE_VECTORS=1"]
fn regenerate_vectors() -> TestResult {
    use ciborium::value::Value;
    use generate::*;
    use isnad_envelope::testing::{deterministic, encrypt_raw, sign_raw_claims};
    if std::env::var("ISNAD_WRITE_VECTORS").as_deref() != Ok("1") {
        return Ok(());
    }
    let rng = ring::rand::SystemRandom::new();
    let limits = Limits::default();
    let a = party(
        "iq.moi.ahtd",
        SignatureAlgorithm::Ed25519,
        EncryptionCurve::P256,
    )?;
    let b = party(
        "iq.moj.ca",
        SignatureAlgorithm::Es256,
        EncryptionCurve::P256,
    )?;
    let c = party(
        "fr.mj.bepi",
        SignatureAlgorithm::Es256,
        EncryptionCurve::X25519,
    )?;
    let d = party(
        "fr.pn.ocrtis",
        SignatureAlgorithm::Ed25519,
        EncryptionCurve::X25519,
    )?;

    // Positive vectors: each signer algorithm with each recipient curve, each kind.
    let ok = |name: &str, desc: &str, from: &Party, to: &Party, body: Body| {
        write_ok(name, desc, from, to, body, &rng)
    };
    ok(
        "ok-ed25519-p256-mla-request",
        "Ed25519 signer, P-256 recipient, mla-request with Arabic and Latin text",
        &a,
        &b,
        mla_request(),
    )?;
    ok(
        "ok-es256-x25519-intel-share",
        "ES256 signer, X25519 recipient, intel-share H2 TLP:AMBER+STRICT",
        &b,
        &c,
        intel(),
    )?;
    ok(
        "ok-ed25519-x25519-receipt",
        "Ed25519 signer, X25519 recipient, receipt",
        &a,
        &d,
        Body::Receipt(Receipt {
            message_id: MessageId::from_bytes([1; 16]),
            envelope_digest: Digest::sha256(b"envelope"),
            log_index: 41,
            received_at: NOW - 120,
            attachments: Vec::new(),
        }),
    )?;
    ok(
        "ok-es256-p256-mla-status",
        "ES256 signer, P-256 recipient, mla-status refused with grounds",
        &c,
        &a,
        Body::MlaStatus(MlaStatus {
            request_id: MessageId::from_bytes([2; 16]),
            status: MlaState::Refused,
            reason: Some("dual criminality not met".into()),
            refusal_grounds: vec![RefusalGround::DualCriminality],
            previous: None,
            attachments: Vec::new(),
            extensions: Extensions::new(),
        }),
    )?;
    ok(
        "ok-ed25519-p256-error",
        "error message",
        &d,
        &b,
        Body::Error(ErrorBody {
            code: ErrorCode::PolicyDenied,
            message_id: Some(MessageId::from_bytes([3; 16])),
            detail: Some("rule iq-out-1".into()),
        }),
    )?;
    let mut with_ext = mla_request();
    if let Body::MlaRequest(r) = &mut with_ext {
        r.extensions
            .insert("x-case-system-ref".into(), Value::Text("CMS-88812".into()));
    }
    ok(
        "ok-extension-preserved",
        "an x- extension key in an mla-request body is preserved",
        &a,
        &b,
        with_ext,
    )?;

    // Negative vectors.
    let neg = |name: &str,
               desc: &str,
               from: &Party,
               to: &Party,
               env: &[u8],
               expect: Json,
               extra: Json|
     -> TestResult {
        let mut v = json!({ "description": desc, "expect": expect });
        if let Json::Object(m) = extra {
            for (k, val) in m {
                v[k] = val;
            }
        }
        write(name, v, from, to, env)
    };
    let err = |code: &str| json!({ "error": code });
    let unauth = |detail: &str| json!({ "error": "unauthentic", "detail": detail });
    let sealed = |from: &Party, to: &Party, m: &Message| {
        seal(m, &from.sign, to.enc.public_key(), &limits, &rng)
    };
    let base = msg(&a, &b.agency, mla_request())?;
    let good = sealed(&a, &b, &base)?;
    let key_of = |p: &Party| hex::encode(p.sign.verifying_key().to_cose_key());

    let mut t = good.clone();
    let mid = t.len() - 200;
    t[mid] ^= 0x01;
    neg(
        "err-tampered-ciphertext",
        "one bit of the ciphertext flipped",
        &a,
        &b,
        &t,
        unauth("decrypt-failed"),
        json!({}),
    )?;

    let mut signed = signed_bytes(&base, &a.sign, &rng)?;
    let last = signed.len() - 1;
    signed[last] ^= 0x01;
    let env = encrypt_raw(&signed, b.enc.public_key(), &rng)?;
    neg(
        "err-tampered-signature",
        "signature bit flipped, then correctly encrypted",
        &a,
        &b,
        &env,
        unauth("bad-signature"),
        json!({}),
    )?;

    let misaddressed = msg(&a, &AgencyId::new("iq.moj.other")?, mla_request())?;
    neg(
        "err-wrong-recipient",
        "signed for iq.moj.other, encrypted to iq.moj.ca's key",
        &a,
        &b,
        &sealed(&a, &b, &misaddressed)?,
        err("misaddressed"),
        json!({}),
    )?;
    neg(
        "err-wrong-recipient-key",
        "encrypted to another agency's key",
        &a,
        &b,
        &sealed(&a, &c, &base)?,
        unauth("unknown-recipient-key"),
        json!({}),
    )?;
    neg(
        "err-expired",
        "opened after exp",
        &a,
        &b,
        &good,
        err("expired"),
        json!({ "now": NOW + 8 * 86400 }),
    )?;
    neg(
        "err-not-yet-valid",
        "iat more than 300 s ahead of now",
        &a,
        &b,
        &good,
        err("not-yet-valid"),
        json!({ "now": NOW - 60 - 301 }),
    )?;
    neg(
        "err-replayed",
        "the same envelope opened twice",
        &a,
        &b,
        &good,
        err("replayed"),
        json!({ "open_twice": true }),
    )?;
    neg(
        "err-unknown-kid",
        "signer key not trusted",
        &a,
        &b,
        &good,
        unauth("unknown-sender-key"),
        json!({ "trusted_sender": { "agency": "iq.moi.ahtd", "cose_key_hex": key_of(&c) } }),
    )?;
    neg(
        "err-sender-mismatch",
        "signer key belongs to another agency than the from claim",
        &a,
        &b,
        &good,
        unauth("sender-mismatch"),
        json!({ "trusted_sender": { "agency": "iq.moi.other", "cose_key_hex": key_of(&a) } }),
    )?;
    neg(
        "err-revoked-key",
        "signer key revoked before the message's creation time",
        &a,
        &b,
        &good,
        unauth("key-not-valid"),
        json!({ "trusted_sender": { "agency": "iq.moi.ahtd", "cose_key_hex": key_of(&a), "valid_until": NOW - 3600 } }),
    )?;
    neg(
        "ok-revoked-after-creation",
        "signer key revoked after the message's creation time: accepted",
        &a,
        &b,
        &good,
        json!("ok"),
        json!({
            "trusted_sender": { "agency": "iq.moi.ahtd", "cose_key_hex": key_of(&a), "valid_until": NOW - 30 },
            "message": message_json(&base)?,
            "claims_hex": hex::encode(claims_bytes(&base)?),
            "signed_hex": hex::encode(signed_bytes(&base, &a.sign, &rng)?),
        }),
    )?;
    // Revocation judged at receipt (protocol.md §5.2 step 9c): the message
    // claims creation before the revocation (iat = NOW - 60, revoked at
    // NOW - 30), as a thief holding the key would backdate it.
    let revoked = |now: u64, limits: Option<Json>| {
        let mut v = json!({
            "trusted_sender": {
                "agency": "iq.moi.ahtd",
                "cose_key_hex": key_of(&a),
                "valid_until": NOW - 30,
                "revoked_at": NOW - 30,
            },
            "now": now,
        });
        if let Some(l) = limits {
            v["limits"] = l;
        }
        v
    };
    let mut within = revoked(NOW - 30 + 599, None);
    within["message"] = message_json(&base)?;
    within["claims_hex"] = json!(hex::encode(claims_bytes(&base)?));
    within["signed_hex"] = json!(hex::encode(signed_bytes(&base, &a.sign, &rng)?));
    neg(
        "ok-revoked-received-within-grace",
        "created before the revocation and received 599 s after it, within the 600 s grace: accepted",
        &a,
        &b,
        &good,
        json!("ok"),
        within,
    )?;
    neg(
        "err-revoked-received-after-grace",
        "created before the revocation but received 600 s after it, when the grace has run out",
        &a,
        &b,
        &good,
        unauth("key-revoked"),
        revoked(NOW - 30 + 600, None),
    )?;
    neg(
        "err-revoked-received-no-grace",
        "created before the revocation, received 30 s after it, with the grace configured to 0",
        &a,
        &b,
        &good,
        unauth("key-revoked"),
        revoked(NOW, Some(json!({ "revocation_grace_secs": 0 }))),
    )?;
    neg(
        "err-truncated",
        "last 10 bytes cut off",
        &a,
        &b,
        &good[..good.len() - 10],
        err("malformed"),
        json!({}),
    )?;
    let mut trailing = good.clone();
    trailing.push(0x00);
    neg(
        "err-trailing-bytes",
        "one byte after the COSE_Encrypt",
        &a,
        &b,
        &trailing,
        err("malformed"),
        json!({}),
    )?;
    neg(
        "err-oversize",
        "envelope larger than the configured limit of 512 bytes",
        &a,
        &b,
        &good,
        err("too-large"),
        json!({ "limits": { "max_envelope_bytes": 512 } }),
    )?;
    let mut deep = vec![0x81u8; 64];
    deep.push(0x00);
    neg(
        "err-deep-nesting",
        "64 nested arrays",
        &a,
        &b,
        &deep,
        err("malformed"),
        json!({}),
    )?;
    let mut indefinite = vec![0xd8, 0x60, 0x9f];
    indefinite.extend_from_slice(&[0x40; 4]);
    indefinite.push(0xff);
    neg(
        "err-indefinite-length",
        "indefinite-length array",
        &a,
        &b,
        &indefinite,
        err("malformed"),
        json!({}),
    )?;
    let mut encrypt0 = good.clone();
    encrypt0[1] = 0x10; // tag 96 (d8 60) becomes tag 16 (d8 10): COSE_Encrypt0
    neg(
        "err-wrong-tag",
        "COSE_Encrypt0 tag instead of COSE_Encrypt",
        &a,
        &b,
        &encrypt0,
        err("malformed"),
        json!({}),
    )?;

    // Claims-level faults: valid signatures over bad claims.
    let raw = |claims: Value| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let signed = sign_raw_claims(&deterministic(&claims), &a.sign, &rng)?;
        Ok(encrypt_raw(&signed, b.enc.public_key(), &rng)?)
    };
    let mut cv = claims_value(&base)?;
    map_set(&mut cv, "extra", Value::Bool(true));
    neg(
        "err-unknown-claim",
        "claims map has an unknown key",
        &a,
        &b,
        &raw(cv)?,
        err("malformed"),
        json!({}),
    )?;
    let mut cv = claims_value(&base)?;
    if let Some(Value::Map(body)) = cv
        .as_map_mut()
        .and_then(|m| m.iter_mut().find(|(k, _)| k.as_text() == Some("body")))
        .map(|(_, v)| v)
    {
        body.push((
            Value::Text("unexpected-field".into()),
            Value::Integer(1.into()),
        ));
    }
    neg(
        "err-unknown-body-field",
        "mla-request body has an unknown key not starting with x-",
        &a,
        &b,
        &raw(cv)?,
        err("malformed"),
        json!({}),
    )?;
    let mut cv = claims_value(&base)?;
    map_set(&mut cv, "v", Value::Integer(2.into()));
    neg(
        "err-unsupported-version",
        "claims v = 2",
        &a,
        &b,
        &raw(cv)?,
        err("unsupported-version"),
        json!({}),
    )?;
    let mut cv = claims_value(&base)?;
    map_set(&mut cv, "kind", Value::Text("mla-teleport".into()));
    neg(
        "err-unknown-kind",
        "kind not defined",
        &a,
        &b,
        &raw(cv)?,
        err("malformed"),
        json!({}),
    )?;
    let mut cv = claims_value(&base)?;
    map_set(&mut cv, "exp", Value::Integer((NOW - 120).into()));
    neg(
        "err-exp-before-iat",
        "exp earlier than iat",
        &a,
        &b,
        &raw(cv)?,
        err("malformed"),
        json!({}),
    )?;

    // Low-order X25519 ephemeral point.
    fn eph_x(ev: &mut Value) -> Option<&mut Value> {
        match ev {
            Value::Tag(_, inner) => inner
                .as_array_mut()
                .and_then(|a| a.get_mut(3))
                .and_then(|r| r.as_array_mut())
                .and_then(|r| r.get_mut(0))
                .and_then(|r| r.as_array_mut())
                .and_then(|r| r.get_mut(1))
                .and_then(|h| h.as_map_mut())
                .and_then(|h| {
                    h.iter_mut()
                        .find(|(k, _)| k.as_integer() == Some((-1).into()))
                })
                .and_then(|(_, key)| key.as_map_mut())
                .and_then(|key| {
                    key.iter_mut()
                        .find(|(k, _)| k.as_integer() == Some((-2).into()))
                })
                .map(|(_, x)| x),
            _ => None,
        }
    }
    let to_x = sealed(&a, &d, &msg(&a, &d.agency, mla_request())?)?;
    let mut ev: Value = ciborium::de::from_reader(to_x.as_slice())?;
    *eph_x(&mut ev).ok_or("ephemeral x not found")? = Value::Bytes(vec![0; 32]);
    neg(
        "err-low-order-x25519",
        "X25519 ephemeral key is the all-zero (low-order) point",
        &a,
        &d,
        &deterministic(&ev),
        unauth("bad-ephemeral-key"),
        json!({}),
    )?;

    // Non-canonical X25519 ephemeral key: bit 255 set, which X25519 ignores.
    let to_x = sealed(&a, &d, &msg(&a, &d.agency, mla_request())?)?;
    let mut ev: Value = ciborium::de::from_reader(to_x.as_slice())?;
    match eph_x(&mut ev) {
        Some(Value::Bytes(x)) if x.len() == 32 => x[31] |= 0x80,
        _ => return Err("ephemeral x not found".into()),
    }
    neg(
        "err-noncanonical-x25519-ephemeral",
        "X25519 ephemeral key not canonical: bit 255 set (X25519 would ignore it)",
        &a,
        &d,
        &deterministic(&ev),
        unauth("bad-ephemeral-key"),
        json!({}),
    )?;
    Ok(())
}

/// Writes only the vectors of the case kinds (spec/protocol.md §13), so the
/// older files keep their bytes. `ISNAD_WRITE_CASE_VECTORS=1`.
#[test]
#[ignore = "writes the case vectors; run with ISNAD_WRITE_CASE_VECTORS=1"]
fn regenerate_case_vectors() -> TestResult {
    use ciborium::value::Value;
    use generate::*;
    use isnad_envelope::testing::{deterministic, encrypt_raw, sign_raw_claims};
    if std::env::var("ISNAD_WRITE_CASE_VECTORS").as_deref() != Ok("1") {
        return Ok(());
    }
    let rng = ring::rand::SystemRandom::new();
    let a = party(
        "iq.moi.ahtd",
        SignatureAlgorithm::Ed25519,
        EncryptionCurve::P256,
    )?;
    let c = party(
        "fr.pn.ocrtis",
        SignatureAlgorithm::Es256,
        EncryptionCurve::X25519,
    )?;
    let ok = |name: &str, desc: &str, from: &Party, to: &Party, body: Body| {
        write_ok(name, desc, from, to, body, &rng)
    };
    let share = MessageId::from_bytes([7; 16]);
    ok(
        "ok-es256-x25519-permission-request",
        "permission-request: a recipient asks the originator to pass a share on",
        &c,
        &a,
        Body::PermissionRequest(PermissionRequest {
            share_id: share,
            target: AgencyId::new("de.bka")?,
            purpose: "joint investigation team".into(),
        }),
    )?;
    let answer = Body::PermissionAnswer(PermissionAnswer {
        share_id: share,
        target: AgencyId::new("de.bka")?,
        decision: PermissionDecision::Granted,
        request_id: Some(MessageId::from_bytes([8; 16])),
        conditions: Some("not to be used as evidence".into()),
    });
    ok(
        "ok-ed25519-x25519-permission-answer",
        "permission-answer: the originator grants, with conditions",
        &a,
        &c,
        answer.clone(),
    )?;
    ok(
        "ok-ed25519-x25519-intel-retraction",
        "intel-retraction by the originator",
        &a,
        &c,
        Body::IntelRetraction(IntelRetraction {
            share_id: share,
            reason: "source compromised".into(),
        }),
    )?;
    ok(
        "ok-ed25519-x25519-intel-correction",
        "intel-correction replacing summary and content",
        &a,
        &c,
        Body::IntelCorrection(IntelCorrection {
            share_id: share,
            summary: Some("Departure postponed".into()),
            content: "The crossing is now planned for the second week of December.".into(),
            reason: "new information".into(),
        }),
    )?;
    ok(
        "ok-es256-p256-mla-status-previous",
        "mla-status naming the state it changes from",
        &c,
        &a,
        Body::MlaStatus(MlaStatus {
            request_id: MessageId::from_bytes([2; 16]),
            status: MlaState::SupplementRequested,
            previous: Some(MlaState::UnderReview),
            reason: Some("please state the account numbers".into()),
            refusal_grounds: vec![],
            attachments: Vec::new(),
            extensions: Extensions::new(),
        }),
    )?;
    let mut forwarded = intel();
    if let Body::IntelShare(s) = &mut forwarded {
        s.originator = Some(a.agency.clone());
        s.permission = Some(MessageId::from_bytes([9; 16]));
    }
    ok(
        "ok-es256-p256-intel-share-forwarded",
        "intel-share passed on: names the originator and its permission-answer",
        &c,
        &a,
        forwarded.clone(),
    )?;

    // Negative: bodies that break the schema (each signed and encrypted correctly).
    let neg = |name: &str, desc: &str, body: Body, key: &str, value: Option<Value>| -> TestResult {
        let m = msg(&a, &c.agency, body)?;
        let mut cv = claims_value(&m)?;
        if let Value::Map(entries) = &mut cv {
            for (k, v) in entries.iter_mut() {
                if k.as_text() == Some("body") {
                    match &value {
                        Some(new) => map_set(v, key, new.clone()),
                        None => {
                            if let Value::Map(b) = v {
                                b.retain(|(bk, _)| bk.as_text() != Some(key));
                            }
                        }
                    }
                }
            }
        }
        let signed = sign_raw_claims(&deterministic(&cv), &a.sign, &rng)?;
        let env = encrypt_raw(&signed, c.enc.public_key(), &rng)?;
        let v = json!({ "description": desc, "expect": { "error": "malformed" } });
        write(name, v, &a, &c, &env)
    };
    neg(
        "err-permission-answer-bad-decision",
        "permission-answer decision is neither granted nor denied",
        answer.clone(),
        "decision",
        Some(Value::Text("maybe".into())),
    )?;
    neg(
        "err-permission-answer-no-target",
        "permission-answer without target",
        answer,
        "target",
        None,
    )?;
    neg(
        "err-retraction-extension",
        "intel-retraction body with an x- key (no extensions for this kind)",
        Body::IntelRetraction(IntelRetraction {
            share_id: share,
            reason: "r".into(),
        }),
        "x-note",
        Some(Value::Text("n".into())),
    )?;
    neg(
        "err-correction-empty-content",
        "intel-correction with empty content",
        Body::IntelCorrection(IntelCorrection {
            share_id: share,
            summary: None,
            content: "new".into(),
            reason: "r".into(),
        }),
        "content",
        Some(Value::Text(" ".into())),
    )?;
    neg(
        "err-share-permission-without-originator",
        "intel-share with permission but no originator",
        forwarded,
        "originator",
        None,
    )?;
    neg(
        "err-status-unknown-previous",
        "mla-status previous is not a state",
        Body::MlaStatus(MlaStatus {
            request_id: MessageId::from_bytes([2; 16]),
            status: MlaState::Registered,
            previous: Some(MlaState::Delivered),
            reason: None,
            refusal_grounds: vec![],
            attachments: Vec::new(),
            extensions: Extensions::new(),
        }),
        "previous",
        Some(Value::Text("teleported".into())),
    )?;
    Ok(())
}

/// Writes only the attachment vectors (spec/protocol.md §12.3, bodies with
/// `attachments`, receipts binding them), so older files keep their bytes.
/// `ISNAD_WRITE_ATTACHMENT_VECTORS=1`.
#[test]
#[ignore = "writes the attachment vectors; run with ISNAD_WRITE_ATTACHMENT_VECTORS=1"]
fn regenerate_attachment_vectors() -> TestResult {
    use ciborium::value::Value;
    use generate::*;
    use isnad_envelope::testing::{deterministic, encrypt_raw, sign_raw_claims};
    if std::env::var("ISNAD_WRITE_ATTACHMENT_VECTORS").as_deref() != Ok("1") {
        return Ok(());
    }
    let rng = ring::rand::SystemRandom::new();
    let a = party(
        "iq.moi.ahtd",
        SignatureAlgorithm::Ed25519,
        EncryptionCurve::P256,
    )?;
    let c = party(
        "fr.pn.ocrtis",
        SignatureAlgorithm::Ed25519,
        EncryptionCurve::X25519,
    )?;
    let report = isnad_attach::testing::fixed(
        "extraction-report",
        &[0x5a; 300],
        64,
        "extraction-report.pdf",
        "application/pdf",
    )?
    .0;
    let video = isnad_attach::testing::fixed("cctv", &[], 64, "cctv.mp4", "video/mp4")?.0;
    let results = |attachments: Vec<isnad_attach::AttachmentDescriptor>| {
        Body::MlaStatus(MlaStatus {
            request_id: MessageId::from_bytes([2; 16]),
            status: MlaState::ResultsTransmitted,
            previous: Some(MlaState::InExecution),
            reason: Some("phone extraction and CCTV".into()),
            refusal_grounds: vec![],
            attachments,
            extensions: Extensions::new(),
        })
    };
    write_ok(
        "ok-ed25519-p256-mla-status-attachments",
        "mla-status results-transmitted with two attachments (one empty file)",
        &c,
        &a,
        results(vec![report.clone(), video.clone()]),
        &rng,
    )?;
    let mut request = mla_request();
    if let Body::MlaRequest(r) = &mut request {
        let letter = isnad_attach::testing::fixed(
            "letter",
            b"Letter of request, signed and sealed.",
            64,
            "letter-of-request.pdf",
            "application/pdf",
        )?
        .0;
        r.attachments = vec![letter];
    }
    write_ok(
        "ok-ed25519-x25519-mla-request-attachment",
        "mla-request with the letter of request attached",
        &a,
        &c,
        request,
        &rng,
    )?;
    let mut share = intel();
    if let Body::IntelShare(s) = &mut share {
        s.attachments = vec![video.clone()];
    }
    write_ok(
        "ok-ed25519-x25519-intel-share-attachment",
        "intel-share with one attachment",
        &a,
        &c,
        share,
        &rng,
    )?;
    let receipt = Body::Receipt(Receipt {
        message_id: MessageId::from_bytes([3; 16]),
        envelope_digest: Digest([0xab; 32]),
        log_index: 41,
        received_at: NOW - 120,
        attachments: vec![
            ReceivedAttachment::of(&report),
            ReceivedAttachment::of(&video),
        ],
    });
    write_ok(
        "ok-ed25519-p256-receipt-attachments",
        "receipt binding the digest, size, ciphertext root and size of two attachments",
        &a,
        &c,
        receipt.clone(),
        &rng,
    )?;

    // Negative: bodies that break the attachment rules, each signed and
    // encrypted correctly.
    let neg = |name: &str, desc: &str, body: Body, key: &str, value: Value| -> TestResult {
        let m = msg(&c, &a.agency, body)?;
        let mut cv = claims_value(&m)?;
        if let Value::Map(entries) = &mut cv {
            for (k, v) in entries.iter_mut() {
                if k.as_text() == Some("body") {
                    map_set(v, key, value.clone());
                }
            }
        }
        let signed = sign_raw_claims(&deterministic(&cv), &c.sign, &rng)?;
        let env = encrypt_raw(&signed, a.enc.public_key(), &rng)?;
        let v = json!({ "description": desc, "expect": { "error": "malformed" } });
        write(name, v, &c, &a, &env)
    };
    let descriptor_value = |d: &isnad_attach::AttachmentDescriptor| -> Result<Value, String> {
        ciborium::de::from_reader(d.encode().as_slice()).map_err(|e| e.to_string())
    };
    let one = results(vec![report.clone()]);
    neg(
        "err-status-attachments-not-results",
        "mla-status in-execution with an attachment (only results-transmitted carries any)",
        one.clone(),
        "status",
        Value::Text("in-execution".into()),
    )?;
    let nine: Vec<Value> = (0..9u8)
        .map(|i| {
            isnad_attach::testing::fixed(
                &format!("many-{i}"),
                &[i],
                64,
                "part.bin",
                "application/octet-stream",
            )
            .map_err(|e| e.to_string())
            .and_then(|(d, _)| descriptor_value(&d))
        })
        .collect::<Result<_, _>>()?;
    neg(
        "err-too-many-attachments",
        "mla-status with 9 attachments, one more than the limit of 8",
        one.clone(),
        "attachments",
        Value::Array(nine),
    )?;
    neg(
        "err-attachment-repeated",
        "the same attachment (same ciphertext root) listed twice",
        one.clone(),
        "attachments",
        Value::Array(vec![descriptor_value(&report)?, descriptor_value(&report)?]),
    )?;
    let mut bad = descriptor_value(&report)?;
    map_set(&mut bad, "name", Value::Text("../evidence.pdf".into()));
    neg(
        "err-attachment-name-path",
        "an attachment whose file name is a path",
        one.clone(),
        "attachments",
        Value::Array(vec![bad]),
    )?;
    let mut bad = descriptor_value(&report)?;
    map_set(&mut bad, "size", Value::Integer(301.into()));
    neg(
        "err-attachment-sizes",
        "an attachment whose size does not give its ciphertext size",
        one,
        "attachments",
        Value::Array(vec![bad]),
    )?;
    let mut extra = Value::serialized(&ReceivedAttachment::of(&report))?;
    map_set(
        &mut extra,
        "name",
        Value::Text("extraction-report.pdf".into()),
    );
    neg(
        "err-receipt-attachment-unknown-key",
        "a receipt whose attachment entry carries a key the schema does not have",
        receipt.clone(),
        "attachments",
        Value::Array(vec![extra]),
    )?;
    let mut short = Value::serialized(&ReceivedAttachment::of(&report))?;
    map_set(&mut short, "digest", Value::Bytes(vec![0; 31]));
    neg(
        "err-receipt-attachment-short-digest",
        "a receipt whose attachment digest is 31 bytes",
        receipt,
        "attachments",
        Value::Array(vec![short]),
    )?;
    Ok(())
}
