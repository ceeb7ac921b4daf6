//! Re-sealing the queued outbox after this node's own signing key is
//! revoked (spec/protocol.md §9, federation.md §12.5).
//!
//! ```text
//!  submit: seal(m, key₁) → recipient      ─┐ one outbox record, one
//!          seal(m, key₁) → own enc. key   ─┘ durable commit; `sent`(d₁)
//!  key₁ revoked, key₂ installed, node restarted (or its directory changes):
//!  before delivery: open own copy (signature by key₁ checked, revocation
//!  ignored: it is this node's own message) → m' = m with iat = now
//!          seal(m', key₂) → recipient, seal(m', key₂) → own key
//!          one durable commit replacing the envelope; `sent`(d₂, resealed-from d₁)
//! ```
//!
//! The plaintext never sits at rest unencrypted: the own copy is an ordinary
//! envelope sealed to this node's encryption key. The re-seal is one
//! transaction on the record (a crash leaves it old or new) and is
//! idempotent (a record already signed with the current key is left
//! alone); its `sent` entry is logged after the commit by the path that
//! logs every missing `sent` entry (recovery at start, or the delivery task
//! before its attempt), so a crash between the two only delays the entry.
//! A message is re-sealed with a new creation time (`iat`): the replacement
//! key is valid from its `valid-from`, which is usually after the message
//! was first sealed.
//!
//! A relayed message this node originated (spec/relay.md) is re-sealed the
//! same way: the inner envelope to the final recipient and the hop envelope
//! to the first relay (which carries the inner one and this node's
//! endorsement) are both made anew with the new key, the record's inner
//! digest follows, and both `sent` entries (hop and end to end) name what
//! they supersede. Hops this node forwards for others and the end-to-end
//! receipts it routes back are not re-sealed: it is not their originator,
//! and their records keep no own copy.

use isnad_envelope::{
    seal, AgencyId, Digest, EncryptionKey, KeyId, Kind, Message, Opener, SenderKey, SenderKeys,
};

use crate::node::types::{now, NodeError};
use crate::sealing::{self, Sealer};
use crate::store::{Durability, OutState, OutboxRecord, Store};

/// Re-seals the pending record `rec` with the current signing key if the
/// key that sealed it is revoked as of now and the current one is not;
/// returns whether it did. The new record (new envelope, digest and own
/// copy, `sent_index` cleared) is committed durably before this returns;
/// the caller logs its `sent` entry like any missing one.
pub(crate) async fn reseal_if_revoked(
    s: &Sealer<'_>,
    store: &Store,
    rec: &OutboxRecord,
) -> Result<bool, NodeError> {
    let secs = now().0;
    let Some(new) = resealed(s, rec, secs)? else {
        return Ok(false);
    };
    let (id, old_digest) = (rec.id, rec.digest);
    let replaced = store
        .modify_outbox(id, Durability::Durable, move |stored| {
            // Replaced only if unchanged since it was read (the caller
            // owns the record; this keeps a concurrent update safe).
            if stored.state == OutState::Pending && stored.digest == old_digest {
                *stored = new;
            }
        })
        .await?;
    let done = replaced.is_some_and(|r| r.digest != old_digest);
    if done {
        tracing::warn!(
            %id,
            superseded = %Digest(old_digest).to_hex(),
            "re-sealed a queued message: the signing key that sealed it is revoked"
        );
    }
    Ok(done)
}

/// The re-sealed version of `rec` at `secs`, or `None` when it needs no
/// re-seal or cannot have one (no own copy, its signer key is not
/// revoked or is the current one, the current key is revoked too, it
/// expired, or the own copy cannot be opened: then it is delivered as
/// it is and fails with the reason).
fn resealed(
    s: &Sealer<'_>,
    rec: &OutboxRecord,
    secs: u64,
) -> Result<Option<OutboxRecord>, NodeError> {
    let Some(copy) = &rec.reseal else {
        return Ok(None);
    };
    let key = &s.identity.signing_key;
    let signer = KeyId::from_bytes(copy.signer);
    let revoked = s
        .directory
        .sender_key(&signer)
        .and_then(|k| k.revoked_at)
        .is_some_and(|at| secs >= at);
    if rec.state != OutState::Pending || signer == key.key_id() || !revoked || secs >= rec.expires {
        return Ok(None);
    }
    // The message's own recipient: the final one of a relayed message
    // this node originated; a hop it forwards or an end-to-end receipt
    // it routes back is not its own to re-sign.
    let recipient = match &rec.relay {
        None => rec.recipient.clone(),
        Some(r) if r.route.first() == Some(s.me) && rec.kind != Kind::Receipt => {
            match r.route.last() {
                Some(last) => last.clone(),
                None => return Ok(None),
            }
        }
        Some(_) => return Ok(None),
    };
    if let Some(at) = s.own_key_revoked(secs) {
        tracing::warn!(
            revoked_at = at,
            "cannot re-seal the outbox: this node's current signing key is revoked too"
        );
        return Ok(None);
    }
    let id = rec.id;
    let mut msg = match open_own_copy(
        &copy.own_copy,
        &recipient,
        &s.identity.encryption_keys,
        &OwnOldKey {
            directory: s.directory,
            kid: signer,
            me: s.me,
        },
        s.limits,
    ) {
        Ok(m) if m.header.id == id && m.header.sender == *s.me => m,
        Ok(_) => {
            tracing::warn!(%id, "cannot re-seal: the own copy is of another message");
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "cannot re-seal: the own copy does not open");
            return Ok(None);
        }
    };
    let Some(peer) = s.directory.peer(&recipient) else {
        return Ok(None);
    };
    msg.header.created = secs;
    let mut own = sealing::own_copy(s, &msg)?;
    own.resealed_from = Some(rec.digest);
    let mut new = rec.clone();
    match &rec.relay {
        None => {
            let envelope = seal(&msg, key, &peer.encryption_key, &s.limits, s.rng)?;
            new.digest = Digest::sha256(&envelope).0;
            new.envelope = envelope;
        }
        Some(r) => {
            // A new inner envelope, endorsed and wrapped in a new hop
            // envelope to the same first relay.
            let hop = sealing::relayed_record(s, r.route.clone(), &peer, &msg, secs, secs * 1000)?;
            own.inner_resealed_from = Some(r.inner_digest);
            new.digest = hop.digest;
            new.envelope = hop.envelope;
            if let (Some(x), Some(h)) = (new.relay.as_mut(), hop.relay) {
                x.inner_digest = h.inner_digest;
            }
        }
    }
    new.created = secs;
    new.sent_index = None;
    new.reseal = Some(own);
    Ok(Some(new))
}

/// Opens this node's own copy of a message it sealed to `recipient`: every
/// check of a stored envelope, with the signer looked up by [`OwnOldKey`].
fn open_own_copy(
    own_copy: &[u8],
    recipient: &AgencyId,
    keys: &[EncryptionKey],
    senders: &OwnOldKey<'_>,
    limits: isnad_envelope::Limits,
) -> Result<Message, isnad_envelope::OpenError> {
    let opener = Opener {
        me: recipient,
        keys,
        limits,
    };
    Ok(opener.reopen_accepted(own_copy, senders)?.message)
}

/// The one signer key an own copy may carry: this node's earlier key, as its
/// directory lists it, without its validity window or revocation (it signed
/// this node's own message, which is being re-signed, not accepted).
struct OwnOldKey<'a> {
    directory: &'a dyn crate::node::types::Directory,
    kid: KeyId,
    me: &'a AgencyId,
}

impl SenderKeys for OwnOldKey<'_> {
    fn sender_key(&self, kid: &KeyId) -> Option<SenderKey> {
        if *kid != self.kid {
            return None;
        }
        let k = self.directory.sender_key(kid)?;
        (k.agency == *self.me).then_some(SenderKey {
            valid_from: None,
            valid_until: None,
            revoked_at: None,
            ..k
        })
    }
}
