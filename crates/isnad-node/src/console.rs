//! The node's side of the web console (crate `isnad-console`): the
//! [`Backend`] it reads through, built on the same node functions as the
//! machine API (spec/api.yaml), and the `user-action` entries of people's
//! actions (spec/audit-log.md §2.3).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use isnad_console::{Action, Backend, BackendError, BoxFuture, Dashboard, InboxRow, OutboxRow};
use isnad_envelope::{body_to_json, MessageId};

use crate::NodeHandle;

/// The console's routes (under `/console/`) for `node`, its accounts in
/// the node's state directory.
pub fn routes(node: NodeHandle) -> Router {
    let users = isnad_console::users::UserFile::in_state_dir(&node.config().paths.state);
    isnad_console::router(isnad_console::Settings {
        users,
        backend: Arc::new(NodeBackend { node }),
    })
}

struct NodeBackend {
    node: NodeHandle,
}

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

fn cursor(after: Option<&str>) -> Result<Option<MessageId>, BackendError> {
    after
        .map(|s| MessageId::from_hex(s).ok_or_else(|| BackendError::BadCursor(s.to_owned())))
        .transpose()
}

impl Backend for NodeBackend {
    fn agency(&self) -> String {
        self.node.agency().as_str().to_owned()
    }

    fn dashboard(&self) -> Result<Dashboard, BackendError> {
        let condition = self.node.condition();
        let store = self.node.store();
        let pending = store.pending_count().map_err(unavailable)?;
        // Partners with queued messages and whether their last attempt failed.
        let mut partners: BTreeMap<String, bool> = BTreeMap::new();
        for r in store.all_outbox().map_err(unavailable)? {
            if matches!(r.state, crate::store::OutState::Pending) {
                let failing = partners.entry(r.recipient.as_str().to_owned()).or_default();
                *failing |= r.last_error.is_some();
            }
        }
        let w = self.node.witness_status().map_err(unavailable)?;
        Ok(Dashboard {
            alarms: condition
                .reasons
                .iter()
                .map(|r| r.code().to_owned())
                .collect(),
            pending,
            partners: partners.into_iter().collect(),
            checkpoint_size: w.own.size,
            cosigned_by: w.own.cosigned_by,
            witnesses: w.own.witnesses.len(),
            quorum: w.own.quorum,
        })
    }

    fn inbox(&self, after: Option<&str>, limit: usize) -> Result<Vec<InboxRow>, BackendError> {
        let recs = self
            .node
            .store()
            .inbox_page(cursor(after)?.as_ref(), limit)
            .map_err(unavailable)?;
        let mut rows = Vec::with_capacity(recs.len());
        for r in recs {
            // A purged message has no content left to open (retention,
            // spec/audit-log.md §2.6): listed without a subject.
            if self
                .node
                .store()
                .inbox_purged(&r.id, &r.sender)
                .map_err(unavailable)?
                .is_some()
            {
                rows.push(InboxRow {
                    id: r.id.to_hex(),
                    from: r.sender.as_str().to_owned(),
                    kind: r.kind.as_str().to_owned(),
                    received_ms: r.received_ms,
                    subject: String::new(),
                    purged: true,
                });
                continue;
            }
            // Decrypted on read, as GET /v1/messages/{id} does.
            let opened = self.node.read_inbox(&r).map_err(unavailable)?;
            let json = body_to_json(&opened.message.body).map_err(unavailable)?;
            let body: serde_json::Value = serde_json::from_str(&json).map_err(unavailable)?;
            let subject = ["subject", "summary"]
                .iter()
                .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
                .unwrap_or_default()
                .to_owned();
            rows.push(InboxRow {
                id: r.id.to_hex(),
                from: r.sender.as_str().to_owned(),
                kind: r.kind.as_str().to_owned(),
                received_ms: r.received_ms,
                subject,
                purged: false,
            });
        }
        Ok(rows)
    }

    fn outbox(&self, after: Option<&str>, limit: usize) -> Result<Vec<OutboxRow>, BackendError> {
        let recs = self
            .node
            .store()
            .outbox_page(cursor(after)?.as_ref(), limit)
            .map_err(unavailable)?;
        Ok(recs
            .into_iter()
            .map(|r| OutboxRow {
                id: r.id.to_hex(),
                to: r.recipient.as_str().to_owned(),
                kind: r.kind.as_str().to_owned(),
                created_ms: r.created.saturating_mul(1000),
                state: serde_json::to_value(r.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .collect())
    }

    fn record(&self, action: Action) -> BoxFuture<Result<(), BackendError>> {
        let node = self.node.clone();
        Box::pin(async move {
            let (_, now_ms) = crate::node::now();
            node.record(vec![crate::exchange::user_action(
                &action.user,
                action.role.as_str(),
                action.action,
                now_ms,
            )])
            .await
            .map_err(unavailable)
        })
    }
}
