//! Deterministic simulation of two nodes exchanging messages through the
//! node core (`isnad_node::node_core`, `isnad_node::exchange`) with real
//! envelope crypto, in one thread: a simulated clock, a seeded network that
//! drops, duplicates, delays and reorders frames, and a simulated disk
//! (audit log + state) that can crash at every effect boundary, losing
//! every state write not yet synced (lazy commits), and whose inbox writes
//! can fail. After each run: every message acknowledged to its client is
//! delivered exactly once or expired with `delivery-expired`; receipts
//! match both logs; every log verifies; no message the client was told
//! failed is delivered; every `receipt-sent` is named by an inbox record,
//! withdrawn (transport.md §7), or in a crash window.
//!
//! `ISNAD_SIM_SEEDS=n` sets the number of seeds (default 1000);
//! `ISNAD_SIM_SEED=s` reruns one seed (printed on failure).

use std::collections::{BinaryHeap, HashMap};

use isnad_envelope::{
    seal, seal_signed, AgencyId, Body, Digest, EncryptionCurve, EncryptionKey, ErrorBody,
    ErrorCode, Header, Kind, Limits, Message, MessageId, OpenError, Opener, Receipt, ReplayGuard,
    SenderKey, SignatureAlgorithm, SigningKey,
};
use isnad_log::{Entry, EventType};
use isnad_node::exchange;
use isnad_node::node_core::inbound::{self, Hop, Indexes, Stored};
use isnad_node::node_core::outbound::{self, Attempt, Backoff};
use isnad_node::store::{OutState, OutboxRecord};
use isnad_wire::Response;
use ring::rand::SystemRandom;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const START_MS: u64 = 1_800_000_000_000;
/// Faults stop here; the run then continues until every message is final.
const FAULTS_UNTIL_MS: u64 = START_MS + 60_000;
const END_MS: u64 = START_MS + 400_000;
const BACKOFF: Backoff = Backoff {
    initial_ms: 200,
    max_secs: 5,
    jitter_percent: 20,
};
const ATTEMPT_TIMEOUT_MS: u64 = 2_000;

/// splitmix64: the seeded source of every decision.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn id(&mut self, ms: u64) -> MessageId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        MessageId::from_bytes(b)
    }
}

#[derive(Clone)]
struct InboxRec {
    sender: AgencyId,
    id: MessageId,
    digest: Digest,
    log_index: u64,
    receipt: Vec<u8>,
}

/// The state database: outbox and inbox.
#[derive(Clone, Default)]
struct Db {
    outbox: Vec<OutboxRecord>,
    inbox: Vec<InboxRec>,
}

struct Node {
    me: AgencyId,
    sign: SigningKey,
    enc: EncryptionKey,
    /// Audit log: every append is synced before it is acted on.
    log: Vec<Entry>,
    /// What survives a crash, and what the running node sees.
    synced: Db,
    live: Db,
    up: bool,
    /// Bumped by a crash: events of an older life are void.
    epoch: u64,
    /// Attempts in flight: message id → attempt token.
    in_flight: HashMap<MessageId, u64>,
    /// Acceptances logged whose inbox write has not run.
    open: Vec<u64>,
    /// `receipt-sent` indexes left open by a crash (transport.md §7).
    excused: Vec<u64>,
}

impl Node {
    fn append(&mut self, entries: Vec<Entry>) -> u64 {
        let first = self.log.len() as u64;
        for (n, mut e) in entries.into_iter().enumerate() {
            e.seq = first + n as u64;
            self.log.push(e);
        }
        first
    }
    fn commit_durable(&mut self) {
        self.synced = self.live.clone();
    }
    fn outbox_mut(&mut self, id: &MessageId) -> Option<&mut OutboxRecord> {
        self.live.outbox.iter_mut().find(|r| &r.id == id)
    }
}

impl isnad_envelope::SenderKeys for Sim {
    fn sender_key(&self, kid: &isnad_envelope::KeyId) -> Option<SenderKey> {
        self.keys.iter().find(|k| k.key.key_id() == *kid).cloned()
    }
}

enum Ev {
    Submit {
        node: usize,
        to: usize,
        ttl: u64,
    },
    Scan {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Request {
        to: usize,
        from: usize,
        id: MessageId,
        envelope: Vec<u8>,
        token: u64,
        epoch: u64,
    },
    InboxWrite {
        node: usize,
        epoch: u64,
        w: Box<PendingInbox>,
    },
    Answer {
        to: usize,
        id: MessageId,
        token: u64,
        epoch: u64,
        answer: Response,
        secs: u64,
    },
    Timeout {
        node: usize,
        id: MessageId,
        token: u64,
        epoch: u64,
    },
}

struct PendingInbox {
    rec: InboxRec,
    at: Indexes,
    peer: usize,
    token: u64,
    peer_epoch: u64,
}

struct Sim {
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<std::cmp::Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    nodes: Vec<Node>,
    keys: Vec<SenderKey>,
    limits: Limits,
    crypto: SystemRandom,
    /// Messages acknowledged to their client: (node, id).
    acked: Vec<(usize, MessageId)>,
    /// Submissions the client was told failed: (node, id).
    refused: Vec<(usize, MessageId)>,
    faults: bool,
    stats: Stats,
    /// Withdraw receipts the inbox did not store (the fix under test).
    withdraw: bool,
}

impl Sim {
    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue
            .push(std::cmp::Reverse((self.now + delay, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// A crash point: true if `node` crashed here (it then loses every
    /// unsynced state write and its in-memory state).
    fn crash(&mut self, node: usize) -> bool {
        if !self.faults || !self.rng.chance(15) {
            return false;
        }
        let n = &mut self.nodes[node];
        n.live = n.synced.clone();
        n.up = false;
        self.stats.crashes += 1;
        n.epoch += 1;
        n.in_flight.clear();
        let open = std::mem::take(&mut n.open);
        n.excused.extend(open);
        let d = self.rng.range(50, 2_000);
        self.at(d, Ev::Restart { node });
        true
    }

    fn send(&mut self, ev: impl Fn() -> Ev) {
        if self.faults && self.rng.chance(100) {
            self.stats.dropped += 1;
            return; // dropped
        }
        let copies = if self.faults && self.rng.chance(50) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.rng.range(1, 300);
            self.at(d, ev());
        }
    }

    fn run(&mut self) -> Res<()> {
        while let Some(std::cmp::Reverse((t, seq))) = self.queue.pop() {
            if t > END_MS {
                break;
            }
            self.now = t;
            if self.now >= FAULTS_UNTIL_MS {
                self.faults = false;
            }
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.step(ev)?;
        }
        Ok(())
    }

    fn step(&mut self, ev: Ev) -> Res<()> {
        match ev {
            Ev::Submit { node, to, ttl } => self.submit(node, to, ttl),
            Ev::Scan { node } => {
                if self.nodes[node].up {
                    self.scan(node)?;
                }
                self.at(100, Ev::Scan { node });
                Ok(())
            }
            Ev::Restart { node } => {
                self.restart(node);
                Ok(())
            }
            Ev::Request {
                to,
                from,
                id,
                envelope,
                token,
                epoch,
            } => self.deliver_in(to, from, id, envelope, token, epoch),
            Ev::InboxWrite { node, epoch, w } => {
                if self.nodes[node].epoch == epoch && self.nodes[node].up {
                    self.inbox_write(node, *w)?;
                }
                Ok(())
            }
            Ev::Answer {
                to,
                id,
                token,
                epoch,
                answer,
                secs,
            } => {
                let n = &self.nodes[to];
                if n.up && n.epoch == epoch && n.in_flight.get(&id) == Some(&token) {
                    let from = 1 - to;
                    let rec = n.live.outbox.iter().find(|r| r.id == id).cloned();
                    if let Some(rec) = rec {
                        let attempt = outbound::classify(
                            &n.me,
                            &self.nodes[from].me,
                            &rec,
                            answer,
                            secs,
                            &*self,
                            self.limits,
                        );
                        self.settle(to, rec, attempt, secs)?;
                    }
                }
                Ok(())
            }
            Ev::Timeout {
                node,
                id,
                token,
                epoch,
            } => {
                let n = &self.nodes[node];
                if n.up && n.epoch == epoch && n.in_flight.get(&id) == Some(&token) {
                    let rec = n.live.outbox.iter().find(|r| r.id == id).cloned();
                    if let Some(rec) = rec {
                        let secs = self.now / 1000;
                        self.settle(node, rec, Attempt::Transport("timeout".into()), secs)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The client's submission: seal, commit the outbox (durable), answer
    /// the client, log `sent`, note its index (lazy).
    fn submit(&mut self, node: usize, to: usize, ttl: u64) -> Res<()> {
        if !self.nodes[node].up {
            return Ok(());
        }
        let (secs, ms) = (self.now / 1000, self.now);
        let id = self.rng.id(ms);
        let (me, rcpt) = (self.nodes[node].me.clone(), self.nodes[to].me.clone());
        let msg = Message {
            header: Header {
                id,
                sender: me.clone(),
                recipient: rcpt.clone(),
                created: secs,
                expires: secs + ttl,
            },
            body: Body::Error(ErrorBody {
                code: ErrorCode::Unavailable,
                message_id: None,
                detail: Some("simulated".into()),
            }),
        };
        let env = seal(
            &msg,
            &self.nodes[node].sign,
            self.nodes[to].enc.public_key(),
            &self.limits,
            &self.crypto,
        )?;
        let rec = OutboxRecord::pending(id, &rcpt, Kind::Error, env, secs, secs + ttl, ms);
        if self.crash(node) {
            self.refused.push((node, rec.id));
            return Ok(());
        }
        let n = &mut self.nodes[node];
        n.live.outbox.push(rec.clone());
        n.commit_durable();
        self.acked.push((node, rec.id));
        if self.crash(node) {
            return Ok(());
        }
        self.log_sent(node, &rec);
        Ok(())
    }

    fn log_sent(&mut self, node: usize, rec: &OutboxRecord) {
        let n = &mut self.nodes[node];
        let e = exchange::sent(
            &n.me,
            rec.id,
            Some(rec.recipient.clone()),
            rec.kind.as_str(),
            rec.digest,
            rec.created * 1000,
        );
        let i = n.append(vec![e]);
        if let Some(r) = n.outbox_mut(&rec.id) {
            r.sent_index = Some(i); // lazy
        }
    }

    /// Recovery (transport.md §7): `sent` for every record without one.
    fn restart(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.up = true;
        let missing: Vec<OutboxRecord> = n
            .live
            .outbox
            .iter()
            .filter(|r| r.sent_index.is_none())
            .cloned()
            .collect();
        for rec in missing {
            self.log_sent(node, &rec);
        }
    }

    /// The delivery loop: start an attempt for every due pending message.
    fn scan(&mut self, node: usize) -> Res<()> {
        let due: Vec<OutboxRecord> = self.nodes[node]
            .live
            .outbox
            .iter()
            .filter(|r| {
                r.state == OutState::Pending
                    && r.next_attempt_ms <= self.now
                    && !self.nodes[node].in_flight.contains_key(&r.id)
            })
            .cloned()
            .collect();
        for rec in due {
            if !self.nodes[node].up {
                break;
            }
            let secs = self.now / 1000;
            if outbound::expired(secs, rec.expires) {
                let me = self.nodes[node].me.clone();
                let to = rec.recipient.clone();
                let s = outbound::expire(&me, &to, rec, self.now);
                self.carry_out(node, s)?;
                continue;
            }
            let token = self.rng.next();
            let epoch = self.nodes[node].epoch;
            self.nodes[node].in_flight.insert(rec.id, token);
            let (to, envelope) = (1 - node, rec.envelope.clone());
            let id = rec.id;
            self.send(|| Ev::Request {
                to,
                from: node,
                id,
                envelope: envelope.clone(),
                token,
                epoch,
            });
            self.at(
                ATTEMPT_TIMEOUT_MS,
                Ev::Timeout {
                    node,
                    id,
                    token,
                    epoch,
                },
            );
        }
        Ok(())
    }

    fn settle(&mut self, node: usize, rec: OutboxRecord, attempt: Attempt, secs: u64) -> Res<()> {
        self.nodes[node].in_flight.remove(&rec.id);
        let me = self.nodes[node].me.clone();
        let to = rec.recipient.clone();
        let random = (self.rng.next() as u16).to_le_bytes();
        let cx = outbound::Context {
            me: &me,
            recipient: &to,
            secs,
            ms: self.now,
            backoff: BACKOFF,
            random,
            own_revoked: None,
        };
        let s = outbound::settle(cx, rec, attempt);
        self.carry_out(node, s)
    }

    /// The driver's order: the entry (durable), then the record (lazy).
    fn carry_out(&mut self, node: usize, mut s: outbound::Settled) -> Res<()> {
        if self.crash(node) {
            return Ok(());
        }
        if let Some(e) = s.entry.take() {
            let i = self.nodes[node].append(vec![e]);
            s.logged(i);
            if self.crash(node) {
                return Ok(());
            }
        }
        let n = &mut self.nodes[node];
        if let Some(r) = n.outbox_mut(&s.record.id) {
            let sent = r.sent_index;
            *r = s.record;
            r.sent_index = r.sent_index.or(sent);
        }
        Ok(())
    }

    /// transport.md §4 steps 2–6: the inbox by digest, open, log the
    /// acceptance, sign the receipt; the inbox write follows as its own step.
    fn deliver_in(
        &mut self,
        node: usize,
        from: usize,
        attempt_id: MessageId,
        envelope: Vec<u8>,
        token: u64,
        peer_epoch: u64,
    ) -> Res<()> {
        if !self.nodes[node].up {
            return Ok(());
        }
        let secs = self.now / 1000;
        let digest = Digest::sha256(&envelope);
        let reply = |sim: &mut Self, answer: Response| {
            sim.answer_to(from, attempt_id, token, peer_epoch, answer, secs);
            Ok(())
        };
        if let Some(r) = self.nodes[node]
            .live
            .inbox
            .iter()
            .find(|r| r.digest == digest)
        {
            let a = Response::Receipt(r.receipt.clone());
            return reply(self, a);
        }
        let n = &self.nodes[node];
        struct Guard<'a>(&'a [InboxRec], Option<Vec<u8>>);
        impl ReplayGuard for Guard<'_> {
            fn first_sight(&mut self, s: &AgencyId, id: &MessageId, _: u64) -> bool {
                match self.0.iter().find(|r| &r.sender == s && &r.id == id) {
                    Some(r) => {
                        self.1 = Some(r.receipt.clone());
                        false
                    }
                    None => true,
                }
            }
        }
        let mut guard = Guard(&n.live.inbox, None);
        let opener = Opener {
            me: &n.me,
            keys: std::slice::from_ref(&n.enc),
            limits: self.limits,
        };
        let opened = match opener.open(&envelope, secs, &*self, &mut guard) {
            Ok(o) => o,
            Err(OpenError::Replayed { .. }) if guard.1.is_some() => {
                let a = Response::Receipt(guard.1.take().unwrap_or_default());
                return reply(self, a);
            }
            Err(e) => {
                let entry = exchange::rejected(
                    &self.nodes[from].me,
                    &self.nodes[node].me,
                    e.code(),
                    "open",
                    Some(digest),
                    self.now,
                );
                if self.crash(node) {
                    return Ok(());
                }
                self.nodes[node].append(vec![entry]);
                let a = Response::Error {
                    code: e.code(),
                    message_id: e.message_id(),
                    detail: None,
                };
                return reply(self, a);
            }
        };
        let h = opened.message.header.clone();
        let hop = Hop {
            peer: h.sender.clone(),
            digest,
            via: vec![],
        };
        let me = self.nodes[node].me.clone();
        let acceptance = inbound::accept(
            &me,
            &h,
            opened.message.body.kind(),
            digest,
            &hop,
            vec![],
            self.now,
        );
        let (rid, to, rdigest) = acceptance.receipt();
        if self.crash(node) {
            return Ok(());
        }
        let layout = acceptance.clone();
        let first = self.nodes[node].log.len() as u64;
        let first = self.nodes[node].append(acceptance.entries(first));
        let at = layout.indexes(first);
        self.nodes[node].open.push(at.receipt_sent);
        let receipt_msg = exchange::receipt(
            &me,
            &to,
            self.rng.id(self.now),
            Receipt {
                message_id: rid,
                envelope_digest: rdigest,
                log_index: at.receipt,
                received_at: secs,
                attachments: Vec::new(),
            },
            &self.limits,
        );
        let receipt = seal_signed(
            &receipt_msg,
            &self.nodes[node].sign,
            &self.limits,
            &self.crypto,
        )?;
        let rec = InboxRec {
            sender: h.sender,
            id: h.id,
            digest,
            log_index: at.message,
            receipt,
        };
        let epoch = self.nodes[node].epoch;
        let d = self.rng.range(0, 50);
        let w = Box::new(PendingInbox {
            rec,
            at,
            peer: from,
            token,
            peer_epoch,
        });
        self.at(d, Ev::InboxWrite { node, epoch, w });
        Ok(())
    }

    /// transport.md §4 steps 8–9 and §7: the inbox write, then
    /// [`inbound::after_inbox`]'s effects in order.
    fn inbox_write(&mut self, node: usize, w: PendingInbox) -> Res<()> {
        let PendingInbox {
            rec,
            at,
            peer,
            token,
            peer_epoch,
        } = w;
        if self.crash(node) {
            return Ok(());
        }
        let n = &mut self.nodes[node];
        n.open.retain(|i| *i != at.receipt_sent);
        let stored = if let Some(e) = n
            .live
            .inbox
            .iter()
            .find(|r| r.sender == rec.sender && r.id == rec.id)
        {
            Stored::Duplicate(e.receipt.clone())
        } else if self.faults && self.rng.chance(50) {
            Stored::Failed("simulated I/O error".into())
        } else {
            let n = &mut self.nodes[node];
            n.live.inbox.push(rec.clone());
            n.commit_durable();
            Stored::Stored
        };
        let me = self.nodes[node].me.clone();
        let from = self.nodes[peer].me.clone();
        let mut answer = inbound::after_inbox(
            &me,
            &from,
            rec.id,
            rec.digest,
            at,
            rec.receipt.clone(),
            stored,
            None,
            self.now,
        );
        if !self.withdraw {
            answer.withdraw.clear();
        }
        if !answer.withdraw.is_empty() {
            let wd = std::mem::take(&mut answer.withdraw);
            if self.crash(node) {
                // The withdrawal is lost with the crash: the §7 window.
                self.nodes[node].excused.push(at.receipt_sent);
                return Ok(());
            }
            self.nodes[node].append(wd);
            self.stats.withdrawn += 1;
        }
        let secs = self.now / 1000;
        // The envelope is not needed to route the answer: the token is.
        self.answer_to(peer, rec.id, token, peer_epoch, answer.response, secs);
        Ok(())
    }

    fn answer_to(
        &mut self,
        to: usize,
        id: MessageId,
        token: u64,
        epoch: u64,
        answer: Response,
        _secs: u64,
    ) {
        // The sender checks the receipt as of its attempt's start; the
        // attempt started at most the timeout ago, so now is within it.
        let secs = self.now / 1000;
        self.send(|| Ev::Answer {
            to,
            id,
            token,
            epoch,
            answer: answer.clone(),
            secs,
        });
    }
}

fn world(seed: u64, withdraw: bool) -> Res<Sim> {
    let keys = keys()?;
    let sender_keys = keys
        .iter()
        .map(|(a, s, _)| SenderKey {
            agency: a.clone(),
            key: s.verifying_key().clone(),
            valid_from: None,
            valid_until: None,
            revoked_at: None,
        })
        .collect();
    let nodes = keys
        .into_iter()
        .map(|(me, sign, enc)| Node {
            me,
            sign,
            enc,
            log: Vec::new(),
            synced: Db::default(),
            live: Db::default(),
            up: true,
            epoch: 0,
            in_flight: HashMap::new(),
            open: Vec::new(),
            excused: Vec::new(),
        })
        .collect();
    let mut sim = Sim {
        rng: Rng(seed),
        now: START_MS,
        seq: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        nodes,
        keys: sender_keys,
        limits: Limits::default(),
        crypto: SystemRandom::new(),
        acked: Vec::new(),
        refused: Vec::new(),
        faults: true,
        stats: Stats::default(),
        withdraw,
    };
    let messages = sim.rng.range(2, 5);
    for _ in 0..messages {
        let node = (sim.rng.next() % 2) as usize;
        let t = sim.rng.range(0, 20_000);
        let ttl = sim.rng.range(5, 60);
        sim.at(
            t,
            Ev::Submit {
                node,
                to: 1 - node,
                ttl,
            },
        );
    }
    sim.at(0, Ev::Scan { node: 0 });
    sim.at(50, Ev::Scan { node: 1 });
    Ok(sim)
}

/// The properties every run must hold.
fn check(sim: &Sim) -> Result<(), String> {
    for (k, n) in sim.nodes.iter().enumerate() {
        verify_log(&n.log).map_err(|e| format!("node {k}'s log: {e}"))?;
    }
    for &(node, id) in &sim.acked {
        let n = &sim.nodes[node];
        let peer = &sim.nodes[1 - node];
        let rec = n
            .live
            .outbox
            .iter()
            .find(|r| r.id == id)
            .ok_or("acknowledged message lost from the outbox")?;
        let mid = id;
        let stored = peer
            .live
            .inbox
            .iter()
            .filter(|r| r.id == mid && r.sender == n.me)
            .count();
        let logged = |ev: EventType| {
            n.log
                .iter()
                .any(|e| e.event == ev && e.message_id == Some(mid))
        };
        match rec.state {
            OutState::Delivered => {
                if stored != 1 {
                    return Err(format!("delivered message {mid} stored {stored} times"));
                }
                if !logged(EventType::ReceiptReceived) {
                    return Err(format!("delivered message {mid} without receipt-received"));
                }
            }
            OutState::Expired if logged(EventType::DeliveryExpired) => {}
            OutState::Failed => {
                if stored != 0 {
                    return Err(format!("message {mid} told failed but delivered"));
                }
            }
            s => {
                return Err(format!(
                    "message {mid} ended {s:?} (delivery-expired logged: {})",
                    logged(EventType::DeliveryExpired)
                ))
            }
        }
        if stored > 1 {
            return Err(format!("message {mid} stored {stored} times"));
        }
        // Receipts match both logs.
        for e in n
            .log
            .iter()
            .filter(|e| e.event == EventType::ReceiptReceived && e.message_id == Some(mid))
        {
            let p = e.peer_index.ok_or("receipt-received without peer index")? as usize;
            let r = peer
                .log
                .get(p)
                .ok_or(format!("receipt names index {p} beyond the peer's log"))?;
            if r.event != EventType::Received
                || r.message_id != Some(mid)
                || r.envelope_sha256 != Some(rec.digest)
            {
                return Err(format!(
                    "receipt for {mid} names peer entry {p}, which is not its received"
                ));
            }
            let s = peer
                .log
                .get(p + 1)
                .ok_or("no receipt-sent after received")?;
            if s.event != EventType::ReceiptSent || s.peer_index != Some(p as u64) {
                return Err(format!(
                    "peer entry {} is not the receipt-sent of {p}",
                    p + 1
                ));
            }
            if !peer
                .live
                .inbox
                .iter()
                .any(|i| i.id == mid && i.log_index == p as u64)
            {
                return Err(format!(
                    "receipt for {mid} names entry {p}, not the inbox record's"
                ));
            }
        }
    }
    for &(node, id) in &sim.refused {
        let mid = id;
        if sim.nodes[1 - node].live.inbox.iter().any(|r| r.id == mid) {
            return Err(format!("message {mid} refused to its client but delivered"));
        }
    }
    // Every receipt-sent: named by an inbox record, withdrawn, or in a crash window.
    for (k, n) in sim.nodes.iter().enumerate() {
        for e in n.log.iter().filter(|e| e.event == EventType::ReceiptSent) {
            let i = e.seq;
            let named = n.live.inbox.iter().any(|r| r.log_index + 1 == i);
            let withdrawn = n.log.iter().any(|w| {
                w.event == EventType::Rejected
                    && w.peer_index == Some(i)
                    && w.detail.get("stage").map(String::as_str) == Some(exchange::WITHDRAWN_STAGE)
            });
            if !named && !withdrawn && !n.excused.contains(&i) {
                return Err(format!(
                    "node {k}'s receipt-sent at {i} was never sent and not withdrawn"
                ));
            }
        }
    }
    Ok(())
}

/// Every entry encodes canonically, decodes to itself, sits at its index,
/// and carries the keys its event requires (spec/audit-log.md §2.3).
fn verify_log(log: &[Entry]) -> Result<(), String> {
    let mut tree = isnad_log::Tree::new();
    for (i, e) in log.iter().enumerate() {
        if e.seq != i as u64 {
            return Err(format!("entry {i} has seq {}", e.seq));
        }
        let bytes = e.encode().map_err(|x| format!("entry {i}: {x}"))?;
        let back = Entry::decode(&bytes).map_err(|x| format!("entry {i}: {x}"))?;
        if back.encode().map_err(|x| x.to_string())? != bytes {
            return Err(format!("entry {i} does not re-encode"));
        }
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("entry {i} ({:?}) lacks {what}", e.event))
            }
        };
        match e.event {
            EventType::Sent | EventType::Received => need(
                e.message_id.is_some()
                    && e.sender.is_some()
                    && e.recipient.is_some()
                    && e.envelope_sha256.is_some(),
                "4-7",
            )?,
            EventType::ReceiptSent | EventType::ReceiptReceived => need(
                e.message_id.is_some()
                    && e.sender.is_some()
                    && e.recipient.is_some()
                    && e.peer_index.is_some(),
                "4,5,6,8",
            )?,
            EventType::Rejected => need(e.reason.is_some(), "10")?,
            EventType::DeliveryFailed | EventType::DeliveryExpired => {
                need(e.message_id.is_some() && e.recipient.is_some(), "4,6")?
            }
            _ => {}
        }
        tree.push(isnad_log::leaf_hash(&bytes));
    }
    if tree.size() != log.len() as u64 {
        return Err("tree size".into());
    }
    Ok(())
}

fn keys() -> Res<Vec<(AgencyId, SigningKey, EncryptionKey)>> {
    let rng = SystemRandom::new();
    ["xa.sim.one", "xb.sim.two"]
        .iter()
        .map(|a| {
            Ok((
                AgencyId::new(a)?,
                SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?,
                EncryptionKey::generate(EncryptionCurve::X25519, &rng)?,
            ))
        })
        .collect()
}

/// What a run went through (to show the faults are exercised).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    crashes: u64,
    dropped: u64,
    withdrawn: u64,
    delivered: u64,
    expired: u64,
    failed: u64,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.crashes += o.crashes;
        self.dropped += o.dropped;
        self.withdrawn += o.withdrawn;
        self.delivered += o.delivered;
        self.expired += o.expired;
        self.failed += o.failed;
    }
}

fn run_seed(seed: u64, withdraw: bool) -> Result<Stats, String> {
    let mut sim = world(seed, withdraw).map_err(|e| e.to_string())?;
    sim.run().map_err(|e| e.to_string())?;
    check(&sim)?;
    let mut stats = sim.stats;
    for &(node, id) in &sim.acked {
        let state = sim.nodes[node]
            .live
            .outbox
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.state);
        match state {
            Some(OutState::Delivered) => stats.delivered += 1,
            Some(OutState::Expired) => stats.expired += 1,
            _ => stats.failed += 1,
        }
    }
    Ok(stats)
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("ISNAD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("ISNAD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000u64);
    (0..n).collect()
}

#[test]
fn two_nodes_under_loss_duplication_reordering_crashes_and_disk_faults() -> Res<()> {
    let started = std::time::Instant::now();
    let seeds = seeds();
    let mut total = Stats::default();
    for &seed in &seeds {
        match run_seed(seed, true) {
            Ok(s) => total.add(s),
            Err(e) => panic!(
                "seed {seed} fails: {e}\nrerun: ISNAD_SIM_SEED={seed} cargo test -p isnad-node --test simulation"
            ),
        }
    }
    eprintln!(
        "{} seeds in {:?}: {total:?}",
        seeds.len(),
        started.elapsed()
    );
    if seeds.len() >= 100 {
        // Not vacuous: the faults happened and messages still got through.
        assert!(
            total.crashes > 0 && total.dropped > 0 && total.withdrawn > 0,
            "{total:?}"
        );
        assert!(total.delivered > total.expired, "{total:?}");
    }
    Ok(())
}

/// The simulation finds the gap of transport.md §7 when the withdrawal is
/// left out (the node's order before the fix): some seed then ends with a
/// `receipt-sent` never sent and not withdrawn.
#[test]
fn without_the_withdrawal_the_simulation_finds_an_unsent_receipt() -> Res<()> {
    let found = (0..300u64).find_map(|seed| run_seed(seed, false).err().map(|e| (seed, e)));
    let (seed, why) = found.ok_or("no seed found the unsent receipt")?;
    assert!(
        why.contains("never sent and not withdrawn"),
        "seed {seed}: {why}"
    );
    Ok(())
}
