//! The demo's relayed exchanges (spec/relay.md): send through both central
//! authorities, wait for the end-to-end receipt, and check every log on the
//! route — the relays hold metadata only, the final recipient `received`
//! the inner message, the originator's end-to-end receipt names that entry.

use std::time::Duration;

use anyhow::Context as _;
use isnad_envelope::{Body, Extensions, MessageId, MlaState, MlaStatus};
use isnad_log::{Entry, EventType};
use isnad_node::workflow::{self, WorkflowError};
use isnad_node::{NodeError, NodeHandle};

use super::say;

/// One relayed exchange to check once it has arrived.
pub(super) struct Relayed {
    from: NodeHandle,
    to: NodeHandle,
    id: MessageId,
    route: Vec<String>,
}

/// Submits `body` from `from` to `to` (policy routes it through the
/// central authorities) and waits up to 20 s for the end-to-end receipt.
pub(super) async fn send(
    from: &NodeHandle,
    to: &NodeHandle,
    body: Body,
    what: &str,
) -> anyhow::Result<(bool, Relayed)> {
    let id = from
        .submit(to.agency().clone(), body, Some(7 * 86400))
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (route, e2e) = loop {
        let rec = from.store().outbox(&id)?.context("outbox record")?;
        let relay = rec
            .relay
            .context("policy did not route this message via the central authorities")?;
        if relay.end_to_end_index.is_some() || tokio::time::Instant::now() > deadline {
            let route: Vec<String> = relay.route.iter().map(|a| a.to_string()).collect();
            break (route, relay.end_to_end_index);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let good = e2e.is_some();
    say(&format!(
        "{} {} → {}: {what}; id {}; via {}; {}",
        if good { "  ok " } else { "  FAIL" },
        from.agency(),
        to.agency(),
        &id.to_hex()[..12],
        route[1..route.len() - 1].join(", "),
        match e2e {
            Some(i) => format!("end-to-end receipt verified, recipient logged it at index {i}"),
            None => "no end-to-end receipt".into(),
        }
    ));
    let x = Relayed {
        from: from.clone(),
        to: to.clone(),
        id,
        route,
    };
    Ok((good, x))
}

impl Relayed {
    /// The message id.
    pub(super) fn id(&self) -> MessageId {
        self.id
    }
}

/// How many exchanges the cross-check sees for these relayed messages:
/// each hop of the message and of its end-to-end receipt, and the
/// end-to-end exchange itself (spec/relay.md §9).
pub(super) fn exchanges(exchanges: &[Relayed]) -> u64 {
    exchanges
        .iter()
        .map(|x| 2 * (x.route.len() as u64 - 1) + 1)
        .sum()
}

/// Checks the logs of every node on each route; prints one line per relay.
pub(super) fn check(all: &[&NodeHandle], exchanges: &[Relayed]) -> anyhow::Result<bool> {
    let log = |n: &NodeHandle| -> anyhow::Result<Vec<Entry>> {
        (0..n.log().size())
            .map(|i| Ok(Entry::decode(&n.log().entry_bytes(i)?)?))
            .collect()
    };
    let mut ok = true;
    let mut relayed_by: std::collections::BTreeMap<String, usize> = Default::default();
    for x in exchanges {
        // The end-to-end entries: originator → final recipient (the hops
        // are logged as exchanges of their own, with other parties).
        let (s, r) = (x.from.agency(), x.to.agency());
        let find = |l: &[Entry], ev: EventType| {
            l.iter()
                .find(|e| {
                    e.event == ev
                        && e.message_id == Some(x.id)
                        && e.sender.as_ref() == Some(s)
                        && e.recipient.as_ref() == Some(r)
                })
                .cloned()
        };
        let (from_log, to_log) = (log(&x.from)?, log(&x.to)?);
        let sent = find(&from_log, EventType::Sent);
        let rr = find(&from_log, EventType::ReceiptReceived);
        let recv = find(&to_log, EventType::Received);
        let mut good = match (&sent, &rr, &recv) {
            (Some(s), Some(rr), Some(r)) => {
                s.envelope_sha256 == r.envelope_sha256
                    && rr.peer_index == Some(r.seq)
                    && rr.detail.get("end-to-end").map(String::as_str) == Some("true")
            }
            _ => false,
        };
        for hop in &x.route[1..x.route.len() - 1] {
            let n = all
                .iter()
                .find(|n| n.agency().as_str() == hop)
                .context("relay node")?;
            let l = log(n)?;
            let relayed = find(&l, EventType::Relayed);
            good &= relayed.is_some_and(|e| {
                e.envelope_sha256 == sent.as_ref().and_then(|s| s.envelope_sha256)
            }) && find(&l, EventType::Received).is_none();
            *relayed_by.entry(hop.clone()).or_default() += 1;
        }
        if !good {
            ok = false;
            say(&format!(
                "  FAIL relayed message {} is not logged consistently along its route",
                x.id.to_hex()
            ));
        }
    }
    for (relay, n) in relayed_by {
        say(&format!(
            "  {} {relay} relayed {n} messages: logged `relayed` with ids, ends and digests only; it holds no key to the inner envelopes",
            if ok { "ok  " } else { "FAIL" }
        ));
    }
    Ok(ok)
}

/// An `mla-status` body about `request_id`.
pub(super) fn status(request_id: MessageId, to: MlaState, reason: Option<&str>) -> Body {
    Body::MlaStatus(MlaStatus {
        request_id,
        status: to,
        reason: reason.map(str::to_owned),
        refusal_grounds: vec![],
        previous: None,
        attachments: Vec::new(),
        extensions: Extensions::new(),
    })
}

/// Whether both ends record request `id` in state `want` (prints a line
/// if not).
pub(super) fn agree(
    a: &NodeHandle,
    b: &NodeHandle,
    id: MessageId,
    want: MlaState,
) -> anyhow::Result<bool> {
    let mut good = true;
    for n in [a, b] {
        let got = workflow::request(n.store(), &id)?.map(|r| r.state);
        if got != Some(want) {
            good = false;
            say(&format!(
                "  FAIL {} records the request as {}, not {}",
                n.agency(),
                got.map_or_else(|| "unknown".into(), name),
                name(want)
            ));
        }
    }
    Ok(good)
}

/// The requesting side tries to accept its own request: the lifecycle
/// refuses it before anything is sealed.
pub(super) async fn refuse_wrong_side(
    requesting: &NodeHandle,
    id: MessageId,
) -> anyhow::Result<bool> {
    let before = requesting.store().all_outbox()?.len();
    let r = requesting
        .change_status(id, MlaState::Accepted, None, vec![], None)
        .await;
    let nothing_sent = requesting.store().all_outbox()?.len() == before;
    let good = match &r {
        Err(NodeError::Workflow(e @ WorkflowError::Lifecycle(_))) if nothing_sent => {
            say(&format!(
                "  ok   {} tries `accepted` on its own request: refused ({}), nothing sent: {e}",
                requesting.agency(),
                e.name()
            ));
            true
        }
        other => {
            say(&format!(
                "  FAIL a wrong-side `accepted` was not refused: {other:?}"
            ));
            false
        }
    };
    Ok(good)
}

/// Both ends hold the same status history of request `id`, each change
/// logged as `status-changed` (prints one line).
pub(super) fn history(a: &NodeHandle, b: &NodeHandle, id: MessageId) -> anyhow::Result<bool> {
    let mut paths = Vec::new();
    for n in [a, b] {
        let rec = workflow::request(n.store(), &id)?.context("request record")?;
        let logged = rec.history.iter().all(|e| e.log_index.is_some());
        let path: Vec<String> = rec
            .history
            .iter()
            .filter(|e| e.from != MlaState::Draft)
            .map(|e| name(e.to))
            .collect();
        paths.push((logged, path.join(" → ")));
    }
    let good = paths[0] == paths[1] && paths[0].0;
    say(&format!(
        "{} both ends hold the same history, each change logged `status-changed`: {}",
        if good { "  ok " } else { "  FAIL" },
        paths[0].1
    ));
    Ok(good)
}

/// The wire name of a state (`under-review`, …).
pub(super) fn name(state: MlaState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
