//! Bounds on peer input.

/// Bounds enforced before any allocation driven by peer input
/// (spec/protocol.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest envelope accepted or produced, in bytes.
    pub max_envelope_bytes: usize,
    /// Deepest nesting of arrays, maps and tags.
    pub max_depth: usize,
    /// Most entries in one array or map.
    pub max_items: usize,
    /// How far in the future a creation time may be, in seconds.
    pub max_clock_skew_secs: u64,
    /// Longest allowed lifetime (`exp - iat`), in seconds.
    pub max_lifetime_secs: u64,
    /// How long after a signer key's revocation time messages signed with
    /// it are still accepted on receipt (messages already in flight when
    /// the key was revoked), in seconds.
    pub revocation_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 4 * 1024 * 1024,
            max_depth: 16,
            max_items: 4096,
            max_clock_skew_secs: 300,
            max_lifetime_secs: 90 * 24 * 3600,
            revocation_grace_secs: 600,
        }
    }
}
