//! Messages: the signed header claims and the typed body of every kind
//! (spec/messages.cddl). The body types, kinds and error codes are the
//! shared vocabulary of isnad-types, re-exported here under their old paths.

pub use isnad_types::body::*;
pub use isnad_types::{Digest, ErrorCode, Kind, UnknownErrorCode, PROTOCOL_VERSION};

use crate::{AgencyId, MessageId};

/// The signed header claims of every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Random 128-bit message id chosen by the sender.
    pub id: MessageId,
    /// The sending agency.
    pub sender: AgencyId,
    /// The agency the message is addressed to.
    pub recipient: AgencyId,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Expiry time, seconds since the Unix epoch; strictly after `created`.
    pub expires: u64,
}

/// A complete message: header claims and a typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The signed header claims.
    pub header: Header,
    /// The body; its variant gives the message kind.
    pub body: Body,
}

/// A typed message body.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Body {
    /// `mla-request`.
    MlaRequest(Box<MlaRequest>),
    /// `mla-status`.
    MlaStatus(MlaStatus),
    /// `intel-share`.
    IntelShare(Box<IntelShare>),
    /// `receipt`.
    Receipt(Receipt),
    /// `error`.
    Error(ErrorBody),
    /// `permission-request`.
    PermissionRequest(PermissionRequest),
    /// `permission-answer`.
    PermissionAnswer(PermissionAnswer),
    /// `intel-retraction`.
    IntelRetraction(IntelRetraction),
    /// `intel-correction`.
    IntelCorrection(IntelCorrection),
    /// `relay` (spec/relay.md).
    Relay(Box<crate::relay::Relay>),
}

impl Body {
    /// The attachments this body lists (spec/attachments.md §6.3): those of
    /// an `mla-request`, an `mla-status` with `results-transmitted` or an
    /// `intel-share`; none for every other kind.
    pub fn attachments(&self) -> &[isnad_attach::AttachmentDescriptor] {
        match self {
            Self::MlaRequest(b) => &b.attachments,
            Self::MlaStatus(b) => &b.attachments,
            Self::IntelShare(b) => &b.attachments,
            _ => &[],
        }
    }

    /// The message kind of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Self::MlaRequest(_) => Kind::MlaRequest,
            Self::MlaStatus(_) => Kind::MlaStatus,
            Self::IntelShare(_) => Kind::IntelShare,
            Self::Receipt(_) => Kind::Receipt,
            Self::Error(_) => Kind::Error,
            Self::PermissionRequest(_) => Kind::PermissionRequest,
            Self::PermissionAnswer(_) => Kind::PermissionAnswer,
            Self::IntelRetraction(_) => Kind::IntelRetraction,
            Self::IntelCorrection(_) => Kind::IntelCorrection,
            Self::Relay(_) => Kind::Relay,
        }
    }
}
