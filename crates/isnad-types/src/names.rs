//! Names that travel on the wire: message kinds and error codes. Each is
//! declared once, with its wire name, by `wire_names!`, which also makes
//! the `ALL` list and `as_str`, so adding one is one edit and no list
//! elsewhere can forget it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Current protocol version carried in the `v` claim.
pub const PROTOCOL_VERSION: u64 = 1;

/// Declares a fieldless enum whose variants each have a wire name, with
/// `ALL` (every variant, in declaration order), `as_str` and `Display`.
macro_rules! wire_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [Self; [$($wire),+].len()] = [$(Self::$variant),+];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $wire, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names! {
    /// What kind of message an envelope carries.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    #[non_exhaustive]
    pub enum Kind {
        /// A mutual legal assistance request.
        MlaRequest = "mla-request",
        /// A status change of an MLA request.
        MlaStatus = "mla-status",
        /// Shared criminal intelligence.
        IntelShare = "intel-share",
        /// A signed acknowledgement of a received envelope.
        Receipt = "receipt",
        /// A typed error answer.
        Error = "error",
        /// A recipient of an intel share asks its originator for permission to
        /// pass it on to another agency.
        PermissionRequest = "permission-request",
        /// The originator's signed answer to a permission request.
        PermissionAnswer = "permission-answer",
        /// The originator withdraws an intel share.
        IntelRetraction = "intel-retraction",
        /// The originator corrects an intel share.
        IntelCorrection = "intel-correction",
        /// One hop of a message relayed through central authorities
        /// (spec/relay.md): routing metadata and the opaque inner envelope.
        Relay = "relay",
    }
}

impl Kind {
    /// Parses a wire name, e.g. `mla-request`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

wire_names! {
    /// Error codes shared by the envelope, transport and node layers
    /// (spec/protocol.md §7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    #[non_exhaustive]
    pub enum ErrorCode {
        /// The envelope is not well-formed or not of the Isnad structure.
        Malformed = "malformed",
        /// The envelope is larger than the limit.
        TooLarge = "too-large",
        /// Decryption or signature verification failed, or a key is unknown or
        /// revoked. Deliberately opaque.
        Unauthentic = "unauthentic",
        /// The message is addressed to another agency.
        Misaddressed = "misaddressed",
        /// The message has expired.
        Expired = "expired",
        /// The message's creation time is too far in the future.
        NotYetValid = "not-yet-valid",
        /// The message id was seen before.
        Replayed = "replayed",
        /// The protocol version is not supported.
        UnsupportedVersion = "unsupported-version",
        /// Policy forbids this sender sending this kind to this recipient.
        PolicyDenied = "policy-denied",
        /// The recipient is temporarily unable to accept; retry later.
        Unavailable = "unavailable",
        /// The message conflicts with the state of the MLA request or intel share
        /// it refers to: an illegal lifecycle transition, a change made by the
        /// wrong side, an unknown request, or a retraction not from the
        /// originator (spec/protocol.md §13). Final: do not retry.
        IllegalTransition = "illegal-transition",
        /// Onward dissemination of intelligence whose handling code needs the
        /// originator's permission, without one (spec/protocol.md §13.3).
        PermissionRequired = "permission-required",
    }
}

impl ErrorCode {
    /// Parses a wire name, e.g. `unauthentic`.
    pub fn parse(s: &str) -> Result<Self, UnknownErrorCode> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorCode::new(s))
    }

    /// Whether a refusal with this code is temporary: the sender keeps the
    /// message and retries it until it expires (spec/protocol.md §7).
    /// `unavailable` is a transient failure of the receiver; `not-yet-valid`
    /// means the receiver's clock is behind the sender's by more than the
    /// skew allowance, which time (or a clock fix) cures. Every other code
    /// is final: the same envelope would be refused again.
    pub const fn is_temporary(self) -> bool {
        matches!(self, Self::Unavailable | Self::NotYetValid)
    }
}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for ErrorCode {
    type Error = UnknownErrorCode;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

/// A text is not the wire name of any [`ErrorCode`]: a peer running a newer
/// protocol version, or a corrupted answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {name:?} (known: spec/protocol.md §7)")]
pub struct UnknownErrorCode {
    /// The text received, cut to its first [`UnknownErrorCode::MAX_SHOWN`] bytes.
    name: String,
}

impl UnknownErrorCode {
    /// How much of the unknown text is kept for the message.
    pub const MAX_SHOWN: usize = 64;

    fn new(s: &str) -> Self {
        let mut end = s.len().min(Self::MAX_SHOWN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            name: s[..end].to_owned(),
        }
    }

    /// The text received (at most [`UnknownErrorCode::MAX_SHOWN`] bytes of it).
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_round_trips_through_its_wire_name() -> Result<(), UnknownErrorCode> {
        assert_eq!(ErrorCode::ALL.len(), 12);
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str())?, code);
            assert_eq!(code.as_str().parse::<ErrorCode>()?, code);
            assert_eq!(ErrorCode::try_from(code.as_str())?, code);
            assert_eq!(code.to_string(), code.as_str());
            // serde's name (CBOR bodies, JSON) is the wire name too.
            assert_eq!(
                serde_json::to_string(&code).ok(),
                Some(format!("\"{}\"", code.as_str()))
            );
        }
        Ok(())
    }

    #[test]
    fn unknown_error_code_is_a_typed_error() {
        for bad in ["", "Malformed", "too_large", "malformed ", "retry-later"] {
            let err = ErrorCode::parse(bad);
            assert_eq!(err, Err(UnknownErrorCode::new(bad)), "{bad:?}");
            assert_eq!(err.map_err(|e| e.name().to_owned()), Err(bad.to_owned()));
        }
        // A long text is cut, on a character boundary, for the message.
        let long = "é".repeat(100);
        let err = ErrorCode::parse(&long).err();
        assert_eq!(err.as_ref().map(|e| e.name().len()), Some(64));
        assert!(err.is_some_and(|e| e.to_string().starts_with("unknown error code")));
    }

    #[test]
    fn every_kind_round_trips_through_its_wire_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_string(&kind).ok(),
                Some(format!("\"{}\"", kind.as_str()))
            );
        }
        assert_eq!(Kind::parse("mla_request"), None);
    }

    /// The lists of error codes in the normative spec (the CDDL of bodies and
    /// of transport responses, the table of protocol.md §7) are `ALL`.
    #[test]
    fn spec_lists_the_same_error_codes() {
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let spec = |file: &str| {
            let path = format!("{}/../../spec/{file}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        for file in ["messages.cddl", "transport.md"] {
            let text = spec(file);
            let rule = cddl_rule(&text, "error-code").unwrap_or_else(|| panic!("{file}: no rule"));
            assert_eq!(quoted(rule), all, "spec/{file} error-code");
        }
        let protocol = spec("protocol.md");
        // The first table of §7 (the one headed "Wire name"), to its end.
        let table: Vec<&str> = protocol
            .split("## 7. Error codes")
            .nth(1)
            .and_then(|s| s.split("| Wire name |").nth(1))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert_eq!(table, all, "spec/protocol.md §7 table");
    }

    /// The text of the CDDL rule `name = …`, up to the next blank line or
    /// comment-only line.
    fn cddl_rule<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        let start = text.find(&format!("\n{name} ="))? + 1;
        let rest = &text[start..];
        let end = rest.find("\n\n").unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// The double-quoted strings in `rule`, comments dropped.
    fn quoted(rule: &str) -> Vec<&str> {
        rule.lines()
            .map(|l| l.split(';').next().unwrap_or(l))
            .flat_map(|l| l.split('"').skip(1).step_by(2))
            .collect()
    }
}
