//! Encoding and strict decoding of the signed claims (the COSE_Sign1
//! payload) and of typed bodies.

use ciborium::value::{Integer, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::message::{
    Body, ErrorBody, Extensions, Header, IntelCorrection, IntelRetraction, IntelShare, Kind,
    Message, MlaRequest, MlaState, MlaStatus, PermissionAnswer, PermissionRequest, Receipt,
    MAX_ATTACHMENTS, PROTOCOL_VERSION,
};
use crate::relay::Relay;
use crate::{cbor, AgencyId, Limits, MessageId};

/// Why the signed claims or the body are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedReason {
    /// Not well-formed CBOR within the limits.
    #[error("CBOR: {0}")]
    Cbor(#[from] cbor::CborError),
    /// Not a COSE structure of the shape Isnad requires.
    #[error("COSE structure: {0}")]
    Cose(&'static str),
    /// A claim is missing, duplicated, unknown or of the wrong type.
    #[error("claims: {0}")]
    Claims(String),
    /// The message kind is not known.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// The body does not match the schema of its kind.
    #[error("body of {kind}: {detail}")]
    Body {
        /// The kind whose schema was violated.
        kind: Kind,
        /// What was wrong.
        detail: String,
    },
    /// `exp` is not after `iat`, or the lifetime exceeds the limit.
    #[error("lifetime: expiry must be after creation and within {0} seconds of it")]
    Lifetime(u64),
}

const CLAIM_KEYS: [&str; 8] = ["v", "id", "from", "to", "iat", "exp", "kind", "body"];

/// Encodes the claims map of `msg` deterministically.
pub(crate) fn encode_claims(msg: &Message) -> Result<Vec<u8>, MalformedReason> {
    let h = &msg.header;
    let body = encode_body(&msg.body)?;
    let map = Value::Map(vec![
        (text("v"), Value::Integer(Integer::from(PROTOCOL_VERSION))),
        (text("id"), Value::Bytes(h.id.as_bytes().to_vec())),
        (text("from"), text(h.sender.as_str())),
        (text("to"), text(h.recipient.as_str())),
        (text("iat"), Value::Integer(Integer::from(h.created))),
        (text("exp"), Value::Integer(Integer::from(h.expires))),
        (text("kind"), text(msg.body.kind().as_str())),
        (text("body"), body),
    ]);
    Ok(cbor::to_deterministic_vec(&map))
}

/// Result of decoding the claims: the header, the version, and the body.
pub(crate) struct DecodedClaims {
    pub(crate) version: u64,
    pub(crate) header: Header,
    pub(crate) kind: Option<Kind>,
    pub(crate) kind_name: String,
    pub(crate) body: Value,
}

/// Decodes the claims map strictly: exactly the eight keys, each once.
pub(crate) fn decode_claims(
    bytes: &[u8],
    limits: &Limits,
) -> Result<DecodedClaims, MalformedReason> {
    cbor::scan(bytes, limits)?;
    let value: Value = ciborium::de::from_reader(bytes)
        .map_err(|e| MalformedReason::Claims(format!("undecodable: {e}")))?;
    let Value::Map(entries) = value else {
        return Err(MalformedReason::Claims("not a map".into()));
    };
    let mut slots: [Option<Value>; 8] = Default::default();
    for (k, v) in entries {
        let Value::Text(k) = k else {
            return Err(MalformedReason::Claims("non-text key".into()));
        };
        let i = CLAIM_KEYS
            .iter()
            .position(|c| *c == k)
            .ok_or_else(|| MalformedReason::Claims(format!("unknown claim {k:?}")))?;
        if slots[i].replace(v).is_some() {
            return Err(MalformedReason::Claims(format!("duplicate claim {k:?}")));
        }
    }
    let mut take = |i: usize| {
        slots[i]
            .take()
            .ok_or_else(|| MalformedReason::Claims(format!("missing claim {:?}", CLAIM_KEYS[i])))
    };
    let uint = |v: Value, name: &str| -> Result<u64, MalformedReason> {
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| MalformedReason::Claims(format!("{name} must be an unsigned integer")))
    };
    let agency = |v: Value, name: &str| -> Result<AgencyId, MalformedReason> {
        let s = v
            .into_text()
            .map_err(|_| MalformedReason::Claims(format!("{name} must be text")))?;
        AgencyId::new(&s).map_err(|e| MalformedReason::Claims(format!("{name}: {e}")))
    };
    let version = uint(take(0)?, "v")?;
    let id = take(1)?
        .into_bytes()
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(MessageId::from_bytes)
        .ok_or_else(|| MalformedReason::Claims("id must be a 16-byte bstr".into()))?;
    let sender = agency(take(2)?, "from")?;
    let recipient = agency(take(3)?, "to")?;
    let created = uint(take(4)?, "iat")?;
    let expires = uint(take(5)?, "exp")?;
    let kind_name = take(6)?
        .into_text()
        .map_err(|_| MalformedReason::Claims("kind must be text".into()))?;
    let body = take(7)?;
    Ok(DecodedClaims {
        version,
        header: Header {
            id,
            sender,
            recipient,
            created,
            expires,
        },
        kind: Kind::parse(&kind_name),
        kind_name,
        body,
    })
}

/// Encodes a body as a CBOR map value, extensions included.
pub(crate) fn encode_body(body: &Body) -> Result<Value, MalformedReason> {
    fn with_ext<T: Serialize>(
        kind: Kind,
        t: &T,
        ext: &Extensions,
    ) -> Result<Value, MalformedReason> {
        let v = Value::serialized(t).map_err(|e| MalformedReason::Body {
            kind,
            detail: e.to_string(),
        })?;
        let Value::Map(mut entries) = v else {
            return Err(MalformedReason::Body {
                kind,
                detail: "not a map".into(),
            });
        };
        for (k, val) in ext {
            if !k.starts_with("x-") {
                return Err(MalformedReason::Body {
                    kind,
                    detail: format!("extension key {k:?} must start with \"x-\""),
                });
            }
            entries.push((text(k), val.clone()));
        }
        Ok(Value::Map(entries))
    }
    let kind = body.kind();
    validate_body(body).map_err(|detail| MalformedReason::Body { kind, detail })?;
    match body {
        Body::MlaRequest(b) => with_ext(kind, b.as_ref(), &b.extensions),
        Body::MlaStatus(b) => with_ext(kind, b, &b.extensions),
        Body::IntelShare(b) => with_ext(kind, b.as_ref(), &b.extensions),
        Body::Receipt(b) => with_ext(kind, b, &Extensions::new()),
        Body::Error(b) => with_ext(kind, b, &Extensions::new()),
        Body::PermissionRequest(b) => with_ext(kind, b, &Extensions::new()),
        Body::PermissionAnswer(b) => with_ext(kind, b, &Extensions::new()),
        Body::IntelRetraction(b) => with_ext(kind, b, &Extensions::new()),
        Body::IntelCorrection(b) => with_ext(kind, b, &Extensions::new()),
        Body::Relay(b) => with_ext(kind, b.as_ref(), &Extensions::new()),
    }
}

/// Decodes a body of `kind` from a CBOR map value: `x-` keys go to the
/// extensions (only for kinds that carry them), everything else must match the
/// schema exactly.
pub(crate) fn decode_body(kind: Kind, value: Value) -> Result<Body, MalformedReason> {
    let err = |detail: String| MalformedReason::Body { kind, detail };
    let Value::Map(entries) = value else {
        return Err(err("body must be a map".into()));
    };
    let mut known = Vec::with_capacity(entries.len());
    let mut ext = Extensions::new();
    for (k, v) in entries {
        match &k {
            Value::Text(t) if t.starts_with("x-") => {
                if ext.insert(t.clone(), v).is_some() {
                    return Err(err(format!("duplicate key {t:?}")));
                }
            }
            _ => known.push((k, v)),
        }
    }
    let known = Value::Map(known);
    fn de<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
        v.deserialized().map_err(|e| e.to_string())
    }
    let no_ext = |ext: &Extensions| {
        if ext.is_empty() {
            Ok(())
        } else {
            Err(err("this kind takes no extension fields".into()))
        }
    };
    let body = match kind {
        Kind::MlaRequest => {
            let mut b: MlaRequest = de(&known).map_err(err)?;
            b.extensions = ext;
            Body::MlaRequest(Box::new(b))
        }
        Kind::MlaStatus => {
            let mut b: MlaStatus = de(&known).map_err(err)?;
            b.extensions = ext;
            Body::MlaStatus(b)
        }
        Kind::IntelShare => {
            let mut b: IntelShare = de(&known).map_err(err)?;
            b.extensions = ext;
            Body::IntelShare(Box::new(b))
        }
        Kind::Receipt => {
            no_ext(&ext)?;
            Body::Receipt(de::<Receipt>(&known).map_err(err)?)
        }
        Kind::Error => {
            no_ext(&ext)?;
            Body::Error(de::<ErrorBody>(&known).map_err(err)?)
        }
        Kind::PermissionRequest => {
            no_ext(&ext)?;
            Body::PermissionRequest(de::<PermissionRequest>(&known).map_err(err)?)
        }
        Kind::PermissionAnswer => {
            no_ext(&ext)?;
            Body::PermissionAnswer(de::<PermissionAnswer>(&known).map_err(err)?)
        }
        Kind::IntelRetraction => {
            no_ext(&ext)?;
            Body::IntelRetraction(de::<IntelRetraction>(&known).map_err(err)?)
        }
        Kind::IntelCorrection => {
            no_ext(&ext)?;
            Body::IntelCorrection(de::<IntelCorrection>(&known).map_err(err)?)
        }
        Kind::Relay => {
            no_ext(&ext)?;
            Body::Relay(Box::new(de::<Relay>(&known).map_err(err)?))
        }
        // A kind isnad-types names that this codec has no body type for.
        _ => return Err(MalformedReason::UnknownKind(kind.as_str().to_owned())),
    };
    validate_body(&body).map_err(err)?;
    Ok(body)
}

/// Checks beyond the type system (spec/messages.cddl comments).
fn validate_body(body: &Body) -> Result<(), String> {
    match body {
        Body::MlaRequest(r) => {
            if r.offences.is_empty() {
                return Err("offences must not be empty".into());
            }
            if r.assistance_sought.is_empty() {
                return Err("assistance-sought must not be empty".into());
            }
            if r.legal_basis.is_empty() {
                return Err("legal-basis must not be empty".into());
            }
            if let Some(d) = &r.deadline {
                check_date(&d.date)?;
            }
            for p in &r.persons {
                if let Some(d) = &p.date_of_birth {
                    check_date(d)?;
                }
            }
            check_attachments(&r.attachments)?;
        }
        Body::MlaStatus(s) => {
            let refused = s.status == MlaState::Refused;
            if refused && s.refusal_grounds.is_empty() {
                return Err("a refusal must state at least one ground".into());
            }
            if !refused && !s.refusal_grounds.is_empty() {
                return Err("refusal-grounds are only allowed with status refused".into());
            }
            if s.status != MlaState::ResultsTransmitted && !s.attachments.is_empty() {
                return Err("attachments are only allowed with status results-transmitted".into());
            }
            check_attachments(&s.attachments)?;
        }
        Body::IntelShare(s) => {
            if !(1..=4).contains(&s.information_grading) {
                return Err("information-grading must be 1 to 4".into());
            }
            if s.permission.is_some() && s.originator.is_none() {
                return Err("permission is only allowed with originator".into());
            }
            check_attachments(&s.attachments)?;
        }
        Body::PermissionRequest(p) => non_empty("purpose", &p.purpose)?,
        Body::IntelRetraction(r) => non_empty("reason", &r.reason)?,
        Body::IntelCorrection(c) => {
            non_empty("content", &c.content)?;
            non_empty("reason", &c.reason)?;
        }
        Body::Receipt(r) => {
            if r.attachments.len() > MAX_ATTACHMENTS {
                return Err(format!("more than {MAX_ATTACHMENTS} attachments"));
            }
        }
        Body::Error(_) | Body::PermissionAnswer(_) => {}
        Body::Relay(r) => r.check_shape()?,
    }
    Ok(())
}

/// At most [`MAX_ATTACHMENTS`], no ciphertext root twice (each descriptor
/// is checked by its own decoder, spec/attachments.md §6.1).
pub(crate) fn check_attachments<T: AttachmentRoot>(list: &[T]) -> Result<(), String> {
    if list.len() > MAX_ATTACHMENTS {
        return Err(format!("more than {MAX_ATTACHMENTS} attachments"));
    }
    for (i, a) in list.iter().enumerate() {
        if list[..i].iter().any(|b| b.root() == a.root()) {
            return Err(format!(
                "attachment {i} repeats the ciphertext root of an earlier one"
            ));
        }
    }
    Ok(())
}

/// What identifies an attachment in transit: its ciphertext root.
pub(crate) trait AttachmentRoot {
    fn root(&self) -> [u8; 32];
}

impl AttachmentRoot for isnad_attach::AttachmentDescriptor {
    fn root(&self) -> [u8; 32] {
        *self.ciphertext_root().as_bytes()
    }
}

impl AttachmentRoot for isnad_attach::AttachmentMeta {
    fn root(&self) -> [u8; 32] {
        *self.ciphertext_root().as_bytes()
    }
}

fn non_empty(name: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err(format!("{name} must not be empty"))
    } else {
        Ok(())
    }
}

fn check_date(d: &str) -> Result<(), String> {
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10);
    let month = d.get(5..7).and_then(|m| m.parse::<u8>().ok()).unwrap_or(0);
    let day = d.get(8..10).and_then(|m| m.parse::<u8>().ok()).unwrap_or(0);
    if ok && (1..=12).contains(&month) && (1..=31).contains(&day) {
        Ok(())
    } else {
        Err(format!("{d:?} is not a YYYY-MM-DD date"))
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// JSON → typed body (CLI input).
pub(crate) fn body_from_json(kind: Kind, json: &str) -> Result<Body, MalformedReason> {
    let err = |detail: String| MalformedReason::Body { kind, detail };
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| err(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(err("body must be a JSON object".into()));
    };
    let mut known = serde_json::Map::new();
    let mut ext = Extensions::new();
    for (k, v) in map {
        if k.starts_with("x-") {
            let v = Value::serialized(&v).map_err(|e| err(e.to_string()))?;
            ext.insert(k, v);
        } else {
            known.insert(k, v);
        }
    }
    let known = serde_json::Value::Object(known);
    fn de<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
    let no_ext = |ext: &Extensions| {
        if ext.is_empty() {
            Ok(())
        } else {
            Err(err("this kind takes no extension fields".into()))
        }
    };
    let body = match kind {
        Kind::MlaRequest => {
            let mut b: MlaRequest = de(known).map_err(err)?;
            b.extensions = ext;
            Body::MlaRequest(Box::new(b))
        }
        Kind::MlaStatus => {
            let mut b: MlaStatus = de(known).map_err(err)?;
            b.extensions = ext;
            Body::MlaStatus(b)
        }
        Kind::IntelShare => {
            let mut b: IntelShare = de(known).map_err(err)?;
            b.extensions = ext;
            Body::IntelShare(Box::new(b))
        }
        Kind::Receipt => {
            no_ext(&ext)?;
            Body::Receipt(de(known).map_err(err)?)
        }
        Kind::Error => {
            no_ext(&ext)?;
            Body::Error(de(known).map_err(err)?)
        }
        Kind::PermissionRequest => {
            no_ext(&ext)?;
            Body::PermissionRequest(de(known).map_err(err)?)
        }
        Kind::PermissionAnswer => {
            no_ext(&ext)?;
            Body::PermissionAnswer(de(known).map_err(err)?)
        }
        Kind::IntelRetraction => {
            no_ext(&ext)?;
            Body::IntelRetraction(de(known).map_err(err)?)
        }
        Kind::IntelCorrection => {
            no_ext(&ext)?;
            Body::IntelCorrection(de(known).map_err(err)?)
        }
        Kind::Relay => {
            no_ext(&ext)?;
            Body::Relay(Box::new(de(known).map_err(err)?))
        }
        // A kind isnad-types names that this codec has no body type for.
        _ => return Err(MalformedReason::UnknownKind(kind.as_str().to_owned())),
    };
    validate_body(&body).map_err(err)?;
    Ok(body)
}

/// Typed body → JSON (CLI output).
pub(crate) fn body_to_json(body: &Body) -> Result<String, MalformedReason> {
    let kind = body.kind();
    let err = |e: serde_json::Error| MalformedReason::Body {
        kind,
        detail: e.to_string(),
    };
    fn obj<T: Serialize>(t: &T, ext: &Extensions) -> Result<serde_json::Value, serde_json::Error> {
        let mut v = serde_json::to_value(t)?;
        if let serde_json::Value::Object(m) = &mut v {
            for (k, val) in ext {
                m.insert(k.clone(), serde_json::to_value(val)?);
            }
        }
        Ok(v)
    }
    let v = match body {
        Body::MlaRequest(b) => obj(b.as_ref(), &b.extensions),
        Body::MlaStatus(b) => obj(b, &b.extensions),
        Body::IntelShare(b) => obj(b.as_ref(), &b.extensions),
        Body::Receipt(b) => obj(b, &Extensions::new()),
        Body::Error(b) => obj(b, &Extensions::new()),
        Body::PermissionRequest(b) => obj(b, &Extensions::new()),
        Body::PermissionAnswer(b) => obj(b, &Extensions::new()),
        Body::IntelRetraction(b) => obj(b, &Extensions::new()),
        Body::IntelCorrection(b) => obj(b, &Extensions::new()),
        Body::Relay(b) => obj(b.as_ref(), &Extensions::new()),
    }
    .map_err(err)?;
    serde_json::to_string_pretty(&v).map_err(err)
}
