//! The national directory: a versioned CBOR document listing a country's
//! agencies, their keys, endpoints and TLS identity, and the country's
//! policy rules, signed by the country's root key as a COSE_Sign1
//! (spec/federation.md §3).

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
    /// Names by BCP 47 language tag, UTF-8 (e.g. `ar`, `en`, `fr`).
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

    /// Checks the rules that the types do not: country codes, agencies of
    /// this country, unique ids, decodable keys, a validity window.
    pub fn check(&self) -> Result<(), TrustError> {
        let bad = |m: String| Err(TrustError::InvalidDirectory(m));
        if self.schema != DIRECTORY_SCHEMA {
            return bad(format!("schema {} is not supported", self.schema));
        }
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_lowercase()) {
            return bad(format!(
                "country {:?} must be two lower-case letters",
                self.country
            ));
        }
        if self.valid_until <= self.valid_from {
            return bad("valid-until must be after valid-from".into());
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
            if a.signing_keys.is_empty() || a.encryption_keys.is_empty() {
                return bad(format!(
                    "agency {} needs a signing and an encryption key",
                    a.id
                ));
            }
            for k in &a.signing_keys {
                VerifyingKey::from_cose_key(&k.key).map_err(|e| {
                    TrustError::InvalidDirectory(format!("{}: signing key: {e}", a.id))
                })?;
            }
            for k in &a.encryption_keys {
                EncryptionPublicKey::from_cose_key(&k.key).map_err(|e| {
                    TrustError::InvalidDirectory(format!("{}: encryption key: {e}", a.id))
                })?;
            }
            for e in &a.endpoints {
                if e.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return bad(format!("{}: endpoint {e:?} is not host:port", a.id));
                }
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for r in &self.policy {
            if !ids.insert(r.id.clone()) {
                return bad(format!("policy rule id {:?} is used twice", r.id));
            }
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
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
