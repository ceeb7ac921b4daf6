//! Building blocks for tests of the cross-log audit: two agencies' logs with
//! the entries isnad-node writes for each exchange, which tests then damage
//! on purpose. Not a stable API.

use isnad_types::{AgencyId, MessageId};

use crate::audited::AuditedLog;
use crate::checkpoint::{origin_for, Checkpoint};
use crate::crosscheck::Side;
use crate::entry::{Entry, EventType};
use crate::merkle::{leaf_hash, Tree};

/// Two agencies' logs, built entry by entry.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Agency of log A.
    pub a: AgencyId,
    /// Agency of log B.
    pub b: AgencyId,
    /// Log A's entries (seq = position).
    pub a_entries: Vec<Entry>,
    /// Log B's entries.
    pub b_entries: Vec<Entry>,
}

/// The envelope digest the helpers use for message `n`.
pub fn digest(n: u8) -> [u8; 32] {
    let mut d = [0u8; 32];
    d.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &[b'e', n]).as_ref());
    d
}

/// The message id the helpers use for message `n`.
pub fn message_id(n: u8) -> MessageId {
    MessageId::from_bytes([n; 16])
}

impl Pair {
    /// Two empty logs.
    ///
    /// # Panics
    /// If `a` or `b` is not a valid agency id.
    #[allow(clippy::unwrap_used)] // Test helper: the ids are literals.
    pub fn new(a: &str, b: &str) -> Self {
        Self {
            a: AgencyId::new(a).unwrap(),
            b: AgencyId::new(b).unwrap(),
            a_entries: Vec::new(),
            b_entries: Vec::new(),
        }
    }

    /// The entries of one side.
    pub fn entries_mut(&mut self, side: Side) -> &mut Vec<Entry> {
        match side {
            Side::A => &mut self.a_entries,
            Side::B => &mut self.b_entries,
        }
    }

    fn parties(&self, from: Side) -> (AgencyId, AgencyId) {
        match from {
            Side::A => (self.a.clone(), self.b.clone()),
            Side::B => (self.b.clone(), self.a.clone()),
        }
    }

    /// The standard scenario of the tests, between `iq.moj.ca` (A) and
    /// `fr.mj.bepi` (B) from time `t_ms`: messages 1, 2 and 5 delivered A→B,
    /// 3 delivered B→A, 4 refused by B (`policy-denied`), then an entry on
    /// each side an hour later, so that each export covers every exchange.
    pub fn federation(t_ms: u64) -> Self {
        let mut p = Self::new("iq.moj.ca", "fr.mj.bepi");
        p.deliver(Side::A, 1, t_ms);
        p.deliver(Side::A, 2, t_ms + 1_000);
        p.deliver(Side::B, 3, t_ms + 2_000);
        p.refuse(Side::A, 4, t_ms + 3_000, "policy-denied");
        p.deliver(Side::A, 5, t_ms + 4_000);
        for side in [Side::A, Side::B] {
            p.push(
                side,
                Entry::new(EventType::DirectoryChanged, t_ms + 3_600_000),
            );
        }
        p
    }

    /// Appends `e` to `side`, setting its seq; returns the index.
    pub fn push(&mut self, side: Side, mut e: Entry) -> u64 {
        let log = self.entries_mut(side);
        e.seq = log.len() as u64;
        log.push(e);
        log.len() as u64 - 1
    }

    /// The sender's `sent` entry of message `n` at `t_ms`.
    pub fn sent(&mut self, from: Side, n: u8, t_ms: u64) -> u64 {
        let (s, r) = self.parties(from);
        let mut e = Entry::new(EventType::Sent, t_ms);
        e.message_id = Some(message_id(n));
        e.sender = Some(s);
        e.recipient = Some(r);
        e.envelope_sha256 = Some(digest(n));
        self.push(from, e)
    }

    /// The recipient's `received` + `receipt-sent` pair; returns the index of
    /// `received`.
    pub fn received(&mut self, from: Side, n: u8, t_ms: u64) -> u64 {
        let (s, r) = self.parties(from);
        let to = other(from);
        let mut e = Entry::new(EventType::Received, t_ms);
        e.message_id = Some(message_id(n));
        e.sender = Some(s.clone());
        e.recipient = Some(r.clone());
        e.envelope_sha256 = Some(digest(n));
        let i = self.push(to, e);
        let mut rs = Entry::new(EventType::ReceiptSent, t_ms);
        rs.message_id = Some(message_id(n));
        rs.sender = Some(r);
        rs.recipient = Some(s);
        rs.envelope_sha256 = Some(digest(n));
        rs.peer_index = Some(i);
        self.push(to, rs);
        i
    }

    /// The sender's `receipt-received` naming the peer's index `peer`.
    pub fn receipt(&mut self, from: Side, n: u8, t_ms: u64, peer: u64) -> u64 {
        let (s, r) = self.parties(from);
        let mut e = Entry::new(EventType::ReceiptReceived, t_ms);
        e.message_id = Some(message_id(n));
        e.sender = Some(s);
        e.recipient = Some(r);
        e.envelope_sha256 = Some(digest(n));
        e.peer_index = Some(peer);
        self.push(from, e)
    }

    /// A whole delivery: sent at `t_ms`, received 20 ms later, receipt
    /// 40 ms later.
    pub fn deliver(&mut self, from: Side, n: u8, t_ms: u64) {
        self.sent(from, n, t_ms);
        let i = self.received(from, n, t_ms + 20);
        self.receipt(from, n, t_ms + 40, i);
    }

    /// A refused delivery: sent, the recipient's `rejected`, the sender's
    /// `delivery-failed`.
    pub fn refuse(&mut self, from: Side, n: u8, t_ms: u64, reason: &str) {
        let (s, r) = self.parties(from);
        self.sent(from, n, t_ms);
        let mut rej = Entry::new(EventType::Rejected, t_ms + 20);
        rej.sender = Some(s.clone());
        rej.recipient = Some(r.clone());
        rej.envelope_sha256 = Some(digest(n));
        rej.reason = Some(reason.to_owned());
        self.push(other(from), rej);
        let mut f = Entry::new(EventType::DeliveryFailed, t_ms + 40);
        f.message_id = Some(message_id(n));
        f.sender = Some(s);
        f.recipient = Some(r);
        f.envelope_sha256 = Some(digest(n));
        f.reason = Some(reason.to_owned());
        self.push(from, f);
    }

    /// Renumbers the seq of every entry of `side` to its position (after a
    /// test removed or inserted entries).
    pub fn renumber(&mut self, side: Side) {
        for (i, e) in self.entries_mut(side).iter_mut().enumerate() {
            e.seq = i as u64;
        }
    }

    /// The log of `side` as a verified log would be (checkpoint computed
    /// from the entries; no signature, empty note).
    ///
    /// # Panics
    /// If an entry does not encode.
    #[allow(clippy::unwrap_used)] // Test helper: the entries are built above.
    pub fn audited(&self, side: Side) -> AuditedLog {
        let (agency, entries) = match side {
            Side::A => (&self.a, &self.a_entries),
            Side::B => (&self.b, &self.b_entries),
        };
        let mut tree = Tree::new();
        for e in entries {
            tree.push(leaf_hash(&e.encode().unwrap()));
        }
        let cp = Checkpoint::new(&origin_for(agency), tree.size(), tree.root()).unwrap();
        AuditedLog::new(cp, String::new(), entries.clone()).unwrap()
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}
