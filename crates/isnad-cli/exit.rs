//! The exit status of every `isnad` command (README, "Exit codes";
//! spec/audit-log.md §10 refers to the same table).

/// Verified, or done.
pub(crate) const OK: u8 = 0;
/// Usage or I/O error: bad arguments (the argument parser's errors too), an
/// unreadable or unwritable file, an unreachable node.
pub(crate) const USAGE: u8 = 1;
/// Verification failed: the input was read, and it is not what it must be.
pub(crate) const FAILED: u8 = 2;
/// Verified, with a warning the command documents (e.g. a fork shown).
pub(crate) const WARNING: u8 = 3;
