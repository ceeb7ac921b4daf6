//! Cross-log audit: pairs the two ends of every exchange between two nodes
//! from their verified audit logs and lists what does not add up.
//!
//! Normative rules: `spec/cross-check.md`. Input: two [`AuditedLog`]s (each
//! verified on its own); output: a [`CrossCheck`] with typed [`Finding`]s in
//! a deterministic order and counts of matched exchanges. No message content
//! is needed: entries carry ids, parties, envelope digests and the peers' log
//! indexes.
//!
//! What each node writes for one delivery from A to B (isnad-node):
//!
//! ```text
//!   A: sent(m, A→B, d)                          B: received(m, A→B, d)        at index i
//!                                               B: receipt-sent(m, B→A, d, peer-index i)
//!   A: receipt-received(m, A→B, d, peer-index i)
//!   or A: delivery-failed / delivery-expired(m, →B)   (B: rejected(A→B, d, reason))
//! ```
//!
//! A message re-sealed after its sender's signing key was revoked has a
//! second `sent(m, A→B, d₂)` naming `d` in its detail `resealed-from`; the
//! superseded `sent` is left out of the exchange.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use isnad_types::{AgencyId, Digest, MessageId};

use crate::audited::AuditedLog;
use crate::entry::{Entry, EventType};

/// Default clock-skew tolerance: 300 s, the envelope's `max_clock_skew_secs`
/// (spec/protocol.md).
pub const DEFAULT_SKEW_MS: u64 = 300_000;

/// Version of the JSON output ([`CrossCheck::to_json`]).
pub const JSON_VERSION: u64 = 1;

/// Which of the two logs an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The first log given.
    A,
    /// The second log given.
    B,
}

impl Side {
    /// `"a"` or `"b"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }
}

/// One entry a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryRef {
    /// The log.
    pub side: Side,
    /// Its index in that log.
    pub index: u64,
    /// Its event type.
    pub event: EventType,
}

impl fmt::Display for EntryRef {
    /// `A#3 sent`: the log, the index, the event.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side {
            Side::A => "A",
            Side::B => "B",
        };
        write!(f, "{side}#{} {}", self.index, self.event)
    }
}

/// The kind of a finding. Names ([`FindingClass::as_str`]) are stable;
/// the table order is the sort order. `spec/cross-check.md` §4 defines each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FindingClass {
    /// `sent-not-received`: the sender logged `sent`, the recipient's export
    /// covers the time (or the sender's receipt names an index inside it) but
    /// holds no `received` of the message.
    SentNotReceived,
    /// `received-not-sent`: the recipient logged `received`, the sender's
    /// export covers the time but holds no `sent` of the message.
    ReceivedNotSent,
    /// `receipt-index-missing`: a `receipt-received` names a peer index at
    /// or beyond the peer's export size, though the peer's export is newer.
    ReceiptIndexMissing,
    /// `receipt-index-mismatch`: a `receipt-received` names a peer index
    /// whose entry is not the `received` of that message (forged receipt or
    /// rewritten peer log).
    ReceiptIndexMismatch,
    /// `digest-mismatch`: the entries of one exchange carry different
    /// envelope digests.
    DigestMismatch,
    /// `attachment-mismatch`: the entries of one exchange record different
    /// attachments (ciphertext roots and sizes, spec/audit-log.md §2.5), or
    /// one records an unreadable list: the recipient acknowledged other
    /// files than the sender sent.
    AttachmentMismatch,
    /// `receipt-not-logged`: the recipient logged `received` but no
    /// `receipt-sent` naming it (the node writes both in one batch).
    ReceiptNotLogged,
    /// `receipt-sent-unmatched`: a `receipt-sent` whose peer index is not its
    /// own log's `received` entry of the message.
    ReceiptSentUnmatched,
    /// `receipt-without-sent`: a `receipt-received` with no `sent` of the
    /// message in the same log.
    ReceiptWithoutSent,
    /// `delivery-contradiction`: the sender logged `delivery-failed` or
    /// `delivery-expired` and no receipt, but the recipient logged `received`.
    DeliveryContradiction,
    /// `received-before-sent`: `received` more than the tolerance before `sent`.
    ReceivedBeforeSent,
    /// `receipt-before-received`: `receipt-received` more than the tolerance
    /// before the peer's `received`.
    ReceiptBeforeReceived,
    /// `receipt-before-sent`: `receipt-received` more than the tolerance
    /// before the same log's `sent`.
    ReceiptBeforeSent,
    /// Notice `sent-in-flight`: `sent` with no `received`, and the
    /// recipient's export is not known to be newer than the send.
    SentInFlight,
    /// Notice `received-after-export`: `received` with no `sent`, and the
    /// sender's export is not known to be newer than the receipt.
    ReceivedAfterExport,
    /// Notice `receipt-after-export`: a `receipt-received` names an index
    /// beyond the peer's export, which is not known to be newer.
    ReceiptAfterExport,
    /// Notice `awaiting-receipt`: the recipient logged `received` and
    /// `receipt-sent`, the sender has no `receipt-received` or failure yet.
    AwaitingReceipt,
}

impl FindingClass {
    /// Every class, in sort order.
    pub const ALL: [FindingClass; 17] = [
        Self::SentNotReceived,
        Self::ReceivedNotSent,
        Self::ReceiptIndexMissing,
        Self::ReceiptIndexMismatch,
        Self::DigestMismatch,
        Self::AttachmentMismatch,
        Self::ReceiptNotLogged,
        Self::ReceiptSentUnmatched,
        Self::ReceiptWithoutSent,
        Self::DeliveryContradiction,
        Self::ReceivedBeforeSent,
        Self::ReceiptBeforeReceived,
        Self::ReceiptBeforeSent,
        Self::SentInFlight,
        Self::ReceivedAfterExport,
        Self::ReceiptAfterExport,
        Self::AwaitingReceipt,
    ];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SentNotReceived => "sent-not-received",
            Self::ReceivedNotSent => "received-not-sent",
            Self::ReceiptIndexMissing => "receipt-index-missing",
            Self::ReceiptIndexMismatch => "receipt-index-mismatch",
            Self::DigestMismatch => "digest-mismatch",
            Self::AttachmentMismatch => "attachment-mismatch",
            Self::ReceiptNotLogged => "receipt-not-logged",
            Self::ReceiptSentUnmatched => "receipt-sent-unmatched",
            Self::ReceiptWithoutSent => "receipt-without-sent",
            Self::DeliveryContradiction => "delivery-contradiction",
            Self::ReceivedBeforeSent => "received-before-sent",
            Self::ReceiptBeforeReceived => "receipt-before-received",
            Self::ReceiptBeforeSent => "receipt-before-sent",
            Self::SentInFlight => "sent-in-flight",
            Self::ReceivedAfterExport => "received-after-export",
            Self::ReceiptAfterExport => "receipt-after-export",
            Self::AwaitingReceipt => "awaiting-receipt",
        }
    }

    /// Parses a stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// True for notices: explained by an export taken while the exchange
    /// was still under way. Notices do not make a cross-check fail.
    pub const fn is_notice(self) -> bool {
        matches!(
            self,
            Self::SentInFlight
                | Self::ReceivedAfterExport
                | Self::ReceiptAfterExport
                | Self::AwaitingReceipt
        )
    }

    /// `"notice"` or `"finding"`.
    pub const fn severity(self) -> &'static str {
        if self.is_notice() {
            "notice"
        } else {
            "finding"
        }
    }
}

impl fmt::Display for FindingClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that does not add up between (or within) the two logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind.
    pub class: FindingClass,
    /// The message of the exchange.
    pub message_id: MessageId,
    /// The message's sender (the direction of the exchange).
    pub sender: AgencyId,
    /// The message's recipient.
    pub recipient: AgencyId,
    /// The entries concerned, sorted.
    pub entries: Vec<EntryRef>,
    /// A sentence for the operator (informative; not part of the stable output).
    pub detail: String,
}

/// Per-exchange tallies. An exchange is one message id in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Exchanges seen (a `sent`, `received`, receipt or failure of a message id).
    pub exchanges: u64,
    /// `sent`, `received`, `receipt-sent` and `receipt-received` all present
    /// and consistent.
    pub matched: u64,
    /// The sender logged a failure and the recipient a `rejected` entry with
    /// the same envelope digest.
    pub refused: u64,
    /// The sender logged a failure and the recipient nothing.
    pub undelivered: u64,
    /// Exchanges with notices only.
    pub in_flight: u64,
    /// Exchanges with at least one finding that is not a notice.
    pub with_findings: u64,
}

/// One log's identity in a [`CrossCheck`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    /// Its agency.
    pub agency: AgencyId,
    /// Its checkpoint origin.
    pub origin: String,
    /// Its checkpoint size.
    pub size: u64,
}

/// The outcome of [`cross_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrossCheck {
    /// The first log.
    pub a: LogSummary,
    /// The second log.
    pub b: LogSummary,
    /// The clock-skew tolerance used, in ms.
    pub skew_ms: u64,
    /// Tallies over both directions.
    pub counts: Counts,
    /// Findings and notices, ordered by message id, class (table order),
    /// then entries.
    pub findings: Vec<Finding>,
}

/// Why two logs cannot be cross-checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrossCheckError {
    // --- The auditor passed unsuitable logs ---
    /// A log's origin is not `<agency-id>/audit`, so its agency is unknown.
    #[error("log origin {origin:?} is not <agency-id>/audit; cannot tell whose log it is")]
    Origin {
        /// The origin.
        origin: String,
    },
    /// Both logs belong to the same agency.
    #[error("both logs belong to {agency}; give the logs of two different agencies")]
    SameAgency {
        /// The agency.
        agency: AgencyId,
    },
}

impl CrossCheck {
    /// True if there is no finding other than notices.
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| f.class.is_notice())
    }

    /// Number of findings that are not notices.
    pub fn finding_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !f.class.is_notice())
            .count()
    }

    /// The JSON output of `spec/cross-check.md` §6.
    pub fn to_json(&self) -> serde_json::Value {
        let log = |l: &LogSummary| serde_json::json!({"agency": l.agency.as_str(), "origin": l.origin, "size": l.size});
        let c = &self.counts;
        serde_json::json!({
            "version": JSON_VERSION,
            "clean": self.is_clean(),
            "skew_ms": self.skew_ms,
            "a": log(&self.a),
            "b": log(&self.b),
            "counts": {
                "exchanges": c.exchanges,
                "matched": c.matched,
                "refused": c.refused,
                "undelivered": c.undelivered,
                "in_flight": c.in_flight,
                "with_findings": c.with_findings,
            },
            "findings": self.findings.iter().map(|f| serde_json::json!({
                "class": f.class.as_str(),
                "severity": f.class.severity(),
                "message_id": f.message_id.to_hex(),
                "sender": f.sender.as_str(),
                "recipient": f.recipient.as_str(),
                "entries": f.entries.iter().map(|e| serde_json::json!({
                    "log": e.side.as_str(), "index": e.index, "event": e.event.as_str(),
                })).collect::<Vec<_>>(),
                "detail": f.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Cross-checks two verified logs of different agencies: every exchange
/// from A to B and from B to A (spec/cross-check.md §3–§5). `skew_ms` is the
/// clock-skew tolerance ([`DEFAULT_SKEW_MS`] unless the auditor knows better).
pub fn cross_check(
    a: &AuditedLog,
    b: &AuditedLog,
    skew_ms: u64,
) -> Result<CrossCheck, CrossCheckError> {
    let va = View::new(Side::A, a)?;
    let vb = View::new(Side::B, b)?;
    if va.agency == vb.agency {
        return Err(CrossCheckError::SameAgency { agency: va.agency });
    }
    let mut counts = Counts::default();
    let mut findings = Vec::new();
    direction(&va, &vb, skew_ms, &mut counts, &mut findings);
    direction(&vb, &va, skew_ms, &mut counts, &mut findings);
    findings.sort_by(|x, y| {
        (x.message_id, x.class, &x.entries).cmp(&(y.message_id, y.class, &y.entries))
    });
    Ok(CrossCheck {
        a: va.summary(),
        b: vb.summary(),
        skew_ms,
        counts,
        findings,
    })
}

/// One log with its agency and the latest time it is known to cover.
struct View<'a> {
    side: Side,
    agency: AgencyId,
    origin: &'a str,
    entries: &'a [Entry],
    horizon: Option<u64>,
}

impl<'a> View<'a> {
    fn new(side: Side, log: &'a AuditedLog) -> Result<Self, CrossCheckError> {
        let agency = log.agency().ok_or_else(|| CrossCheckError::Origin {
            origin: log.checkpoint.origin.clone(),
        })?;
        Ok(Self {
            side,
            agency,
            origin: &log.checkpoint.origin,
            entries: &log.entries,
            horizon: log.horizon_ms(),
        })
    }

    fn summary(&self) -> LogSummary {
        LogSummary {
            agency: self.agency.clone(),
            origin: self.origin.to_owned(),
            size: self.entries.len() as u64,
        }
    }

    fn size(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The export is known to be newer than `t` (spec/cross-check.md §1): it holds an entry
    /// stamped at least `skew` after `t`.
    fn covers(&self, t: u64, skew: u64) -> bool {
        self.horizon.is_some_and(|h| h >= t.saturating_add(skew))
    }

    fn r(&self, e: &Entry) -> EntryRef {
        EntryRef {
            side: self.side,
            index: e.seq,
            event: e.event,
        }
    }
}

/// Groups entries of one event type by message id, keeping those whose
/// parties match.
fn by_id<'a>(
    v: &View<'a>,
    event: EventType,
    sender: Option<&AgencyId>,
    recipient: &AgencyId,
) -> BTreeMap<MessageId, Vec<&'a Entry>> {
    let mut out: BTreeMap<MessageId, Vec<&'a Entry>> = BTreeMap::new();
    for e in v.entries {
        if e.event != event || e.recipient.as_ref() != Some(recipient) {
            continue;
        }
        if sender.is_some_and(|s| e.sender.as_ref() != Some(s)) {
            continue;
        }
        if let Some(id) = e.message_id {
            out.entry(id).or_default().push(e);
        }
    }
    out
}

/// The detail key of a `sent` entry naming the envelope digest it
/// supersedes: the sender re-sealed the message after its signing key was
/// revoked (spec/cross-check.md §3.1).
pub const RESEALED_FROM: &str = "resealed-from";

/// Drops from each message's `sent` entries every one whose digest a later
/// `sent` entry of the same message names in [`RESEALED_FROM`]: the
/// superseded envelope is no part of the exchange.
fn without_superseded(
    mut sents: BTreeMap<MessageId, Vec<&Entry>>,
) -> BTreeMap<MessageId, Vec<&Entry>> {
    for v in sents.values_mut() {
        let named: Vec<(u64, &str)> = v
            .iter()
            .filter_map(|e| Some((e.seq, e.detail.get(RESEALED_FROM)?.as_str())))
            .collect();
        if named.is_empty() {
            continue;
        }
        v.retain(|e| {
            let hex = e.envelope_sha256.map(|d| Digest(d).to_hex());
            !named
                .iter()
                .any(|(seq, from)| *seq > e.seq && hex.as_deref() == Some(*from))
        });
    }
    sents
}

/// All exchanges from `s` (sender) to `r` (recipient).
fn direction<'a>(
    s: &View<'a>,
    r: &View<'a>,
    skew: u64,
    counts: &mut Counts,
    out: &mut Vec<Finding>,
) {
    fn get<'a>(m: &BTreeMap<MessageId, Vec<&'a Entry>>, id: &MessageId) -> Vec<&'a Entry> {
        m.get(id).cloned().unwrap_or_default()
    }
    let (sa, ra) = (&s.agency, &r.agency);
    let sents = without_superseded(by_id(s, EventType::Sent, Some(sa), ra));
    let rrs = by_id(s, EventType::ReceiptReceived, Some(sa), ra);
    let mut fails = by_id(s, EventType::DeliveryFailed, None, ra);
    for (id, v) in by_id(s, EventType::DeliveryExpired, None, ra) {
        fails.entry(id).or_default().extend(v);
    }
    let recvs = by_id(r, EventType::Received, Some(sa), ra);
    // receipt-sent names the receipt's direction: from the recipient to the sender.
    let rss = by_id(r, EventType::ReceiptSent, Some(ra), sa);
    let rejected: BTreeSet<[u8; 32]> = r
        .entries
        .iter()
        .filter(|e| e.event == EventType::Rejected && e.sender.as_ref() == Some(sa))
        .filter_map(|e| e.envelope_sha256)
        .collect();

    let ids: BTreeSet<MessageId> = sents
        .keys()
        .chain(rrs.keys())
        .chain(fails.keys())
        .chain(recvs.keys())
        .chain(rss.keys())
        .copied()
        .collect();
    for id in ids {
        let x = Exchange {
            s,
            r,
            skew,
            id,
            sent: get(&sents, &id),
            rr: get(&rrs, &id),
            fail: get(&fails, &id),
            recv: get(&recvs, &id),
            rs: get(&rss, &id),
        };
        let mut found = Vec::new();
        x.check(&mut found);
        counts.exchanges += 1;
        let real = found.iter().any(|f: &Finding| !f.class.is_notice());
        if real {
            counts.with_findings += 1;
        } else if !found.is_empty() {
            counts.in_flight += 1;
        } else if !x.sent.is_empty() && !x.recv.is_empty() && !x.rs.is_empty() && !x.rr.is_empty() {
            counts.matched += 1;
        } else if x.recv.is_empty() && !x.fail.is_empty() {
            let refused = x
                .sent
                .iter()
                .chain(&x.fail)
                .filter_map(|e| e.envelope_sha256)
                .any(|d| rejected.contains(&d));
            if refused {
                counts.refused += 1;
            } else {
                counts.undelivered += 1;
            }
        }
        out.extend(found);
    }
}

/// The entries of one message id in one direction.
struct Exchange<'v, 'a> {
    s: &'v View<'a>,
    r: &'v View<'a>,
    skew: u64,
    id: MessageId,
    /// At the sender: `sent` (several after a crash recovery), `receipt-received`, failures.
    sent: Vec<&'a Entry>,
    rr: Vec<&'a Entry>,
    fail: Vec<&'a Entry>,
    /// At the recipient: `received`, `receipt-sent`.
    recv: Vec<&'a Entry>,
    rs: Vec<&'a Entry>,
}

impl Exchange<'_, '_> {
    fn finding(&self, class: FindingClass, mut entries: Vec<EntryRef>, detail: String) -> Finding {
        entries.sort();
        entries.dedup();
        Finding {
            class,
            message_id: self.id,
            sender: self.s.agency.clone(),
            recipient: self.r.agency.clone(),
            entries,
            detail,
        }
    }

    fn is_own_received(&self, e: &Entry) -> bool {
        e.event == EventType::Received
            && e.message_id == Some(self.id)
            && e.sender.as_ref() == Some(&self.s.agency)
            && e.recipient.as_ref() == Some(&self.r.agency)
    }

    fn check(&self, out: &mut Vec<Finding>) {
        let (s, r, skew) = (self.s, self.r, self.skew);
        let refs = |v: &View<'_>, es: &[&Entry]| es.iter().map(|e| v.r(e)).collect::<Vec<_>>();

        // §4.1 receipts held by the sender, against the recipient's log.
        let mut receipt_inside = false;
        for rr in &self.rr {
            let Some(p) = rr.peer_index else { continue };
            match r.entries.get(p as usize) {
                None if r.covers(rr.time_ms, skew) => out.push(self.finding(
                    FindingClass::ReceiptIndexMissing,
                    vec![s.r(rr)],
                    format!(
                        "the receipt names index {p} of {}, whose export has only {} entries though it is newer than the receipt",
                        r.origin,
                        r.size()
                    ),
                )),
                None => out.push(self.finding(
                    FindingClass::ReceiptAfterExport,
                    vec![s.r(rr)],
                    format!(
                        "the receipt names index {p} of {}, beyond its export of {} entries: export {} again later",
                        r.origin,
                        r.size(),
                        r.origin
                    ),
                )),
                Some(target) => {
                    receipt_inside = true;
                    if !self.is_own_received(target) {
                        out.push(self.finding(
                            FindingClass::ReceiptIndexMismatch,
                            vec![s.r(rr), r.r(target)],
                            format!(
                                "the receipt names index {p} of {}, which is a {} entry{}, not the received entry of this message: forged receipt or rewritten log",
                                r.origin,
                                target.event,
                                target
                                    .message_id
                                    .map(|m| format!(" of message {}", m.to_hex()))
                                    .unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
        }
        if !self.rr.is_empty() && self.sent.is_empty() {
            out.push(self.finding(
                FindingClass::ReceiptWithoutSent,
                refs(s, &self.rr),
                format!(
                    "{} holds a receipt for a message it never logged as sent",
                    s.origin
                ),
            ));
        }

        // §4.2 one end missing.
        let first_sent = self.sent.iter().map(|e| e.time_ms).min();
        let first_recv = self.recv.iter().map(|e| e.time_ms).min();
        match (first_sent, first_recv) {
            (Some(t), None) if self.fail.is_empty() || receipt_inside => {
                let known_newer = receipt_inside || r.covers(t, skew);
                let mut es = refs(s, &self.sent);
                es.extend(refs(s, &self.rr));
                if known_newer {
                    out.push(self.finding(
                        FindingClass::SentNotReceived,
                        es,
                        format!("{} holds no received entry for this message", r.origin),
                    ));
                } else if self.rr.is_empty() {
                    out.push(self.finding(
                        FindingClass::SentInFlight,
                        es,
                        format!(
                            "{}'s export ends before the send (plus tolerance): the message may still be in flight",
                            r.origin
                        ),
                    ));
                }
            }
            (None, Some(t)) => {
                let class = if s.covers(t, skew) {
                    FindingClass::ReceivedNotSent
                } else {
                    FindingClass::ReceivedAfterExport
                };
                out.push(self.finding(
                    class,
                    refs(r, &self.recv),
                    if class.is_notice() {
                        format!(
                            "{}'s export ends before this message was received",
                            s.origin
                        )
                    } else {
                        format!("{} holds no sent entry for this message", s.origin)
                    },
                ));
            }
            _ => {}
        }
        if !self.recv.is_empty() && !self.fail.is_empty() && self.rr.is_empty() {
            let mut es = refs(s, &self.fail);
            es.extend(refs(r, &self.recv));
            out.push(self.finding(
                FindingClass::DeliveryContradiction,
                es,
                format!(
                    "{} logged the delivery as failed or expired, {} logged it as received",
                    s.origin, r.origin
                ),
            ));
        }
        if !self.recv.is_empty()
            && !self.rs.is_empty()
            && self.rr.is_empty()
            && self.fail.is_empty()
            && !self.sent.is_empty()
        {
            let mut es = refs(r, &self.rs);
            es.extend(refs(s, &self.sent));
            out.push(self.finding(
                FindingClass::AwaitingReceipt,
                es,
                format!(
                    "{} issued a receipt that {}'s export does not hold yet",
                    r.origin, s.origin
                ),
            ));
        }

        // §4.3 every received entry has its receipt-sent (one batch in the
        // node), and every receipt-sent names its own received entry.
        for y in &self.recv {
            if !self.rs.iter().any(|z| z.peer_index == Some(y.seq)) {
                let mut es = vec![r.r(y)];
                es.extend(
                    self.rr
                        .iter()
                        .filter(|x| x.peer_index == Some(y.seq))
                        .map(|x| s.r(x)),
                );
                out.push(self.finding(
                    FindingClass::ReceiptNotLogged,
                    es,
                    format!(
                        "{} logged the received entry {} but no receipt-sent naming it",
                        r.origin, y.seq
                    ),
                ));
            }
        }
        for rs in &self.rs {
            let ok = rs
                .peer_index
                .and_then(|q| r.entries.get(q as usize))
                .is_some_and(|t| self.is_own_received(t));
            if !ok {
                let mut es = vec![r.r(rs)];
                if let Some(t) = rs.peer_index.and_then(|q| r.entries.get(q as usize)) {
                    es.push(r.r(t));
                }
                out.push(self.finding(
                    FindingClass::ReceiptSentUnmatched,
                    es,
                    format!(
                        "receipt-sent {} names index {}, which is not {}'s received entry of this message",
                        rs.seq,
                        rs.peer_index.map_or_else(|| "none".to_owned(), |q| q.to_string()),
                        r.origin
                    ),
                ));
            }
        }

        // §4.4 one envelope digest per exchange.
        let all: Vec<(EntryRef, [u8; 32])> = [
            (s, &self.sent),
            (s, &self.rr),
            (r, &self.recv),
            (r, &self.rs),
        ]
        .into_iter()
        .flat_map(|(v, es)| {
            es.iter()
                .filter_map(move |e| e.envelope_sha256.map(|d| (v.r(e), d)))
        })
        .collect();
        let distinct: BTreeSet<[u8; 32]> = all.iter().map(|(_, d)| *d).collect();
        if distinct.len() > 1 {
            out.push(self.finding(
                FindingClass::DigestMismatch,
                all.iter().map(|(e, _)| *e).collect(),
                format!(
                    "{} different envelope digests among the entries of this exchange",
                    distinct.len()
                ),
            ));
        }

        // §4.4a one list of attachments per exchange: what the sender sent
        // is what the recipient received and acknowledged.
        let lists: Vec<(EntryRef, Option<Vec<crate::LoggedAttachment>>)> = [
            (s, &self.sent),
            (s, &self.rr),
            (r, &self.recv),
            (r, &self.rs),
        ]
        .into_iter()
        .flat_map(|(v, es)| es.iter().map(move |e| (v.r(e), e.attachments().ok())))
        .collect();
        let distinct: BTreeSet<&Option<Vec<crate::LoggedAttachment>>> =
            lists.iter().map(|(_, l)| l).collect();
        if distinct.len() > 1 || distinct.contains(&None) {
            out.push(self.finding(
                FindingClass::AttachmentMismatch,
                lists.iter().map(|(e, _)| *e).collect(),
                format!(
                    "{} different lists of attachments among the entries of this exchange{}",
                    distinct.len(),
                    if distinct.contains(&None) {
                        " (one unreadable)"
                    } else {
                        ""
                    }
                ),
            ));
        }

        // §4.5 time order, with the tolerance.
        let first_rr = self.rr.iter().map(|e| e.time_ms).min();
        let early = |later: Option<u64>, earlier: Option<u64>| match (later, earlier) {
            (Some(l), Some(e)) => l.saturating_add(skew) < e,
            _ => false,
        };
        let secs = |a: Option<u64>, b: Option<u64>| {
            a.zip(b)
                .map(|(a, b)| b.saturating_sub(a) as f64 / 1000.0)
                .unwrap_or(0.0)
        };
        if early(first_recv, first_sent) {
            let mut es = refs(s, &self.sent);
            es.extend(refs(r, &self.recv));
            out.push(self.finding(
                FindingClass::ReceivedBeforeSent,
                es,
                format!(
                    "received {:.3} s before it was sent (tolerance {} s)",
                    secs(first_recv, first_sent),
                    skew / 1000
                ),
            ));
        }
        if early(first_rr, first_recv) {
            let mut es = refs(s, &self.rr);
            es.extend(refs(r, &self.recv));
            out.push(self.finding(
                FindingClass::ReceiptBeforeReceived,
                es,
                format!(
                    "receipt logged {:.3} s before the peer received the message (tolerance {} s)",
                    secs(first_rr, first_recv),
                    skew / 1000
                ),
            ));
        }
        if early(first_rr, first_sent) {
            let mut es = refs(s, &self.rr);
            es.extend(refs(s, &self.sent));
            out.push(self.finding(
                FindingClass::ReceiptBeforeSent,
                es,
                format!(
                    "receipt logged {:.3} s before the message was sent (tolerance {} s)",
                    secs(first_rr, first_sent),
                    skew / 1000
                ),
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;
    use crate::testing::{digest, message_id, Pair};

    const T: u64 = 1_790_000_000_000;

    fn federation() -> Pair {
        Pair::federation(T)
    }

    fn check(p: &Pair) -> CrossCheck {
        cross_check(&p.audited(Side::A), &p.audited(Side::B), DEFAULT_SKEW_MS).unwrap()
    }

    fn classes_of(c: &CrossCheck, n: u8) -> Vec<FindingClass> {
        c.findings
            .iter()
            .filter(|f| f.message_id == message_id(n))
            .map(|f| f.class)
            .collect()
    }

    fn index_of(p: &Pair, side: Side, event: EventType, n: u8) -> usize {
        let es = match side {
            Side::A => &p.a_entries,
            Side::B => &p.b_entries,
        };
        es.iter()
            .position(|e| e.event == event && e.message_id == Some(message_id(n)))
            .unwrap()
    }

    #[test]
    fn consistent_logs_are_clean_and_counted() {
        let c = check(&federation());
        assert_eq!(c.findings, vec![]);
        assert!(c.is_clean());
        assert_eq!(
            c.counts,
            Counts {
                exchanges: 5,
                matched: 4,
                refused: 1,
                ..Counts::default()
            }
        );
        assert_eq!(c.a.agency.as_str(), "iq.moj.ca");
        assert_eq!(c.b.size, federation().b_entries.len() as u64);
        // Order of the arguments does not change what is found.
        let p = federation();
        let r = cross_check(&p.audited(Side::B), &p.audited(Side::A), DEFAULT_SKEW_MS).unwrap();
        assert_eq!(r.counts, c.counts);
    }

    #[test]
    fn deleted_received_entry_is_found() {
        let mut p = federation();
        let i = index_of(&p, Side::B, EventType::Received, 2);
        p.b_entries.remove(i);
        p.renumber(Side::B);
        let c = check(&p);
        assert!(!c.is_clean());
        let got = classes_of(&c, 2);
        assert!(got.contains(&FindingClass::SentNotReceived), "{got:?}");
        assert!(got.contains(&FindingClass::ReceiptIndexMismatch), "{got:?}");
        assert!(got.contains(&FindingClass::ReceiptSentUnmatched), "{got:?}");
        // The receipt names the index that the deleted entry had.
        let f = c
            .findings
            .iter()
            .find(|f| {
                f.class == FindingClass::ReceiptIndexMismatch && f.message_id == message_id(2)
            })
            .unwrap();
        assert!(f.entries.contains(&EntryRef {
            side: Side::B,
            index: i as u64,
            event: EventType::ReceiptSent
        }));
        // Message 1, before the deletion, still matches.
        assert_eq!(classes_of(&c, 1), vec![]);
        assert!(c.counts.matched >= 1 && c.counts.with_findings >= 1);
    }

    #[test]
    fn forged_receipt_is_found() {
        let mut p = federation();
        // A claims a delivery of message 9 with a receipt naming the index of
        // B's received entry of message 1.
        let target = index_of(&p, Side::B, EventType::Received, 1) as u64;
        p.sent(Side::A, 9, T + 5_000);
        p.receipt(Side::A, 9, T + 5_040, target);
        // And message 10 with an index past B's log, though B logged later.
        p.sent(Side::A, 10, T + 6_000);
        p.receipt(Side::A, 10, T + 6_040, 10_000);
        let c = check(&p);
        assert_eq!(
            classes_of(&c, 9),
            vec![
                FindingClass::SentNotReceived,
                FindingClass::ReceiptIndexMismatch
            ]
        );
        assert_eq!(
            classes_of(&c, 10),
            vec![
                FindingClass::SentNotReceived,
                FindingClass::ReceiptIndexMissing
            ]
        );
        // A receipt for a message that was never sent.
        let mut p = federation();
        p.receipt(Side::A, 11, T + 7_000, target);
        let c = check(&p);
        assert!(classes_of(&c, 11).contains(&FindingClass::ReceiptWithoutSent));
    }

    #[test]
    fn digest_mismatch_is_found() {
        let mut p = federation();
        let i = index_of(&p, Side::B, EventType::Received, 2);
        p.b_entries[i].envelope_sha256 = Some(digest(99));
        let c = check(&p);
        assert_eq!(classes_of(&c, 2), vec![FindingClass::DigestMismatch]);
        let f = &c.findings[0];
        assert!(f
            .entries
            .iter()
            .any(|e| e.side == Side::B && e.index == i as u64));
        assert!(f
            .entries
            .iter()
            .any(|e| e.side == Side::A && e.event == EventType::Sent));
        assert_eq!(
            (f.sender.as_str(), f.recipient.as_str()),
            ("iq.moj.ca", "fr.mj.bepi")
        );
        assert_eq!(c.counts.with_findings, 1);
    }

    #[test]
    fn time_anomalies_respect_the_tolerance() {
        let mut p = Pair::new("iq.moj.ca", "fr.mj.bepi");
        // Received 10 min before it was sent: beyond 5 min of skew.
        p.sent(Side::A, 1, T + 600_000);
        let i = p.received(Side::A, 1, T);
        p.receipt(Side::A, 1, T + 600_040, i);
        // Received 4 min before: within the tolerance.
        p.sent(Side::A, 2, T + 240_000);
        let i = p.received(Side::A, 2, T);
        p.receipt(Side::A, 2, T + 240_040, i);
        // Receipt 10 min before the peer received it.
        p.sent(Side::A, 3, T);
        let i = p.received(Side::A, 3, T + 600_000);
        p.receipt(Side::A, 3, T + 10, i);
        // Receipt 10 min before its own sent entry.
        p.sent(Side::A, 4, T + 600_000);
        let i = p.received(Side::A, 4, T + 600_020);
        p.receipt(Side::A, 4, T, i);
        let c = check(&p);
        assert_eq!(classes_of(&c, 1), vec![FindingClass::ReceivedBeforeSent]);
        assert_eq!(classes_of(&c, 2), vec![]);
        assert_eq!(classes_of(&c, 3), vec![FindingClass::ReceiptBeforeReceived]);
        assert_eq!(
            classes_of(&c, 4),
            vec![
                FindingClass::ReceiptBeforeReceived,
                FindingClass::ReceiptBeforeSent
            ]
        );
        // A tolerance of 15 min accepts all of it.
        let c = cross_check(&p.audited(Side::A), &p.audited(Side::B), 900_000).unwrap();
        assert!(c.findings.is_empty(), "{:?}", c.findings);
    }

    #[test]
    fn in_flight_only_when_the_other_export_is_older() {
        let mut p = federation();
        // Sent after B's last entry: B's export may predate the delivery.
        p.sent(Side::A, 7, T + 3_600_000);
        let c = check(&p);
        assert_eq!(classes_of(&c, 7), vec![FindingClass::SentInFlight]);
        assert!(c.is_clean());
        assert_eq!(c.counts.in_flight, 1);
        // B logged something well after the send: the message should be there.
        p.push(
            Side::B,
            Entry::new(EventType::KeyRotated, T + 3_600_000 + DEFAULT_SKEW_MS),
        );
        let c = check(&p);
        assert_eq!(classes_of(&c, 7), vec![FindingClass::SentNotReceived]);
        assert!(!c.is_clean());
    }

    #[test]
    fn received_not_sent_and_contradictions() {
        let mut p = federation();
        let n = index_of(&p, Side::A, EventType::Sent, 5);
        p.a_entries.remove(n);
        p.renumber(Side::A);
        let c = check(&p);
        assert_eq!(
            classes_of(&c, 5),
            vec![
                FindingClass::ReceivedNotSent,
                FindingClass::ReceiptWithoutSent
            ]
        );

        // A gave up, B logged it as received.
        let mut p = federation();
        p.sent(Side::A, 8, T + 5_000);
        p.received(Side::A, 8, T + 5_020);
        let mut f = Entry::new(EventType::DeliveryExpired, T + 9_000);
        f.message_id = Some(message_id(8));
        f.recipient = Some(p.b.clone());
        p.push(Side::A, f);
        let c = check(&p);
        assert_eq!(classes_of(&c, 8), vec![FindingClass::DeliveryContradiction]);

        // B received it, A has no receipt yet: a notice only.
        let mut p = federation();
        p.sent(Side::A, 6, T + 5_000);
        p.received(Side::A, 6, T + 5_020);
        let c = check(&p);
        assert_eq!(classes_of(&c, 6), vec![FindingClass::AwaitingReceipt]);
        assert!(c.is_clean());
    }

    #[test]
    fn output_is_deterministic_and_json_has_the_stable_names() {
        let mut p = federation();
        for n in [2u8, 1, 5] {
            let i = index_of(&p, Side::B, EventType::Received, n);
            p.b_entries[i].envelope_sha256 = Some(digest(200));
        }
        let c1 = check(&p);
        let c2 = check(&p);
        assert_eq!(c1, c2);
        let ids: Vec<_> = c1.findings.iter().map(|f| f.message_id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let j = c1.to_json();
        assert_eq!(j["version"], 1);
        assert_eq!(j["clean"], false);
        assert_eq!(j["findings"][0]["class"], "digest-mismatch");
        assert_eq!(j["findings"][0]["severity"], "finding");
        assert_eq!(j["findings"][0]["message_id"], message_id(1).to_hex());
        assert_eq!(j["counts"]["with_findings"], 3);
        for c in FindingClass::ALL {
            assert_eq!(FindingClass::from_name(c.as_str()), Some(c));
        }
    }

    #[test]
    fn fuzzing_invariants_hold_on_pseudo_random_records() {
        // The fuzz target's entry point, on a deterministic stream of inputs
        // with few distinct ids, parties and indexes so that entries pair.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400usize {
            let data: Vec<u8> = (0..len % 40 * 12)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let b = (x >> 24) as u8;
                    match i % 12 {
                        2 | 8 => b % 4,
                        9 => 0,
                        10 => b % 8,
                        _ => b,
                    }
                })
                .collect();
            crate::fuzzing::cross_check(&data);
        }
    }

    #[test]
    fn unsuitable_logs_are_refused() {
        let p = federation();
        assert!(matches!(
            cross_check(&p.audited(Side::A), &p.audited(Side::A), 0),
            Err(CrossCheckError::SameAgency { .. })
        ));
        let mut odd = p.audited(Side::A);
        odd.checkpoint.origin = "example.com/log".into();
        assert!(matches!(
            cross_check(&odd, &p.audited(Side::B), 0),
            Err(CrossCheckError::Origin { .. })
        ));
    }
}
