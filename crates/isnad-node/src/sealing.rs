//! Sealing this node's own messages and the hops it sends, with a narrow
//! handle ([`Sealer`]: the agency, its keys, the directory, the limits and
//! the random source) instead of the whole node: the own copy kept for a
//! re-seal, the first hop of a relayed message, the hop record of a
//! forward. Used by `node`, `relay.rs` and `reseal.rs`.

use isnad_envelope::{endorse, seal, AgencyId, Body, Header, Limits, Message, Relay};
use ring::rand::SystemRandom;

use crate::node::types::{Directory, Identity, NodeError, Peer};
use crate::store::{OutboxRecord, RelayedOut, ResealCopy};

/// What sealing needs of the node.
pub(crate) struct Sealer<'a> {
    /// This node's agency.
    pub(crate) me: &'a AgencyId,
    /// Its signing and encryption keys.
    pub(crate) identity: &'a Identity,
    /// The trusted directories (peers' keys, revocations).
    pub(crate) directory: &'a dyn Directory,
    /// Envelope limits.
    pub(crate) limits: Limits,
    /// The random source of nonces and ids.
    pub(crate) rng: &'a SystemRandom,
}

impl Sealer<'_> {
    /// This node's signing key's `revoked-at`, if its directory revokes it
    /// as of `now`.
    pub(crate) fn own_key_revoked(&self, now: u64) -> Option<u64> {
        self.directory
            .sender_key(&self.identity.signing_key.key_id())?
            .revoked_at
            .filter(|at| now >= *at)
    }
}

/// The own copy kept with a message this node originates (direct or
/// relayed), signed with the current key.
pub(crate) fn own_copy(s: &Sealer<'_>, msg: &Message) -> Result<ResealCopy, NodeError> {
    let key = &s.identity.signing_key;
    let own = s
        .identity
        .encryption_keys
        .first()
        .ok_or(NodeError::System)?;
    Ok(ResealCopy {
        signer: *key.key_id().as_bytes(),
        own_copy: seal(msg, key, own.public_key(), &s.limits, s.rng)?,
        resealed_from: None,
        inner_resealed_from: None,
    })
}

/// Seals `msg` end to end to `end`, the last agency of `route`, and
/// wraps it in the first hop: the outbox record that `submit` stores
/// (with the workflow plan checked for it) and delivers like any other.
/// The record's id is the inner id, which every hop envelope carries.
pub(crate) fn relayed_record(
    s: &Sealer<'_>,
    route: Vec<AgencyId>,
    end: &Peer,
    msg: &Message,
    secs: u64,
    ms: u64,
) -> Result<OutboxRecord, NodeError> {
    let inner = seal(
        msg,
        &s.identity.signing_key,
        &end.encryption_key,
        &s.limits,
        s.rng,
    )?;
    let mut relay = Relay::new(
        route,
        msg.header.id,
        msg.body.kind(),
        msg.header.expires,
        inner,
    );
    endorse(&mut relay, &s.identity.signing_key, s.rng)?;
    hop_record(s, relay, secs, ms)
}

/// Seals a hop envelope (us → the next agency after us on the route)
/// and makes its outbox record.
pub(crate) fn hop_record(
    s: &Sealer<'_>,
    relay: Relay,
    secs: u64,
    ms: u64,
) -> Result<OutboxRecord, NodeError> {
    let next = relay
        .next_after(s.me)
        .cloned()
        .ok_or_else(|| NodeError::PolicyDenied("this node is not on the route".into()))?;
    let peer = s
        .directory
        .peer(&next)
        .ok_or_else(|| NodeError::UnknownRecipient(next.clone()))?;
    let id = relay.inner_id;
    let expires = relay.inner_expires;
    let kind = relay.inner_kind;
    let extra = RelayedOut {
        route: relay.route.clone(),
        inner_digest: relay.inner_digest.0,
        end_to_end_receipt: None,
        end_to_end_index: None,
        end_to_end_missing_index: None,
    };
    let msg = Message {
        header: Header {
            id,
            sender: s.me.clone(),
            recipient: next.clone(),
            created: secs,
            expires,
        },
        body: Body::Relay(Box::new(relay)),
    };
    let envelope = seal(
        &msg,
        &s.identity.signing_key,
        &peer.encryption_key,
        &s.limits,
        s.rng,
    )?;
    let mut rec = OutboxRecord::pending(id, &next, kind, envelope, secs, expires, ms);
    rec.relay = Some(extra);
    Ok(rec)
}
