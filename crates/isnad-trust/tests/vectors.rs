//! Runs every federation test vector in `spec/vectors/federation/` (format in
//! spec/federation.md §10). `ISNAD_WRITE_VECTORS=1 cargo test -p isnad-trust
//! --test vectors -- --ignored` regenerates the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isnad_envelope::{AgencyId, KeyId, Limits, VerifyingKey};
use isnad_trust::{verify_signed, Accepted, Change, Directory, TrustStore};
use serde_json::{json, Value as Json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Fewer files than this means vectors went missing.
const EXPECTED_VECTORS: usize = 19;

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/federation")
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

/// A change as written in vectors: `"<kind> <agency>"` or `"policy-changed"`.
fn change_text(c: &Change) -> String {
    match c {
        Change::AgencyAdded(a) => format!("agency-added {a}"),
        Change::AgencyRemoved(a) => format!("agency-removed {a}"),
        Change::KeyAdded { agency, kid } => format!("key-added {agency} {}", kid.to_hex()),
        Change::KeyRotated { agency, kid, until } => {
            format!("key-rotated {agency} {} {until}", kid.to_hex())
        }
        Change::KeyRevoked {
            agency, kid, at, ..
        } => format!("key-revoked {agency} {} {at}", kid.to_hex()),
        Change::ContactChanged(a) => format!("contact-changed {a}"),
        Change::PolicyChanged => "policy-changed".into(),
        other => format!("{other:?}"),
    }
}

fn run_vector(path: &Path) -> TestResult {
    let v: Json = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let own = get_str(&v, "own_country")?;
    let mut roots = BTreeMap::new();
    for (cc, hex) in get(&v, "roots")?
        .as_object()
        .ok_or("\"roots\" must be an object")?
    {
        let hex = hex.as_str().ok_or("root must be hex")?;
        roots.insert(cc.clone(), VerifyingKey::from_cose_key(&hex::decode(hex)?)?);
    }
    let mut store = TrustStore::new(own, roots.get(own).ok_or("no own root")?.clone());
    for (cc, key) in &roots {
        store.add_partner(cc, key.clone())?;
    }
    let now = get_u64(&v, "now")?;
    if let Some(held) = v.get("held") {
        for h in held.as_array().ok_or("\"held\" must be an array")? {
            let bytes = hex::decode(h.as_str().ok_or("held must be hex")?)?;
            store
                .accept(&bytes, now)
                .map_err(|e| format!("held directory refused: {e}"))?;
        }
    }
    let signed = hex::decode(get_str(&v, "signed_hex")?)?;
    let result = store.accept(&signed, now);
    let expect = get(&v, "expect")?;
    match expect.as_str() {
        Some("ok") => {
            let Accepted::Updated {
                country,
                version,
                changes,
            } = result.map_err(|e| format!("expected ok, got {e:?}"))?
            else {
                return Err("expected ok, got unchanged".into());
            };
            assert_eq!(country, get_str(&v, "country")?, "country");
            assert_eq!(version, get_u64(&v, "version")?, "version");
            let d = &store.directories()[&country].directory;
            let ids: Vec<&str> = d.agencies.iter().map(|a| a.id.as_str()).collect();
            let want: Vec<&str> = get(&v, "agencies")?
                .as_array()
                .ok_or("\"agencies\" must be an array")?
                .iter()
                .filter_map(Json::as_str)
                .collect();
            assert_eq!(ids, want, "agency ids");
            let changes: Vec<String> = changes.iter().map(change_text).collect();
            let want: Vec<String> = serde_json::from_value(get(&v, "changes")?.clone())?;
            assert_eq!(changes, want, "changes");
            // The payload is the deterministic encoding of what was accepted.
            let payload = hex::decode(get_str(&v, "payload_hex")?)?;
            assert_eq!(&Directory::from_cbor(&payload)?, d, "payload decodes");
            assert_eq!(d.to_cbor()?, payload, "deterministic re-encoding");
            let root = &roots[&country];
            assert_eq!(&verify_signed(&signed, root)?, d, "verify_signed");
            if let Some(keys) = v.get("sender_keys") {
                check_sender_keys(&store, keys, now)?;
            }
        }
        Some("unchanged") => {
            let r = result.map_err(|e| format!("expected unchanged, got {e:?}"))?;
            assert_eq!(r, Accepted::Unchanged);
        }
        _ => {
            let want = get_str(expect, "error")?;
            match result {
                Ok(r) => return Err(format!("expected error {want}, got {r:?}").into()),
                Err(e) => assert_eq!(e.code(), want, "error ({e})"),
            }
        }
    }
    Ok(())
}

/// The `sender_keys` of a vector: what the store hands the envelope opener
/// for a signing key, and whether that key authenticates a message created
/// and received at given times (spec/protocol.md §5.2 steps 9b, 9c).
fn check_sender_keys(store: &TrustStore, keys: &Json, now: u64) -> TestResult {
    for k in keys.as_array().ok_or("\"sender_keys\" must be an array")? {
        let kid: [u8; 32] = hex::decode(get_str(k, "kid")?)?
            .try_into()
            .map_err(|_| "kid must be 32 bytes")?;
        let kid = KeyId::from_bytes(kid);
        let found = store
            .sender_key(&kid, now)
            .ok_or_else(|| format!("signing key {} not found", kid.to_hex()))?;
        assert_eq!(found.agency.as_str(), get_str(k, "agency")?, "agency");
        assert_eq!(
            found.valid_from,
            get(k, "valid_from")?.as_u64(),
            "valid_from"
        );
        assert_eq!(
            found.valid_until,
            get(k, "valid_until")?.as_u64(),
            "valid_until"
        );
        assert_eq!(
            found.revoked_at,
            get(k, "revoked_at")?.as_u64(),
            "revoked_at"
        );
        for c in get(k, "checks")?
            .as_array()
            .ok_or("\"checks\" must be an array")?
        {
            let mut limits = Limits::default();
            if let Some(g) = c.get("revocation_grace_secs") {
                limits.revocation_grace_secs = g.as_u64().ok_or("grace")?;
            }
            let created = get_u64(c, "created")?;
            let received = get(c, "received")?.as_u64();
            let got = match found.authenticates(created, received, &limits) {
                Ok(()) => "ok",
                Err(d) => d.as_str(),
            };
            assert_eq!(got, get_str(c, "expect")?, "check {c}");
        }
    }
    Ok(())
}

#[test]
fn every_federation_vector() -> TestResult {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vector_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= EXPECTED_VECTORS,
        "expected at least {EXPECTED_VECTORS} vectors, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        if let Err(e) = std::panic::catch_unwind(|| run_vector(f))
            .map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".into())
            })
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
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
    use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable as _};
    use isnad_envelope::cbor::to_deterministic_vec;
    use isnad_envelope::{EncryptionCurve, EncryptionKey, Kind, SignatureAlgorithm, SigningKey};
    use isnad_trust::{AgencyEntry, KeyEntry, Role, Rule, Selector, DIRECTORY_CONTENT_TYPE};
    use ring::rand::SystemRandom;

    pub(super) use isnad_trust::fuzzing::FUZZ_NOW as NOW;

    pub(super) type R<T> = Result<T, Box<dyn std::error::Error>>;

    pub(super) fn key(cose: Vec<u8>, from: u64) -> KeyEntry {
        KeyEntry {
            key: cose,
            valid_from: from,
            valid_until: None,
            revoked_at: None,
            revocation_reason: None,
        }
    }

    pub(super) fn agency(id: &str, role: Role, names: &[(&str, &str)]) -> R<AgencyEntry> {
        let rng = SystemRandom::new();
        let id = AgencyId::new(id)?;
        let sign = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
        let enc = EncryptionKey::generate(EncryptionCurve::X25519, &rng)?;
        let log = isnad_log::SignerKey::generate(&isnad_log::origin_for(&id), &rng)?;
        let tls = isnad_trust::tls::TlsIdentity::generate(&id)?;
        Ok(AgencyEntry {
            names: names
                .iter()
                .map(|(l, n)| ((*l).to_owned(), (*n).to_owned()))
                .collect(),
            role,
            endpoints: vec![format!("{}.example:7401", id.as_str().replace('.', "-"))],
            tls_spki_sha256: tls.spki_sha256()?,
            signing_keys: vec![key(sign.verifying_key().to_cose_key(), NOW - 30 * 86400)],
            encryption_keys: vec![key(enc.public_key().to_cose_key(), NOW - 30 * 86400)],
            log_key: Some(log.verifier().to_string()),
            witness_key: None,
            id,
        })
    }

    pub(super) fn directory(country: &str, version: u64, agencies: Vec<AgencyEntry>) -> Directory {
        let mut d = Directory::new(country);
        d.version = version;
        d.issued_at = NOW - 3600;
        d.valid_from = NOW - 86400;
        d.valid_until = NOW + 90 * 86400;
        d.agencies = agencies;
        d.policy.push(Rule {
            id: format!("{country}-ca-exchange"),
            from: Selector {
                role: Some(Role::CentralAuthority),
                ..Selector::default()
            },
            to: Selector {
                role: Some(Role::CentralAuthority),
                ..Selector::default()
            },
            kinds: vec![Kind::MlaRequest, Kind::MlaStatus, Kind::Receipt],
            via_central_authority: false,
        });
        d.policy.push(Rule {
            id: format!("{country}-police-relayed"),
            from: Selector {
                role: Some(Role::LawEnforcement),
                ..Selector::default()
            },
            to: Selector::default(),
            kinds: Vec::new(),
            via_central_authority: true,
        });
        d
    }

    /// Signs arbitrary payload bytes as a directory would be (no checks).
    pub(super) fn sign_raw(payload: Vec<u8>, root: &SigningKey, content_type: &str) -> R<Vec<u8>> {
        let alg = match root.algorithm() {
            SignatureAlgorithm::Ed25519 => iana::Algorithm::EdDSA,
            _ => iana::Algorithm::ES256,
        };
        let protected = HeaderBuilder::new()
            .algorithm(alg)
            .content_type(content_type.to_owned())
            .key_id(root.key_id().as_bytes().to_vec())
            .build();
        let rng = SystemRandom::new();
        let sign1 = CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .try_create_signature(&[], |tbs| root.sign(tbs, &rng))?
            .build();
        Ok(sign1
            .to_tagged_vec()
            .map_err(|e| format!("COSE encoding: {e:?}"))?)
    }

    pub(super) fn sign(d: &Directory, root: &SigningKey) -> R<Vec<u8>> {
        sign_raw(d.to_cbor()?, root, DIRECTORY_CONTENT_TYPE)
    }

    /// The directory's CBOR map with one more key (an unknown field).
    pub(super) fn with_unknown_field(d: &Directory) -> R<Vec<u8>> {
        let mut v = Value::serialized(d)?;
        if let Value::Map(m) = &mut v {
            m.push((
                Value::Text("note".into()),
                Value::Text("unsigned extra".into()),
            ));
        }
        Ok(to_deterministic_vec(&v))
    }

    pub(super) struct Roots(pub(super) Vec<(String, VerifyingKey)>);

    impl Roots {
        fn json(&self) -> Json {
            self.0
                .iter()
                .map(|(cc, k)| (cc.clone(), json!(hex::encode(k.to_cose_key()))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        }
    }

    pub(super) fn write(
        name: &str,
        desc: &str,
        roots: &Roots,
        held: &[&[u8]],
        signed: &[u8],
        now: u64,
        mut extra: Json,
    ) -> TestResult {
        let mut v = json!({
            "description": desc,
            "own_country": roots.0[0].0,
            "roots": roots.json(),
            "now": now,
            "signed_hex": hex::encode(signed),
        });
        if !held.is_empty() {
            v["held"] = held.iter().map(hex::encode).collect();
        }
        if let Some(m) = extra.as_object_mut() {
            for (k, x) in std::mem::take(m) {
                v[k] = x;
            }
        }
        let path = vector_dir().join(format!("{name}.json"));
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
        Ok(())
    }

    pub(super) fn ok_fields(d: &Directory, changes: &[String]) -> R<Json> {
        Ok(json!({
            "expect": "ok",
            "country": d.country,
            "version": d.version,
            "agencies": d.agencies.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            "changes": changes,
            "payload_hex": hex::encode(d.to_cbor()?),
        }))
    }

    pub(super) fn err(code: &str) -> Json {
        json!({ "expect": { "error": code } })
    }
}

#[test]
#[ignore = "writes spec/vectors/federation; run with ISNAD_WRITE_VECTORS=1"]
fn regenerate_vectors() -> TestResult {
    use generate::*;
    use isnad_envelope::{SignatureAlgorithm, SigningKey};
    use isnad_trust::{Role, DIRECTORY_CONTENT_TYPE};
    if std::env::var("ISNAD_WRITE_VECTORS").as_deref() != Ok("1") {
        return Ok(());
    }
    std::fs::create_dir_all(vector_dir())?;
    let rng = ring::rand::SystemRandom::new();
    // iq's root is the fixed test root, so the fuzz targets can verify seeds.
    let iq_root = isnad_trust::fuzzing::test_root().ok_or("test root")?;
    let fr_root = SigningKey::generate(SignatureAlgorithm::Es256, &rng)?;
    let stranger = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let iq_only = Roots(vec![("iq".into(), iq_root.verifying_key().clone())]);
    let iq_fr = Roots(vec![
        ("iq".into(), iq_root.verifying_key().clone()),
        ("fr".into(), fr_root.verifying_key().clone()),
    ]);

    let iq_ca = agency(
        "iq.moj.ca",
        Role::CentralAuthority,
        &[
            ("ar", "وزارة العدل — السلطة المركزية"),
            ("en", "Ministry of Justice — Central Authority"),
        ],
    )?;
    let iq_moi = agency(
        "iq.moi.ahtd",
        Role::LawEnforcement,
        &[
            ("ar", "مديرية مكافحة الاتجار بالبشر"),
            ("en", "Anti-Trafficking Directorate"),
        ],
    )?;
    let fr_ca = agency(
        "fr.mj.bepi",
        Role::CentralAuthority,
        &[
            ("fr", "Ministère de la Justice — BEPI"),
            ("en", "Ministry of Justice — BEPI"),
        ],
    )?;
    let iq1 = directory("iq", 1, vec![iq_ca.clone(), iq_moi.clone()]);
    let iq1_signed = sign(&iq1, &iq_root)?;
    let mut iq2 = iq1.clone();
    iq2.version = 2;
    iq2.agencies[1].endpoints = vec!["ahtd.moi.example.iq:7402".into()];
    let iq2_signed = sign(&iq2, &iq_root)?;
    let added = |d: &Directory| -> Vec<String> {
        d.agencies
            .iter()
            .map(|a| format!("agency-added {}", a.id))
            .collect()
    };

    // --- accepted ---
    write(
        "ok-own-country-first",
        "first directory of the own country: two agencies with Arabic and English names, two rules",
        &iq_only,
        &[],
        &iq1_signed,
        NOW,
        ok_fields(&iq1, &added(&iq1))?,
    )?;
    write(
        "ok-newer-version",
        "version 2 replaces version 1; an endpoint changed",
        &iq_only,
        &[&iq1_signed],
        &iq2_signed,
        NOW,
        ok_fields(&iq2, &["contact-changed iq.moi.ahtd".to_owned()])?,
    )?;
    write(
        "ok-same-bytes-unchanged",
        "the directory already held, offered again byte for byte: a no-op",
        &iq_only,
        &[&iq1_signed],
        &iq1_signed,
        NOW,
        json!({"expect": "unchanged"}),
    )?;
    // A partner (ES256 root) rotates its signing key with an overlap and
    // revokes its old encryption key.
    let fr1 = directory("fr", 7, vec![fr_ca.clone()]);
    let fr1_signed = sign(&fr1, &fr_root)?;
    let mut fr2 = fr1.clone();
    fr2.version = 8;
    let new_sign = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let new_enc =
        isnad_envelope::EncryptionKey::generate(isnad_envelope::EncryptionCurve::P256, &rng)?;
    let a = &mut fr2.agencies[0];
    a.signing_keys[0].valid_until = Some(NOW + 7 * 86400);
    a.signing_keys
        .push(key(new_sign.verifying_key().to_cose_key(), NOW - 3600));
    a.encryption_keys[0].revoked_at = Some(NOW - 600);
    a.encryption_keys[0].revocation_reason = Some("key compromise".into());
    a.encryption_keys
        .push(key(new_enc.public_key().to_cose_key(), NOW - 3600));
    let kid = |k: &isnad_trust::KeyEntry| -> R<String> {
        Ok(VerifyingKey::from_cose_key(&k.key)
            .map(|v| v.key_id())
            .or_else(|_| {
                isnad_envelope::EncryptionPublicKey::from_cose_key(&k.key).map(|e| e.key_id())
            })?
            .to_hex())
    };
    let a = &fr2.agencies[0];
    let fr_changes = vec![
        format!(
            "key-rotated fr.mj.bepi {} {}",
            kid(&a.signing_keys[0])?,
            NOW + 7 * 86400
        ),
        format!("key-added fr.mj.bepi {}", kid(&a.signing_keys[1])?),
        format!(
            "key-revoked fr.mj.bepi {} {}",
            kid(&a.encryption_keys[0])?,
            NOW - 600
        ),
        format!("key-added fr.mj.bepi {}", kid(&a.encryption_keys[1])?),
    ];
    let fr2_signed = sign(&fr2, &fr_root)?;
    write(
        "ok-partner-rotation-and-revocation",
        "partner fr (ES256 root) version 8: signing key rotated with a 7-day overlap, old encryption key revoked, new keys added",
        &iq_fr,
        &[&fr1_signed],
        &fr2_signed,
        NOW,
        ok_fields(&fr2, &fr_changes)?,
    )?;

    // The partner revokes its signing key (suspected compromise) and adds a
    // new one: the key keeps authenticating what arrived before the
    // revocation and its grace, and nothing received after, whatever
    // creation time a message claims.
    let mut fr3 = fr1.clone();
    fr3.version = 8;
    let next_sign = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let a = &mut fr3.agencies[0];
    a.signing_keys[0].revoked_at = Some(NOW - 600);
    a.signing_keys[0].revocation_reason = Some("key compromise".into());
    a.signing_keys
        .push(key(next_sign.verifying_key().to_cose_key(), NOW - 3600));
    let a = &fr3.agencies[0];
    let (old_kid, new_kid) = (kid(&a.signing_keys[0])?, kid(&a.signing_keys[1])?);
    let check = |created: u64, received: Option<u64>, expect: &str| json!({ "created": created, "received": received, "expect": expect });
    let mut no_grace = check(NOW - 700, Some(NOW - 600), "key-revoked");
    no_grace["revocation_grace_secs"] = json!(0);
    let mut fields = ok_fields(
        &fr3,
        &[
            format!("key-revoked fr.mj.bepi {old_kid} {}", NOW - 600),
            format!("key-added fr.mj.bepi {new_kid}"),
        ],
    )?;
    fields["sender_keys"] = json!([
        {
            "kid": old_kid,
            "agency": "fr.mj.bepi",
            "valid_from": NOW - 30 * 86400,
            "valid_until": NOW - 600,
            "revoked_at": NOW - 600,
            "checks": [
                check(NOW - 700, Some(NOW - 700), "ok"),
                check(NOW - 700, Some(NOW - 1), "ok"),
                check(NOW - 700, Some(NOW), "key-revoked"),
                check(NOW - 700, Some(NOW + 86400), "key-revoked"),
                check(NOW - 600, Some(NOW - 599), "key-not-valid"),
                check(NOW - 700, None, "ok"),
                no_grace,
            ],
        },
        {
            "kid": new_kid,
            "agency": "fr.mj.bepi",
            "valid_from": NOW - 3600,
            "valid_until": null,
            "revoked_at": null,
            "checks": [check(NOW, Some(NOW), "ok"), check(NOW - 3601, Some(NOW), "key-not-valid")],
        },
    ]);
    write(
        "ok-signing-key-revoked",
        "partner fr version 8 revokes its signing key 600 s ago and adds a new one; what the store hands the opener for each key, and which receipt times the revoked key still authenticates (600 s grace)",
        &iq_fr,
        &[&fr1_signed],
        &sign(&fr3, &fr_root)?,
        NOW,
        fields,
    )?;

    // --- refused ---
    let mut fr_by_iq = fr1.clone();
    fr_by_iq.version = 9;
    write(
        "err-wrong-root",
        "a directory of fr signed by the root trusted for iq",
        &iq_fr,
        &[],
        &sign(&fr_by_iq, &iq_root)?,
        NOW,
        err("wrong-root"),
    )?;
    write(
        "err-unknown-root",
        "an iq directory signed by a key that is no trusted root",
        &iq_fr,
        &[],
        &sign(&iq1, &stranger)?,
        NOW,
        err("unknown-root"),
    )?;
    write(
        "err-rollback",
        "version 1 offered while version 2 is held",
        &iq_only,
        &[&iq2_signed],
        &iq1_signed,
        NOW,
        err("rollback"),
    )?;
    let mut iq2b = iq2.clone();
    iq2b.agencies.pop();
    write(
        "err-version-conflict",
        "a different document with the version already held (2)",
        &iq_only,
        &[&iq2_signed],
        &sign(&iq2b, &iq_root)?,
        NOW,
        err("version-conflict"),
    )?;
    write(
        "err-expired",
        "now is valid-until: the end is exclusive",
        &iq_only,
        &[],
        &iq1_signed,
        iq1.valid_until,
        err("expired"),
    )?;
    write(
        "err-not-yet-valid",
        "now is one second before valid-from",
        &iq_only,
        &[],
        &iq1_signed,
        iq1.valid_from - 1,
        err("not-yet-valid"),
    )?;
    let mut tampered = iq1_signed.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 0x01;
    }
    write(
        "err-tampered-signature",
        "the last byte of the signature flipped",
        &iq_only,
        &[],
        &tampered,
        NOW,
        err("bad-signature"),
    )?;
    // Flip a byte inside an Arabic name: the payload still decodes as CBOR.
    let mut tampered = iq1_signed.clone();
    let needle = "وزارة".as_bytes();
    let at = tampered
        .windows(needle.len())
        .position(|w| w == needle)
        .ok_or("name not found")?;
    tampered[at + 1] ^= 0x01;
    write(
        "err-tampered-payload",
        "one byte of an Arabic name changed after signing",
        &iq_only,
        &[],
        &tampered,
        NOW,
        err("bad-signature"),
    )?;
    write(
        "err-unknown-field",
        "the payload carries a key the schema does not define (\"note\"), correctly signed",
        &iq_only,
        &[],
        &sign_raw(with_unknown_field(&iq1)?, &iq_root, DIRECTORY_CONTENT_TYPE)?,
        NOW,
        err("malformed"),
    )?;
    let mut foreign = iq1.clone();
    foreign.agencies.push(fr_ca.clone());
    write(
        "err-agency-of-another-country",
        "the iq directory lists fr.mj.bepi, correctly signed",
        &iq_only,
        &[],
        &sign(&foreign, &iq_root)?,
        NOW,
        err("invalid-directory"),
    )?;
    let mut misnamed = iq1.clone();
    misnamed.agencies[0].log_key = iq1.agencies[1].log_key.clone();
    write(
        "err-log-key-of-another-agency",
        "iq.moj.ca lists the log key named iq.moi.ahtd/audit, correctly signed",
        &iq_only,
        &[],
        &sign(&misnamed, &iq_root)?,
        NOW,
        err("invalid-directory"),
    )?;
    write(
        "err-truncated",
        "the signed directory without its last 10 bytes",
        &iq_only,
        &[],
        &iq1_signed[..iq1_signed.len() - 10],
        NOW,
        err("malformed"),
    )?;
    let mut trailing = iq1_signed.clone();
    trailing.push(0x00);
    write(
        "err-trailing-bytes",
        "one zero byte after the signed directory",
        &iq_only,
        &[],
        &trailing,
        NOW,
        err("malformed"),
    )?;
    write(
        "err-wrong-content-type",
        "signed correctly but with content type application/cbor",
        &iq_only,
        &[],
        &sign_raw(iq1.to_cbor()?, &iq_root, "application/cbor")?,
        NOW,
        err("malformed"),
    )?;
    Ok(())
}

fn tls_vector_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/tls/spki.json")
}

/// `spec/vectors/tls/spki.json` (spec/federation.md §9): the pin of each
/// certificate, and a typed error for each malformed one.
#[test]
fn tls_spki_vectors() -> TestResult {
    let v: Json = serde_json::from_str(&std::fs::read_to_string(tls_vector_path())?)?;
    let cases = get(&v, "cases")?.as_array().ok_or("cases")?;
    assert!(cases.len() >= 4, "TLS vectors went missing");
    for c in cases {
        let name = get_str(c, "name")?;
        let cert = hex::decode(get_str(c, "cert_der_hex")?)?;
        let got = isnad_trust::tls::spki_sha256(&cert);
        match (c.get("spki_sha256_hex"), got) {
            (Some(want), Ok(pin)) => {
                let want = want.as_str().ok_or("spki_sha256_hex")?;
                assert_eq!(hex::encode(pin), want, "{name}");
                // The pin is over the SubjectPublicKeyInfo the vector shows.
                let spki = hex::decode(get_str(c, "spki_der_hex")?)?;
                assert!(
                    cert.windows(spki.len()).any(|w| w == spki.as_slice()),
                    "{name}: the SubjectPublicKeyInfo is not in the certificate"
                );
                let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
                assert_eq!(digest.as_ref(), &pin[..], "{name}");
            }
            (None, Err(isnad_trust::TrustError::Tls(_))) => {}
            (want, got) => return Err(format!("{name}: wanted {want:?}, got {got:?}").into()),
        }
    }
    Ok(())
}

#[test]
#[ignore = "writes spec/vectors/tls; run with ISNAD_WRITE_VECTORS=1"]
fn regenerate_tls_vectors() -> TestResult {
    if std::env::var("ISNAD_WRITE_VECTORS").as_deref() != Ok("1") {
        return Ok(());
    }
    let id = isnad_trust::tls::TlsIdentity::generate(&AgencyId::new("iq.moi.ahtd")?)?;
    let pin = id.spki_sha256()?;
    // The SubjectPublicKeyInfo of an ECDSA P-256 key is 91 bytes: find it
    // in the certificate by its fixed prefix and check it against the pin.
    let prefix = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200")?;
    let at = id
        .cert_der
        .windows(prefix.len())
        .position(|w| w == prefix.as_slice())
        .ok_or("no P-256 SPKI in the certificate")?;
    let spki = &id.cert_der[at..at + 91];
    assert_eq!(
        ring::digest::digest(&ring::digest::SHA256, spki).as_ref(),
        &pin[..]
    );
    let mut truncated = id.cert_der.clone();
    truncated.truncate(id.cert_der.len() / 2);
    let mut trailing = id.cert_der.clone();
    trailing.push(0);
    let v = json!({
        "description": "tls-spki-sha256 (spec/federation.md §9): SHA-256 over the DER SubjectPublicKeyInfo of a node's certificate. Cases with spki_sha256_hex must give that pin (and spki_der_hex is the SubjectPublicKeyInfo it is computed over); cases without it must be refused as not a certificate.",
        "cases": [
            {
                "name": "ecdsa-p256-self-signed",
                "cert_der_hex": hex::encode(&id.cert_der),
                "spki_der_hex": hex::encode(spki),
                "spki_sha256_hex": hex::encode(pin),
            },
            { "name": "err-truncated", "cert_der_hex": hex::encode(&truncated) },
            { "name": "err-trailing-byte", "cert_der_hex": hex::encode(&trailing) },
            { "name": "err-spki-alone", "cert_der_hex": hex::encode(spki) },
            { "name": "err-empty", "cert_der_hex": "" },
        ],
    });
    let path = tls_vector_path();
    std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
    std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")?;
    Ok(())
}
