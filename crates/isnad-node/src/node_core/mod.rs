//! The node's decisions, without I/O: the outbound path
//! ([`outbound`]: expiry, backoff, what an answer means, how an attempt
//! settles a message, the end-to-end watch) and the inbound path after an
//! envelope is opened ([`inbound`]: the acceptance batch and its index
//! layout, the receipt, what to do when the inbox does not store the
//! message). Functions here take the time, random bytes and the records
//! they decide on, and return plain data: entries to append and records to
//! store, in the order the driver carries them out. No tokio, quinn, redb
//! or file I/O here; the test `core_is_free_of_io` checks it.
//!
//! The audit entries themselves are built in [`crate::exchange`], the one
//! place that builds them.

pub mod inbound;
pub mod outbound;

#[cfg(test)]
mod tests {
    /// The core's sources name no I/O crate or module: the proof that it
    /// is sans-IO (a crate boundary would let `cargo tree` show it; this
    /// module shares a crate with the driver).
    #[test]
    fn core_is_free_of_io() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("inbound.rs", include_str!("inbound.rs")),
            ("outbound.rs", include_str!("outbound.rs")),
            ("../exchange.rs", include_str!("../exchange.rs")),
        ];
        let forbidden = [
            "tokio",
            "quinn",
            "redb",
            "std::fs",
            "std::net",
            "std::time::SystemTime",
            "std::thread",
            "SystemRandom",
            "crate::node",
            "crate::relay",
            "Store::",
            "async ",
        ];
        for (file, text) in sources {
            // Code only: not the docs, nor this test's own list.
            let code = text.split("mod tests").next().unwrap_or(text);
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for f in forbidden {
                    assert!(!line.contains(f), "node_core/{file} uses {f}: {line}");
                }
            }
        }
    }
}
