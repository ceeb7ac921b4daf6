//! Audit log (placeholder until issue 2 lands).
