//! The national directory: a versioned CBOR document listing a country's
//! agencies, their keys, endpoints and TLS identity, and the country's
//! policy rules, signed by the country's root key as a COSE_Sign1
//! (spec/federation.md §3–§4).

use std::collections::BTreeMap;

use ciborium::value::Value;
use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable as _};
use isnad_envelope::cbor::{scan, to_deterministic_vec};
use isnad_envelope::{
    AgencyId, EncryptionPublicKey, KeyId, Kind, Limits, SignatureAlgorithm, SigningKey,
    VerifyingKey,
};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::TrustError;

/// The `content type` of a signed directory.
pub const DIRECTORY_CONTENT_TYPE: &str = "application/vnd.isnad.directory+cbor";
/// Version of the directory schema.
pub const DIRECTORY_SCHEMA: u64 = 1;
/// Largest signed directory accepted, bytes.
pub const MAX_DIRECTORY_BYTES: usize = 1024 * 1024;
/// Most agencies in one directory.
pub const MAX_AGENCIES: usize = 1000;
/// Most policy rules in one directory.
pub const MAX_RULES: usize = 1000;
/// Most keys of one kind (signing or encryption) per agency.
pub const MAX_KEYS_PER_KIND: usize = 8;
/// Most endpoints per agency.
pub const MAX_ENDPOINTS: usize = 16;
/// Longest endpoint (`host:port`), bytes.
pub const MAX_ENDPOINT_BYTES: usize = 255;
/// Longest agency name, rule id or revocation reason, bytes (UTF-8).
pub const MAX_TEXT_BYTES: usize = 256;
/// Most names (languages) per agency.
pub const MAX_NAMES: usize = 16;

/// Roles an agency can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Role {
    /// The central authority for mutual legal assistance (e.g. a ministry of justice).
    CentralAuthority,
    /// A police or other law-enforcement agency.
    LawEnforcement,
    /// A prosecution service.
    Prosecution,
    /// A court or judicial council.
    Judicial,
    /// A financial intelligence unit.
    FinancialIntelligence,
    /// Anything else.
    Other,
}

/// One key of an agency with its validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeyEntry {
    /// The public key as a COSE_Key (RFC 9052 §7).
    #[serde(with = "bytes")]
    pub key: Vec<u8>,
    /// Messages created from this time (Unix seconds) may use the key.
    pub valid_from: u64,
    /// End of validity (e.g. the end of a rotation overlap), exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
    /// Revocation time: messages created at or after it are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// Why the key was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
}

impl KeyEntry {
    /// The first time (exclusive) from which the key must not be used:
    /// the earlier of `valid_until` and `revoked_at`.
    pub fn end(&self) -> Option<u64> {
        match (self.valid_until, self.revoked_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a message created at `t` may use this key.
    pub fn valid_at(&self, t: u64) -> bool {
        t >= self.valid_from && self.end().is_none_or(|e| t < e)
    }
}

/// One agency's entry in its country's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgencyEntry {
    /// The agency id; its first label is the directory's country.
    pub id: AgencyId,
    /// Names by BCP 47 language tag, UTF-8 (e.g. `ar`, `en`, `fr`). A tag
    /// repeated in the encoded map is malformed.
    #[serde(deserialize_with = "unique_map")]
    pub names: BTreeMap<String, String>,
    /// Role.
    pub role: Role,
    /// QUIC endpoints, `host:port`.
    pub endpoints: Vec<String>,
    /// SHA-256 of the DER SubjectPublicKeyInfo of the node's TLS certificate.
    #[serde(with = "bytes32")]
    pub tls_spki_sha256: [u8; 32],
    /// Message-signing keys (several during a rotation).
    pub signing_keys: Vec<KeyEntry>,
    /// Encryption keys (several during a rotation).
    pub encryption_keys: Vec<KeyEntry>,
    /// The node's audit-log verifier key (C2SP note verifier key text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_key: Option<String>,
    /// The node's witness cosigning key (C2SP tlog-cosignature verifier key
    /// text, type 0x04, named `<agency-id>/witness`; spec/witness.md §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_key: Option<String>,
}

/// Who a policy rule applies to. Every field given must match; an empty
/// selector matches everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Selector {
    /// A specific agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<AgencyId>,
    /// Agencies of a role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Agencies of a country (two lower-case letters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A policy rule: `from` may send `kinds` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rule {
    /// A name for the rule, quoted in decisions.
    pub id: String,
    /// Senders the rule covers.
    pub from: Selector,
    /// Recipients the rule covers.
    pub to: Selector,
    /// Message kinds allowed; empty means every kind.
    #[serde(default)]
    pub kinds: Vec<Kind>,
    /// The message must be routed through the central authorities (relay).
    #[serde(default)]
    pub via_central_authority: bool,
}

/// A country's directory (the payload of the signed document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Directory {
    /// Schema version, 1.
    pub schema: u64,
    /// Country code, two lower-case letters.
    pub country: String,
    /// Version of this country's directory; strictly increasing.
    pub version: u64,
    /// When it was signed (Unix seconds).
    pub issued_at: u64,
    /// Valid from (inclusive).
    pub valid_from: u64,
    /// Valid until (exclusive): a directory past this is refused.
    pub valid_until: u64,
    /// The agencies.
    pub agencies: Vec<AgencyEntry>,
    /// Policy rules of this country.
    #[serde(default)]
    pub policy: Vec<Rule>,
}

impl Directory {
    /// A new, empty directory draft.
    pub fn new(country: &str) -> Self {
        Self {
            schema: DIRECTORY_SCHEMA,
            country: country.to_ascii_lowercase(),
            version: 0,
            issued_at: 0,
            valid_from: 0,
            valid_until: 0,
            agencies: Vec::new(),
            policy: Vec::new(),
        }
    }

    /// The agency with this id.
    pub fn agency(&self, id: &AgencyId) -> Option<&AgencyEntry> {
        self.agencies.iter().find(|a| &a.id == id)
    }

    /// Checks the rules that the types do not (spec/federation.md §3.3):
    /// country codes, a validity window, size bounds, agencies of this
    /// country listed once, names with plausible BCP 47 tags, decodable keys,
    /// `host:port` endpoints, log keys named for their agency, unique rule ids.
    pub fn check(&self) -> Result<(), TrustError> {
        let bad = |m: String| Err(TrustError::InvalidDirectory(m));
        if self.schema != DIRECTORY_SCHEMA {
            return bad(format!("schema {} is not supported", self.schema));
        }
        if !is_country(&self.country) {
            return bad(format!(
                "country {:?} must be two lower-case letters",
                self.country
            ));
        }
        if self.valid_until <= self.valid_from {
            return bad("valid-until must be after valid-from".into());
        }
        if self.agencies.len() > MAX_AGENCIES {
            return bad(format!(
                "{} agencies listed; at most {MAX_AGENCIES} are allowed",
                self.agencies.len()
            ));
        }
        if self.policy.len() > MAX_RULES {
            return bad(format!(
                "{} policy rules; at most {MAX_RULES} are allowed",
                self.policy.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.agencies {
            if a.id.country() != self.country {
                return bad(format!(
                    "agency {} does not belong to country {}",
                    a.id, self.country
                ));
            }
            if !seen.insert(a.id.clone()) {
                return bad(format!("agency {} is listed twice", a.id));
            }
            check_agency(a)?;
        }
        let mut ids = std::collections::BTreeSet::new();
        for r in &self.policy {
            if r.id.is_empty() || r.id.len() > MAX_TEXT_BYTES {
                return bad(format!(
                    "policy rule id {:?} must be 1 to {MAX_TEXT_BYTES} bytes",
                    r.id
                ));
            }
            if !ids.insert(r.id.clone()) {
                return bad(format!("policy rule id {:?} is used twice", r.id));
            }
            for sel in [&r.from, &r.to] {
                if let Some(c) = &sel.country {
                    if !is_country(c) {
                        return bad(format!(
                            "policy rule {:?}: country {c:?} must be two lower-case letters",
                            r.id
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the directory is within its validity window at `now`
    /// (`valid-from ≤ now < valid-until`).
    pub fn current_at(&self, now: u64) -> Result<(), TrustError> {
        if now < self.valid_from {
            return Err(TrustError::NotYetValid {
                valid_from: self.valid_from,
                now,
            });
        }
        if now >= self.valid_until {
            return Err(TrustError::Expired {
                valid_until: self.valid_until,
                now,
            });
        }
        Ok(())
    }

    /// Encodes the directory in deterministic CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, TrustError> {
        let v = Value::serialized(self).map_err(|e| TrustError::InvalidDirectory(e.to_string()))?;
        Ok(to_deterministic_vec(&v))
    }

    /// Decodes a directory strictly: well-formed within limits, no unknown
    /// keys, then [`Directory::check`].
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, TrustError> {
        let limits = Limits {
            max_envelope_bytes: MAX_DIRECTORY_BYTES,
            max_depth: 8,
            max_items: 4096,
            ..Limits::default()
        };
        scan(bytes, &limits).map_err(|e| TrustError::Malformed(e.to_string()))?;
        let v: Value =
            ciborium::de::from_reader(bytes).map_err(|e| TrustError::Malformed(e.to_string()))?;
        let d: Self = v
            .deserialized()
            .map_err(|e| TrustError::Malformed(e.to_string()))?;
        d.check()?;
        Ok(d)
    }

    /// Signs the directory with the country's root key: a tagged COSE_Sign1.
    pub fn sign(&self, root: &SigningKey, rng: &dyn SecureRandom) -> Result<Vec<u8>, TrustError> {
        self.check()?;
        let payload = self.to_cbor()?;
        let alg = match root.algorithm() {
            SignatureAlgorithm::Ed25519 => iana::Algorithm::EdDSA,
            _ => iana::Algorithm::ES256,
        };
        let protected = HeaderBuilder::new()
            .algorithm(alg)
            .content_type(DIRECTORY_CONTENT_TYPE.to_owned())
            .key_id(root.key_id().as_bytes().to_vec())
            .build();
        let sign1 = CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .try_create_signature(&[], |tbs| root.sign(tbs, rng))
            .map_err(|_| TrustError::Crypto)?
            .build();
        sign1.to_tagged_vec().map_err(|_| TrustError::Crypto)
    }
}

/// Verifies a signed directory against `root` and decodes it. Checks, in
/// order: size; tagged COSE_Sign1; content type; `kid` is the root's;
/// signature over the bytes as received; the payload decodes strictly.
/// Time and version are the trust store's business.
pub fn verify_signed(bytes: &[u8], root: &VerifyingKey) -> Result<Directory, TrustError> {
    if bytes.len() > MAX_DIRECTORY_BYTES {
        return Err(TrustError::Malformed(format!(
            "signed directory larger than {MAX_DIRECTORY_BYTES} bytes"
        )));
    }
    let limits = Limits {
        max_envelope_bytes: MAX_DIRECTORY_BYTES,
        max_depth: 8,
        max_items: 4096,
        ..Limits::default()
    };
    scan(bytes, &limits).map_err(|e| TrustError::Malformed(e.to_string()))?;
    let sign1 = CoseSign1::from_tagged_slice(bytes)
        .map_err(|_| TrustError::Malformed("not a tagged COSE_Sign1".into()))?;
    let ph = &sign1.protected.header;
    if ph.content_type != Some(coset::ContentType::Text(DIRECTORY_CONTENT_TYPE.to_owned())) {
        return Err(TrustError::Malformed(format!(
            "content type must be {DIRECTORY_CONTENT_TYPE}"
        )));
    }
    if KeyId::from_bytes(ph.key_id.as_slice().try_into().unwrap_or([0; 32])) != root.key_id() {
        return Err(TrustError::WrongRoot);
    }
    sign1
        .verify_signature(&[], |sig, data| {
            if root.verify(data, sig) {
                Ok(())
            } else {
                Err(())
            }
        })
        .map_err(|()| TrustError::BadSignature)?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| TrustError::Malformed("detached payload".into()))?;
    Directory::from_cbor(payload)
}

/// The per-agency rules of [`Directory::check`].
fn check_agency(a: &AgencyEntry) -> Result<(), TrustError> {
    let bad = |m: String| Err(TrustError::InvalidDirectory(m));
    if a.names.is_empty() {
        return bad(format!(
            "agency {} has no name; give at least one (e.g. en=…, ar=…)",
            a.id
        ));
    }
    if a.names.len() > MAX_NAMES {
        return bad(format!(
            "agency {} has {} names; at most {MAX_NAMES} are allowed",
            a.id,
            a.names.len()
        ));
    }
    for (lang, name) in &a.names {
        if !is_language_tag(lang) {
            return bad(format!(
                "agency {}: {lang:?} is not a BCP 47 language tag (e.g. ar, en, fr, ar-IQ)",
                a.id
            ));
        }
        if name.trim().is_empty() {
            return bad(format!("agency {}: the {lang} name is empty", a.id));
        }
        if name.len() > MAX_TEXT_BYTES {
            return bad(format!(
                "agency {}: the {lang} name is {} bytes; at most {MAX_TEXT_BYTES} are allowed",
                a.id,
                name.len()
            ));
        }
    }
    if a.endpoints.len() > MAX_ENDPOINTS {
        return bad(format!(
            "agency {} has {} endpoints; at most {MAX_ENDPOINTS} are allowed",
            a.id,
            a.endpoints.len()
        ));
    }
    for e in &a.endpoints {
        if e.len() > MAX_ENDPOINT_BYTES {
            return bad(format!(
                "{}: an endpoint is {} bytes; at most {MAX_ENDPOINT_BYTES} are allowed",
                a.id,
                e.len()
            ));
        }
        let ok = e
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return bad(format!("{}: endpoint {e:?} is not host:port", a.id));
        }
    }
    if a.signing_keys.is_empty() || a.encryption_keys.is_empty() {
        return bad(format!(
            "agency {} needs a signing and an encryption key",
            a.id
        ));
    }
    for (what, keys) in [
        ("signing", &a.signing_keys),
        ("encryption", &a.encryption_keys),
    ] {
        if keys.len() > MAX_KEYS_PER_KIND {
            return bad(format!(
                "agency {} has {} {what} keys; at most {MAX_KEYS_PER_KIND} are allowed (drop expired ones)",
                a.id,
                keys.len()
            ));
        }
        for k in keys.iter() {
            if k.revocation_reason
                .as_ref()
                .is_some_and(|r| r.len() > MAX_TEXT_BYTES)
            {
                return bad(format!(
                    "{}: a revocation reason is longer than {MAX_TEXT_BYTES} bytes",
                    a.id
                ));
            }
        }
    }
    for k in &a.signing_keys {
        VerifyingKey::from_cose_key(&k.key)
            .map_err(|e| TrustError::InvalidDirectory(format!("{}: signing key: {e}", a.id)))?;
    }
    for k in &a.encryption_keys {
        EncryptionPublicKey::from_cose_key(&k.key)
            .map_err(|e| TrustError::InvalidDirectory(format!("{}: encryption key: {e}", a.id)))?;
    }
    if let Some(text) = &a.log_key {
        note_key(
            a,
            "log-key",
            text,
            &isnad_log::origin_for(&a.id),
            isnad_log::note::TYPE_ED25519,
        )?;
    }
    if let Some(text) = &a.witness_key {
        let want = isnad_log::witness::witness_name_for(&a.id);
        note_key(
            a,
            "witness-key",
            text,
            &want,
            isnad_log::note::TYPE_COSIGNATURE_V1,
        )?;
    }
    Ok(())
}

/// Checks a C2SP verifier key field of an agency entry: it parses, has the
/// agency's name for that role, and the signature type of that role.
fn note_key(
    a: &AgencyEntry,
    field: &str,
    text: &str,
    want: &str,
    want_type: u8,
) -> Result<(), TrustError> {
    let key = isnad_log::VerifierKey::parse(text).map_err(|e| {
        TrustError::InvalidDirectory(format!("{}: {field} is not a C2SP verifier key: {e}", a.id))
    })?;
    if key.name() != want || key.key_type() != want_type {
        return Err(TrustError::InvalidDirectory(format!(
            "{}: {field} is named {:?} with type 0x{:02x}; it must be {want:?} with type 0x{want_type:02x}",
            a.id,
            key.name(),
            key.key_type()
        )));
    }
    Ok(())
}

/// Two lower-case ASCII letters.
fn is_country(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_lowercase())
}

/// A plausible BCP 47 tag: a primary subtag of 2–8 ASCII letters, then
/// optional subtags of 1–8 ASCII letters or digits, separated by `-`.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=8).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A text → text map that refuses a repeated key (a signed document must
/// not mean two things to two decoders).
fn unique_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of language tags to names")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = m.next_entry::<String, String>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!("name tag {k:?} repeated")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&v.iter().map(|b| format!("{b:02x}")).collect::<String>())
        } else {
            s.serialize_bytes(v)
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            super::hex(&s).ok_or_else(|| serde::de::Error::custom("expected hex"))
        } else {
            let v = ciborium::value::Value::deserialize(d)?;
            v.into_bytes()
                .map_err(|_| serde::de::Error::custom("expected a byte string"))
        }
    }
}

mod bytes32 {
    use serde::{Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        super::bytes::serialize(v, s)
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let v = super::bytes::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

/// Lower-case hex to bytes.
pub(crate) fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use isnad_envelope::{EncryptionCurve, EncryptionKey};
    use ring::rand::SystemRandom;

    fn key(bytes: Vec<u8>) -> KeyEntry {
        KeyEntry {
            key: bytes,
            valid_from: 1_000,
            valid_until: None,
            revoked_at: None,
            revocation_reason: None,
        }
    }

    /// A valid one-agency directory of `iq`.
    pub(super) fn sample() -> Result<Directory, Box<dyn std::error::Error>> {
        let rng = SystemRandom::new();
        let id = AgencyId::new("iq.moj.ca")?;
        let sign = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
        let enc = EncryptionKey::generate(EncryptionCurve::P256, &rng)?;
        let log = isnad_log::SignerKey::generate(&isnad_log::origin_for(&id), &rng)?;
        let mut names = BTreeMap::new();
        names.insert("ar".into(), "وزارة العدل".into());
        names.insert("en".into(), "Ministry of Justice".into());
        let mut d = Directory::new("iq");
        d.version = 1;
        d.valid_from = 1_000;
        d.valid_until = 2_000;
        d.agencies.push(AgencyEntry {
            id,
            names,
            role: Role::CentralAuthority,
            endpoints: vec!["ca.moj.example.iq:7401".into()],
            tls_spki_sha256: [7; 32],
            signing_keys: vec![key(sign.verifying_key().to_cose_key())],
            encryption_keys: vec![key(enc.public_key().to_cose_key())],
            log_key: Some(log.verifier().to_string()),
            witness_key: None,
        });
        d.policy.push(Rule {
            id: "all".into(),
            from: Selector::default(),
            to: Selector::default(),
            kinds: Vec::new(),
            via_central_authority: false,
        });
        Ok(d)
    }

    /// Applies `edit` to a valid directory and returns the check's message.
    fn refused(edit: impl FnOnce(&mut Directory)) -> Result<String, Box<dyn std::error::Error>> {
        let mut d = sample()?;
        d.check()?;
        edit(&mut d);
        match d.check() {
            Err(TrustError::InvalidDirectory(m)) => Ok(m),
            other => Err(format!("expected InvalidDirectory, got {other:?}").into()),
        }
    }

    fn agency(d: &mut Directory) -> &mut AgencyEntry {
        &mut d.agencies[0]
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn sample_passes_and_arabic_names_round_trip() -> TestResult {
        let d = sample()?;
        d.check()?;
        let back = Directory::from_cbor(&d.to_cbor()?)?;
        assert_eq!(back, d);
        assert_eq!(back.agencies[0].names["ar"], "وزارة العدل");
        Ok(())
    }

    #[test]
    fn names_must_be_present_non_empty_and_tagged() -> TestResult {
        assert!(refused(|d| agency(d).names.clear())?.contains("has no name"));
        assert!(refused(|d| {
            agency(d).names.insert("en".into(), "  ".into());
        })?
        .contains("name is empty"));
        for tag in [
            "",
            "e",
            "englishlanguage",
            "en-subtaglonger",
            "en_GB",
            "123",
            "en--x",
            "ar-",
            "عر",
        ] {
            let m = refused(|d| {
                agency(d).names.insert(tag.into(), "x".into());
            })?;
            assert!(m.contains("BCP 47"), "{tag:?}: {m}");
        }
        let mut d = sample()?;
        for tag in ["fr", "ar-IQ", "zh-Hant-TW", "sr-Latn", "es-419"] {
            agency(&mut d).names.insert(tag.into(), "x".into());
        }
        d.check()?;
        assert!(refused(|d| {
            // Tags "xa", "xb", … : MAX_NAMES of them plus the two present.
            for c in b'a'..b'a' + MAX_NAMES as u8 {
                agency(d)
                    .names
                    .insert(format!("x{}", c as char), "x".into());
            }
        })?
        .contains("names; at most"));
        Ok(())
    }

    #[test]
    fn names_are_bounded_in_bytes_not_characters() -> TestResult {
        let mut d = sample()?;
        // 128 Arabic letters are 256 bytes: allowed.
        agency(&mut d).names.insert("ar".into(), "ع".repeat(128));
        d.check()?;
        let m = refused(|d| {
            agency(d).names.insert("ar".into(), "ع".repeat(129));
        })?;
        assert!(m.contains("258 bytes"), "{m}");
        Ok(())
    }

    #[test]
    fn endpoints_are_bounded_and_host_port() -> TestResult {
        assert!(
            refused(|d| agency(d).endpoints = vec!["a:1".into(); MAX_ENDPOINTS + 1])?
                .contains("endpoints; at most 16")
        );
        let mut d = sample()?;
        agency(&mut d).endpoints = vec!["a:1".into(); MAX_ENDPOINTS];
        d.check()?;
        let long = format!("{}:7401", "h".repeat(MAX_ENDPOINT_BYTES - 4));
        assert!(refused(|d| agency(d).endpoints = vec![long])?.contains("at most 255"));
        for e in ["no-port", "host:", ":7401", "host:70000", "host:port"] {
            let m = refused(|d| agency(d).endpoints = vec![e.into()])?;
            assert!(m.contains("not host:port"), "{e}: {m}");
        }
        Ok(())
    }

    #[test]
    fn keys_are_bounded_per_kind() -> TestResult {
        let m = refused(|d| {
            let k = agency(d).signing_keys[0].clone();
            agency(d).signing_keys = vec![k; MAX_KEYS_PER_KIND + 1];
        })?;
        assert!(m.contains("9 signing keys"), "{m}");
        let m = refused(|d| {
            let k = agency(d).encryption_keys[0].clone();
            agency(d).encryption_keys = vec![k; MAX_KEYS_PER_KIND + 1];
        })?;
        assert!(m.contains("9 encryption keys"), "{m}");
        let m = refused(|d| agency(d).signing_keys.clear())?;
        assert!(m.contains("needs a signing and an encryption key"), "{m}");
        let m = refused(|d| {
            agency(d).signing_keys[0].revocation_reason = Some("x".repeat(MAX_TEXT_BYTES + 1));
        })?;
        assert!(m.contains("revocation reason"), "{m}");
        // An encryption key where a signing key belongs.
        let m = refused(|d| {
            let k = agency(d).encryption_keys[0].clone();
            agency(d).signing_keys = vec![k];
        })?;
        assert!(m.contains("signing key"), "{m}");
        Ok(())
    }

    #[test]
    fn agencies_and_rules_are_bounded() -> TestResult {
        let m = refused(|d| {
            let a = d.agencies[0].clone();
            d.agencies = vec![a; MAX_AGENCIES + 1];
        })?;
        assert!(m.contains("1001 agencies"), "{m}");
        let m = refused(|d| {
            let r = d.policy[0].clone();
            d.policy = (0..=MAX_RULES)
                .map(|i| Rule {
                    id: format!("r{i}"),
                    ..r.clone()
                })
                .collect();
        })?;
        assert!(m.contains("1001 policy rules"), "{m}");
        assert!(refused(|d| d.policy[0].id.clear())?.contains("must be 1 to 256 bytes"));
        assert!(refused(|d| {
            let r = d.policy[0].clone();
            d.policy.push(r);
        })?
        .contains("used twice"));
        assert!(refused(|d| d.policy[0].to.country = Some("FRA".into()))?
            .contains("two lower-case letters"));
        Ok(())
    }

    #[test]
    fn log_key_must_be_a_verifier_key_named_for_the_agency() -> TestResult {
        let m = refused(|d| agency(d).log_key = Some("not a key".into()))?;
        assert!(m.contains("not a C2SP verifier key"), "{m}");
        let rng = SystemRandom::new();
        let other = isnad_log::SignerKey::generate("iq.moi.ahtd/audit", &rng)?;
        let m = refused(|d| agency(d).log_key = Some(other.verifier().to_string()))?;
        assert!(m.contains("must be \"iq.moj.ca/audit\""), "{m}");
        // The private key text is not a verifier key.
        let own = isnad_log::SignerKey::generate("iq.moj.ca/audit", &rng)?;
        let m = refused(|d| agency(d).log_key = Some(own.to_secret_string()))?;
        assert!(m.contains("not a C2SP verifier key"), "{m}");
        let mut d = sample()?;
        agency(&mut d).log_key = None;
        let w = isnad_log::SignerKey::generate_cosigner("iq.moj.ca/witness", &rng)?;
        agency(&mut d).witness_key = Some(w.verifier().to_string());
        d.check()?;
        // A log key (type 0x01) is not a witness key, nor is another agency's.
        let m = refused(|d| agency(d).witness_key = Some(own.verifier().to_string()))?;
        assert!(m.contains("witness-key is named"), "{m}");
        let other_w = isnad_log::SignerKey::generate_cosigner("iq.moi.ahtd/witness", &rng)?;
        let m = refused(|d| agency(d).witness_key = Some(other_w.verifier().to_string()))?;
        assert!(m.contains("witness-key is named"), "{m}");
        Ok(())
    }

    #[test]
    fn country_window_and_membership() -> TestResult {
        assert!(refused(|d| d.valid_until = d.valid_from)?.contains("valid-until"));
        assert!(refused(|d| d.country = "IQ".into())?.contains("two lower-case"));
        assert!(refused(|d| d.schema = 2)?.contains("schema 2"));
        let m = refused(|d| {
            if let Ok(id) = AgencyId::new("fr.mj.bepi") {
                agency(d).id = id;
            }
        })?;
        assert!(m.contains("does not belong to country iq"), "{m}");
        assert!(refused(|d| {
            let a = d.agencies[0].clone();
            d.agencies.push(a);
        })?
        .contains("listed twice"));
        Ok(())
    }
}

#[cfg(test)]
mod duplicate_keys {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Re-encodes the sample with one map entry repeated (in `map_of`).
    fn with_repeat(path: &[&str]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let d = tests::sample()?;
        let mut v = Value::serialized(&d)?;
        let mut cur = &mut v;
        for key in path {
            cur = match cur {
                Value::Map(m) => m
                    .iter_mut()
                    .find(|(k, _)| k.as_text() == Some(key))
                    .map(|(_, v)| v)
                    .ok_or("no such key")?,
                Value::Array(a) => a.first_mut().ok_or("empty array")?,
                _ => return Err("not a container".into()),
            };
        }
        if let Value::Map(m) = cur {
            let first = m.first().cloned().ok_or("empty map")?;
            m.push(first);
        }
        Ok(to_deterministic_vec(&v))
    }

    #[test]
    fn repeated_keys_are_malformed() -> TestResult {
        for path in [
            &[][..],
            &["agencies", "0"][..],
            &["agencies", "0", "names"][..],
        ] {
            let bytes = with_repeat(path)?;
            match Directory::from_cbor(&bytes) {
                Err(TrustError::Malformed(_)) => {}
                other => return Err(format!("{path:?}: expected Malformed, got {other:?}").into()),
            }
        }
        Ok(())
    }
}
