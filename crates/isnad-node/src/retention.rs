//! Retention of content, permanence of proof (spec/audit-log.md §2.6):
//! after the retention period of a settled message, the node deletes its
//! content (the envelope) from its state, logs a content-free `purged`
//! entry with the digests, and keeps the record's proof fields, so audits
//! and the cross-check of both ends still match.
//!
//! ```text
//!  every retention.interval_secs (and at start):
//!  retention queue (per kind, older than its shortest period), in pages
//!                       ─▶ decide(rules, record, case marks, now)
//!                            keep (no rule, not due, legal hold)
//!                            skip (due but not settled: logged, never purged)
//!                            purge ─▶ `purged` entries → log (durable)
//!                                     ─▶ Store::purge (envelope emptied, mark)
//! ```
//!
//! The decision is a pure function ([`Rules::decide`]); the pass reads,
//! per kind with a rule, the records of the store's retention queue older
//! than the kind's shortest period, in pages (neither time nor memory grows
//! with the purged history), appends the
//! entries first and purges after, so a crash between the two leaves the
//! content and a `purged` entry; the next pass logs a second entry for the
//! same message and purges it (an auditor sees two entries, never a purge
//! without one). The records purged stay in their tables, compacted
//! ([`crate::store::retention`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use isnad_envelope::{AgencyId, HandlingCode, Kind, MessageId, Tlp};
use serde::{Deserialize, Serialize};

use crate::exchange::{self, PurgedMessage};
use crate::node::inner::Inner;
use crate::node::types::{now, NodeError, StopSignal};
use crate::store::retention::{outbox_settled, Held};
use crate::store::{InboxRecord, OutboxRecord, PurgeTarget, Store, StoreError};
use crate::NodeHandle;

/// Records read per page of a pass.
const PAGE: usize = 256;
/// Most `purged` entries appended at once.
const CHUNK: usize = 256;

/// The `[retention]` section of the node configuration. Absent (or with no
/// period) = content is kept for ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between purge passes; the first runs at start. Default 3600.
    pub interval_secs: u64,
    /// Retention period per message kind (`mla-request = 31536000`), seconds.
    pub by_kind: BTreeMap<String, u64>,
    /// Retention period per handling code of an intel message (`H0`..`H3`).
    pub by_handling: BTreeMap<String, u64>,
    /// Retention period per TLP of an intel message (`clear`, `green`,
    /// `amber`, `amber+strict`, `red`).
    pub by_tlp: BTreeMap<String, u64>,
    /// Legal holds: nothing they cover is purged while they are listed.
    pub hold: HoldConfig,
}

/// Legal holds (`[retention.hold]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoldConfig {
    /// Cases on hold: MLA request ids or intel share ids (32 hex digits).
    /// Every message of the case is kept.
    pub cases: Vec<String>,
    /// Agencies on hold: every message to or from them (or relayed
    /// through them) is kept.
    pub agencies: Vec<AgencyId>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            by_kind: BTreeMap::new(),
            by_handling: BTreeMap::new(),
            by_tlp: BTreeMap::new(),
            hold: HoldConfig::default(),
        }
    }
}

impl RetentionConfig {
    /// Whether no period is set (nothing is ever purged).
    pub fn is_off(&self) -> bool {
        self.by_kind.is_empty() && self.by_handling.is_empty() && self.by_tlp.is_empty()
    }

    /// Whether it is the default (written configs leave it out).
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Checks names and ranges; the parsed rules.
    pub fn rules(&self) -> Result<Rules, String> {
        if self.interval_secs == 0 {
            return Err("retention.interval_secs must be positive".into());
        }
        let period = |table: &str, name: &str, secs: u64| {
            if secs == 0 {
                Err(format!(
                    "retention.{table}.{name} must be a positive number of seconds"
                ))
            } else {
                Ok(secs)
            }
        };
        let mut rules = Rules::default();
        for (name, &secs) in &self.by_kind {
            let kind = Kind::parse(name)
                .ok_or_else(|| format!("retention.by_kind: unknown message kind {name:?}"))?;
            rules.kinds.insert(kind, period("by_kind", name, secs)?);
        }
        for (name, &secs) in &self.by_handling {
            let code = parse_name::<HandlingCode>(name).ok_or_else(|| {
                format!("retention.by_handling: unknown handling code {name:?} (H0 to H3)")
            })?;
            rules
                .handling
                .insert(code, period("by_handling", name, secs)?);
        }
        for (name, &secs) in &self.by_tlp {
            let tlp = parse_name::<Tlp>(name)
                .ok_or_else(|| format!("retention.by_tlp: unknown TLP {name:?}"))?;
            rules.tlp.insert(tlp, period("by_tlp", name, secs)?);
        }
        for c in &self.hold.cases {
            let id = MessageId::from_hex(c).ok_or_else(|| {
                format!("retention.hold.cases: {c:?} is not a case id (32 hex digits)")
            })?;
            rules.hold_cases.insert(id);
        }
        rules.hold_agencies = self.hold.agencies.iter().cloned().collect();
        Ok(rules)
    }
}

/// A serde enum from its wire name.
fn parse_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// The checked retention rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    kinds: BTreeMap<Kind, u64>,
    handling: BTreeMap<HandlingCode, u64>,
    tlp: BTreeMap<Tlp, u64>,
    hold_cases: BTreeSet<MessageId>,
    hold_agencies: BTreeSet<AgencyId>,
}

/// What the node knows about a message, for the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The message's kind.
    pub kind: Kind,
    /// The agencies it went between (and through).
    pub parties: Vec<AgencyId>,
    /// Handling code and TLP, for an intel message whose share is on record.
    pub marking: Option<(HandlingCode, Tlp)>,
    /// The cases (request or share ids) it belongs to.
    pub cases: Vec<MessageId>,
    /// When the period starts: creation (outgoing) or reception (incoming),
    /// seconds.
    pub since: u64,
    /// Whether its delivery is settled (always for an incoming message
    /// unless it is a relay hop still being forwarded).
    pub settled: bool,
}

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No rule applies, or its period has not passed.
    Keep,
    /// A legal hold covers it (the hold named).
    Held(String),
    /// Its period has passed but it is not settled: never purged (logged).
    Undelivered,
    /// Its period has passed: the content goes.
    Purge {
        /// The rule, e.g. `kind mla-request`.
        rule: String,
        /// Its period, seconds.
        period_secs: u64,
    },
}

impl Rules {
    /// The rule that applies to a message: of the kind's, the handling
    /// code's and the TLP's periods that are set, the longest. Handling
    /// codes and TLPs apply to the kinds of an intel share's messages only.
    pub fn period(
        &self,
        kind: Kind,
        marking: Option<(HandlingCode, Tlp)>,
    ) -> Option<(String, u64)> {
        let mut found: Vec<(String, u64)> = Vec::new();
        if let Some(&s) = self.kinds.get(&kind) {
            found.push((format!("kind {}", kind.as_str()), s));
        }
        if let Some((h, t)) = marking.filter(|_| marked(kind)) {
            if let Some(&s) = self.handling.get(&h) {
                found.push((format!("handling {}", serde_name(&h)), s));
            }
            if let Some(&s) = self.tlp.get(&t) {
                found.push((format!("tlp {}", serde_name(&t)), s));
            }
        }
        found.into_iter().max_by_key(|(_, s)| *s)
    }

    /// The shortest period that can apply to a message of `kind`: no
    /// message of it is due before; `None`: none is ever due.
    pub fn shortest(&self, kind: Kind) -> Option<u64> {
        let marked_periods = self
            .handling
            .values()
            .chain(self.tlp.values())
            .filter(|_| marked(kind));
        self.kinds
            .get(&kind)
            .into_iter()
            .chain(marked_periods)
            .copied()
            .min()
    }

    /// Decides for one message at `now` (seconds).
    pub fn decide(&self, f: &Facts, now: u64) -> Decision {
        let Some((rule, period_secs)) = self.period(f.kind, f.marking) else {
            return Decision::Keep;
        };
        if now < f.since.saturating_add(period_secs) {
            return Decision::Keep;
        }
        if let Some(a) = f.parties.iter().find(|a| self.hold_agencies.contains(*a)) {
            return Decision::Held(format!("agency {a}"));
        }
        if let Some(c) = f.cases.iter().find(|c| self.hold_cases.contains(*c)) {
            return Decision::Held(format!("case {}", c.to_hex()));
        }
        if !f.settled {
            return Decision::Undelivered;
        }
        Decision::Purge { rule, period_secs }
    }
}

/// Whether messages of `kind` belong to an intel share (and so have its
/// handling code and TLP).
fn marked(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::IntelShare
            | Kind::IntelCorrection
            | Kind::IntelRetraction
            | Kind::PermissionRequest
            | Kind::PermissionAnswer
    )
}

fn serde_name<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// One message a pass looked at and did not keep silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportItem {
    /// Message id (hex).
    pub id: String,
    /// `out` or `in`.
    pub direction: &'static str,
    /// Its kind.
    pub kind: String,
    /// The other party.
    pub peer: String,
    /// SHA-256 of its envelope (hex).
    pub envelope_sha256: String,
    /// The rule whose period passed, or why it is kept.
    pub why: String,
}

/// What a pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Purged (or, dry, to be purged).
    pub purged: Vec<ReportItem>,
    /// Past their period but under a legal hold.
    pub held: Vec<ReportItem>,
    /// Past their period but not settled: never purged.
    pub undelivered: Vec<ReportItem>,
    /// Index of the first `purged` entry appended, if any.
    pub first_index: Option<u64>,
}

/// Which cases and markings the case records give each message id.
#[derive(Debug, Default)]
struct CaseIndex {
    cases: BTreeMap<MessageId, Vec<MessageId>>,
    marking: BTreeMap<MessageId, (HandlingCode, Tlp)>,
}

impl CaseIndex {
    fn read(store: &Store) -> Result<Self, StoreError> {
        let mut ix = Self::default();
        for r in store.requests()? {
            let ids =
                std::iter::once(r.request_id).chain(r.history.iter().filter_map(|e| e.message_id));
            for id in ids {
                ix.cases.entry(id).or_default().push(r.request_id);
            }
        }
        for s in store.shares()? {
            let ids = std::iter::once(s.share_id)
                .chain(s.received_id)
                .chain(s.recipients.iter().map(|(_, id)| *id))
                .chain(s.corrected_by)
                .chain(s.events.iter().map(|e| e.message_id));
            for id in ids {
                ix.cases.entry(id).or_default().push(s.share_id);
                ix.marking.entry(id).or_insert((s.handling, s.tlp));
            }
        }
        Ok(ix)
    }
}

/// A record the pass will purge, with its entry.
struct Due {
    target: PurgeTarget,
    entry: PurgedMessage,
}

impl Inner {
    /// One retention pass (see the module docs); `dry_run`: decide and
    /// report only.
    pub(crate) async fn retention_pass(&self, dry_run: bool) -> Result<RetentionReport, NodeError> {
        let rules = self
            .config
            .retention
            .rules()
            .map_err(|e| NodeError::Unavailable(format!("retention rules: {e}")))?;
        let mut report = RetentionReport {
            dry_run,
            ..RetentionReport::default()
        };
        if self.config.retention.is_off() {
            return Ok(report);
        }
        let secs = now().0;
        let ix = CaseIndex::read(&self.store)?;
        let awaited = self.store.awaited_ids()?;
        let mut due = Vec::new();
        for kind in Kind::ALL {
            // Only records older than the kind's shortest period are read.
            let Some(until) = rules.shortest(kind).and_then(|p| secs.checked_sub(p)) else {
                continue;
            };
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = self
                    .store
                    .retention_queue(kind, until, after.as_deref(), PAGE)?;
                let Some((_, last)) = page.last() else { break };
                after = Some(last.clone());
                for (held, _) in &page {
                    let Some(seen) = self.look(held, &ix, &awaited)? else {
                        continue;
                    };
                    let Seen {
                        item,
                        facts,
                        target,
                        entry,
                    } = seen;
                    match rules.decide(&facts, secs) {
                        Decision::Keep => {}
                        Decision::Held(h) => {
                            report.held.push(item.why(format!("legal hold: {h}")));
                        }
                        Decision::Undelivered => {
                            tracing::warn!(id = %entry.id, direction = entry.direction, "retention: the period passed but the message is not settled; keeping it");
                            report.undelivered.push(item.why("not settled".into()));
                        }
                        Decision::Purge { rule, period_secs } => {
                            report.purged.push(item.why(rule.clone()));
                            due.push(Due {
                                target,
                                entry: PurgedMessage {
                                    rule,
                                    period_secs,
                                    ..entry
                                },
                            });
                        }
                    }
                }
            }
        }
        if dry_run || due.is_empty() {
            return Ok(report);
        }
        let mut purged = 0;
        for chunk in due.chunks(CHUNK) {
            let ms = now().1;
            let entries: Vec<_> = chunk
                .iter()
                .map(|d| exchange::purged(&d.entry, ms))
                .collect();
            let first = self.append_with(Box::new(move |_| entries)).await?;
            report.first_index.get_or_insert(first);
            let targets = chunk.iter().map(|d| d.target.clone()).collect();
            purged += self.store.purge(targets, first, ms).await?;
        }
        tracing::info!(purged, "retention: message contents purged");
        Ok(report)
    }

    /// What the pass needs of a queued record; `None` if it is purged
    /// already.
    fn look(
        &self,
        held: &Held,
        ix: &CaseIndex,
        awaited: &BTreeSet<MessageId>,
    ) -> Result<Option<Seen>, StoreError> {
        let me = &self.config.agency;
        Ok(Some(match held {
            Held::Out(rec) => {
                if self.store.outbox_purged(&rec.id)?.is_some() {
                    return Ok(None);
                }
                let entry = PurgedMessage {
                    id: rec.id,
                    sender: me.clone(),
                    recipient: rec.recipient.clone(),
                    envelope_sha256: rec.digest,
                    kind: rec.kind,
                    direction: "out",
                    logged_at: rec.sent_index,
                    inner_sha256: rec.relay.as_ref().map(|r| r.inner_digest),
                    rule: String::new(),
                    period_secs: 0,
                };
                Seen {
                    item: item(&entry, &rec.recipient),
                    facts: out_facts(rec, ix, awaited),
                    target: PurgeTarget::Out(rec.id),
                    entry,
                }
            }
            Held::In(rec) => {
                if self.store.inbox_purged(&rec.id, &rec.sender)?.is_some() {
                    return Ok(None);
                }
                // A relay hop whose forward is not settled is not either.
                let forward_pending = self
                    .store
                    .outbox(&rec.id)?
                    .is_some_and(|o| !outbox_settled(&o, awaited));
                let entry = PurgedMessage {
                    id: rec.id,
                    sender: rec.sender.clone(),
                    recipient: me.clone(),
                    envelope_sha256: rec.digest,
                    kind: rec.kind,
                    direction: "in",
                    logged_at: Some(rec.log_index),
                    inner_sha256: None,
                    rule: String::new(),
                    period_secs: 0,
                };
                Seen {
                    item: item(&entry, &rec.sender),
                    facts: in_facts(rec, ix, !forward_pending),
                    target: PurgeTarget::In(rec.id, rec.sender.clone()),
                    entry,
                }
            }
        }))
    }
}

/// A queued record as the pass sees it.
struct Seen {
    item: ReportItem,
    facts: Facts,
    target: PurgeTarget,
    entry: PurgedMessage,
}

/// The report line of a message (its `why` filled in later).
fn item(m: &PurgedMessage, peer: &AgencyId) -> ReportItem {
    ReportItem {
        id: m.id.to_hex(),
        direction: m.direction,
        kind: m.kind.as_str().to_owned(),
        peer: peer.to_string(),
        envelope_sha256: hex::encode(m.envelope_sha256),
        why: String::new(),
    }
}

impl ReportItem {
    fn why(&self, why: String) -> Self {
        Self {
            why,
            ..self.clone()
        }
    }
}

fn out_facts(rec: &OutboxRecord, ix: &CaseIndex, awaited: &BTreeSet<MessageId>) -> Facts {
    let mut parties = vec![rec.recipient.clone()];
    if let Some(r) = &rec.relay {
        parties.extend(r.route.iter().cloned());
    }
    Facts {
        kind: rec.kind,
        parties,
        marking: ix.marking.get(&rec.id).copied(),
        cases: ix.cases.get(&rec.id).cloned().unwrap_or_default(),
        since: rec.created,
        settled: outbox_settled(rec, awaited),
    }
}

fn in_facts(rec: &InboxRecord, ix: &CaseIndex, settled: bool) -> Facts {
    let mut parties = vec![rec.sender.clone()];
    parties.extend(rec.via.iter().cloned());
    Facts {
        kind: rec.kind,
        parties,
        marking: ix.marking.get(&rec.id).copied(),
        cases: ix.cases.get(&rec.id).cloned().unwrap_or_default(),
        since: rec.received_ms / 1000,
        settled,
    }
}

impl NodeHandle {
    /// Runs a retention pass now (`dry_run`: reports what would be purged
    /// and changes nothing).
    pub async fn retention(&self, dry_run: bool) -> Result<RetentionReport, NodeError> {
        self.inner.retention_pass(dry_run).await
    }
}

/// Runs a pass at start and every `retention.interval_secs` while any
/// period is set.
pub(crate) async fn purge_loop(inner: Arc<Inner>, stop: StopSignal) {
    if inner.config.retention.is_off() {
        return;
    }
    let every = Duration::from_secs(inner.config.retention.interval_secs.max(1));
    let mut stop = stop;
    loop {
        if let Err(e) = inner.retention_pass(false).await {
            tracing::error!(error = %e, "retention pass failed; retrying at the next one");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn config(text: &str) -> RetentionConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn facts(kind: Kind) -> Facts {
        Facts {
            kind,
            parties: vec![agency("fr.mj.bepi")],
            marking: None,
            cases: Vec::new(),
            since: 1000,
            settled: true,
        }
    }

    #[test]
    fn the_longest_applicable_period_wins_and_no_rule_keeps_for_ever() {
        let rules = config(
            "[by_kind]\nintel-share = 100\nmla-request = 50\n[by_handling]\nH2 = 300\n[by_tlp]\nred = 200\n",
        )
        .rules()
        .unwrap_or_else(|e| panic!("{e}"));
        let mut f = facts(Kind::IntelShare);
        f.marking = Some((HandlingCode::H2, Tlp::Red));
        assert_eq!(rules.decide(&f, 1299), Decision::Keep);
        assert_eq!(
            rules.decide(&f, 1300),
            Decision::Purge {
                rule: "handling H2".into(),
                period_secs: 300
            }
        );
        f.marking = Some((HandlingCode::H1, Tlp::Green));
        assert!(matches!(
            rules.decide(&f, 1100),
            Decision::Purge {
                period_secs: 100,
                ..
            }
        ));
        // No rule for the kind: kept for ever.
        assert_eq!(
            rules.decide(&facts(Kind::MlaStatus), u64::MAX),
            Decision::Keep
        );
        // What a pass reads: intel kinds from the shortest of their rules,
        // others from their kind's only, kinds without a rule never.
        assert_eq!(rules.shortest(Kind::IntelShare), Some(100));
        assert_eq!(rules.shortest(Kind::PermissionAnswer), Some(200));
        assert_eq!(rules.shortest(Kind::MlaRequest), Some(50));
        assert_eq!(rules.shortest(Kind::MlaStatus), None);
        // A marking on an MLA message (never one of a share's) is ignored.
        let mut f = facts(Kind::MlaRequest);
        f.marking = Some((HandlingCode::H2, Tlp::Red));
        assert!(matches!(
            rules.decide(&f, 1050),
            Decision::Purge {
                period_secs: 50,
                ..
            }
        ));
    }

    #[test]
    fn holds_and_unsettled_messages_are_never_purged() {
        let case = MessageId::from_bytes([7; 16]);
        let rules = config(&format!(
            "[by_kind]\nmla-request = 10\n[hold]\ncases = [\"{}\"]\nagencies = [\"jo.psd.cid\"]\n",
            case.to_hex()
        ))
        .rules()
        .unwrap_or_else(|e| panic!("{e}"));
        let mut f = facts(Kind::MlaRequest);
        f.cases = vec![case];
        assert_eq!(
            rules.decide(&f, 5000),
            Decision::Held(format!("case {}", case.to_hex()))
        );
        let mut f = facts(Kind::MlaRequest);
        f.parties.push(agency("jo.psd.cid"));
        assert_eq!(
            rules.decide(&f, 5000),
            Decision::Held("agency jo.psd.cid".into())
        );
        let mut f = facts(Kind::MlaRequest);
        f.settled = false;
        assert_eq!(rules.decide(&f, 5000), Decision::Undelivered);
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        for (text, want) in [
            ("[by_kind]\nmla-requestt = 5\n", "mla-requestt"),
            ("[by_kind]\nmla-request = 0\n", "by_kind.mla-request"),
            ("[by_handling]\nH7 = 5\n", "H7"),
            ("[by_tlp]\npurple = 5\n", "purple"),
            ("[hold]\ncases = [\"abc\"]\n", "hold.cases"),
            ("interval_secs = 0\n", "interval_secs"),
        ] {
            let e = config(text).rules().err().unwrap_or_default();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(RetentionConfig::default().is_off());
        assert!(config("[by_tlp]\n\"amber+strict\" = 5\n").rules().is_ok());
    }
}
