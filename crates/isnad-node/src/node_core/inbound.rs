//! The inbound path's decisions once an envelope is opened and allowed
//! (spec/transport.md §4 steps 6–9, spec/relay.md §7, §9): which entries
//! acknowledge it and where they land in the log, which receipt answers
//! it, and what to do when the inbox write that must precede the answer
//! does not store the message. Pure: the driver (`crate::node`) appends
//! [`Acceptance::entries`], signs the receipt [`Acceptance::receipt`]
//! names, writes the inbox record, then hands [`after_inbox`]'s effects
//! back in order.

use isnad_envelope::{AgencyId, Digest, ErrorCode, Header, Kind, MessageId};
use isnad_log::{Entry, LoggedAttachment};
use isnad_wire::Response;

use crate::exchange::{self, Ack};

/// Who handed an accepted end-to-end message over, and how.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The authenticated peer that delivered it (the sender, or the last relay).
    pub peer: AgencyId,
    /// SHA-256 of what that peer delivered (what our receipt acknowledges).
    pub digest: Digest,
    /// The route when relayed (originator first); empty for direct delivery.
    pub via: Vec<AgencyId>,
}

/// Where one acceptance batch landed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexes {
    /// The entry the answered receipt names (its `log-index`).
    pub receipt: u64,
    /// Its `receipt-sent` entry.
    pub receipt_sent: u64,
    /// The `received` entry of the end-to-end message (the inbox record's
    /// `log_index`; the receipt's for direct delivery).
    pub message: u64,
    /// The first entry after the acknowledgements (the `status-changed`
    /// entries of the case change).
    pub tail: u64,
    /// Relayed: the `receipt-sent` of the end-to-end pair (the receipt to
    /// the originator, sent only once the inbox stored the message).
    pub end_to_end_receipt_sent: Option<u64>,
}

/// The audit entries that accept one message, before they are logged.
#[derive(Debug, Clone)]
pub struct Acceptance {
    acks: Vec<Ack>,
    tail: Vec<Entry>,
    /// Which acknowledgement is the end-to-end message's.
    end: usize,
    me: AgencyId,
    ms: u64,
}

/// The acceptance of message `h` (kind `kind`, envelope `digest`) handed
/// over by `hop`, at `ms`, followed by `tail`. Directly delivered:
/// `received`, `receipt-sent`. Relayed: the hop is acknowledged first (the
/// receipt answered goes to the last relay), then the end-to-end message
/// with its route in `via` (spec/relay.md §9).
pub fn accept(
    me: &AgencyId,
    h: &Header,
    kind: Kind,
    digest: Digest,
    hop: &Hop,
    tail: Vec<Entry>,
    ms: u64,
) -> Acceptance {
    let mut end = Ack {
        entry: exchange::received(h, kind, digest, ms),
        id: h.id,
        to: h.sender.clone(),
        digest,
    };
    let acks = if hop.via.is_empty() {
        vec![end]
    } else {
        let via: Vec<String> = hop.via.iter().map(|a| a.to_string()).collect();
        end.entry.detail.insert("via".into(), via.join(" "));
        let first = Ack {
            entry: exchange::hop_received(h.id, &hop.peer, me, hop.digest, kind, &[], ms),
            id: h.id,
            to: hop.peer.clone(),
            digest: hop.digest,
        };
        vec![first, end]
    };
    Acceptance {
        end: acks.len() - 1,
        acks,
        tail,
        me: me.clone(),
        ms,
    }
}

/// One acknowledgement of `entry` (the relay's hop and end-to-end receipt
/// paths), followed by `tail`.
pub fn acknowledge_one(me: &AgencyId, ack: Ack, tail: Vec<Entry>, ms: u64) -> Acceptance {
    Acceptance {
        acks: vec![ack],
        tail,
        end: 0,
        me: me.clone(),
        ms,
    }
}

impl Acceptance {
    /// Records `list`, the attachments of the accepted message (stored and
    /// checked), on every acknowledged entry, so each `receipt-sent` carries
    /// them too (spec/audit-log.md §2.5). A relayed message's hop carried
    /// the same metadata: the final recipient checked it equals the inner
    /// body's attachments before accepting (spec/relay.md §3a).
    pub fn with_attachments(mut self, list: &[LoggedAttachment]) -> Self {
        for a in &mut self.acks {
            a.entry.set_attachments(list);
        }
        self
    }

    /// Where the batch's entries land if it is appended at `first`.
    pub fn indexes(&self, first: u64) -> Indexes {
        let receipt = exchange::ack_index(first, 0);
        let message = exchange::ack_index(first, self.end);
        Indexes {
            receipt,
            receipt_sent: receipt + 1,
            message,
            tail: exchange::tail_index(first, self.acks.len()),
            end_to_end_receipt_sent: (self.end > 0).then_some(message + 1),
        }
    }

    /// The receipt the answer carries: to whom, for which message id and
    /// which bytes (the first acknowledgement's).
    pub fn receipt(&self) -> (MessageId, AgencyId, Digest) {
        let a = &self.acks[0];
        (a.id, a.to.clone(), a.digest)
    }

    /// The entries to append, in order, as appended at `first`.
    pub fn entries(self, first: u64) -> Vec<Entry> {
        exchange::acknowledgements(&self.me, self.acks, self.tail, first, self.ms)
    }
}

/// What the inbox write (spec/transport.md §4 step 8) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The message and its receipt are durable.
    Stored,
    /// The request or share changed since the check: nothing stored.
    Changed,
    /// A concurrent delivery of the same message won the race: its receipt.
    Duplicate(Vec<u8>),
    /// The write failed: nothing stored.
    Failed(String),
    /// (Relay only) the message id is in use at the relay for other bytes.
    IdInUse,
}

/// The effects after the inbox write, in order: append `withdraw` (if
/// any), then answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `rejected` entries (stage `inbox`) saying that a `receipt-sent`
    /// already logged was never sent: logged before the answer whenever
    /// the inbox did not store the message (spec/transport.md §7). One for
    /// the receipt answered; for a relayed message a second one for the
    /// end-to-end receipt to the originator, which is never made either.
    pub withdraw: Vec<Entry>,
    /// The answer to the peer.
    pub response: Response,
}

/// The answer once the inbox write ended with `stored`, for the receipt
/// `receipt` logged at `at` (message `id` from `peer`, envelope `digest`;
/// relayed: `end_to_end` is the originator and the end-to-end envelope's
/// digest, whose pair's `receipt-sent` is at `at.end_to_end_receipt_sent`).
/// Only a stored message is answered with the receipt the log names; in
/// every other case that receipt is withdrawn in the log, and the peer
/// gets the earlier receipt (a duplicate) or an error.
#[allow(clippy::too_many_arguments)] // the withdrawal's keys
pub fn after_inbox(
    me: &AgencyId,
    peer: &AgencyId,
    id: MessageId,
    digest: Digest,
    at: Indexes,
    receipt: Vec<u8>,
    stored: Stored,
    end_to_end: Option<(&AgencyId, Digest)>,
    ms: u64,
) -> Answer {
    let withdraw = |why: &str| {
        let mut w = vec![exchange::receipt_withdrawn(
            peer,
            me,
            id,
            digest,
            at.receipt_sent,
            why,
            ms,
        )];
        if let (Some((originator, end_digest)), Some(index)) =
            (end_to_end, at.end_to_end_receipt_sent)
        {
            w.push(exchange::receipt_withdrawn(
                originator, me, id, end_digest, index, why, ms,
            ));
        }
        w
    };
    let unavailable = || Response::Error {
        code: ErrorCode::Unavailable,
        message_id: Some(id),
        detail: Some("try again later".into()),
    };
    match stored {
        Stored::Stored => Answer {
            withdraw: Vec::new(),
            response: Response::Receipt(receipt),
        },
        Stored::Duplicate(earlier) => Answer {
            withdraw: withdraw("stored by a concurrent delivery"),
            response: Response::Receipt(earlier),
        },
        Stored::Changed => Answer {
            withdraw: withdraw("request or share changed meanwhile"),
            response: unavailable(),
        },
        Stored::Failed(e) => Answer {
            withdraw: withdraw(&format!("inbox write failed: {e}")),
            response: unavailable(),
        },
        Stored::IdInUse => Answer {
            withdraw: withdraw("message id in use at the relay"),
            response: Response::Error {
                code: ErrorCode::Replayed,
                message_id: Some(id),
                detail: Some("this message id is already in use at the relay".into()),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isnad_log::EventType;

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).expect("valid")
    }

    fn header(from: &AgencyId, to: &AgencyId) -> Header {
        Header {
            id: MessageId::from_bytes([7; 16]),
            sender: from.clone(),
            recipient: to.clone(),
            created: 1,
            expires: 2,
        }
    }

    #[test]
    fn a_direct_acceptance_is_received_then_receipt_sent_then_the_tail() {
        let (me, from) = (agency("xx.rcpt"), agency("yy.send"));
        let hop = Hop {
            peer: from.clone(),
            digest: Digest([1; 32]),
            via: vec![],
        };
        let tail = vec![Entry::new(EventType::StatusChanged, 3)];
        let a = accept(
            &me,
            &header(&from, &me),
            Kind::MlaRequest,
            Digest([1; 32]),
            &hop,
            tail,
            3,
        );
        let at = a.indexes(10);
        assert_eq!(
            at,
            Indexes {
                receipt: 10,
                receipt_sent: 11,
                message: 10,
                tail: 12,
                end_to_end_receipt_sent: None,
            }
        );
        assert_eq!(a.receipt().1, from);
        let e = a.entries(10);
        let kinds: Vec<_> = e.iter().map(|e| e.event).collect();
        assert_eq!(
            kinds,
            [
                EventType::Received,
                EventType::ReceiptSent,
                EventType::StatusChanged
            ]
        );
        assert_eq!(e[1].peer_index, Some(at.receipt));
    }

    #[test]
    fn a_relayed_acceptance_acknowledges_the_hop_first() {
        let (me, from, relay) = (agency("xx.rcpt"), agency("yy.send"), agency("zz.relay"));
        let hop = Hop {
            peer: relay.clone(),
            digest: Digest([2; 32]),
            via: vec![from.clone(), relay.clone(), me.clone()],
        };
        let a = accept(
            &me,
            &header(&from, &me),
            Kind::MlaRequest,
            Digest([1; 32]),
            &hop,
            vec![],
            3,
        );
        let at = a.indexes(20);
        assert_eq!(
            at,
            Indexes {
                receipt: 20,
                receipt_sent: 21,
                message: 22,
                tail: 24,
                end_to_end_receipt_sent: Some(23),
            }
        );
        assert_eq!(
            a.receipt(),
            (MessageId::from_bytes([7; 16]), relay, Digest([2; 32]))
        );
        let e = a.entries(20);
        assert_eq!(e.len(), 4);
        assert_eq!(e[2].envelope_sha256, Some([1; 32]));
        assert_eq!(e[3].peer_index, Some(at.message));
    }

    #[test]
    fn only_a_stored_message_is_answered_with_the_logged_receipt() {
        let (me, from) = (agency("xx.rcpt"), agency("yy.send"));
        let id = MessageId::from_bytes([7; 16]);
        let at = Indexes {
            receipt: 4,
            receipt_sent: 5,
            message: 4,
            tail: 6,
            end_to_end_receipt_sent: None,
        };
        let go = |s| after_inbox(&me, &from, id, Digest([1; 32]), at, vec![9], s, None, 1);
        let a = go(Stored::Stored);
        assert!(a.withdraw.is_empty());
        assert_eq!(a.response, Response::Receipt(vec![9]));
        for s in [
            Stored::Changed,
            Stored::Failed("disk".into()),
            Stored::Duplicate(vec![8]),
            Stored::IdInUse,
        ] {
            let a = go(s);
            assert_eq!(a.withdraw.len(), 1, "one receipt-sent to withdraw");
            assert_eq!(a.withdraw[0].peer_index, Some(5));
            assert_ne!(a.response, Response::Receipt(vec![9]));
        }
    }

    /// A relayed message the inbox did not store: both `receipt-sent`
    /// entries of the batch are withdrawn, the hop's (to the last relay,
    /// over the hop envelope) and the end-to-end pair's (to the
    /// originator, over the inner envelope), which is never sent either.
    #[test]
    fn a_relayed_message_not_stored_withdraws_both_receipts() {
        let (me, relay, origin) = (agency("xx.rcpt"), agency("zz.ca"), agency("yy.send"));
        let h = header(&origin, &me);
        let hop = Hop {
            peer: relay.clone(),
            digest: Digest([2; 32]),
            via: vec![origin.clone(), relay.clone()],
        };
        let a = accept(
            &me,
            &h,
            Kind::IntelShare,
            Digest([1; 32]),
            &hop,
            Vec::new(),
            1,
        );
        let at = a.indexes(20);
        assert_eq!(at.end_to_end_receipt_sent, Some(at.message + 1));
        let entries = a.entries(20);
        let end_sent = &entries[(at.message + 1 - 20) as usize];
        assert_eq!(end_sent.recipient.as_ref(), Some(&origin));
        let answer = after_inbox(
            &me,
            &relay,
            h.id,
            hop.digest,
            at,
            vec![9],
            Stored::Failed("disk".into()),
            Some((&origin, Digest([1; 32]))),
            1,
        );
        assert_eq!(answer.withdraw.len(), 2);
        let (w0, w1) = (&answer.withdraw[0], &answer.withdraw[1]);
        assert_eq!(w0.peer_index, Some(at.receipt_sent));
        assert_eq!(w0.sender.as_ref(), Some(&relay));
        assert_eq!(w0.envelope_sha256, Some([2; 32]));
        assert_eq!(w1.peer_index, Some(at.message + 1));
        assert_eq!(w1.sender.as_ref(), Some(&origin));
        assert_eq!(w1.envelope_sha256, Some([1; 32]));
        // Directly delivered: one withdrawal, even if asked for two.
        let direct = accept(
            &me,
            &h,
            Kind::IntelShare,
            Digest([1; 32]),
            &Hop {
                via: Vec::new(),
                ..hop
            },
            Vec::new(),
            1,
        );
        let at = direct.indexes(20);
        assert_eq!(at.end_to_end_receipt_sent, None);
        let answer = after_inbox(
            &me,
            &origin,
            h.id,
            Digest([1; 32]),
            at,
            vec![9],
            Stored::Changed,
            Some((&origin, Digest([1; 32]))),
            1,
        );
        assert_eq!(answer.withdraw.len(), 1);
    }

    /// Every acknowledged entry of a message with attachments records them,
    /// and so does each `receipt-sent` (spec/audit-log.md §2.5); the tail
    /// does not.
    #[test]
    fn attachments_are_recorded_on_the_received_and_receipt_sent_entries() {
        let (me, from, relay) = (agency("xx.rcpt"), agency("yy.send"), agency("zz.relay"));
        let list = [LoggedAttachment {
            ciphertext_root: [5; 32],
            ciphertext_size: 316,
        }];
        for via in [vec![], vec![from.clone(), relay.clone(), me.clone()]] {
            let hop = Hop {
                peer: if via.is_empty() {
                    from.clone()
                } else {
                    relay.clone()
                },
                digest: Digest([2; 32]),
                via,
            };
            let tail = vec![Entry::new(EventType::StatusChanged, 3)];
            let a = accept(
                &me,
                &header(&from, &me),
                Kind::MlaRequest,
                Digest([1; 32]),
                &hop,
                tail,
                3,
            )
            .with_attachments(&list);
            let e = a.entries(0);
            let (acked, tail) = e.split_at(e.len() - 1);
            for x in acked {
                assert!(
                    matches!(x.event, EventType::Received | EventType::ReceiptSent),
                    "{x:?}"
                );
                assert_eq!(x.attachments(), Ok(list.to_vec()), "{x:?}");
            }
            assert_eq!(tail[0].attachments(), Ok(vec![]));
        }
    }
}
