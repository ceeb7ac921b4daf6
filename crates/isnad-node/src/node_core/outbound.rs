//! The outbound path's decisions (spec/transport.md §6): when a message
//! has expired, how long to wait before the next attempt, what an answer
//! of the recipient means, and what one attempt's outcome changes in the
//! outbox record and the audit log. Pure: the caller passes the time, the
//! random bytes and the record; the driver (`crate::node`) appends the
//! returned entry, then stores the returned record.

use isnad_envelope::{AgencyId, Body, Digest, ErrorCode, Limits, MessageId, Opener, SenderKeys};
use isnad_log::Entry;
use isnad_wire::Response;

use crate::exchange;
use crate::store::{OutState, OutboxRecord};

/// The retry schedule: `initial_ms · 2^attempts`, capped at `max_secs`,
/// with a uniformly random jitter of ±`jitter_percent` (spec/transport.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First retry delay, milliseconds.
    pub initial_ms: u64,
    /// Largest retry delay before jitter, seconds.
    pub max_secs: u64,
    /// Jitter, percent of the delay (0–50).
    pub jitter_percent: u8,
}

impl Backoff {
    /// The delay before the next attempt after `attempts` attempts,
    /// jittered by `random` (two uniformly random bytes); at least 1 ms.
    pub fn delay_ms(&self, attempts: u32, random: [u8; 2]) -> u64 {
        let base = self.initial_ms.saturating_mul(1u64 << attempts.min(20));
        let capped = base.min(self.max_secs.saturating_mul(1000)).max(1);
        let unit = f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX); // 0..=1
        let jitter = f64::from(self.jitter_percent) / 100.0 * (unit * 2.0 - 1.0);
        ((capped as f64) * (1.0 + jitter)).max(1.0) as u64
    }
}

/// Whether a message expiring at `expires` (seconds) may no longer be
/// attempted at `now_secs`: an attempt is made only while `now < exp`.
pub fn expired(now_secs: u64, expires: u64) -> bool {
    now_secs >= expires
}

/// What one delivery attempt brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A valid receipt for the bytes sent, naming the peer's entry.
    Receipt {
        /// The receipt as received.
        bytes: Vec<u8>,
        /// The recipient's log index of its `received` entry.
        peer_index: u64,
    },
    /// The recipient answered with an error code.
    Refused {
        /// The code.
        code: ErrorCode,
        /// Its detail, if any.
        detail: Option<String>,
    },
    /// A valid receipt for this message id that acknowledges other envelope
    /// bytes: the recipient accepted another envelope under this id and
    /// will answer every retry the same way (spec/transport.md §6). Final.
    OtherBytes {
        /// The receipt as received.
        bytes: Vec<u8>,
        /// Its log index.
        peer_index: u64,
        /// The digest it acknowledges.
        acknowledged: Digest,
    },
    /// No usable answer (connection, stream, timeout, a receipt that does
    /// not verify): retried.
    Transport(String),
}

/// Classifies the recipient's answer to a delivery started at `secs`: the
/// receipt is checked as of then (spec/transport.md §6).
pub fn classify(
    me: &AgencyId,
    recipient: &AgencyId,
    rec: &OutboxRecord,
    answer: Response,
    secs: u64,
    senders: &dyn SenderKeys,
    limits: Limits,
) -> Attempt {
    match answer {
        Response::Error { code, detail, .. } => Attempt::Refused { code, detail },
        Response::Receipt(bytes) => {
            match check_receipt(me, recipient, rec, &bytes, secs, senders, limits) {
                Ok((peer_index, None)) => Attempt::Receipt { bytes, peer_index },
                Ok((peer_index, Some(acknowledged))) => Attempt::OtherBytes {
                    bytes,
                    peer_index,
                    acknowledged,
                },
                Err(e) => Attempt::Transport(e),
            }
        }
        other => Attempt::Transport(format!("unexpected answer to a delivery: {other:?}")),
    }
}

/// Verifies a receipt at `secs`: signed by the recipient, addressed to
/// `me`, for this message. Returns the peer's log index, and the digest it
/// acknowledges when that is not the SHA-256 of the bytes sent (the
/// recipient holds other bytes under this id: spec/transport.md §6).
pub fn check_receipt(
    me: &AgencyId,
    recipient: &AgencyId,
    rec: &OutboxRecord,
    bytes: &[u8],
    secs: u64,
    senders: &dyn SenderKeys,
    limits: Limits,
) -> Result<(u64, Option<Digest>), String> {
    let opener = Opener {
        me,
        keys: &[],
        limits,
    };
    let opened = opener
        .open_signed(bytes, secs, senders)
        .map_err(|e| format!("invalid receipt: {e}"))?;
    if &opened.message.header.sender != recipient {
        return Err("receipt signed by another agency than the recipient".into());
    }
    match opened.message.body {
        Body::Receipt(r) if r.message_id == rec.id => {
            let other = (r.envelope_digest.0 != rec.digest).then_some(r.envelope_digest);
            Ok((r.log_index, other))
        }
        _ => Err("receipt does not acknowledge this message".into()),
    }
}

/// What a settlement means, for the driver's metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: `receipt-received` to log, then the workflow's delivery.
    Delivered,
    /// Refused with a final code (or other bytes acknowledged).
    Failed,
    /// Expired undelivered.
    Expired,
    /// Stays pending; the next attempt is scheduled.
    Retry,
}

/// The effects of one step of a message's delivery, in the order the
/// driver carries them out: append `entry` (durably), note its index with
/// [`Settled::logged`], then store `record`.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The entry to append first; `None` for a retry (nothing is logged).
    pub entry: Option<Entry>,
    /// The record to store once `entry` is durable.
    pub record: OutboxRecord,
    /// What happened.
    pub outcome: Outcome,
}

impl Settled {
    /// Notes the index the log gave `entry` in the record.
    pub fn logged(&mut self, index: u64) {
        self.record.final_index = Some(index);
    }
}

/// A pending message whose expiry passed: `delivery-expired` with the last
/// error seen, and the record marked expired.
pub fn expire(me: &AgencyId, recipient: &AgencyId, mut rec: OutboxRecord, ms: u64) -> Settled {
    let e = exchange::delivery_expired(
        me,
        rec.id,
        recipient.clone(),
        rec.digest,
        rec.last_error.clone(),
        ms,
    );
    rec.state = OutState::Expired;
    Settled {
        entry: Some(e),
        record: rec,
        outcome: Outcome::Expired,
    }
}

/// The inputs of [`settle`] besides the record and the attempt.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// This node's agency.
    pub me: &'a AgencyId,
    /// The recipient of the record.
    pub recipient: &'a AgencyId,
    /// When the attempt started (seconds) and now (milliseconds).
    pub secs: u64,
    /// Now, milliseconds.
    pub ms: u64,
    /// The retry schedule.
    pub backoff: Backoff,
    /// Two random bytes for the jitter.
    pub random: [u8; 2],
    /// This node's own signing key's `revoked-at`, if its directory revokes
    /// it now (read when a refusal says `unauthentic`).
    pub own_revoked: Option<u64>,
}

/// What one attempt's outcome does to the record and the log
/// (spec/transport.md §6): a receipt settles it delivered, a final refusal
/// or a receipt for other bytes fails it, anything else schedules a retry.
pub fn settle(cx: Context<'_>, mut rec: OutboxRecord, attempt: Attempt) -> Settled {
    let id = rec.id;
    let me = cx.me;
    rec.attempts = rec.attempts.saturating_add(1);
    let (entry, outcome) = match attempt {
        Attempt::Receipt { bytes, peer_index } => {
            let e = exchange::receipt_received(
                me,
                id,
                cx.recipient.clone(),
                rec.digest,
                peer_index,
                &bytes,
                cx.ms,
            );
            rec.state = OutState::Delivered;
            rec.receipt = Some(bytes);
            rec.peer_log_index = Some(peer_index);
            rec.delivered_ms = Some(cx.ms);
            rec.last_error = None;
            (Some(e), Outcome::Delivered)
        }
        Attempt::Refused { code, detail } if !code.is_temporary() => {
            let e =
                exchange::delivery_failed(me, id, cx.recipient.clone(), rec.digest, code, cx.ms);
            rec.state = OutState::Failed;
            // The peer says only `unauthentic` (protocol.md §7); this
            // node's own directory tells whether its key was revoked.
            let own = (code == ErrorCode::Unauthentic)
                .then_some(cx.own_revoked)
                .flatten()
                .map(|at| format!(": this node's signing key is revoked since {at} (its directory); install the replacement key and submit the message again (queued messages are re-sealed with it)"));
            rec.last_error = Some(format!(
                "{code}{}",
                own.or(detail.map(|d| format!(": {d}"))).unwrap_or_default()
            ));
            (Some(e), Outcome::Failed)
        }
        Attempt::OtherBytes {
            bytes,
            peer_index,
            acknowledged,
        } => {
            let e = exchange::delivery_failed_other_bytes(
                me,
                id,
                cx.recipient.clone(),
                rec.digest,
                peer_index,
                &bytes,
                acknowledged,
                cx.ms,
            );
            rec.state = OutState::Failed;
            rec.last_error = Some(format!(
                "replayed: the recipient accepted other envelope bytes under this id \
                 (its log index {peer_index}, SHA-256 {})",
                acknowledged.to_hex()
            ));
            (Some(e), Outcome::Failed)
        }
        Attempt::Refused { code, detail } => {
            rec.last_error = Some(format!(
                "{code}{}",
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            ));
            rec.next_attempt_ms = cx.ms + cx.backoff.delay_ms(rec.attempts, cx.random);
            (None, Outcome::Retry)
        }
        Attempt::Transport(err) => {
            rec.last_error = Some(err);
            rec.next_attempt_ms = cx.ms + cx.backoff.delay_ms(rec.attempts, cx.random);
            (None, Outcome::Retry)
        }
    };
    Settled {
        entry,
        record: rec,
        outcome,
    }
}

/// What the end-to-end watch does with a relayed message this node
/// originated whose expiry passed (spec/relay.md §8).
#[derive(Debug, Clone, PartialEq)]
pub enum EndToEnd {
    /// Still pending: the delivery loop logs its own expiry; leave it.
    Wait,
    /// Handed over but no end-to-end receipt came back: log this
    /// `delivery-expired` entry, note its index, settle the watch.
    Missing(Box<Entry>),
    /// Nothing to log (receipt back, already noted, or gone): settle.
    Settle,
}

/// Decides the end-to-end watch of message `id` (its record, if any) at `ms`.
pub fn end_to_end(me: &AgencyId, id: MessageId, rec: Option<&OutboxRecord>, ms: u64) -> EndToEnd {
    let missing = match rec {
        Some(r) if r.state == OutState::Pending => return EndToEnd::Wait,
        Some(r) if r.state == OutState::Delivered => r
            .relay
            .as_ref()
            .filter(|x| x.end_to_end_receipt.is_none() && x.end_to_end_missing_index.is_none()),
        _ => None,
    };
    match missing {
        Some(x) => EndToEnd::Missing(Box::new(exchange::end_to_end_missing(
            me,
            id,
            &x.route,
            x.inner_digest,
            ms,
        ))),
        None => EndToEnd::Settle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isnad_log::EventType;

    const B: Backoff = Backoff {
        initial_ms: 500,
        max_secs: 300,
        jitter_percent: 20,
    };
    const MID: [u8; 2] = [0xff, 0x7f];
    /// The same schedule without jitter (exact values).
    const NOJ: Backoff = Backoff {
        jitter_percent: 0,
        ..B
    };

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).expect("valid")
    }

    fn rec() -> OutboxRecord {
        OutboxRecord::pending(
            MessageId::from_bytes([1; 16]),
            &agency("yy.rcpt"),
            isnad_envelope::Kind::MlaRequest,
            vec![1, 2, 3],
            100,
            200,
            100_000,
        )
    }

    fn cx<'a>(me: &'a AgencyId, to: &'a AgencyId) -> Context<'a> {
        Context {
            me,
            recipient: to,
            secs: 150,
            ms: 150_000,
            backoff: NOJ,
            random: MID,
            own_revoked: None,
        }
    }

    #[test]
    fn backoff_doubles_then_caps_and_jitters_within_bounds() {
        assert_eq!(NOJ.delay_ms(0, MID), 500);
        assert_eq!(NOJ.delay_ms(1, MID), 1000);
        assert_eq!(NOJ.delay_ms(3, MID), 4000);
        assert_eq!(NOJ.delay_ms(30, MID), 300_000);
        assert_eq!(NOJ.delay_ms(u32::MAX, MID), 300_000);
        assert_eq!(B.delay_ms(0, [0, 0]), 400);
        assert_eq!(B.delay_ms(0, [0xff, 0xff]), 600);
        for r in [[0u8, 0], [1, 2], [0x80, 0x80], [0xff, 0xff]] {
            let d = B.delay_ms(2, r);
            assert!((1600..=2400).contains(&d), "{d}");
        }
        let zero = Backoff {
            initial_ms: 0,
            max_secs: 0,
            jitter_percent: 50,
        };
        assert_eq!(zero.delay_ms(5, [0, 0]), 1);
        let huge = Backoff {
            initial_ms: u64::MAX,
            max_secs: u64::MAX,
            jitter_percent: 0,
        };
        assert!(huge.delay_ms(20, MID) > 0);
    }

    #[test]
    fn a_message_expires_at_its_exp_not_after() {
        assert!(!expired(199, 200));
        assert!(expired(200, 200));
        assert!(expired(201, 200));
    }

    #[test]
    fn settling_a_receipt_logs_receipt_received_and_marks_delivered() {
        let (me, to) = (agency("xx.send"), agency("yy.rcpt"));
        let mut s = settle(
            cx(&me, &to),
            rec(),
            Attempt::Receipt {
                bytes: vec![9],
                peer_index: 7,
            },
        );
        assert_eq!(s.outcome, Outcome::Delivered);
        let e = s.entry.clone().expect("an entry");
        assert_eq!(e.event, EventType::ReceiptReceived);
        assert_eq!(e.peer_index, Some(7));
        assert_eq!(s.record.state, OutState::Delivered);
        assert_eq!(s.record.attempts, 1);
        s.logged(42);
        assert_eq!(s.record.final_index, Some(42));
    }

    #[test]
    fn temporary_refusals_and_transport_failures_retry_with_backoff() {
        let (me, to) = (agency("xx.send"), agency("yy.rcpt"));
        let s = settle(
            cx(&me, &to),
            rec(),
            Attempt::Refused {
                code: ErrorCode::Unavailable,
                detail: None,
            },
        );
        assert_eq!((s.outcome, s.entry.is_none()), (Outcome::Retry, true));
        assert_eq!(s.record.next_attempt_ms, 150_000 + 1000);
        let s = settle(cx(&me, &to), s.record, Attempt::Transport("lost".into()));
        assert_eq!(s.record.next_attempt_ms, 150_000 + 2000);
        assert_eq!(s.record.state, OutState::Pending);
        assert_eq!(s.record.last_error.as_deref(), Some("lost"));
    }

    #[test]
    fn final_refusals_fail_and_name_a_revoked_own_key() {
        let (me, to) = (agency("xx.send"), agency("yy.rcpt"));
        let mut c = cx(&me, &to);
        c.own_revoked = Some(120);
        let s = settle(
            c,
            rec(),
            Attempt::Refused {
                code: ErrorCode::Unauthentic,
                detail: None,
            },
        );
        assert_eq!(s.outcome, Outcome::Failed);
        assert_eq!(s.entry.map(|e| e.event), Some(EventType::DeliveryFailed));
        assert!(s
            .record
            .last_error
            .unwrap_or_default()
            .contains("revoked since 120"));
        let s = settle(
            cx(&me, &to),
            rec(),
            Attempt::OtherBytes {
                bytes: vec![1],
                peer_index: 3,
                acknowledged: Digest([5; 32]),
            },
        );
        let e = s.entry.expect("entry");
        assert_eq!(e.reason.as_deref(), Some("replayed"));
        assert_eq!(e.peer_index, Some(3));
    }

    #[test]
    fn expiry_logs_the_last_error() {
        let (me, to) = (agency("xx.send"), agency("yy.rcpt"));
        let mut r = rec();
        r.last_error = Some("no route".into());
        let s = expire(&me, &to, r, 5);
        assert_eq!(s.outcome, Outcome::Expired);
        let e = s.entry.expect("entry");
        assert_eq!(e.event, EventType::DeliveryExpired);
        assert_eq!(e.reason.as_deref(), Some("no route"));
    }
}
