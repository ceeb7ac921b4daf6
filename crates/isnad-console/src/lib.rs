//! The Isnad web console: what people in an agency (officers, supervisors,
//! operators, auditors) use in a browser, in Arabic, English or French.
//!
//! It does: accounts with Argon2id passwords and a TOTP second factor
//! ([`users`], [`totp`]); server-side sessions, CSRF tokens and lockout
//! ([`session`]); server-rendered pages ([`html`], one escaping function)
//! translated with Project Fluent and formatted with ICU4X ([`i18n`]); the
//! role rules (operators and auditors never see content).
//!
//! It does not: touch the node's state. Every page reads through a
//! [`Backend`] that the node implements with the same functions its
//! machine API uses, and every action is written to the node's audit log
//! through it ([`Backend::record`]). The node mounts [`router`] under
//! `/console/` on the local API's address (spec/console.md).
//!
//! ```text
//! browser ──HTTP──▶ node local API address
//!                    ├─ /v1/…        machine API (bearer token)
//!                    └─ /console/…   this crate (session cookie)
//!                                      │ Backend (dashboard, inbox, outbox, record)
//!                                      ▼
//!                                    node functions ─▶ store, audit log
//! ```
//!
//! ```
//! use isnad_console::totp;
//! let secret = totp::base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").ok_or("bad secret")?;
//! assert_eq!(totp::totp(totp::Algorithm::Sha1, &secret, 59, 8), 94287082);
//! # Ok::<(), &str>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub mod html;
pub mod i18n;
mod pages;
pub mod session;
pub mod totp;
pub mod users;

pub use pages::router;

/// What the console reads from and writes to the node. The node implements
/// it with the functions of its machine API; the console has no other way
/// into the state.
pub trait Backend: Send + Sync + 'static {
    /// The node's agency id.
    fn agency(&self) -> String;
    /// The dashboard's figures.
    fn dashboard(&self) -> Result<Dashboard, BackendError>;
    /// A page of the inbox, newest last, after message `after` (hex id).
    /// Content (subjects): call only for roles that read content.
    fn inbox(&self, after: Option<&str>, limit: usize) -> Result<Vec<InboxRow>, BackendError>;
    /// A page of the outbox after message `after` (hex id).
    fn outbox(&self, after: Option<&str>, limit: usize) -> Result<Vec<OutboxRow>, BackendError>;
    /// Appends a person's action to the audit log; resolves once durable.
    fn record(&self, action: Action) -> BoxFuture<Result<(), BackendError>>;
}

/// A boxed future of a [`Backend`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An action of a person, as written to the audit log (`user-action`,
/// spec/audit-log.md §2.3): who by pseudonymous id and role, what, never
/// content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The person's pseudonymous id (`u-` and 16 hex digits).
    pub user: String,
    /// The person's role.
    pub role: users::Role,
    /// What was done: `login`, `logout`, `login-failed`, `locked`.
    pub action: &'static str,
}

/// Why the node could not answer the console.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The node's state or log could not be read or written (the detail
    /// is for the node's log, the person sees "unavailable").
    #[error("the node could not answer: {0}")]
    Unavailable(String),
    /// The paging cursor is not a message id.
    #[error("not a message id: {0}")]
    BadCursor(String),
}

/// The dashboard's figures.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    /// Degradation reasons' codes (empty when the node is ok).
    pub alarms: Vec<String>,
    /// Outbox messages waiting for delivery.
    pub pending: u64,
    /// Partners with queued messages: agency, whether the last attempt failed.
    pub partners: Vec<(String, bool)>,
    /// Size of the latest checkpoint (0 before the first).
    pub checkpoint_size: u64,
    /// Witnesses whose cosignature it carries.
    pub cosigned_by: Vec<String>,
    /// Configured witnesses.
    pub witnesses: usize,
    /// Cosignatures needed.
    pub quorum: usize,
}

/// A row of the inbox.
#[derive(Debug, Clone)]
pub struct InboxRow {
    /// Message id, hex.
    pub id: String,
    /// Sending agency.
    pub from: String,
    /// Message kind.
    pub kind: String,
    /// When it was received, Unix ms.
    pub received_ms: u64,
    /// Its subject or summary, as written (any script); empty when
    /// `purged`.
    pub subject: String,
    /// Its content was deleted under the node's retention rules
    /// (spec/audit-log.md §2.6): there is no subject to show.
    pub purged: bool,
}

/// A row of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Message id, hex.
    pub id: String,
    /// Receiving agency.
    pub to: String,
    /// Message kind.
    pub kind: String,
    /// When it was submitted, Unix ms.
    pub created_ms: u64,
    /// Delivery state.
    pub state: String,
}

/// Console settings the node passes to [`router`].
#[derive(Clone)]
pub struct Settings {
    /// The accounts file.
    pub users: users::UserFile,
    /// The node.
    pub backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

/// Every Fluent key the code uses (the tests check each language has them).
pub const KEYS: &[&str] = pages::KEYS;
