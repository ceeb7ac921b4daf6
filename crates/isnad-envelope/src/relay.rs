//! The `relay` body: one hop of a message that travels through central
//! authorities (spec/relay.md).
//!
//! ```text
//!   hop envelope  (sender → next hop, kind "relay", ordinary Isnad envelope)
//!     body: route, inner-id, inner-kind, inner-expires, inner-digest,
//!           endorsements [COSE_Sign1 by route[0], route[1], …],
//!           inner: the end-to-end envelope bytes, opaque
//!                  (route[0] → route[last], sealed to route[last]'s key)
//! ```
//!
//! A relay sees only the routing metadata; it cannot open `inner`. Every
//! sender on the route (the originator, then each relay) adds one
//! endorsement: a COSE_Sign1 over a statement that repeats the metadata and
//! its own position, so the final recipient can check that the message took
//! the route the originator chose and that no hop was skipped.

use std::fmt;

use ciborium::value::Value;
use isnad_attach::{AttachmentDescriptor, AttachmentMeta};
use ring::rand::SecureRandom;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::MalformedReason;
use crate::envelope::{parse_sign1, sign_payload_as, SealError, SenderKeys};
use crate::message::{Digest, ErrorCode, Kind};
use crate::{cbor, AgencyId, Limits, MessageId, SigningKey};

/// The `content type` (label 3) of an endorsement's protected header.
pub const ENDORSEMENT_CONTENT_TYPE: &str = "application/vnd.isnad.relay-endorsement+cbor";
/// Most agencies on a route: originator, two central authorities, final recipient.
pub const MAX_ROUTE_LEN: usize = 4;
/// Largest accepted endorsement (a statement with four 64-byte ids, an
/// ES256 signature and the header fit in well under half of it).
const MAX_ENDORSEMENT_BYTES: usize = 2048;

/// Byte string carried verbatim (an envelope or a COSE_Sign1 as received).
/// CBOR: a bstr; JSON: lower-case hex.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct OpaqueBytes(pub Vec<u8>);

impl fmt::Debug for OpaqueBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpaqueBytes({} bytes)", self.0.len())
    }
}

/// The body of a `relay` hop envelope (messages.cddl `relay-body`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Relay {
    /// Every agency the message passes, originator first, final recipient last.
    pub route: Vec<AgencyId>,
    /// Message id of the inner envelope (also the id of every hop envelope).
    pub inner_id: MessageId,
    /// Kind of the inner message: relays need it for policy.
    pub inner_kind: Kind,
    /// Signed expiry of the inner message.
    pub inner_expires: u64,
    /// SHA-256 of `inner`.
    pub inner_digest: Digest,
    /// One tagged COSE_Sign1 per sender so far, in route order.
    pub endorsements: Vec<OpaqueBytes>,
    /// The end-to-end envelope, exactly as the originator sealed it.
    pub inner: OpaqueBytes,
    /// What relays see of the inner message's attachments, in the order of
    /// its body (spec/relay.md §3a): ciphertext root and sizes, no key.
    /// Endorsed with the rest; omitted when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentMeta>,
}

/// What each endorsement signs (messages.cddl `relay-statement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Statement {
    hop: u64,
    route: Vec<AgencyId>,
    inner_id: MessageId,
    inner_kind: Kind,
    inner_expires: u64,
    inner_digest: Digest,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<AttachmentMeta>,
}

/// Why a relay hop is not acceptable (spec/relay.md §6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    // --- the route is not this hop's ---
    /// This node is not on the route, or the sender is not the hop before it.
    #[error("misrouted relay: {0}")]
    Misrouted(String),
    // --- the chain of endorsements does not hold (peers see `unauthentic`) ---
    /// Fewer or more endorsements than senders before this hop: a hop was
    /// skipped or one was added.
    #[error("relay chain has {found} endorsements, expected {expected}")]
    MissingEndorsement {
        /// Endorsements expected at this position.
        expected: usize,
        /// Endorsements present.
        found: usize,
    },
    /// An endorsement is signed with a key no trusted directory lists.
    #[error("endorsement {hop} is signed with an unknown key")]
    UnknownEndorser {
        /// Position on the route.
        hop: usize,
    },
    /// An endorsement is signed by another agency than the one at its position.
    #[error("endorsement {hop} is not signed by the agency at that position of the route")]
    WrongEndorser {
        /// Position on the route.
        hop: usize,
    },
    /// An endorsement is not a valid COSE_Sign1 or its signature fails.
    #[error("endorsement {hop} is invalid: {what}")]
    BadEndorsement {
        /// Position on the route.
        hop: usize,
        /// What failed.
        what: &'static str,
    },
    /// An endorsement signs other metadata than the body carries.
    #[error("endorsement {hop} does not match the routing metadata")]
    StatementMismatch {
        /// Position on the route.
        hop: usize,
    },
    /// `inner-digest` is not the SHA-256 of `inner`.
    #[error("inner envelope does not match its digest")]
    DigestMismatch,
    /// The attachment metadata the hops carried is not that of the
    /// attachments in the inner message's signed body (checked by the final
    /// recipient, spec/relay.md §3a): the originator's node built the hop
    /// wrongly, since the endorsements bind the metadata.
    #[error("the relayed attachment metadata does not match the inner message's attachments")]
    AttachmentsMismatch,
    // --- authentic but too late ---
    /// The inner message expired.
    #[error("relayed message expired at {expires} (now {now})")]
    Expired {
        /// Signed inner expiry.
        expires: u64,
        /// Local time used.
        now: u64,
    },
}

impl RelayError {
    /// The code to send the peer: one opaque `unauthentic` for every
    /// failure of the endorsement chain.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Misrouted(_) => ErrorCode::Misaddressed,
            Self::Expired { .. } => ErrorCode::Expired,
            _ => ErrorCode::Unauthentic,
        }
    }

    /// A short stable name (used in logs and in the test vectors).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Misrouted(_) => "misrouted",
            Self::MissingEndorsement { .. } => "missing-endorsement",
            Self::UnknownEndorser { .. } => "unknown-endorser",
            Self::WrongEndorser { .. } => "wrong-endorser",
            Self::BadEndorsement { .. } => "bad-endorsement",
            Self::StatementMismatch { .. } => "tampered-metadata",
            Self::DigestMismatch => "digest-mismatch",
            Self::AttachmentsMismatch => "attachments-mismatch",
            Self::Expired { .. } => "expired",
        }
    }
}

impl Relay {
    /// A first hop: the route, the inner envelope and its metadata, no
    /// endorsement yet (the originator adds the first with [`endorse`]).
    pub fn new(
        route: Vec<AgencyId>,
        inner_id: MessageId,
        inner_kind: Kind,
        inner_expires: u64,
        inner: Vec<u8>,
    ) -> Self {
        Self {
            route,
            inner_id,
            inner_kind,
            inner_expires,
            inner_digest: Digest::sha256(&inner),
            endorsements: Vec::new(),
            inner: OpaqueBytes(inner),
            attachments: Vec::new(),
        }
    }

    /// The deterministic CBOR encoding of this body (the `body` claim of a
    /// hop envelope).
    pub fn to_cbor(&self) -> Result<Vec<u8>, MalformedReason> {
        let v = crate::codec::encode_body(&crate::Body::Relay(Box::new(self.clone())))?;
        Ok(cbor::to_deterministic_vec(&v))
    }

    /// Decodes a relay body from exactly one CBOR map within `limits`, with
    /// every schema rule of spec/relay.md §3 (no trailing bytes).
    pub fn from_cbor(bytes: &[u8], limits: &Limits) -> Result<Self, MalformedReason> {
        cbor::scan(bytes, limits)?;
        let value: Value = ciborium::de::from_reader(bytes).map_err(|e| MalformedReason::Body {
            kind: Kind::Relay,
            detail: format!("undecodable: {e}"),
        })?;
        match crate::codec::decode_body(Kind::Relay, value)? {
            crate::Body::Relay(r) => Ok(*r),
            _ => Err(MalformedReason::Body {
                kind: Kind::Relay,
                detail: "not a relay body".into(),
            }),
        }
    }

    /// The agency that sealed the inner envelope.
    pub fn originator(&self) -> Option<&AgencyId> {
        self.route.first()
    }

    /// The agency the inner envelope is sealed to.
    pub fn final_recipient(&self) -> Option<&AgencyId> {
        self.route.last()
    }

    /// The agency after `who` on the route.
    pub fn next_after(&self, who: &AgencyId) -> Option<&AgencyId> {
        let i = self.route.iter().position(|a| a == who)?;
        self.route.get(i + 1)
    }

    /// Schema rules beyond the CDDL types (checked on decoding).
    pub(crate) fn check_shape(&self) -> Result<(), String> {
        if !(3..=MAX_ROUTE_LEN).contains(&self.route.len()) {
            return Err(format!(
                "route must name 3 to {MAX_ROUTE_LEN} agencies (a two-agency route is direct)"
            ));
        }
        for (i, a) in self.route.iter().enumerate() {
            if self.route[..i].contains(a) {
                return Err(format!("{a} appears twice on the route"));
            }
        }
        if self.endorsements.is_empty() || self.endorsements.len() >= self.route.len() {
            return Err("endorsements must number 1 to route length - 1".into());
        }
        if self
            .endorsements
            .iter()
            .any(|e| e.0.len() > MAX_ENDORSEMENT_BYTES)
        {
            return Err(format!(
                "an endorsement is over {MAX_ENDORSEMENT_BYTES} bytes"
            ));
        }
        if self.inner_kind == Kind::Relay {
            return Err("a relay body cannot carry another relay".into());
        }
        if self.inner.0.is_empty() {
            return Err("inner envelope is empty".into());
        }
        if !self.attachments.is_empty()
            && !matches!(
                self.inner_kind,
                Kind::MlaRequest | Kind::MlaStatus | Kind::IntelShare
            )
        {
            return Err(format!(
                "an inner {} carries no attachments",
                self.inner_kind.as_str()
            ));
        }
        crate::codec::check_attachments(&self.attachments)
    }

    fn statement(&self, hop: usize) -> Statement {
        Statement {
            hop: hop as u64,
            route: self.route.clone(),
            inner_id: self.inner_id,
            inner_kind: self.inner_kind,
            inner_expires: self.inner_expires,
            inner_digest: self.inner_digest,
            attachments: self.attachments.clone(),
        }
    }
}

/// The final recipient's check of spec/relay.md §3a: the metadata the hops
/// carried (and endorsed) is exactly the relay-visible part of the
/// attachments in the inner message's signed body, same count, same order
/// (spec/attachments.md §6.2). Call it after opening the inner envelope.
pub fn check_attachment_metas(
    relay: &Relay,
    inner: &[AttachmentDescriptor],
) -> Result<(), RelayError> {
    let same = relay.attachments.len() == inner.len()
        && relay
            .attachments
            .iter()
            .zip(inner)
            .all(|(m, d)| *m == d.meta());
    if same {
        Ok(())
    } else {
        Err(RelayError::AttachmentsMismatch)
    }
}

/// Adds the next endorsement (position = endorsements so far), signed by
/// `signer`, which must belong to the agency at that position of the route.
pub fn endorse(
    relay: &mut Relay,
    signer: &SigningKey,
    rng: &dyn SecureRandom,
) -> Result<(), SealError> {
    let hop = relay.endorsements.len();
    if hop + 1 >= relay.route.len() {
        return Err(SealError::Invalid(MalformedReason::Body {
            kind: Kind::Relay,
            detail: "every sender on the route has endorsed already".into(),
        }));
    }
    let value = Value::serialized(&relay.statement(hop)).map_err(|e| {
        SealError::Invalid(MalformedReason::Body {
            kind: Kind::Relay,
            detail: e.to_string(),
        })
    })?;
    let payload = cbor::to_deterministic_vec(&value);
    let signed = sign_payload_as(payload, ENDORSEMENT_CONTENT_TYPE, signer, rng)?;
    relay.endorsements.push(OpaqueBytes(signed));
    Ok(())
}

/// Checks a relay hop received by `me` from `peer` at `now` (spec/relay.md
/// §6, steps 1–5): `me` is on the route right after `peer`, every earlier
/// position endorsed exactly this metadata with a key the directories list
/// for it, `inner` matches its digest and has not expired. Returns `me`'s
/// position on the route.
pub fn verify_hop(
    relay: &Relay,
    me: &AgencyId,
    peer: &AgencyId,
    keys: &dyn SenderKeys,
    now: u64,
) -> Result<usize, RelayError> {
    let pos = relay
        .route
        .iter()
        .position(|a| a == me)
        .filter(|p| *p > 0)
        .ok_or_else(|| RelayError::Misrouted(format!("{me} is not a hop of this route")))?;
    if &relay.route[pos - 1] != peer {
        return Err(RelayError::Misrouted(format!(
            "{peer} is not the hop before {me} on this route"
        )));
    }
    if relay.endorsements.len() != pos {
        return Err(RelayError::MissingEndorsement {
            expected: pos,
            found: relay.endorsements.len(),
        });
    }
    if Digest::sha256(&relay.inner.0) != relay.inner_digest {
        return Err(RelayError::DigestMismatch);
    }
    if now >= relay.inner_expires {
        return Err(RelayError::Expired {
            expires: relay.inner_expires,
            now,
        });
    }
    for (hop, e) in relay.endorsements.iter().enumerate() {
        verify_endorsement(relay, hop, &e.0, keys, now)?;
    }
    Ok(pos)
}

fn verify_endorsement(
    relay: &Relay,
    hop: usize,
    bytes: &[u8],
    keys: &dyn SenderKeys,
    now: u64,
) -> Result<(), RelayError> {
    let bad = |what| RelayError::BadEndorsement { hop, what };
    let limits = Limits {
        max_envelope_bytes: MAX_ENDORSEMENT_BYTES,
        max_depth: 4,
        max_items: 64,
        ..Limits::default()
    };
    if bytes.len() > MAX_ENDORSEMENT_BYTES {
        return Err(bad("too large"));
    }
    let (sign1, alg, kid) = parse_sign1(bytes, ENDORSEMENT_CONTENT_TYPE, &limits)
        .map_err(|_| bad("not an endorsement COSE_Sign1"))?;
    let key = keys
        .sender_key(&kid)
        .ok_or(RelayError::UnknownEndorser { hop })?;
    if key.agency != relay.route[hop] {
        return Err(RelayError::WrongEndorser { hop });
    }
    if key.valid_from.is_some_and(|t| now < t) || key.valid_until.is_some_and(|t| now >= t) {
        return Err(bad("signing key not valid now"));
    }
    if key.key.algorithm().cose_alg() != alg {
        return Err(bad("algorithm does not match the key"));
    }
    sign1
        .verify_signature(&[], |sig, data| {
            if key.key.verify(data, sig) {
                Ok(())
            } else {
                Err(())
            }
        })
        .map_err(|()| bad("signature"))?;
    let payload = sign1.payload.as_deref().ok_or(bad("detached payload"))?;
    cbor::scan(payload, &limits).map_err(|_| bad("statement is not CBOR"))?;
    let value: Value =
        ciborium::de::from_reader(payload).map_err(|_| bad("statement is not CBOR"))?;
    let statement: Statement = value
        .deserialized()
        .map_err(|_| bad("statement does not match the schema"))?;
    if statement != relay.statement(hop) {
        return Err(RelayError::StatementMismatch { hop });
    }
    Ok(())
}

impl Serialize for OpaqueBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        isnad_types::bstr::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for OpaqueBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V(bool);
        impl de::Visitor<'_> for V {
            type Value = OpaqueBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(if self.0 {
                    "hex characters"
                } else {
                    "a byte string"
                })
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<OpaqueBytes, E> {
                if self.0 {
                    return Err(E::invalid_type(de::Unexpected::Bytes(v), &self));
                }
                Ok(OpaqueBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<OpaqueBytes, E> {
                if self.0 {
                    return Err(E::invalid_type(de::Unexpected::Bytes(&v), &self));
                }
                Ok(OpaqueBytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OpaqueBytes, E> {
                if !self.0 || !v.len().is_multiple_of(2) || !v.is_ascii() {
                    return Err(E::invalid_value(de::Unexpected::Str(v), &self));
                }
                (0..v.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&v[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map(OpaqueBytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V(true))
        } else {
            d.deserialize_byte_buf(V(false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SenderKey, SignatureAlgorithm};
    use ring::rand::SystemRandom;

    struct Chain {
        ids: Vec<AgencyId>,
        keys: Vec<SigningKey>,
        directory: Vec<SenderKey>,
    }

    fn chain() -> Result<Chain, Box<dyn std::error::Error>> {
        let rng = SystemRandom::new();
        let ids: Vec<AgencyId> = ["iq.moi.ahtd", "iq.moj.ca", "fr.mj.bepi", "fr.pn.ocrtis"]
            .iter()
            .map(|s| AgencyId::new(s))
            .collect::<Result<_, _>>()?;
        let keys: Vec<SigningKey> = ids
            .iter()
            .map(|_| SigningKey::generate(SignatureAlgorithm::Ed25519, &rng))
            .collect::<Result<_, _>>()?;
        let directory = ids
            .iter()
            .zip(&keys)
            .map(|(a, k)| SenderKey {
                agency: a.clone(),
                key: k.verifying_key().clone(),
                valid_from: None,
                valid_until: None,
                revoked_at: None,
            })
            .collect();
        Ok(Chain {
            ids,
            keys,
            directory,
        })
    }

    fn endorsed(c: &Chain, upto: usize) -> Result<Relay, Box<dyn std::error::Error>> {
        let rng = SystemRandom::new();
        let mut r = Relay::new(
            c.ids.clone(),
            MessageId::from_bytes([7; 16]),
            Kind::MlaRequest,
            2_000,
            vec![0xd8, 0x60, 0x80],
        );
        for k in &c.keys[..upto] {
            endorse(&mut r, k, &rng)?;
        }
        Ok(r)
    }

    #[test]
    fn body_round_trips_and_chain_verifies_at_every_hop() -> Result<(), Box<dyn std::error::Error>>
    {
        let c = chain()?;
        for pos in 1..4 {
            let r = endorsed(&c, pos)?;
            let body = crate::Body::Relay(Box::new(r.clone()));
            let v = crate::codec::encode_body(&body)?;
            let back = crate::codec::decode_body(Kind::Relay, v)?;
            assert_eq!(back, body);
            let got = verify_hop(&r, &c.ids[pos], &c.ids[pos - 1], &c.directory, 1_000)?;
            assert_eq!(got, pos);
        }
        Ok(())
    }

    #[test]
    fn tampering_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let c = chain()?;
        let good = endorsed(&c, 3)?;
        let check = |r: &Relay| verify_hop(r, &c.ids[3], &c.ids[2], &c.directory, 1_000);
        let mut r = good.clone();
        r.inner_expires += 1;
        assert_eq!(check(&r), Err(RelayError::StatementMismatch { hop: 0 }));
        let mut r = good.clone();
        r.inner.0.push(0);
        assert_eq!(check(&r), Err(RelayError::DigestMismatch));
        let mut r = good.clone();
        r.endorsements.remove(1);
        assert!(matches!(
            check(&r),
            Err(RelayError::MissingEndorsement { .. })
        ));
        let mut r = good.clone();
        r.endorsements.swap(1, 2);
        assert_eq!(check(&r), Err(RelayError::WrongEndorser { hop: 1 }));
        assert!(matches!(
            verify_hop(&good, &c.ids[3], &c.ids[1], &c.directory, 1_000),
            Err(RelayError::Misrouted(_))
        ));
        assert!(matches!(
            check(&good).and_then(|_| verify_hop(&good, &c.ids[3], &c.ids[2], &c.directory, 2_000)),
            Err(RelayError::Expired { .. })
        ));
        Ok(())
    }

    #[test]
    fn shape_rules() -> Result<(), Box<dyn std::error::Error>> {
        let c = chain()?;
        let mut r = endorsed(&c, 1)?;
        assert!(r.check_shape().is_ok());
        r.route.truncate(2);
        assert!(r.check_shape().is_err());
        let mut r = endorsed(&c, 1)?;
        r.route[2] = r.route[0].clone();
        assert!(r.check_shape().is_err());
        let mut r = endorsed(&c, 1)?;
        r.inner_kind = Kind::Relay;
        assert!(r.check_shape().is_err());
        let mut r = endorsed(&c, 3)?;
        assert!(endorse(&mut r, &c.keys[3], &SystemRandom::new()).is_err());
        Ok(())
    }

    #[test]
    fn attachment_metadata_is_endorsed_shaped_and_matched() -> Result<(), Box<dyn std::error::Error>>
    {
        let c = chain()?;
        let rng = SystemRandom::new();
        let (report, _) =
            isnad_attach::testing::fixed("r", &[1; 300], 64, "r.pdf", "application/pdf")?;
        let (video, _) = isnad_attach::testing::fixed("v", &[2; 70], 64, "v.mp4", "video/mp4")?;
        let mut r = Relay::new(
            c.ids.clone(),
            MessageId::from_bytes([7; 16]),
            Kind::MlaRequest,
            2_000,
            vec![0xd8, 0x60, 0x80],
        );
        r.attachments = vec![report.meta(), video.meta()];
        for k in &c.keys[..3] {
            endorse(&mut r, k, &rng)?;
        }
        // Carried through the codec and verified at the last hop.
        let body = crate::Body::Relay(Box::new(r.clone()));
        let back = crate::codec::decode_body(Kind::Relay, crate::codec::encode_body(&body)?)?;
        assert_eq!(back, body);
        assert_eq!(
            verify_hop(&r, &c.ids[3], &c.ids[2], &c.directory, 1_000),
            Ok(3)
        );
        // The final recipient matches them against the inner body's descriptors.
        assert_eq!(
            check_attachment_metas(&r, &[report.clone(), video.clone()]),
            Ok(())
        );
        for wrong in [
            vec![video.clone(), report.clone()],
            vec![report.clone()],
            vec![],
        ] {
            assert_eq!(
                check_attachment_metas(&r, &wrong),
                Err(RelayError::AttachmentsMismatch)
            );
        }
        // A relay that drops or swaps a meta breaks every endorsement.
        let mut dropped = r.clone();
        dropped.attachments.pop();
        assert_eq!(
            verify_hop(&dropped, &c.ids[3], &c.ids[2], &c.directory, 1_000),
            Err(RelayError::StatementMismatch { hop: 0 })
        );
        // Shape: none on a receipt, none twice, at most eight.
        let mut s = r.clone();
        s.inner_kind = Kind::Receipt;
        assert!(s.check_shape().is_err());
        let mut s = r.clone();
        s.attachments = vec![report.meta(), report.meta()];
        assert!(s.check_shape().is_err());
        let mut s = r.clone();
        s.attachments = (0..9u8)
            .map(|i| isnad_attach::testing::fixed(&i.to_string(), &[i], 64, "p", "a/b"))
            .map(|x| x.map(|(d, _)| d.meta()))
            .collect::<Result<_, _>>()?;
        assert!(s.check_shape().is_err());
        s.attachments.pop();
        assert!(s.check_shape().is_ok());
        Ok(())
    }
}
