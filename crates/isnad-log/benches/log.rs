//! Audit-log benchmarks (written below).
fn main() {}
